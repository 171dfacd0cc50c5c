"""The agent under misspelt names: grounded calls and a lookup that forgives typos, against neither.

When the Doubter doubts the base about a misspelt name, the agent looks
the name up; the base writes the query as the user spelt it (or miscopies
it further), and a lookup by exact name then finds no one, so the agent
refuses a question the bare base might have answered. This script runs
the agent comparison of a world run (`metaloom eval --agentic
--closed-book direct`: the doubter policy with the lookup against the
direct policy without tools, the run's own calibration) on each split
three ways, side by side on one loaded backend: as a world run does it
(the query grounded in the question's words, `agentcore.grounding`, and
the world's lookup forgiving typos, `tools.TypoIndex`), with the typos
forgiven but the query as the base wrote it, and with neither. Per split
and way: pass rates, broke and rescued, and what the doubter's lookups
found (the asked person, another person, no one), by how many edits the
query that ran was from the asked person's name.

    python benchmarks/lookup_typos.py --run-dir RUN --output FILE
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from report import Report
from world_run import world_agent_or_say_why

SPLITS = ("test", "test_paraphrase", "test_misspelt")


def lookups(report: Any, names: dict[str, str]) -> tuple[Counter, Counter]:
    """What the doubter's lookups found, and the edits from each query to the asked person's name."""
    from meta_spider.tools.knowledge import edit_distance, normalise_query

    def compact(text: str) -> str:
        return normalise_query(text).replace(" ", "")

    found: Counter = Counter()
    edits: Counter = Counter()
    for task, results in zip(report.tasks, report.results["doubter"]):
        name = names.get(task.id)  # None: a general question about no one in the world
        for step in results.steps:
            call = step.get("call") if step.get("type") == "tool" else None
            if not call or call["name"] != "lookup":
                continue
            query = str(call["arguments"].get("query", ""))
            distance = 3 if name is None else edit_distance(compact(query), compact(name), 3)
            edits["3 or more" if distance > 2 else str(distance)] += 1
            if step["kind"] != "result":
                found["no one"] += 1
            else:
                asked = name is not None and step["observation"].startswith(f"{name}:")
                found["the asked person" if asked else "another person"] += 1
    return found, edits


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a run on the embedded world")
    parser.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch

    from meta_spider.loom.evaluate.agentic import run_agentic_eval
    from meta_spider.loom.world.generator import generate_world
    from meta_spider.loom.world.knowledge import KnowledgeBase
    from meta_spider.loom.world.presets import get_preset

    torch.set_num_threads(1)
    agent = world_agent_or_say_why(args.run_dir)
    if agent is None:
        return 2
    manifest, pm, backend = agent.manifest, agent.plugin_manager, agent.backend
    options = manifest.dataset.options
    world = generate_world(get_preset(options.get("preset", "small")).world, int(options.get("seed", 0)))
    people = {person.id: person.name for person in world.people}
    forgiving = KnowledgeBase.from_people(world.people)
    exact = KnowledgeBase.from_people(world.people, forgive_typos=False)
    ways = (("grounded, typos", forgiving, True), ("typos", forgiving, False), ("neither", exact, False))

    out = Report()
    out.say(f"# python benchmarks/lookup_typos.py --run-dir RUN --splits {args.splits}")
    out.say(f"run: {args.run_dir.name}; doubter with the lookup against direct without tools, "
            "the run's calibration, at most 4 steps")
    for split in args.splits.split(","):
        names = {item.id: people[item.person_id] for item in world.qa[split] if item.person_id >= 0}
        out.say()
        out.say(f"## {split}")
        for way, knowledge_base, ground in ways:
            start = time.perf_counter()
            report = run_agentic_eval(args.run_dir, split=split, backend=backend, knowledge_base=knowledge_base,
                                      plugin_manager=pm, closed_book=("direct",), ground_arguments=ground)
            seconds = time.perf_counter() - start
            direct, doubter = report.metrics("direct"), report.metrics("doubter")
            found, edits = lookups(report, names)
            out.say(f"{way:>16}: doubter {doubter['pass_rate']:.1%} against direct {direct['pass_rate']:.1%}; "
                    f"broke {doubter['broke']}, rescued {doubter['rescued']}, refused {doubter['refusals']} "
                    f"({seconds:.0f} s)")
            out.say(f"{'':>16}  lookups {sum(found.values())}: " + ", ".join(
                f"{key} {found[key]}" for key in ("the asked person", "another person", "no one")))
            out.say(f"{'':>16}  edits from the query to the asked name: " + ", ".join(
                f"{key}: {edits[key]}" for key in ("0", "1", "2", "3 or more")))
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
