"""How much of the Doubter's ranking error is the scorer's strictness about
the answer's pronoun, and does the margin over the baselines move without it.

The world scores an answer by normalised exact match against the pronoun
sentence ("She was born in Kuba.") or the bare value, so "He was born in
Kuba." about a woman is wrong. This script rescores the base's drafts of an
evaluated run's reports (``report.json`` and ``report_<split>.json``, as
``metaloom eval`` and the demo leave them) with the leading pronoun ignored,
and prints per split: the drafts that are wrong only by their pronoun (how
many, about how many people, how many say "he" of a woman, their mean
P(correct), and how many of the confident errors they are), base accuracy
and the AUROC of the Doubter's P(correct) and of
every baseline's score under both scorings, and the Doubter's margin over the
best baseline under both. No model runs: seconds.

    python benchmarks/value_scoring.py --run-dir RUN --output benchmarks/results/value_scoring.txt

Nothing is refitted under the lenient scoring: the Doubter and the
baselines were fitted on the strict labels and are only re-ranked.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from report import Report

SPLITS = ("test", "test_paraphrase", "test_misspelt")
SCORES = (("Doubter P(correct)", "p_correct"),
          ("pass-1 signals (logistic)", "signals_score"),
          ("probe + signals (logistic)", "probe_signals_score"),
          ("answer mean log-prob", "answer_mean_logprob"),
          ("linear probe", "probe_score"),
          ("first token max prob", "first_token_max_prob"))
_PRONOUN = re.compile(r"^(he|she) ")
CONFIDENT = 0.5
"""P(correct) from which a wrong draft counts as a confident error."""


def say_auroc_columns(say: Callable[[str], None], questions: list[dict[str, Any]],
                      columns: Sequence[tuple[str, int, Callable[[list[float]], float]]]) -> None:
    """One row per score of :data:`SCORES` the report's ``questions`` hold
    (a baseline the report could not fit has none), one column per
    ``(header, width, AUROC of the scores)``; then, per column, the Doubter's
    margin over the best other score."""
    say(f"  {'AUROC':<30}" + "".join(f"{header:>{width}}" for header, width, _ in columns))
    table = {}
    for label, key in SCORES:
        if any(q.get(key) is None for q in questions):
            continue
        scores = [float(q[key]) for q in questions]
        table[label] = [rank(scores) for _, _, rank in columns]
        say(f"  {label:<30}" + "".join(f"{value:>{width}.3f}" for value, (_, width, _) in zip(table[label], columns)))
    doubter = table.pop(SCORES[0][0])
    for index, (header, _, _) in enumerate(columns):
        best = max(table, key=lambda label: table[label][index])
        say(f"  margin over the best baseline, {header}: {doubter[index] - table[best][index]:+.3f} ({best})")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="an evaluated world run")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    from meta_spider.loom.cli.eval import report_file
    from meta_spider.loom.datasets import create_dataset
    from meta_spider.loom.datasets.scoring import normalize_answer
    from meta_spider.loom.evaluate.ranking import auroc
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.plugins import make_plugin_manager

    manifest = RunManifest.load(args.run_dir)
    if manifest.dataset.name != "world":
        print(f"{args.run_dir}: a run on the embedded world is needed, this one used {manifest.dataset.name!r}",
              file=sys.stderr)
        return 2
    dataset = create_dataset(make_plugin_manager(), manifest.dataset.name, **manifest.dataset.options)

    def fact(text: str) -> str:
        """The answer with its leading pronoun dropped, normalised."""
        return _PRONOUN.sub("", normalize_answer(text))

    output = Report()
    say = output.say
    say(f"# python benchmarks/value_scoring.py --run-dir {args.run_dir.name}")
    say("strict: the world's scorer; lenient: the same with the answer's leading pronoun ignored")
    for split in SPLITS:
        path = args.run_dir / report_file(split)
        if not path.is_file():
            say(f"\n{split}: no {path.name} in the run (metaloom eval --shifts writes it)")
            continue
        examples = {example.id: example for example in dataset.split(split)
                    if example.meta.get("answerable", True) is not False}  # a right answer to rescore
        questions = [q for q in json.loads(path.read_text("utf-8"))["questions"] if q["id"] in examples]
        strict = [bool(q["pass1_correct"]) for q in questions]
        lenient = [s or fact(q["base_answer"]) == fact(examples[q["id"]].ground_truths[0])
                   for s, q in zip(strict, questions)]
        pronoun_only = [q for s, v, q in zip(strict, lenient, questions) if v and not s]
        people = {examples[q["id"]].meta["entity"] for q in pronoun_only}
        mean_p = sum(q["p_correct"] for q in pronoun_only) / max(1, len(pronoun_only))
        he_of_her = sum(normalize_answer(q["base_answer"]).startswith("he ") for q in pronoun_only)
        say()
        say(f"{split}: {len(questions)} questions; wrong only by the pronoun: {len(pronoun_only)} drafts about "
            f"{len(people)} people ({he_of_her} say 'he' of a woman), mean P(correct) {mean_p:.2f}")
        confident = [q for s, q in zip(strict, questions) if not s and q["p_correct"] >= CONFIDENT]
        say(f"  wrong drafts at P(correct) >= {CONFIDENT}: {len(confident)}, of which wrong only by the pronoun "
            f"{sum(q in pronoun_only for q in confident)}")
        say(f"  base accuracy strict {sum(strict) / len(strict):.3f}, lenient {sum(lenient) / len(lenient):.3f}")
        say_auroc_columns(say, questions, (("strict", 8, lambda scores: auroc(scores, strict)),
                                           ("lenient", 9, lambda scores: auroc(scores, lenient))))
    output.write(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
