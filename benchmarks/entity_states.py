"""Do the hidden states at the entity's tokens add what the last prompt
token's do not?

The Doubter reads the state at the last prompt token. This benchmark reads
the states where the prompt names its entity instead, found without knowing
the world: the prompt tokens with the highest PMI against the base's mean
next-token distribution (the positions ``prompt_pmi_top4`` averages; on
these prompts a known name's later tokens, docs/loom.md finding 6). For a
run collected with ``--pmi-signals`` it runs the base once more over every
collected prompt, pools the states at those positions (the mean over the
top 4, or the single highest) at every layer, and fits logistic regressions
on the training split, scored on validation and every test split:

1. P(correct): from those states alone, and with the Doubter's three
   signals (the draft's two log-probs and the PMI), next to the signals
   alone and the signals with the last prompt token's state;
2. the scope gate's job (the base invents an answer to a question the world
   cannot answer), gated below the 1st percentile of validation's scores:
   invented drafts of ``test_outside`` caught, base-right answers refused.

    python benchmarks/entity_states.py --run-dir RUN --output benchmarks/results/entity_states.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from report import Report

TOP_K = 4
"""Positions pooled: the prompt tokens with the highest PMI (as ``prompt_pmi_top4``)."""
GATE_QUANTILE = 0.01
SIGNALS = ("draft_logprob_mean", "draft_logprob_min", "prompt_pmi_top4")
SCORED = ("validation", "test", "test_paraphrase", "test_misspelt")


def entity_states(model, tokenizer, prompts: list[str], log_reference: np.ndarray) -> dict[str, np.ndarray]:
    """Per layer, the mean state over the ``TOP_K`` highest-PMI prompt tokens
    and the state at the highest one."""
    import torch

    pooled: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
            out = model(ids, output_hidden_states=True)
            logprobs = torch.log_softmax(out.logits[0, :-1].double(), -1).gather(1, ids[0, 1:, None])[:, 0].numpy()
            order = np.argsort(logprobs - log_reference[ids[0, 1:].numpy()])[::-1] + 1  # token positions
            for layer in range(1, len(out.hidden_states)):
                states = out.hidden_states[layer][0]
                pooled.setdefault(f"top {TOP_K}, layer {layer}", []).append(states[order[:TOP_K]].mean(0).numpy())
                pooled.setdefault(f"highest, layer {layer}", []).append(states[order[0]].numpy())
    return {name: np.array(values, dtype=np.float64) for name, values in pooled.items()}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a run collected with --pmi-signals")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.train.data import unanswerable_examples

    torch.set_num_threads(2)
    data = ActivationDataset.load(args.run_dir / ACTIVATIONS_DIR)
    if any(name not in data.recorded_signals for name in SIGNALS):
        print(f"{args.run_dir}: collect with --pmi-signals (the PMI's reference distribution and signal are needed)",
              file=sys.stderr)
        return 2
    manifest = RunManifest.load(args.run_dir)
    model = AutoModelForCausalLM.from_pretrained(manifest.model.name).eval()
    tokenizer = AutoTokenizer.from_pretrained(manifest.model.name)
    states = entity_states(model, tokenizer, [e["prompt_text"] for e in data.examples],
                           data.log_reference().numpy().astype(np.float64))
    correct = data.tensor("pass1_correct").numpy().astype(bool)
    signals = data.signals(list(SIGNALS)).numpy().astype(np.float64)
    last = data.states("prompt").numpy().astype(np.float64)
    rows = {split: np.array(data.split_indices(split)) for split in ("train", *SCORED, "test_outside")
            if split in data.splits}
    train = rows["train"]

    def scores(features: np.ndarray, labels: np.ndarray, c: float) -> np.ndarray:
        scaler = StandardScaler().fit(features[train])
        model = LogisticRegression(C=c, max_iter=3000).fit(scaler.transform(features[train]), labels[train])
        return model.decision_function(scaler.transform(features))

    output = Report()
    say = output.say

    say(f"# python benchmarks/entity_states.py --run-dir {args.run_dir.name}")
    say("P(correct), AUROC (logistic regression on the training split; states with C = 0.1)")
    say(f"{'reads':<44}" + "".join(f"{split:>17}" for split in SCORED))

    def auroc_row(label: str, features: np.ndarray, c: float) -> None:
        score = scores(features, correct, c)
        say(f"{label:<44}" + "".join(f"{roc_auc_score(correct[rows[s]], score[rows[s]]):>17.3f}" for s in SCORED))

    auroc_row("signals (draft + PMI)", signals, 1.0)
    for index, layer in enumerate(data.target_layers):
        auroc_row(f"last prompt token, layer {layer}", last[:, index], 0.1)
        auroc_row("  + signals", np.column_stack([signals, last[:, index]]), 0.1)
    for name, pooled in states.items():
        auroc_row(f"entity states ({name})", pooled, 0.1)
        auroc_row(f"  + signals", np.column_stack([signals, pooled]), 0.1)

    invented = np.array(unanswerable_examples(data.examples)) & ~correct
    if "test_outside" in rows and invented[train].any():
        outside = rows["test_outside"][invented[rows["test_outside"]]]
        say()
        say(f"scope: invented drafts caught of {len(outside)} in test_outside, and base-right answers refused "
            f"(gate below the {GATE_QUANTILE:.0%} quantile of validation's scores)")
        say(f"{'reads (+ signals)':<44}{'caught':>9}" + "".join(f"{'cost ' + s:>22}" for s in SCORED[1:]))

        def gate_row(label: str, features: np.ndarray) -> None:
            score = scores(features, ~invented, 1.0)
            threshold = np.quantile(score[rows["validation"]], GATE_QUANTILE)
            say(f"{label:<44}{int((score[outside] < threshold).sum()):>9d}" + "".join(
                f"{int((score[rows[s][correct[rows[s]]]] < threshold).sum()):>22d}" for s in SCORED[1:]))

        gate_row(f"last prompt token, layer {data.target_layers[0]}", np.column_stack([signals, last[:, 0]]))
        for name, pooled in states.items():
            if name.startswith("top"):
                gate_row(f"entity states ({name})", np.column_stack([signals, pooled]))
    output.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
