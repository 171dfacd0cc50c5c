"""When the base declines in a new wording, does P(correct) know it is not
about to answer?

A draft that is the refusal sentence is never a right answer to a question
that has one, yet its log-probs can be as confident as a known fact's. This
script reads evaluated reports (a run's ``report.json`` and
``report_<split>.json`` for its test splits, and any ``--report`` given, such
as the one ``benchmarks/own_words_eval.py`` leaves in its work folder) and
prints per report: how many of the base's drafts are the refusal and their
mean P(correct), and the AUROC of the Doubter and of every baseline against
the base's correctness, as reported and with the refusal drafts ranked last
(the same rule for every reader, so the comparison stays fair), with the
Doubter's margin over the best baseline both ways. Nothing is refitted. No
model runs: seconds.

    python benchmarks/refusal_drafts.py --run-dir RUN --report OWN_WORDS/run/report.json \\
        --output benchmarks/results/refusal_drafts.txt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from report import Report
from value_scoring import SPLITS, say_auroc_columns


def shown(path: Path) -> str:
    """A report's path by its last three parts (where it came from, not where it lies here)."""
    return "/".join(path.parts[-3:])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=None, help="an evaluated run: its test splits' reports")
    parser.add_argument("--report", type=Path, action="append", default=[], help="another report.json (repeatable)")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    from meta_spider.loom.cli.eval import report_file
    from meta_spider.loom.evaluate.ranking import auroc
    from meta_spider.policies.actions import is_refusal

    reports = [args.run_dir / report_file(split) for split in SPLITS] if args.run_dir is not None else []
    reports = [path for path in reports if path.is_file()] + list(args.report)
    if not reports:
        print("nothing to read: give --run-dir (an evaluated run) or --report FILE", file=sys.stderr)
        return 2
    output = Report()
    say = output.say
    say("# python benchmarks/refusal_drafts.py" + (f" --run-dir {args.run_dir.name}" if args.run_dir else "")
        + "".join(f" --report {shown(path)}" for path in args.report))
    for path in reports:
        questions = json.loads(path.read_text("utf-8"))["questions"]
        labels = [bool(q["pass1_correct"]) for q in questions]
        declined = [is_refusal(q["base_answer"]) for q in questions]
        if any(d and right for d, right in zip(declined, labels)):
            print(f"{path}: some of its questions have the refusal as their right answer; this rule is for "
                  "questions that have one (leave out reports of unanswerable splits such as test_outside)",
                  file=sys.stderr)
            return 2
        refused_p = [float(q["p_correct"]) for q, d in zip(questions, declined) if d]
        mean_p = sum(refused_p) / len(refused_p) if refused_p else float("nan")
        say()
        say(f"{shown(path)}: {len(questions)} questions, {sum(labels)} base-right; drafts that are "
            f"the refusal: {sum(declined)}, mean P(correct) {mean_p:.2f}")
        def declined_last(scores: list[float]) -> float:
            floor = min(scores) - 1.0
            return auroc([floor if d else s for s, d in zip(scores, declined)], labels)

        say_auroc_columns(say, questions, (("as reported", 12, lambda scores: auroc(scores, labels)),
                                           ("refusal drafts last", 21, declined_last)))
    output.write(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
