"""The agent on questions that name the person in part or in another order,
as people often do: "When was Tollan born?", "Tollan Mira", "Ms. Tollan".

This script asks the run's own agent (as `meta-agent run --run-dir RUN`
builds it: its policy, backend, tools and grounding) COUNT test questions
drawn at random, each in several forms side by side: as the world writes
it (the whole name), by the surname alone, by the first name alone, with
the surname first, by title and surname, and by the surname alone all in
lower case. The base read every person by their whole name, so these are
shifts of the name, not of the frame. Per form: how many final answers are
right, refused and wrong, and how many runs had a lookup that found the
asked person's record or another person's (a first or last name that
several people share names no one). Each question is a new session. About
40 s per form on two cores.

    python benchmarks/name_forms.py --run-dir RUN --output benchmarks/results/name_forms.txt
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from question_casing import ask
from report import Report
from world_run import world_agent_or_say_why


def _title(example: Any) -> str:
    return "Ms." if str(example.answer).startswith("She") else "Mr."


FORMS: tuple[tuple[str, Callable[[Any, str], str]], ...] = (
    ("as written", lambda example, name: name),
    ("surname", lambda example, name: name.split()[-1]),
    ("first name", lambda example, name: name.split()[0]),
    ("surname first", lambda example, name: " ".join(reversed(name.split()))),
    ("title and surname", lambda example, name: f"{_title(example)} {name.split()[-1]}"),
)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a run on the embedded world")
    parser.add_argument("--count", type=int, default=200, help="test questions, drawn at random")
    parser.add_argument("--seed", type=int, default=7, help="the draw's RNG seed")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    world = world_agent_or_say_why(args.run_dir)
    if world is None:
        return 2
    import torch

    from meta_spider.loom.world.dataset import WorldDataset

    torch.set_num_threads(2)
    dataset = WorldDataset(**world.manifest.dataset.options)
    test = [example for example in dataset.split("test") if str(example.meta.get("entity", "")) in example.question]
    examples = random.Random(args.seed).sample(test, min(args.count, len(test)))
    agent = world.launcher.build_agent()
    out = Report()
    out.say(f"# python benchmarks/name_forms.py --run-dir RUN --count {args.count} --seed {args.seed}")
    out.say(f"run: {args.run_dir.name} (policy {world.launcher.default_policy}; grounded tools: "
            f"{', '.join(agent.grounded_tools) or 'none'})")
    header = ("right", "refused", "wrong", "found the asked person", "found another person")
    out.say(f"{'named by':<28}" + "".join(f"{name:>24}" for name in header) + f"{'seconds':>9}")
    ways = [(label, form, False) for label, form in FORMS] + [("surname, lower case", FORMS[1][1], True)]
    for label, form, lower in ways:
        asked = {}
        for example in examples:
            question = example.question.replace(str(example.meta["entity"]), form(example, str(example.meta["entity"])))
            asked[example.question] = question.lower() if lower else question
        start = time.perf_counter()
        counts = ask(agent, dataset, examples, asked.__getitem__)
        out.say(f"{label:<28}" + "".join(f"{counts[key]:>24}" for key in header)
                + f"{time.perf_counter() - start:>9.0f}")
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
