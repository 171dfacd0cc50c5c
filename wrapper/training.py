"""The teacher-forced training forward: prompt + target through the frozen
base with injection, LM cross-entropy on the target tokens.

Pass 1 reads the prompt's last token (no gradient: the base is frozen and
the states are inputs); the encoder runs with gradient; pass 2 is one
forward over ``prompt + target`` (right-padded) with injection at the same
positions inference uses (``"generation"``: from the last prompt token on;
``"all"``: every real token). Gradients reach every wrapper parameter
through the frozen base's activations. This module knows token ids only.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from meta_spider.wrapper.collector import ActivationCollector
from meta_spider.wrapper.doubter import Doubter
from meta_spider.wrapper.injection import InjectionState, injecting
from meta_spider.wrapper.layers import DecoderStructure

IGNORE_INDEX = -100


@dataclass
class TeacherForcedBatch:
    """Right-padded ``prompt + target`` rows."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    """``IGNORE_INDEX`` on prompt and padding."""
    prompt_lengths: torch.Tensor
    prompt_ids: torch.Tensor
    """Right-padded prompts alone (for pass 1)."""
    prompt_mask: torch.Tensor


@dataclass
class TrainingOutput:
    """What one training forward produced."""

    loss: torch.Tensor
    """``lm_loss`` plus ``probe_weight * probe_loss`` when labels were given."""
    lm_loss: torch.Tensor
    """Mean cross-entropy over target tokens (flows into the cross-attention
    and the encoder through the frozen base)."""
    probe_loss: torch.Tensor | None
    """Binary cross-entropy of the P(correct) logit and of every per-layer
    probe against the ``correct`` labels (trains the probes and the mix)."""
    p_correct_logit: torch.Tensor
    """``[B]``"""
    probe_logits: torch.Tensor | None
    cognitive_tokens: torch.Tensor
    layer_states: torch.Tensor
    logits: torch.Tensor | None = None


def make_batch(prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], pad_token_id: int) -> TeacherForcedBatch:
    """Build a right-padded teacher-forcing batch from token-id lists."""
    if len(prompts) != len(targets) or not prompts:
        raise ValueError(f"need as many targets as prompts (>= 1), got {len(prompts)} prompts and {len(targets)} targets")
    if any(len(p) == 0 for p in prompts) or any(len(t) == 0 for t in targets):
        raise ValueError("every prompt and every target needs at least one token")
    rows = [list(p) + list(t) for p, t in zip(prompts, targets)]
    width, prompt_width = max(map(len, rows)), max(map(len, prompts))
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    prompt_ids = torch.full((len(rows), prompt_width), pad_token_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(rows), prompt_width), dtype=torch.long)
    for i, (prompt, row) in enumerate(zip(prompts, rows)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
        labels[i, len(prompt) : len(row)] = torch.tensor(row[len(prompt) :])
        prompt_ids[i, : len(prompt)] = torch.tensor(list(prompt))
        prompt_mask[i, : len(prompt)] = 1
    lengths = torch.tensor([len(p) for p in prompts])
    return TeacherForcedBatch(input_ids, attention_mask, labels, lengths, prompt_ids, prompt_mask)


@contextmanager
def checkpointing_layers(structure: DecoderStructure, enabled: bool) -> Iterator[None]:
    """Let activation checkpointing engage while the base stays in eval mode.

    transformers checkpoints a decoder block only when that block is in
    training mode; flipping the flag on the blocks themselves (not their
    children) keeps every dropout of the frozen base off.
    """
    if not enabled:
        yield
        return
    previous = [block.training for block in structure.layers]
    try:
        for block in structure.layers:
            block.training = True
        yield
    finally:
        for block, was in zip(structure.layers, previous):
            block.training = was


def injection_mask(batch: TeacherForcedBatch, inject_positions: str) -> torch.Tensor:
    """``[B, T]`` float mask of the positions pass 2 injects at."""
    if inject_positions == "all":
        return batch.attention_mask.float()
    positions = torch.arange(batch.input_ids.shape[1]).unsqueeze(0)
    return ((positions >= (batch.prompt_lengths - 1).unsqueeze(1)) & batch.attention_mask.bool()).float()


def read_prompt_states(model: nn.Module, structure: DecoderStructure, doubter: Doubter,
                       batch: TeacherForcedBatch) -> torch.Tensor:
    """Pass 1 for training: states at each prompt's last token ``[B, L, d]``."""
    device = next(model.parameters()).device
    collector = ActivationCollector(structure.layers, doubter.config.target_layers)
    with torch.no_grad(), collector.recording(positions=batch.prompt_lengths - 1) as record:
        model(input_ids=batch.prompt_ids.to(device), attention_mask=batch.prompt_mask.to(device), use_cache=False)
    return record.states()


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, example_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy over the labelled positions: the mean over
    target tokens, each weighted by its row's ``example_weights`` when given."""
    flat_logits, flat_labels = logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)
    if example_weights is None:
        return nn.functional.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX)
    per_token = nn.functional.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="none")
    mask = (labels[:, 1:] != IGNORE_INDEX).float()
    weights = (mask * example_weights.to(mask.device, torch.float32).unsqueeze(1)).reshape(-1)
    return (per_token * weights).sum() / weights.sum().clamp(min=1e-12)


def teacher_forced_forward(
    model: nn.Module,
    structure: DecoderStructure,
    doubter: Doubter,
    batch: TeacherForcedBatch,
    *,
    layer_states: torch.Tensor | None = None,
    signals: torch.Tensor | None = None,
    gradient_checkpointing: bool = False,
    return_logits: bool = False,
    correct: torch.Tensor | None = None,
    probe_weight: float = 1.0,
    example_weights: torch.Tensor | None = None,
) -> TrainingOutput:
    """One training forward; call ``.loss.backward()`` on the result.
    ``signals`` (``[B, K]``) are the pass-1 signals of a Doubter that reads some.
    ``correct`` (``[B]``, 1 = the base's answer is right) adds the probe loss.
    ``example_weights`` (``[B]``) weighs each row's target tokens in the LM
    loss, which stays a weighted mean over target tokens."""
    device = next(model.parameters()).device
    if layer_states is None:
        layer_states = read_prompt_states(model, structure, doubter, batch)
    encoded = doubter.encode(layer_states, signals, scope=False)  # the probe loss sees every question
    state = InjectionState(
        cognitive_tokens=encoded.cognitive_tokens,
        position_mask=injection_mask(batch, doubter.config.inject_positions),
    )
    with checkpointing_layers(structure, gradient_checkpointing), injecting(structure.layers, doubter, state):
        output = model(
            input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device), use_cache=False
        )
    logits = output.logits.float()
    labels = batch.labels.to(device)
    loss = lm_loss(logits, labels, example_weights)
    probe_loss = None
    if correct is not None:
        target = torch.as_tensor(correct, dtype=torch.float32, device=encoded.p_correct_logit.device)
        bce = nn.functional.binary_cross_entropy_with_logits
        probe_loss = bce(encoded.p_correct_logit, target)
        if encoded.probe_logits is not None:
            probe_loss = probe_loss + bce(encoded.probe_logits, target.unsqueeze(1).expand_as(encoded.probe_logits))
    return TrainingOutput(
        loss=loss if probe_loss is None else loss + probe_weight * probe_loss,
        lm_loss=loss,
        probe_loss=probe_loss,
        p_correct_logit=encoded.p_correct_logit,
        probe_logits=encoded.probe_logits,
        cognitive_tokens=encoded.cognitive_tokens,
        layer_states=layer_states,
        logits=logits if return_logits else None,
    )
