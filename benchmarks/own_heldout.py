"""The demo run on held-out material of our own: misspellings the world's
`test_misspelt` does not make, and questions outside the world in wordings
none of its banks use (``own_heldout.json``, written for this benchmark and
used for nothing else).

Loads a trained world run (its base, Doubter and calibrated answer gate, as
``metaloom eval`` leaves them) and answers, under that gate:

- the 480 test questions with the person's name misspelt in ways of our
  own: all in lower case; two edits (the world's one-edit misspelling,
  twice); the name's words run together. Printed per kind: base accuracy,
  the Doubter's P(correct) AUROC, coverage and knowledge loss (share of the
  base-right answers refused);
- questions the world cannot answer: general knowledge, unrecorded facts
  of test people, and facts the world does not hold about its own places.
  Printed: how many are refused and how many get an invented answer, with
  the scope gate's veto and without it, and the invented answers.

    python benchmarks/own_heldout.py --run-dir RUN --output benchmarks/results/own_heldout.txt
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from report import Report

OWN: dict[str, Any] = json.loads(Path(__file__).with_name("own_heldout.json").read_text("utf-8"))
PEOPLE_PER_TEMPLATE = 2
"""Test people each unrecorded-fact template and each place template is asked about."""


def misspellings(misspell: Callable[[str, random.Random], str]) -> dict[str, Callable[[str, random.Random], str]]:
    """The name edits of our own, by kind."""
    return {
        "lower case": lambda name, rng: name.lower(),
        "two edits": lambda name, rng: misspell(misspell(name, rng), rng),
        "words run together": lambda name, rng: name.replace(" ", ""),
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a trained and evaluated world run")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch

    from meta_spider.loom.cli.eval import load_pipeline
    from meta_spider.loom.datasets import create_dataset
    from meta_spider.loom.evaluate.ranking import auroc
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.world.frames import misspell
    from meta_spider.loom.world.generator import generate_world
    from meta_spider.loom.world.presets import get_preset
    from meta_spider.plugins import make_plugin_manager
    from meta_spider.policies.actions import is_refusal
    from meta_spider.wrapper.scope import VETO_LOGIT

    torch.set_num_threads(1)
    manifest = RunManifest.load(args.run_dir)
    if manifest.dataset.name != "world":
        print(f"{args.run_dir}: a run on the embedded world is needed, this one used {manifest.dataset.name!r}",
              file=sys.stderr)
        return 2
    pipe = load_pipeline(manifest, args.run_dir, None, None)
    dataset = create_dataset(make_plugin_manager(), manifest.dataset.name, **manifest.dataset.options)
    options = manifest.dataset.options
    world = generate_world(get_preset(options.get("preset", "small")).world, options.get("seed", 0))
    test = list(dataset.split("test"))
    template = dataset.prompt(test[0]).messages
    gate = pipe.doubter.scope_gate
    veto = gate.threshold.clone() if gate is not None else None

    def ask(question: str, messages: Any = None) -> tuple[bool, float, str, str]:
        """(answered, P(correct), text, the base's draft) under the run's gate."""
        messages = [dict(message) for message in (messages or template)]
        messages[-1]["content"] = question
        result = pipe.generate(messages, max_new_tokens=24, return_result=True)
        return not is_refusal(result.text), result.p_correct, result.text, result.draft_text or ""

    output = Report()
    say = output.say

    say(f"# python benchmarks/own_heldout.py --run-dir {args.run_dir.name}")
    say(f"{len(test)} test questions per kind of misspelling")
    say(f"{'name misspelt':<22}{'base acc.':>10}{'AUROC':>8}{'coverage':>10}{'knowledge loss':>16}")
    for kind, edit in misspellings(misspell).items():
        rows, labels = [], []
        for example in test:
            name = example.meta["entity"]
            question = example.question.replace(name, edit(name, random.Random(f"{example.id}-{kind}")))
            answered, p_correct, _, draft = ask(question, dataset.prompt(example).messages)
            rows.append((answered, p_correct))
            labels.append(dataset.check_fn(draft, example))
        right = [row for row, label in zip(rows, labels) if label]
        say(f"{kind:<22}{len(right) / len(rows):>10.3f}{auroc([row[1] for row in rows], labels):>8.3f}"
            f"{sum(row[0] for row in rows) / len(rows):>10.3f}"
            f"{sum(not row[0] for row in right) / max(1, len(right)):>16.3f}")

    rng = random.Random(0)
    test_people = sorted({example.meta["entity"] for example in test})
    by_name = {person.name: person for person in world.people}
    questions = [("general", question) for question in OWN["general"]]
    for text in OWN["unrecorded"]:
        questions += [("unrecorded", text.format(name=name)) for name in rng.sample(test_people, PEOPLE_PER_TEMPLATE)]
    for text in OWN["places"]:
        for name in rng.sample(test_people, PEOPLE_PER_TEMPLATE):
            person = by_name[name]
            questions.append(("places", text.format(city=person.birth_city, country=person.birth_country)))
    say()
    say(f"{len(questions)} questions the world cannot answer ({', '.join(f'{k} {sum(q[0] == k for q in questions)}' for k in OWN if k != '_about')})")
    say(f"{'':<24}{'refused':>9}{'invented':>10}")
    invented: dict[str, list[str]] = {}
    for label, on in (("with the scope gate", True), ("its veto switched off", False)):
        if gate is None and not on:
            break
        if gate is not None:
            gate.threshold.fill_(float(veto) if on else float("-inf"))
        answers = [(kind, question, *ask(question)) for kind, question in questions]
        made = [f"  [{kind}] {question} -> {text} (P(correct) {p:.2f})" for kind, question, answered, p, text, _ in answers
                if answered]
        invented[label] = made
        say(f"{label:<24}{len(answers) - len(made):>9}{len(made):>10}")
    if gate is not None:
        gate.threshold.fill_(float(veto))
    for label, made in invented.items():
        if made:
            say(f"invented, {label}:")
            for line in made:
                say(line)

    # The world's own test_outside: of the drafts that would invent, which the veto refuses and which P(correct).
    outside = list(dataset.split("test_outside"))
    drafted = []
    for example in outside:
        answered, p_correct, _, draft = ask(example.question, dataset.prompt(example).messages)
        if not is_refusal(draft):
            drafted.append((example, answered, p_correct))
    veto_p = 1.0 / (1.0 + math.exp(-VETO_LOGIT))  # P(correct) where the scope gate vetoed
    vetoed = {example.id for example, answered, p_correct in drafted if not answered and p_correct <= 2 * veto_p}
    needed = set()
    if gate is not None:
        gate.threshold.fill_(float("-inf"))
        needed = {example.id for example, answered, _ in drafted
                  if example.id in vetoed and ask(example.question, dataset.prompt(example).messages)[0]}
        gate.threshold.fill_(float(veto))
    refused = [row for row in drafted if not row[1]]
    say()
    say(f"test_outside: {len(outside)} questions, {len(drafted)} drafts that are not the refusal; with the scope gate "
        f"{len(refused)} refused and {len(drafted) - len(refused)} invented: {len(vetoed)} vetoed by the gate "
        f"({len(needed)} of them answered with its veto switched off), {len(refused) - len(vetoed)} below the "
        "threshold by P(correct)")
    for example, _, p_correct in refused:
        if example.id not in vetoed:
            say(f"  refused by P(correct) {p_correct:.1e}: {example.question}")
    output.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
