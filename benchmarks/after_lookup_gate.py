"""The gate after a lookup, in the agent: what it refuses, right and wrong.

Runs the run's agent comparison (as ``metaloom eval --agentic`` builds it:
run.json's settings and calibration, the world's lookup) with two doubter
policies side by side on each split: the run's (with the gate after a
lookup ``metaloom eval`` fitted, when its calibration holds one) and the
same policy with ``gate_after_lookup`` off. Per split and policy: right
answers, refusals, wrong answers, and of the questions whose lookup found a
record, how many were answered right and how many wrong. On ``test`` the
gate should cost few right answers; on ``test_outside`` (unrecorded
attributes of recorded people, and general questions) every answer is
wrong, and the gate should refuse the ones answered from a record.

    python benchmarks/after_lookup_gate.py --run-dir RUN --output FILE
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Optional

from report import Report
from world_run import OUTCOME_COLUMNS, compare_policies, outcome_columns, world_agent_or_say_why

SPLITS = ("test", "test_paraphrase", "test_misspelt", "test_outside")
GATED, UNGATED = "doubter", "doubter, no gate after a lookup"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a world run evaluated by `metaloom eval`")
    parser.add_argument("--splits", default=",".join(SPLITS), help=f"comma-separated (default {','.join(SPLITS)})")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(2)
    agent = world_agent_or_say_why(args.run_dir)
    if agent is None:
        return 2
    gated = agent.launcher.make_policy("doubter")
    if getattr(gated, "record_gate", None) is None:
        print(f"{args.run_dir}: run.json's calibration holds no gate after a lookup (run `metaloom eval` on a run "
              "that collected train_lookup and validation_lookup)", file=sys.stderr)
        return 2
    ungated = dataclasses.replace(gated, gate_after_lookup=False)

    out = Report()
    out.say(f"# python benchmarks/after_lookup_gate.py --run-dir RUN   (RUN: {agent.manifest.dataset.options})")
    out.say(f"# gate: {gated.record_gate.tool!r}, threshold {gated.record_gate.threshold:.3f}, "
            f"{len(gated.record_gate.weight)} features")
    out.say()
    out.say(f"{'split':<16}{'policy':<34}{OUTCOME_COLUMNS}")
    for split in [s.strip() for s in args.splits.split(",") if s.strip()]:
        start = time.perf_counter()
        report = compare_policies(agent, split, [(GATED, gated), (UNGATED, ungated)])
        for name in (GATED, UNGATED):
            out.say(f"{split:<16}{name:<34}{outcome_columns(report.results[name])}")
        out.say(f"{'':<16}({len(report.tasks)} questions, {time.perf_counter() - start:.0f} s)")
    out.say()
    out.say("right / refused / wrong: the agent's final answers; record found: the questions whose lookup found "
            "someone's record, by how the agent answered them. On test_outside no answer is right.")
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
