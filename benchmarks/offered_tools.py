"""The agent with the lookup alone, and with every tool `meta-agent run` offers.

`metaloom eval --agentic` offered the world's questions the lookup alone
(it now offers the agent's own tools); the agent a user starts (`meta-agent chat` / `run --run-dir RUN`) offers
the calculator too, and a chat template writes every offered tool's
definition into the prompt. This script runs the run's doubter policy (its
calibration and gate after a lookup, as `metaloom eval --agentic` builds
it) on each split both ways, side by side on one loaded backend: the
lookup alone, and the run's agent's own tools (calculator and lookup). Per
split and way: right answers, refusals, wrong answers, and of the
questions whose lookup found a record, how many were answered right and
how many wrong.

    python benchmarks/offered_tools.py --run-dir RUN --output FILE
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

from report import Report
from world_run import OUTCOME_COLUMNS, compare_policies, outcome_columns, world_agent_or_say_why

SPLITS = ("test", "test_paraphrase", "test_misspelt", "test_outside")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a world run evaluated by `metaloom eval`")
    parser.add_argument("--splits", default=",".join(SPLITS), help=f"comma-separated (default {','.join(SPLITS)})")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(2)
    world = world_agent_or_say_why(args.run_dir)
    if world is None:
        return 2
    offered = world.launcher.build_agent().tools  # what `meta-agent run --run-dir RUN` offers
    both = tuple(offered[name] for name in offered.names())
    ways = (("the lookup alone", ()), (" and ".join(offered.names()), both))
    out = Report()
    out.say(f"# python benchmarks/offered_tools.py --run-dir RUN   (RUN: {world.manifest.dataset.options})")
    out.say(f"{'split':<16}{'tools offered':<26}{OUTCOME_COLUMNS}")
    for split in [s.strip() for s in args.splits.split(",") if s.strip()]:
        start = time.perf_counter()
        for name, also in ways:
            report = compare_policies(world, split, [("doubter", world.launcher.make_policy("doubter"))], also=also)
            out.say(f"{split:<16}{name:<26}{outcome_columns(report.results['doubter'])}")
        out.say(f"{'':<16}({len(report.tasks)} questions each way, {time.perf_counter() - start:.0f} s)")
    out.say()
    out.say("right / refused / wrong: the doubter agent's final answers; record found: the questions whose lookup "
            "found someone's record, by how the agent answered them. On test_outside no answer is right.")
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
