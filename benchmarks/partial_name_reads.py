"""What pass 1 knows when a question names the person in part: the
Doubter's P(correct), and logistic readers of the same signals and of the
states, on questions that name the person by the whole name, the surname
alone or the first name alone.

The world's base read every person by their whole name. Asked by a
surname alone it mostly guesses, and a guess it writes as surely as a fact
it recalls looks, to the Doubter, like a fact it recalls.

This script asks the run's base (pass 1, as `metaloom eval` reads it: 16
prompts a batch, the run's Doubter at its read position, the draft as long
as the collection's) questions of the train, validation and test splits
that name their person, each in the three forms, and prints:

1. per split and form, the base's accuracy, the Doubter's AUROC, and on
   test how many the run's answer gate answers and how many of those are
   wrong;
2. logistic regressions on the Doubter's signals, on the states it reads
   (at its target layers and read position: the demo's reads the last
   prompt token) and on both, fitted on the training questions asked by
   the whole name only or in all three forms, scored on test per form,
   with the answers and wrong answers at a threshold that answers as many
   validation questions (all three forms) as the Doubter's gate does.

About a minute on two cores.

    python benchmarks/partial_name_reads.py --run-dir RUN --output benchmarks/results/partial_name_reads.txt
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from name_forms import FORMS, asked_as, names_its_person
from readers import logistic_scores
from report import Report

NAMED_BY = FORMS[:3]
"""The whole name, the surname alone, the first name alone."""
SPLITS = (("train", 840), ("validation", 480), ("test", 480))
"""Questions drawn per split (each asked in every form)."""
STATES_C = 0.1
"""Inverse L2 strength of the regressions that read states (the signals alone: 1.0)."""
BATCH = 16


def read_forms(pipe: Any, dataset: Any, seed: int, max_draft_tokens: int
               ) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Per (split, form): the Doubter's P(correct), the draft's correctness, the signals and the states."""
    from meta_spider.wrapper.batched import read_pass1

    reads: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for split, count in SPLITS:
        named = [example for example in dataset.split(split) if names_its_person(example)]
        examples = random.Random(seed).sample(named, min(count, len(named)))
        for form, rename in NAMED_BY:
            columns: dict[str, list[Any]] = {"p": [], "correct": [], "signals": [], "states": []}
            for start in range(0, len(examples), BATCH):
                batch = examples[start:start + BATCH]
                questions = [asked_as(example, rename) for example in batch]
                texts = [pipe.render(question) for question in questions]
                rows = [pipe.encode(text)[0] for text in texts]
                words = [pipe.question_words(text, question) for text, question in zip(texts, questions)]
                for read, example in zip(read_pass1(pipe.decoder, pipe.doubter, rows,
                                                    read_position=pipe.doubter.config.read_position,
                                                    max_draft_tokens=max_draft_tokens, pad_token_id=pipe.pad_token_id,
                                                    words=words),
                                         batch):
                    columns["p"].append(read.p_correct)
                    columns["correct"].append(dataset.check_fn(pipe.decode(read.draft_ids), example))
                    columns["signals"].append(read.signals[0].tolist())
                    columns["states"].append(read.layer_states[0].flatten().float().numpy())
            reads[split, form] = {name: np.asarray(values) for name, values in columns.items()}
    return reads


