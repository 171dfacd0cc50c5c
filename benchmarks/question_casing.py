"""The agent on questions typed in another case: the world's base read every
name capitalised, and a user may not.

This script asks the run's own agent (as `meta-agent run --run-dir RUN`
builds it: its policy, backend, tools and grounding) COUNT test questions
drawn at random, each four ways side by side: as the world writes it, in
lower case, in lower case without its question mark, and in upper case.
Per way: how many final answers are right, how many are refusals and how
many are wrong answers (and how many of those the agent gave without a
lookup), and how many runs had a lookup that found the asked person's
record or another person's. Each question is a new
session. About 30 s per way on two cores.

    python benchmarks/question_casing.py --run-dir RUN --output benchmarks/results/question_casing.txt
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from report import Report
from world_run import world_agent_or_say_why

WAYS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("as written", lambda question: question),
    ("lower case", str.lower),
    ("lower case, no question mark", lambda question: question.rstrip("?").lower()),
    ("upper case", str.upper),
)


def ask(agent: Any, dataset: Any, examples: list[Any], recase: Callable[[str], str]) -> dict[str, int]:
    """Counts over ``examples`` asked through ``recase``."""
    from meta_spider.agentcore.steps import FinalStep, ToolStep
    from meta_spider.loom.world.generator import fact_line

    knowledge_base = dataset.knowledge_base()
    counts = {"right": 0, "refused": 0, "wrong": 0, "wrong without a lookup": 0, "found the asked person": 0,
              "found another person": 0}
    for example in examples:
        asked = fact_line(knowledge_base.person(str(example.meta["entity"]))) if example.meta.get("entity") else None
        final, found, looked_up = None, [], False
        for step in agent.run(recase(example.question)):
            if isinstance(step, ToolStep) and step.call is not None and step.call.name == "lookup":
                looked_up = True
                if step.ok:
                    found.append(step.observation)
            elif isinstance(step, FinalStep):
                final = step
        right = final is not None and final.outcome == "answer" and dataset.check_fn(final.text or "", example)
        counts["right"] += right
        counts["refused"] += final is not None and final.outcome == "refuse"
        wrong = final is not None and final.outcome == "answer" and not right
        counts["wrong"] += wrong
        counts["wrong without a lookup"] += wrong and not looked_up
        counts["found the asked person"] += asked in found
        counts["found another person"] += any(record != asked for record in found)
    return counts


def arguments(description: str, argv: Optional[list[str]]) -> argparse.Namespace:
    """The options of this script and of the others that ask the run's agent test questions in other forms."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--run-dir", type=Path, required=True, help="a run on the embedded world")
    parser.add_argument("--count", type=int, default=200, help="test questions, drawn at random")
    parser.add_argument("--seed", type=int, default=7, help="the draw's RNG seed")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    return parser.parse_args(argv)


def report_ways(out: Report, agent: Any, dataset: Any, examples: list[Any],
                ways: list[tuple[str, Callable[[str], str]]], first_column: str) -> None:
    """One row per way of asking ``examples`` (:func:`ask`), with its seconds."""
    header = ("right", "refused", "wrong", "wrong without a lookup", "found the asked person", "found another person")
    out.say(f"{first_column:<32}" + "".join(f"{name:>24}" for name in header) + f"{'seconds':>9}")
    for name, recase in ways:
        start = time.perf_counter()
        counts = ask(agent, dataset, examples, recase)
        out.say(f"{name:<32}" + "".join(f"{counts[key]:>24}" for key in header)
                + f"{time.perf_counter() - start:>9.0f}")


def agent_on_test(args: argparse.Namespace, script: str,
                  keep: Callable[[Any], bool] = lambda example: True) -> Optional[tuple[Report, Any, Any, list[Any]]]:
    """The report (headed with the command), the run's agent, its dataset and ``args.count`` test questions
    that ``keep`` keeps, drawn with ``args.seed``; None (having said why) when the run cannot be used."""
    world = world_agent_or_say_why(args.run_dir)
    if world is None:
        return None
    import torch

    from meta_spider.loom.world.dataset import WorldDataset

    torch.set_num_threads(2)
    dataset = WorldDataset(**world.manifest.dataset.options)
    test = [example for example in dataset.split("test") if keep(example)]
    examples = random.Random(args.seed).sample(test, min(args.count, len(test)))
    agent = world.launcher.build_agent()  # on the backend open_world_agent loaded (built once per name)
    out = Report()
    out.say(f"# python benchmarks/{script} --run-dir RUN --count {args.count} --seed {args.seed}")
    out.say(f"run: {args.run_dir.name} (policy {world.launcher.default_policy}; grounded tools: "
            f"{', '.join(agent.grounded_tools) or 'none'})")
    return out, agent, dataset, examples


def main(argv: Optional[list[str]] = None) -> int:
    args = arguments(__doc__.splitlines()[0], argv)
    ready = agent_on_test(args, "question_casing.py")
    if ready is None:
        return 2
    out, agent, dataset, examples = ready
    report_ways(out, agent, dataset, examples, list(WAYS), "asked")
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
