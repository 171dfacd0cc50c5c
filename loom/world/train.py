"""From-scratch training of the world's base: packed sequences of the
shuffled corpus, AdamW, linear warm-up then cosine decay, gradient clipping.

Deterministic: the data order comes from the seed, the model is initialised
from the seed, and torch runs with deterministic algorithms on a fixed number
of CPU threads (results differ between thread counts, so the count is part
of the preset). This module knows nothing about evaluation or caching.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .presets import TrainSpec

if TYPE_CHECKING:
    import torch


def packed_batches(docs: Sequence[Sequence[int]], spec: TrainSpec, seed: int) -> np.ndarray:
    """All training sequences, shape (steps, batch_size, seq_len): the
    documents are shuffled anew each epoch and concatenated into one stream
    that is cut into consecutive windows."""
    need = spec.steps * spec.batch_size * spec.seq_len
    rng = np.random.default_rng(seed)
    lengths = np.array([len(d) for d in docs])
    if lengths.sum() == 0:
        raise ValueError("packed_batches got an empty corpus")
    flat = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pieces: list[np.ndarray] = []
    total = 0
    while total < need:
        for i in rng.permutation(len(docs)):
            pieces.append(flat[starts[i]:starts[i] + lengths[i]])
        total += int(lengths.sum())
    stream = np.concatenate(pieces)[:need]
    return stream.reshape(spec.steps, spec.batch_size, spec.seq_len)


def lr_at(step: int, spec: TrainSpec) -> float:
    """Learning rate at ``step``: linear warm-up, cosine decay to
    ``min_lr_ratio * lr``."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    floor = spec.lr * spec.min_lr_ratio
    return floor + (spec.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_model(
    model: "torch.nn.Module",
    docs: Sequence[Sequence[int]],
    spec: TrainSpec,
    seed: int,
    on_step: Callable[[int, float], None] | None = None,
    device: str = "cpu",
) -> list[float]:
    """Train ``model`` in place on the tokenised ``docs``; returns the loss
    of every step. ``on_step(step, loss)`` is called after each step.

    ``device`` other than ``"cpu"`` (say ``"cuda"``) trains there and moves
    the model back to the CPU at the end. The preset's numbers are measured
    on the CPU: another device gives a model of the same quality, not the
    same bits."""
    import torch

    batches = torch.from_numpy(packed_batches(docs, spec, seed))
    if device != "cpu":
        # cuBLAS needs this workspace setting for deterministic algorithms.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        model.to(device)
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(spec.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr, betas=(0.9, 0.95), eps=1e-8,
    )
    losses: list[float] = []
    model.train()
    try:
        for step in range(spec.steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, spec)
            input_ids = batches[step].to(device)
            loss = model(input_ids=input_ids, labels=input_ids).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(step, losses[-1])
    finally:
        model.eval()
        model.to("cpu")
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)
    return losses
