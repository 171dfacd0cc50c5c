"""Does a nonlinear reader of the Doubter's own inputs beat a logistic
regression on them? If P(correct) is only a logistic on the pass-1 signals,
a more flexible reader of the same signals (and of the hidden states) is the
obvious next try.

For a collected run directory, per input set (the draft's two log-prob
signals; those and the prompt's PMI when collected, and the occluded name
too when collected; each of those with the state at the last prompt token
of each collected layer), three readers are fitted on the training split,
inputs standardised on it, and again on its answerable questions alone when
it holds unanswerable ones (what the Doubter's signal mix is fitted on when
it has a scope gate):

- logistic regression (the baseline the Doubter is held to);
- gradient-boosted trees (depth 3, 200 rounds);
- a one-hidden-layer MLP (32 units).

Printed: AUROC of each against the base's correctness on validation and on
every collected test split. Nothing is chosen here; validation is printed
so that a choice could be made without the test columns.

``--fit-split validation`` fits on the validation questions instead (their
column is then in-sample): validation people, like test people, are read
about only in biographies, where the train people are also in the base's
QA chats, so the readers learn from the failures test has (a misremembered
pronoun among them, docs/loom.md finding 14).

    python benchmarks/nonlinear_readers.py --run-dir RUN --output benchmarks/results/nonlinear_readers.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from report import Report

SPLITS = ("validation", "test", "test_paraphrase", "test_misspelt")
"""Splits scored (those the collection holds); ``test_outside`` has no right answer to rank."""
DRAFT = ("draft_logprob_mean", "draft_logprob_min")
PMI = "prompt_pmi_top4"
OCCLUDED = "occluded_name_logprob"


def readers(seed: int = 0) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    return {"logistic": LogisticRegression(C=1.0, max_iter=2000),
            "boosted trees": HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_depth=3,
                                                            random_state=seed),
            "MLP (32)": MLPClassifier((32,), alpha=1e-2, max_iter=2000, random_state=seed)}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a collected run directory")
    parser.add_argument("--fit-split", default="train", choices=("train", "validation"),
                        help="the split the readers are fitted on (default train)")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.train.data import unanswerable_examples

    data = ActivationDataset.load(args.run_dir / ACTIVATIONS_DIR)
    correct = data.tensor("pass1_correct").numpy().astype(bool)
    recorded = list(data.recorded_signals)
    missing = [name for name in DRAFT if name not in recorded]
    if missing:
        print(f"{args.run_dir}: the collection has no {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = {split: np.array(data.split_indices(split)) for split in SPLITS if split in data.splits}
    if "train" not in data.splits or "validation" not in rows:
        print(f"{args.run_dir}: the collection needs a train and a validation split", file=sys.stderr)
        return 2
    train = np.array(data.split_indices(args.fit_split))
    signal_names = list(DRAFT) + [name for name in (PMI, OCCLUDED) if name in recorded]
    signals = data.signals(signal_names).numpy().astype(np.float64)
    states = data.states("prompt").numpy().astype(np.float64)
    sets = {"draft": signals[:, :2]}
    if PMI in recorded:
        sets["draft + PMI"] = signals[:, :3]
    if PMI in recorded and OCCLUDED in recorded:
        sets["draft + PMI + occluded"] = signals[:, :4]
    base = list(sets.items())
    for label, features in base:
        for index, layer in enumerate(data.target_layers):
            sets[f"{label} + layer {layer} state"] = np.column_stack([features, states[:, index]])

    unanswerable = np.array(unanswerable_examples(data.examples), dtype=bool)
    fits = {"": train}
    if unanswerable[train].any():
        fits[" (answerable)"] = train[~unanswerable[train]]
    output = Report()
    say = output.say

    fit_flag = "" if args.fit_split == "train" else f" --fit-split {args.fit_split}"
    say(f"# python benchmarks/nonlinear_readers.py --run-dir {args.run_dir.name}{fit_flag}")
    say(f"{args.fit_split}: {len(train)} questions ({len(fits.get(' (answerable)', train))} answerable); scored: "
        + ", ".join(f"{split} {len(index)}" for split, index in rows.items()))
    say(f"{'inputs':<38}{'reader':<28}" + "".join(f"{split:>17}" for split in rows))
    for label, features in sets.items():
        for suffix, fitted in fits.items():
            scaled = StandardScaler().fit(features[fitted]).transform(features)
            for name, model in readers().items():
                model.fit(scaled[fitted], correct[fitted])
                score = model.predict_proba(scaled)[:, 1]
                say(f"{label:<38}{name + suffix:<28}" + "".join(
                    f"{roc_auc_score(correct[index], score[index]):>17.3f}" for index in rows.values()))
    say()
    say("AUROC of each reader's P(correct) against the base's correctness; every reader fitted on the "
        f"{args.fit_split} split, '(answerable)' on its questions that have a true answer other than the refusal"
        + ("; the validation column is in-sample" if args.fit_split == "validation" else ""))
    output.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
