"""Does where the base attends say whether its recall worked, beyond what
the draft's log-probs say?

Every state reader so far (the last prompt token, the entity's tokens, the
place the draft commits to its answer: docs/loom.md findings 4, 11, 17)
read the residual stream and added nothing to P(correct). Attention is a
different read of the same pass: a base that recalls a fact about a person
moves the fact from the name's tokens to the position that writes the
answer, so the share of attention that position gives the name could tell a
recall from a guess, and a misspelt name the base still recognises from one
it does not.

For a collected run this benchmark runs the base once more (eager
attention) over every prompt and its greedy draft and reads, per layer and
head:

- ``last -> name``: the attention mass the last prompt token gives the
  name's tokens;
- ``answer -> name``: the mass the position predicting the draft's least
  likely token (its value: "She was born in *Kuba*.") gives them;
- ``last entropy``: the entropy of the last prompt token's attention (no
  name needed).

The name's tokens are where the world put the entity's characters in the
prompt (as the question writes it, misspelt or not): knowledge of the world
the Doubter does not have, so the two name reads are an upper bound on what
a read found by occlusion could add. Logistic regressions are fitted on the
answerable questions of the training split, alone and with the run's
pass-1 signals, and scored on every test split (AUROC of P(correct)).

    python benchmarks/attention_reads.py --run-dir RUN --output benchmarks/results/attention_reads.txt
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
READS = ("last -> name", "answer -> name", "last entropy")
STATES_C = 0.1
"""Inverse L2 strength of the regressions that read attention (the signals alone: 1.0)."""


def attention_reads(model, tokenizer, prompts: list[str], drafts: list[str],
                    entities: list[str]) -> dict[str, np.ndarray]:
    """Per read (see :data:`READS`), ``[N, layers * heads]`` (NaN where the
    prompt does not hold the name)."""
    import torch

    layers = model.config.num_hidden_layers
    heads = model.config.num_attention_heads
    out = {read: np.full((len(prompts), layers * heads), np.nan) for read in READS}
    with torch.no_grad():
        for index, (prompt, draft, entity) in enumerate(zip(prompts, drafts, entities)):
            encoded = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
            prompt_ids, offsets = encoded.input_ids, encoded.offset_mapping
            draft_ids = tokenizer(draft, add_special_tokens=False).input_ids or [tokenizer.eos_token_id]
            ids = torch.tensor([prompt_ids + draft_ids])
            result = model(ids, output_attentions=True)
            start = len(prompt_ids)
            logprobs = torch.log_softmax(result.logits[0, start - 1:-1].double(), -1)
            chosen = logprobs.gather(1, ids[0, start:, None])[:, 0]
            answer = start - 1 + int(chosen.argmin())  # the position predicting the draft's least likely token
            attention = torch.stack(result.attentions)[:, 0].double()  # [layers, heads, T, T]
            last = attention[:, :, start - 1, :start]
            out["last entropy"][index] = (-(last * last.clamp_min(1e-12).log()).sum(-1)).flatten().numpy()
            begin = prompt.rfind(entity) if entity else -1
            if begin < 0:
                continue
            name = [k for k, (a, b) in enumerate(offsets) if a < begin + len(entity) and b > begin]
            out["last -> name"][index] = attention[:, :, start - 1, name].sum(-1).flatten().numpy()
            out["answer -> name"][index] = attention[:, :, answer, name].sum(-1).flatten().numpy()
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a run of the embedded world (the demo's)")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.train.data import unanswerable_examples
    from meta_spider.loom.world.dataset import WorldDataset
    from meta_spider.wrapper.checkpoint import read_checkpoint_document

    torch.set_num_threads(2)
    data = ActivationDataset.load(args.run_dir / ACTIVATIONS_DIR)
    manifest = RunManifest.load(args.run_dir)
    if manifest.dataset.name != "world":
        print(f"{args.run_dir}: the run's dataset is {manifest.dataset.name!r}, not the embedded world",
              file=sys.stderr)
        return 2
    dataset = WorldDataset(**manifest.dataset.options)
    document, _ = read_checkpoint_document(manifest.resolve(args.run_dir, manifest.checkpoint))
    names = list(document["config"]["signals"])
    answerable = ~np.array(unanswerable_examples(data.examples))
    rows = {split: np.array([i for i in data.split_indices(split) if answerable[i]]) for split in ("train", *SCORED)}
    read = np.concatenate(list(rows.values()))
    entity = {example.id: str(example.meta.get("entity", "")) for split in ("train", *SCORED)
              for example in dataset.split(split)}
    model = AutoModelForCausalLM.from_pretrained(manifest.model.name, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(manifest.model.name)
    examples = [data.examples[i] for i in read]
    reads_of_read = attention_reads(model, tokenizer, [e["prompt_text"] for e in examples],
                                    [e["answer_text"] for e in examples],
                                    [entity.get(e["id"], "") for e in examples])
    reads = {}
    for name, values in reads_of_read.items():  # back to the collection's row order
        full = np.full((len(data.examples), values.shape[1]), np.nan)
        full[read] = values
        reads[name] = full
    correct = data.tensor("pass1_correct").numpy().astype(bool)
    signals = data.signals(names).numpy().astype(np.float64)
    have = ~np.isnan(reads["last -> name"]).any(axis=1)
    rows = {split: indices[have[indices]] for split, indices in rows.items()}
    train = rows["train"]

    def aurocs(features: np.ndarray, c: float) -> dict[str, float]:
        return logistic_aurocs(features, correct, rows, SCORED, c=c)

    output = Report()
    say = output.say
    say(f"# python benchmarks/attention_reads.py --run-dir RUN   (RUN: {manifest.dataset.options})")
    say(f"signals: {', '.join(names)}; fitted on the {len(train)} answerable training questions whose prompt "
        f"holds the name; scored on " + ", ".join(f"{split} {len(rows[split])}" for split in SCORED))
    say(f"P(correct), AUROC (logistic regression; attention with C = {STATES_C}; "
        f"{model.config.num_hidden_layers} layers x {model.config.num_attention_heads} heads per read)")
    say(f"{'reads':<36}" + "".join(f"{split:>17}" for split in SCORED))

    def row(label: str, result: dict[str, float]) -> None:
        say(f"{label:<36}" + "".join(f"{result[split]:>17.3f}" for split in SCORED))

    alone = aurocs(signals, 1.0)
    row("signals", alone)
    with_signals: dict[str, dict[str, float]] = {}
    for name in READS:
        row(name, aurocs(reads[name], STATES_C))
        with_signals[name] = aurocs(np.column_stack([signals, reads[name]]), STATES_C)
        row("  + signals", with_signals[name])
    every = np.column_stack([reads[name] for name in READS])
    row("all three", aurocs(every, STATES_C))
    with_signals["all three"] = aurocs(np.column_stack([signals, every]), STATES_C)
    row("  + signals", with_signals["all three"])
    say_validation_pick(say, row, with_signals, alone, SCORED)
    output.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
