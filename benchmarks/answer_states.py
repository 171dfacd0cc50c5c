"""Do the hidden states where the draft commits to its answer add what the
draft's log-probs do not?

The Doubter reads the state at the last prompt token, and the entity's
tokens know the person, not the question (docs/loom.md finding 11). The
third place a state could know whether a recall worked is where the answer
is produced: the draft's least likely token (on these drafts, the value's
first token: "She was born in *Kuba*.") and the position that predicts it.
Found without knowing the world, as the draft token of lowest log-prob. For
a collected run this benchmark runs the base once more over every prompt
and its greedy draft, takes per layer the state at the position predicting
that token ("before"), at the token itself ("at") and the mean over the
draft ("draft mean"), and fits logistic regressions for P(correct) on the
answerable questions of the training split: those states alone, and with
the run's pass-1 signals, next to the signals alone. The read chosen on
validation (the highest AUROC there with the signals) is reported on every
test split.

    python benchmarks/answer_states.py --run-dir RUN --output benchmarks/results/answer_states.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from readers import logistic_aurocs, say_validation_pick
from report import Report

SCORED = ("validation", "test", "test_paraphrase", "test_misspelt")
READS = ("before", "at", "draft mean")
DEMO_SIGNALS = "draft_logprob_mean,draft_logprob_min,prompt_pmi_top4,occluded_name_logprob"
"""The pass-1 signals the demo's P(correct) reads."""
STATES_C = 0.1
"""Inverse L2 strength of the regressions that read states (the signals alone: 1.0)."""


def answer_states(model, tokenizer, prompts: list[str], drafts: list[str]) -> dict[str, np.ndarray]:
    """Per read (see :data:`READS`) and layer, one state per example."""
    import torch

    pooled: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for prompt, draft in zip(prompts, drafts):
            prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
            draft_ids = tokenizer(draft, add_special_tokens=False).input_ids or [tokenizer.eos_token_id]
            ids = torch.tensor([prompt_ids + draft_ids])
            out = model(ids, output_hidden_states=True)
            start = len(prompt_ids)
            logprobs = torch.log_softmax(out.logits[0, start - 1:-1].double(), -1)
            chosen = logprobs.gather(1, ids[0, start:, None])[:, 0]
            at = start + int(chosen.argmin())  # the draft's least likely token
            for layer in range(1, len(out.hidden_states)):
                states = out.hidden_states[layer][0]
                reads = {"before": states[at - 1], "at": states[at], "draft mean": states[start:].mean(0)}
                for read in READS:
                    pooled.setdefault(f"{read}, layer {layer}", []).append(reads[read].numpy())
    return {name: np.array(values, dtype=np.float64) for name, values in pooled.items()}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a collected run directory")
    parser.add_argument("--signals", default=DEMO_SIGNALS, help="comma-separated recorded pass-1 signals")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.train.data import unanswerable_examples

    torch.set_num_threads(2)
    data = ActivationDataset.load(args.run_dir / ACTIVATIONS_DIR)
    manifest = RunManifest.load(args.run_dir)
    names = args.signals.split(",")
    missing = [name for name in names if name not in data.recorded_signals]
    if missing:
        print(f"{args.run_dir}: signals {missing} were not collected; recorded: {list(data.recorded_signals)}",
              file=sys.stderr)
        return 2
    model = AutoModelForCausalLM.from_pretrained(manifest.model.name).eval()
    tokenizer = AutoTokenizer.from_pretrained(manifest.model.name)
    states = answer_states(model, tokenizer, [e["prompt_text"] for e in data.examples],
                           [e["answer_text"] for e in data.examples])
    correct = data.tensor("pass1_correct").numpy().astype(bool)
    answerable = ~np.array(unanswerable_examples(data.examples))
    signals = data.signals(names).numpy().astype(np.float64)
    rows = {split: np.array([i for i in data.split_indices(split) if answerable[i]]) for split in ("train", *SCORED)}
    train = rows["train"]

    def aurocs(features: np.ndarray, c: float) -> dict[str, float]:
        return logistic_aurocs(features, correct, rows, SCORED, c=c)

    output = Report()
    say = output.say
    say(f"# python benchmarks/answer_states.py --run-dir {args.run_dir.name}")
    say(f"signals: {', '.join(names)}; fitted on the {len(train)} answerable training questions")
    say(f"P(correct), AUROC (logistic regression; states with C = {STATES_C})")
    say(f"{'reads':<34}" + "".join(f"{split:>17}" for split in SCORED))

    def row(label: str, result: dict[str, float]) -> None:
        say(f"{label:<34}" + "".join(f"{result[split]:>17.3f}" for split in SCORED))

    alone = aurocs(signals, 1.0)
    row("signals", alone)
    with_signals: dict[str, dict[str, float]] = {}
    for name, pooled in states.items():
        row(f"{name}", aurocs(pooled, STATES_C))
        with_signals[name] = aurocs(np.column_stack([signals, pooled]), STATES_C)
        row("  + signals", with_signals[name])
    say_validation_pick(say, row, with_signals, alone, SCORED)
    output.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
