"""Tiny activation datasets and run directories for the trainer's tests.

:func:`write_activation_fixture` writes the collector's on-disk format
(:mod:`meta_spider.loom.collect.activations`: ``collection.json``,
``examples.jsonl``, ``shard-NNNNN.safetensors``) from a tiny in-process
model: real pass-1 states at both read positions from the pipeline's own
pass-1 code, the greedy draft as the answer, real first-token and mean
log-probs; only ``pass1_correct`` is synthetic (a rule on the question, so
that the label is learnable from the states). :func:`write_run_dir` adds a
saved model and ``run.json`` beside it, the way ``metaloom collect`` leaves
a run directory. Nothing here downloads anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from wrapper_helpers import make_tiny_model, save_tiny_model, shared_tokenizer

from meta_spider.loom.collect.activations import (
    ACTIVATIONS_DIR,
    COLLECTION_FILE,
    EXAMPLES_FILE,
    FORMAT_VERSION,
    atomic_write_text,
    pad_rows,
    shard_name,
    write_shard,
)
from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline

QUESTIONS = (
    "What is the capital of France?",
    "Who wrote the book?",
    "How much is two plus two?",
    "Name a lazy animal.",
    "Tell me about the fox.",
)
ANSWERS = ("Paris", "I do not know", "four", "dog", "quick brown")
DETAILS = ("Answer briefly.", "Think first.", "Be exact.", "One word please.", "Quick!", "Now.",
           "Please.", "In short.")
KNOWN = frozenset({0, 2, 3})
"""Questions the synthetic oracle calls answered correctly."""


def fixture_questions(count: int = 40) -> list[tuple[str, str, bool, str]]:
    """``(prompt, ground truth, pass1_correct, split)`` rows: every question
    with every detail (round robin); every fourth row is validation."""
    rows = []
    for index in range(count):
        question = index % len(QUESTIONS)
        detail = DETAILS[(index // len(QUESTIONS)) % len(DETAILS)]
        split = "validation" if index % 4 == 3 else "train"
        rows.append((f"{QUESTIONS[question]} {detail}", ANSWERS[question], question in KNOWN, split))
    return rows


def tiny_pipeline(target_layers: Sequence[int] = (2, 4), *, seed: int = 0, **text_config: Any) -> MetaSpiderPipeline:
    """A fresh tiny Qwen2 base (its own copy, safe to train against)."""
    model = make_tiny_model("qwen2", shared_tokenizer(), seed=seed, **text_config)
    return MetaSpiderPipeline(model, shared_tokenizer(), MetaSpiderConfig(model_name="tiny-qwen2",
                                                                          target_layers=list(target_layers)))


@torch.no_grad()
def write_activation_fixture(folder: Path, pipe: MetaSpiderPipeline, *, count: int = 40, max_new_tokens: int = 6,
                             shard_size: int = 16, signals: bool = True) -> Path:
    """Write an activation dataset of ``count`` rows into ``folder`` (without
    ``signals``: as collections before pass-1 signals were recorded)."""
    from meta_spider.wrapper.signals import SIGNALS, signal_vector

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers = pipe.config.resolve(pipe.num_layers)[0]
    examples: list[dict[str, Any]] = []
    rows: dict[str, list[Any]] = {name: [] for name in ("states_prompt", "states_draft", "pass1_correct",
                                                         "first_token_max_prob", "answer_mean_logprob", "signals")}
    prompts, answers = [], []
    for index, (prompt, truth, correct, split) in enumerate(fixture_questions(count)):
        text = pipe.render(prompt)
        ids = pipe.encode(text)
        read = pipe.collect_states(prompt, layers=layers, max_draft_tokens=max_new_tokens)
        draft = read.draft_ids
        logits = pipe.model(input_ids=torch.cat([ids, torch.tensor([draft])], dim=1)).logits[0].float()
        log_probs = logits[ids.shape[1] - 1 : -1].log_softmax(-1)
        chosen = log_probs.gather(1, torch.tensor(draft).unsqueeze(1)).squeeze(1)
        rows["states_prompt"].append(read.prompt_states[0])
        rows["states_draft"].append(read.draft_states[0])
        rows["pass1_correct"].append(int(correct))
        rows["first_token_max_prob"].append(float(log_probs[0].exp().max()))
        rows["answer_mean_logprob"].append(float(chosen.mean()))
        with_logprobs = pipe.decoder.read_states(ids, layers, max_draft_tokens=max_new_tokens, logprobs=True)
        rows["signals"].append(signal_vector(SIGNALS, with_logprobs.prompt_logprobs, with_logprobs.draft_logprobs))
        prompts.append(ids[0].tolist())
        answers.append(draft)
        examples.append({"index": index, "id": f"fixture-{index}", "split": split, "question": prompt,
                         "ground_truths": [truth], "prompt_text": text, "answer_text": pipe.decode(draft),
                         "pass1_correct": bool(correct), "answer_token_count": len(draft)})
    shards = []
    for number, start in enumerate(range(0, count, shard_size)):
        end = min(count, start + shard_size)
        prompt_ids, prompt_lengths = pad_rows(prompts[start:end])
        answer_ids, answer_lengths = pad_rows(answers[start:end])
        tensors = {
            "states_prompt": torch.stack(rows["states_prompt"][start:end]).float(),
            "states_draft": torch.stack(rows["states_draft"][start:end]).float(),
            "pass1_correct": torch.tensor(rows["pass1_correct"][start:end], dtype=torch.uint8),
            "first_token_max_prob": torch.tensor(rows["first_token_max_prob"][start:end], dtype=torch.float32),
            "answer_mean_logprob": torch.tensor(rows["answer_mean_logprob"][start:end], dtype=torch.float32),
            "prompt_ids": prompt_ids, "prompt_lengths": prompt_lengths,
            "answer_ids": answer_ids, "answer_lengths": answer_lengths,
        }
        if signals:
            tensors["signals"] = torch.tensor(np.stack(rows["signals"][start:end]), dtype=torch.float32)
        write_shard(folder / shard_name(number), tensors, start, end)
        shards.append(shard_name(number))
    atomic_write_text(folder / EXAMPLES_FILE, "".join(json.dumps(e) + "\n" for e in examples))
    info = {"format_version": FORMAT_VERSION, "model": pipe.fingerprint(), "target_layers": list(layers),
            "read_positions": ["prompt", "draft"], "max_new_tokens": max_new_tokens,
            "dataset": {"name": "fixture", "options": {}}, "num_examples": count, "shards": shards, "complete": True}
    if signals:
        info["signals"] = list(SIGNALS)
    atomic_write_text(folder / COLLECTION_FILE, json.dumps(info, indent=2) + "\n")
    return folder


def write_run_dir(run_dir: Path, model_dir: Path, *, target_layers: Sequence[int] = (2, 4),
                  encoder_type: str = "selective", count: int = 40, seed: int = 0) -> Path:
    """A run directory as ``metaloom collect`` leaves it: ``run.json``
    naming a saved tiny model (written to ``model_dir`` unless it exists)
    and ``activations/``."""
    from meta_spider.loom.manifest import DatasetSection, RunManifest

    if not (Path(model_dir) / "config.json").is_file():
        save_tiny_model(make_tiny_model("qwen2", shared_tokenizer(), seed=seed), shared_tokenizer(), Path(model_dir))
    config = MetaSpiderConfig(model_name=str(model_dir), target_layers=list(target_layers), local_files_only=True)
    pipe = MetaSpiderPipeline.from_pretrained(config)
    write_activation_fixture(Path(run_dir) / ACTIVATIONS_DIR, pipe, count=count)
    splits = fixture_questions(count)
    sizes = {name: sum(1 for row in splits if row[3] == name) for name in ("train", "validation")}
    section = DatasetSection(name="fixture", splits=["train", "validation"], sizes=sizes)
    RunManifest.from_pipeline_config(config, section, encoder_type=encoder_type).save(run_dir)
    return Path(run_dir)
