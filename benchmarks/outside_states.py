"""Do the hidden states see an answer invented for a question the world
cannot answer, where the log-probs do not?

Reads a run directory collected from the world dataset with unanswerable
train questions (``--dataset-option train_outside=N``: a bank of questions
of their own, disjoint from the base's refusal chats and from
``test_outside``). An *invented* draft is the base's answer to such a
question that is not the refusal sentence. Per read position and layer, a
logistic regression is fitted on the training split to tell invented drafts
from every other question, from the states alone, from the states and the
draft's two log-prob signals, and, as the baseline from the same pass-1
inputs, from every recorded signal alone; each reader of states and signals
once more against the answerable questions only (the unanswerable ones the
base refused left out). Scored once on the test people:

- AUROC of "not invented" over ``test`` and ``test_outside`` together;
- a gate refusing below the 2nd percentile of the validation questions'
  scores (validation holds no outside question, so at most about 2 % of
  ordinary questions are refused by it): the share of ``test_outside``'s
  invented drafts it refuses, and the share of the base-correct answers of
  ``test``, ``test_paraphrase`` and ``test_misspelt`` it refuses (knowledge
  it would cost, in trained and in new wordings).

    python benchmarks/outside_states.py --run-dir RUN --output benchmarks/results/outside_states.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from report import Report

GATE_QUANTILE = 0.02
"""The gate refuses below this quantile of the validation questions' scores."""
KNOWN = ("test", "test_paraphrase", "test_misspelt")
"""Splits whose base-correct answers the gate should leave alone."""


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a run collected with train_outside=N")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.evaluate.probe import LogisticProbe
    from meta_spider.loom.evaluate.ranking import auroc
    from meta_spider.loom.train.data import unanswerable_examples
    from meta_spider.wrapper.signals import DRAFT_SIGNALS

    data = ActivationDataset.load(args.run_dir / ACTIVATIONS_DIR)
    correct = data.tensor("pass1_correct").numpy().astype(bool)
    unanswerable = np.array(unanswerable_examples(data.examples))
    invented = unanswerable & ~correct
    rows = {split: np.array(data.split_indices(split)) for split in ("train", "validation", *KNOWN, "test_outside")}
    if not invented[rows["train"]].any():
        print(f"{args.run_dir}: no invented draft in the training split: collect with "
              "--dataset-option train_outside=N", file=sys.stderr)
        return 2
    draft = data.signals(DRAFT_SIGNALS).numpy().astype(np.float64)
    recorded = data.signals(data.recorded_signals).numpy().astype(np.float64)
    scored = np.concatenate([rows["test"], rows["test_outside"]])
    output = Report()
    say = output.say

    def report(label: str, features: np.ndarray, answerable_only: bool = False) -> None:
        train = rows["train"]
        if answerable_only:  # leave out the unanswerable questions the base refused
            train = train[~(unanswerable[train] & correct[train])]
        probe = LogisticProbe(1.0 / len(train)).fit(features[train], ~invented[train])
        score = probe.decision_function(features)
        threshold = np.quantile(score[rows["validation"]], GATE_QUANTILE)
        outside = rows["test_outside"][invented[rows["test_outside"]]]
        caught = float((score[outside] < threshold).mean())
        costs = [float((score[rows[split][correct[rows[split]]]] < threshold).mean()) for split in KNOWN]
        say(f"{label:<44}{auroc(score[scored], ~invented[scored]):>8.3f}{caught:>9.3f}"
            + "".join(f"{cost:>22.3f}" for cost in costs))

    say(f"# python benchmarks/outside_states.py --run-dir {args.run_dir.name}")
    say(f"train: {len(rows['train'])} questions, {int(invented[rows['train']].sum())} invented drafts; "
        f"test_outside: {len(rows['test_outside'])} questions, {int(invented[rows['test_outside']].sum())} "
        f"invented drafts; test: {len(rows['test'])} questions, {int(correct[rows['test']].sum())} base-correct")
    say(f"{'reader (logistic, fitted on train)':<44}{'AUROC':>8}{'caught':>9}"
        + "".join(f"  {'cost ' + split:>20}" for split in KNOWN))
    report("baseline: every recorded signal", recorded)
    report("baseline: the draft's two signals", draft)
    for position in ("prompt", "draft"):
        try:
            states = data.states(position).numpy().astype(np.float64)
        except (KeyError, ValueError):
            continue
        for layer, number in enumerate(data.target_layers):
            report(f"states at the {position} end, layer {number}", states[:, layer])
            report("  + the draft's two signals", np.column_stack([states[:, layer], draft]))
            report("  the same against answerable questions only", np.column_stack([states[:, layer], draft]),
                   answerable_only=True)
    say()
    say("AUROC: not-invented over test + test_outside; caught: share of test_outside's invented drafts the gate")
    say(f"refuses; cost: share of a split's base-correct answers it refuses (gate: below the {GATE_QUANTILE:.0%} "
        "quantile of validation scores)")
    output.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
