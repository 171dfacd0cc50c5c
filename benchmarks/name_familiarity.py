"""Does a familiarity read of the name that ignores its spelling help the
Doubter on misspelt names?

A name the base has read is one whose next token the base expects inside
the name. The Doubter reads how probable the name's own tokens are
(``occluded_name_logprob``), which a misspelling lowers whether or not the
base still knows whom the name means. This benchmark reads instead how
sure the base is of *some* continuation at each of the name's tokens, the
highest next-token log-probability, which an edit lowers only where it
breaks the base's expectation, and the largest gap between that and the
token actually there (the edit, when the base expected the right spelling).

It runs the base over every collected prompt of a run and takes the name's
tokens where the world put them (the entity's characters in the prompt:
knowledge of the world the Doubter does not have, so this is an upper bound
on what such a read can add; the Doubter would find the name by occlusion).
Per question, over the name's tokens after its first:

- ``name_expect``: the mean highest next-token log-prob;
- ``name_actual``: the mean log-prob of the tokens there;
- ``name_gap``: the largest highest-minus-actual;
- ``name_trimmed``: the sum of the log-probs of the tokens there without the
  two lowest (a one-edit misspelling changes one or two of the name's
  tokens; the rest are as predictable as before if the base knows the name).

Logistic regressions fitted on the training split (no misspelt names in it)
on the Doubter's own signals with and without these, scored on every test
split (AUROC for P(correct)).

    python benchmarks/name_familiarity.py --run-dir RUN --output benchmarks/results/name_familiarity.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from report import Report

SCORED = ("validation", "test", "test_paraphrase", "test_misspelt")
TRIMMED = 2
"""How many of the name's least probable tokens ``name_trimmed`` leaves out."""
FEATURES = ("name_expect", "name_actual", "name_gap", "name_trimmed")


def name_reads(model, tokenizer, prompts: list[str], entities: list[str]) -> np.ndarray:
    """``[N, 4]``: :data:`FEATURES` of each prompt's entity (NaN where the
    prompt does not hold it, or the name is one token)."""
    import torch

    rows = np.full((len(prompts), len(FEATURES)), np.nan)
    with torch.no_grad():
        for index, (prompt, entity) in enumerate(zip(prompts, entities)):
            start = prompt.find(entity)
            if start < 0:
                continue
            encoded = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True, return_tensors="pt")
            ids, offsets = encoded.input_ids, encoded.offset_mapping[0].tolist()
            inside = [k for k, (a, b) in enumerate(offsets) if a < start + len(entity) and b > start and k > 0]
            later = inside[1:]  # the name's first token has no name before it
            if not later:
                continue
            logprobs = torch.log_softmax(model(ids).logits[0].double(), -1)
            predicting = logprobs[[k - 1 for k in later]]
            expect = predicting.max(-1).values.numpy()
            actual = predicting.gather(1, ids[0, later, None])[:, 0].numpy()
            rows[index] = (expect.mean(), actual.mean(), (expect - actual).max(), np.sort(actual)[TRIMMED:].sum())
    return rows


def doubter_signals(run_dir: Path, manifest) -> tuple[str, ...]:
    """The pass-1 signals the run's Doubter reads."""
    from meta_spider.wrapper.checkpoint import read_checkpoint_document

    document, _ = read_checkpoint_document(manifest.resolve(run_dir, manifest.checkpoint))
    return tuple(document["config"]["signals"])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a run of the embedded world (the demo's)")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.world.dataset import WorldDataset

    torch.set_num_threads(2)
    data = ActivationDataset.load(args.run_dir / ACTIVATIONS_DIR)
    manifest = RunManifest.load(args.run_dir)
    options = manifest.dataset.options
    if manifest.dataset.name != "world":
        print(f"{args.run_dir}: the run's dataset is {manifest.dataset.name!r}, not the embedded world",
              file=sys.stderr)
        return 2
    dataset = WorldDataset(**options)
    entity = {example.id: str(example.meta.get("entity", "")) for split in data.splits
              for example in dataset.split(split)}
    model = AutoModelForCausalLM.from_pretrained(manifest.model.name).eval()
    tokenizer = AutoTokenizer.from_pretrained(manifest.model.name)
    prompts = [e["prompt_text"] for e in data.examples]
    entities = [entity.get(e["id"], "") for e in data.examples]  # as the question writes it, misspelt or not
    reads = name_reads(model, tokenizer, prompts, entities)
    correct = data.tensor("pass1_correct").numpy().astype(bool)
    own = list(doubter_signals(args.run_dir, manifest))
    signals = data.signals(own).numpy().astype(np.float64)
    rows = {split: np.array(data.split_indices(split)) for split in ("train", *SCORED) if split in data.splits}
    have = ~np.isnan(reads).any(axis=1)
    out = Report()
    out.say(f"# python benchmarks/name_familiarity.py --run-dir RUN   (RUN: {options}; the Doubter's signals: "
            f"{', '.join(own)})")
    out.say("questions whose prompt holds the name (two tokens or more): " + ", ".join(
        f"{split} {int(have[rows[split]].sum())}/{len(rows[split])}" for split in ("train", *SCORED)))
    train = rows["train"][have[rows["train"]]]

    def auroc_row(label: str, features: np.ndarray) -> None:
        scaler = StandardScaler().fit(features[train])
        fitted = LogisticRegression(max_iter=3000).fit(scaler.transform(features[train]), correct[train])
        score = fitted.decision_function(scaler.transform(np.nan_to_num(features)))
        cells = []
        for split in SCORED:
            picked = rows[split][have[rows[split]]]
            cells.append(f"{roc_auc_score(correct[picked], score[picked]):>17.3f}")
        out.say(f"{label:<52}" + "".join(cells))

    out.say(f"AUROC of P(correct) (logistic, fitted on train){'':<4}" + "".join(f"{s:>17}" for s in SCORED))
    auroc_row("the Doubter's signals", signals)
    for k, name in enumerate(FEATURES):
        auroc_row(f"  + {name}", np.column_stack([signals, reads[:, k]]))
    auroc_row("  + all four", np.column_stack([signals, reads]))
    for k, name in enumerate(FEATURES):
        auroc_row(f"{name} alone", reads[:, [k]])
    occluded = own.index("occluded_name_logprob") if "occluded_name_logprob" in own else None
    if occluded is not None:  # the trimmed read in place of the Doubter's own read of the name
        kept = [k for k in range(len(own)) if k != occluded]
        auroc_row("  name_trimmed instead of occluded_name_logprob",
                  np.column_stack([signals[:, kept], reads[:, FEATURES.index("name_trimmed")]]))
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
