"""Does how far the draft falls without each word say more than where the
name is?

The occlusion signal (``occluded_name_logprob``) runs one forward per word of
the question, the word left out, and keeps only *which* two words the draft
leans on most: it then reads the prompt's log-probs at their tokens. The
forwards also say *how much* the draft leans on each word, which the
Doubter throws away. A recalled fact should collapse without the name and
stand without the frame's words; a guess, about a person the base never
read or under a name it no longer recognises, may lean on the name less, or
on the frame more. Per question, from the same forwards (``drop`` = the
draft's summed log-prob given the whole prompt minus given the prompt
without the word):

- ``drop_top``: the largest drop (what the answer owes its most needed word);
- ``drop_top2_share``: the two largest drops' share of all positive drops
  (how much the answer rests on the name rather than anywhere);
- ``drop_rest_mean``: the mean drop of the other words (the frame's pull);
- ``drop_rest_max``: the largest of those;
- ``drop_top_per_token``: ``drop_top`` over the draft's length;
- ``drop_min``: the smallest drop, most often below zero: the word the
  draft is likelier without, the one that argues against it (a question
  asking where someone was born, answered with a year: "where").

It runs the occlusion forwards once more over every collected question of a
run (train, validation, test and its shifts; the questions' own drafts, as
collection read them), and fits logistic regressions on the training
questions the world can answer (those the Doubter's signal mix learns from)
on the Doubter's own signals with and without each, scored on validation
and every test split (AUROC of P(correct)).

    python benchmarks/occlusion_drops.py --run-dir RUN --output benchmarks/results/occlusion_drops.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from name_familiarity import doubter_signals
from readers import logistic_scores
from report import Report

SCORED = ("validation", "test", "test_paraphrase", "test_misspelt")
FEATURES = ("drop_top", "drop_top2_share", "drop_rest_mean", "drop_rest_max", "drop_top_per_token", "drop_min")
CHUNK = 64
"""Questions per call of the batched occlusion forwards."""


def drop_features(drops: np.ndarray, draft_length: int) -> np.ndarray:
    """:data:`FEATURES` of one question's per-word drops (NaN for fewer than three words)."""
    if drops.size < 3:
        return np.full(len(FEATURES), np.nan)
    order = np.argsort(-drops, kind="stable")
    top, rest = drops[order[:2]], drops[order[2:]]
    positive = drops[drops > 0].sum()
    share = top.clip(min=0).sum() / positive if positive > 0 else 0.0
    return np.array([top[0], share, rest.mean(), rest.max(), top[0] / max(draft_length, 1), drops.min()])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a run of the embedded world (the demo's)")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch
    from sklearn.metrics import roc_auc_score

    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.train.data import unanswerable_examples
    from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline

    torch.set_num_threads(2)
    data = ActivationDataset.load(args.run_dir / ACTIVATIONS_DIR)
    manifest = RunManifest.load(args.run_dir)
    if manifest.dataset.name != "world":
        print(f"{args.run_dir}: the run's dataset is {manifest.dataset.name!r}, not the embedded world",
              file=sys.stderr)
        return 2
    pipe = MetaSpiderPipeline.from_pretrained(MetaSpiderConfig(model_name=manifest.model.name, dtype="float32"))
    rows = {split: np.array(data.split_indices(split)) for split in ("train", *SCORED)}
    read = np.concatenate(list(rows.values()))
    prompt_ids, prompt_lengths = data.tensor("prompt_ids"), data.tensor("prompt_lengths")
    answer_ids, answer_lengths = data.tensor("answer_ids"), data.tensor("answer_lengths")
    draft_sums = (data.tensor("answer_mean_logprob") * answer_lengths).double().numpy()
    features = np.full((len(data), len(FEATURES)), np.nan)
    started = time.perf_counter()
    for start in range(0, len(read), CHUNK):
        chunk = read[start:start + CHUNK]
        prompts = [prompt_ids[k, :int(prompt_lengths[k])].tolist() for k in chunk]
        drafts = [answer_ids[k, :int(answer_lengths[k])].tolist() for k in chunk]
        words = [pipe.question_words(data.examples[k]["prompt_text"], data.examples[k]["question"]) for k in chunk]
        sums = pipe.decoder.occluded_draft_logprobs(prompts, drafts, words, pad_token_id=pipe.pad_token_id)
        for k, draft, occluded in zip(chunk, drafts, sums):
            features[k] = drop_features(draft_sums[k] - np.asarray(occluded), len(draft))
    seconds = time.perf_counter() - started

    correct = data.tensor("pass1_correct").numpy().astype(bool)
    own = list(doubter_signals(args.run_dir, manifest))
    signals = data.signals(own).numpy().astype(np.float64)
    have = ~np.isnan(features).any(axis=1)
    unanswerable = np.array(unanswerable_examples(data.examples))
    train = rows["train"][have[rows["train"]] & ~unanswerable[rows["train"]]]
    out = Report()
    out.say(f"# python benchmarks/occlusion_drops.py --run-dir RUN   (RUN: {manifest.dataset.options}; the "
            f"Doubter's signals: {', '.join(own)}; occlusion forwards of {len(read)} questions in {seconds:.0f} s)")
    out.say("questions of three words or more: " + ", ".join(
        f"{split} {int(have[rows[split]].sum())}/{len(rows[split])}" for split in ("train", *SCORED))
        + f"; fitted on the {len(train)} answerable train questions")

    def auroc_row(label: str, columns: np.ndarray) -> None:
        score = logistic_scores(columns, correct, train, c=1.0)
        scored = {split: rows[split][have[rows[split]]] for split in SCORED}
        cells = [f"{roc_auc_score(correct[picked], score[picked]):>17.3f}" for picked in scored.values()]
        out.say(f"{label:<52}" + "".join(cells))

    out.say(f"AUROC of P(correct) (logistic, fitted on train){'':<4}" + "".join(f"{s:>17}" for s in SCORED))
    auroc_row("the Doubter's signals", signals)
    for k, name in enumerate(FEATURES):
        auroc_row(f"  + {name}", np.column_stack([signals, features[:, k]]))
    auroc_row("  + all six", np.column_stack([signals, features]))
    for k, name in enumerate(FEATURES):
        auroc_row(f"{name} alone", features[:, [k]])
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