def reader_table(out: Report, reads: dict[tuple[str, str], dict[str, np.ndarray]], forms: list[str],
                 threshold: float) -> None:
    """Logistic readers of the signals, the states and both, fitted on the
    training questions by the whole name or in every form, scored on test
    per form at the threshold that answers as many validation questions as
    the Doubter's gate; the Doubter itself last."""
    from sklearn.metrics import roc_auc_score

    def cells(scored: list[tuple[np.ndarray, np.ndarray]], cut: float) -> str:
        every = np.concatenate([score for score, _ in scored]), np.concatenate([right for _, right in scored])
        return (f"{roc_auc_score(every[1], every[0]):>10.3f}"
                + "".join(f"{roc_auc_score(right, score):>12.3f}" for score, right in scored)
                + "".join(f"{f'{int((score >= cut).sum())}/{int(((score >= cut) & ~right).sum())}':>28}"
                          for score, right in scored))

    validation_p = np.concatenate([reads["validation", form]["p"] for form in forms])
    answered_share = float((validation_p >= threshold).mean())
    out.say()
    out.say(f"readers (logistic), scored on test; answers at the threshold that answers {answered_share:.3f} of "
            "validation (all three forms), as the gate does")
    out.say(f"{'reads':<10}{'fitted on':<24}{'AUROC all':>10}" + "".join(f"{form:>12}" for form in forms)
            + "".join(f"{'answered/wrong ' + form:>28}" for form in forms))
    for label, columns, c in (("signals", ("signals",), 1.0), ("states", ("states",), STATES_C),
                              ("both", ("signals", "states"), STATES_C)):
        for fit_label, fit_forms in (("the whole name", forms[:1]), ("all three forms", forms)):
            parts = [("train", form) for form in fit_forms] + [(split, form) for split in ("validation", "test")
                                                                for form in forms]
            features = np.concatenate([np.column_stack([reads[part][column] for column in columns])
                                       for part in parts])
            correct = np.concatenate([reads[part]["correct"] for part in parts]).astype(bool)
            ends = np.cumsum([len(reads[part]["p"]) for part in parts])
            spans = {part: slice(end - len(reads[part]["p"]), end) for part, end in zip(parts, ends)}
            fit_rows = np.zeros(len(correct), dtype=bool)
            for form in fit_forms:
                fit_rows[spans["train", form]] = True
            score = logistic_scores(features, correct, fit_rows, c=c)
            cut = np.quantile(np.concatenate([score[spans["validation", form]] for form in forms]),
                              1.0 - answered_share)
            out.say(f"{label:<10}{fit_label:<24}"
                    + cells([(score[spans["test", form]], correct[spans["test", form]]) for form in forms], cut))
    out.say(f"{'Doubter':<10}{'(the run, as it is)':<24}"
            + cells([(reads["test", form]["p"], reads["test", form]["correct"].astype(bool)) for form in forms],
                    threshold))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a trained and evaluated run on the world")
    parser.add_argument("--seed", type=int, default=3, help="the draw's RNG seed")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch
    from sklearn.metrics import roc_auc_score

    from meta_spider.loom.cli.eval import load_pipeline
    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.world.dataset import WorldDataset

    torch.set_num_threads(2)
    manifest = RunManifest.load(args.run_dir)
    pipe = load_pipeline(args.run_dir)
    if pipe.doubter is None or pipe.answer_gate is None:
        print(f"{args.run_dir}: needs a trained and evaluated run (metaloom train, then metaloom eval)",
              file=sys.stderr)
        return 2
    dataset = WorldDataset(**manifest.dataset.options)
    # The draft's length limit `metaloom eval` uses by default: the collection's.
    max_draft_tokens = ActivationDataset.load(args.run_dir / ACTIVATIONS_DIR).max_new_tokens
    start = time.perf_counter()
    reads = read_forms(pipe, dataset, args.seed, max_draft_tokens)
    forms = [form for form, _ in NAMED_BY]
    out = Report()
    out.say(f"# python benchmarks/partial_name_reads.py --run-dir RUN --seed {args.seed}   "
            f"(RUN: {dict(manifest.dataset.options)}; read in {time.perf_counter() - start:.0f} s)")
    threshold = pipe.answer_gate.threshold
    out.say(f"answer gate: P(correct) >= {threshold:.3f}")
    out.say()
    out.say(f"{'split':<12}{'named by':<14}{'questions':>10}{'base accuracy':>15}{'Doubter AUROC':>15}"
            f"{'answered':>10}{'wrong':>7}")
    for split, _ in SPLITS:
        for form in forms:
            read = reads[split, form]
            answered = read["p"] >= threshold
            out.say(f"{split:<12}{form:<14}{len(read['p']):>10}{read['correct'].mean():>15.3f}"
                    f"{roc_auc_score(read['correct'], read['p']):>15.3f}{int(answered.sum()):>10}"
                    f"{int((answered & ~read['correct'].astype(bool)).sum()):>7}")

    reader_table(out, reads, forms, threshold)
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
