"""Batched passes: several prompts prefilled and decoded greedily at once.

:func:`read_drafts` left-pads the prompts into one batch with one shared
cache and drafts every row greedily until it ends (end of sequence or
``max_draft_tokens``); finished rows feed padding that nothing attends to.
Per row it reads what :meth:`TwoPassDecoder.read_states
<meta_spider.wrapper.passes.TwoPassDecoder.read_states>` reads with
``logprobs=True``: the states at the last prompt token and on the forward
that feeds the draft's last token, the draft's ids, and the token log-probs
of prompt and draft. Faster, above all on a GPU; states equal the batch-1
read up to float rounding (padding changes the order of some sums), so one
token may flip at a near tie. :func:`reference_logprobs` prefills prompts
only, for the base's mean next-token distribution over them (the ``p_ref``
of the PMI signals, :mod:`meta_spider.wrapper.signals`). :func:`read_pass1`
is a Doubter's pass 1 on such a batch: the drafts read together, then the
occlusion forwards batched across prompts, then each prompt encoded as the
batch-1 read encodes it; :func:`decode_injected` is pass 2 on such a batch,
each row with its own cognitive tokens.

This module knows token ids only: no chat templates, no text, no encoders.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from meta_spider.wrapper.collector import ActivationCollector, left_pad, padded_position_ids
from meta_spider.wrapper.doubter import Doubter
from meta_spider.wrapper.injection import InjectionState, injecting
from meta_spider.wrapper.passes import Pass1, ReadStates, TwoPassDecoder, encode_read
from meta_spider.wrapper.signals import Occlusion, reads_occlusion, token_logprobs

__all__ = ["REFERENCE_BATCH", "decode_injected", "left_pad", "read_drafts", "read_pass1", "reference_logprobs"]

REFERENCE_BATCH = 16
"""Prompts per prefill of :func:`reference_logprobs`: fixed, so the sum's
rounding (and so a collection's recorded ``p_ref``) does not depend on the
collection's batch size."""


def read_drafts(decoder: TwoPassDecoder, rows: Sequence[torch.Tensor], layers: Sequence[int], *,
                max_draft_tokens: int, pad_token_id: int) -> list[ReadStates]:
    """Pass 1 on the prompt ids ``rows`` (1-D each) as one batch: one
    :class:`ReadStates` per row, with ``[1, L, d]`` states (float32, CPU) at
    both read positions, the draft and the log-probs, and no cache."""
    if max_draft_tokens < 1:
        raise ValueError(f"a batched read drafts: max_draft_tokens must be >= 1, got {max_draft_tokens!r}")
    input_ids, mask = left_pad(rows, pad_token_id)
    size, width = input_ids.shape
    collector = ActivationCollector(decoder.structure.layers, layers)
    cache = decoder.new_cache()
    with collector.recording() as record:  # left padding: the last column is every row's last token
        prefill = decoder.forward_rows(input_ids, cache, mask, padded_position_ids(mask), all_logits=True)
    prompt_logprobs = [token_logprobs(prefill[i, width - len(row): width - 1].numpy(), row[1:].tolist())
                       for i, row in enumerate(rows)]
    logits = prefill[:, -1]
    del prefill
    prompt_states = record.states().cpu()
    drafts: list[list[int]] = [[] for _ in rows]
    step_logits: list[list[torch.Tensor]] = [[] for _ in rows]
    draft_states: list[torch.Tensor | None] = [None] * size
    next_position = mask.sum(dim=1)
    for _ in range(max_draft_tokens):
        active = torch.tensor([state is None for state in draft_states])
        tokens = logits.argmax(dim=-1)
        for i in torch.nonzero(active).flatten().tolist():
            drafts[i].append(int(tokens[i]))
            step_logits[i].append(logits[i])
        # Finished rows feed padding that nothing attends to.
        feed = torch.where(active, tokens, torch.full_like(tokens, pad_token_id))
        mask = torch.cat([mask, active.long().unsqueeze(1)], dim=1)
        with collector.recording() as record:
            logits = decoder.forward_rows(feed.unsqueeze(1), cache, mask, next_position.unsqueeze(1))
        states = record.states().cpu()
        next_position = next_position + active.long()
        for i in torch.nonzero(active).flatten().tolist():
            if drafts[i][-1] in decoder.eos_token_ids or len(drafts[i]) == max_draft_tokens:
                draft_states[i] = states[i]
        if all(state is not None for state in draft_states):
            break
    reads = []
    for i in range(size):
        log_probs = torch.log_softmax(torch.stack(step_logits[i]), dim=-1)
        draft_logprobs = log_probs.gather(1, torch.as_tensor(drafts[i]).unsqueeze(1)).squeeze(1)
        reads.append(ReadStates(
            prompt_states=prompt_states[i].float().unsqueeze(0),
            draft_states=draft_states[i].float().unsqueeze(0),  # type: ignore[union-attr]
            draft_ids=drafts[i], prompt_logprobs=prompt_logprobs[i],
            draft_logprobs=draft_logprobs.double().numpy(),
            first_token_max_prob=float(log_probs[0].exp().max()),
            draft_logprob_mean=float(draft_logprobs.mean()),
        ))
    return reads


def read_pass1(decoder: TwoPassDecoder, doubter: Doubter, rows: Sequence[torch.Tensor], *, read_position: str,
               max_draft_tokens: int, pad_token_id: int,
               words: Sequence[Sequence[Sequence[int]]] | None = None) -> list[Pass1]:
    """:meth:`TwoPassDecoder.read` for the prompt ids ``rows`` (1-D each) as
    one batch: one :class:`Pass1` per row, without a cache (pass 2 prefills
    the prompt again). ``words[i]`` are row i's question words, needed by a
    Doubter that reads ``occluded_name_logprob``. A Doubter that neither
    reads at the draft nor reads a draft signal still gets a one-token
    draft here (the batch decodes one); it is dropped before encoding."""
    if read_position not in ("prompt", "draft"):
        raise ValueError(f"read_position must be 'prompt' or 'draft', got {read_position!r}")
    config = doubter.config
    drafts = read_position == "draft" or config.drafts
    occluded = reads_occlusion(config.signals)
    if occluded and (words is None or len(words) != len(rows)):
        raise ValueError("this Doubter reads occluded_name_logprob, which needs each prompt's question words: give "
                         f"words with one entry per prompt ({len(rows)}), got "
                         f"{'none' if words is None else len(words)}")
    reads = read_drafts(decoder, rows, config.target_layers, max_draft_tokens=max_draft_tokens if drafts else 1,
                        pad_token_id=pad_token_id)
    if not drafts:
        for read in reads:
            read.draft_states, read.draft_ids, read.draft_logprobs, read.draft_logprob_mean = None, [], None, None
    occlusions: list[Occlusion | None] = [None] * len(rows)
    if occluded and words is not None:  # checked above: an occluding Doubter has words
        sums = decoder.occluded_draft_logprobs([row.tolist() for row in rows], [read.draft_ids for read in reads],
                                               words, pad_token_id=pad_token_id)
        occlusions = [Occlusion(row_words, row_sums) for row_words, row_sums in zip(words, sums)]
    return [encode_read(doubter, read, row.unsqueeze(0), read_position=read_position, occlusion=occlusion)
            for row, read, occlusion in zip(rows, reads, occlusions)]


def decode_injected(decoder: TwoPassDecoder, doubter: Doubter, rows: Sequence[torch.Tensor],
                    cognitive_tokens: torch.Tensor, *, max_new_tokens: int, pad_token_id: int,
                    inject_positions: str = "generation") -> list[tuple[list[int], str]]:
    """Pass 2 (:meth:`TwoPassDecoder.stream_injected`, without AGC or
    refresh) on the prompt ids ``rows`` (1-D each, two tokens or more) as one
    left-padded batch, row i with ``cognitive_tokens[i]`` (``[B, N, d]``):
    per row the greedy token ids and ``"eos"`` or ``"length"``. With
    ``inject_positions="generation"`` every prompt token but the last is
    prefilled without injection and the last re-decoded with it; ``"all"``
    prefills the whole prompt with injection. Finished rows feed padding
    that nothing attends to."""
    if inject_positions not in ("generation", "all"):
        raise ValueError(f"inject_positions must be 'generation' or 'all', got {inject_positions!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens!r}")
    if not rows or any(len(row) < 2 for row in rows) or cognitive_tokens.shape[0] != len(rows):
        raise ValueError(f"a batched pass 2 needs prompts of two tokens or more and one set of cognitive tokens per "
                         f"prompt: {len(rows)} prompts (shortest {min((len(row) for row in rows), default=0)}), "
                         f"{cognitive_tokens.shape[0]} sets")
    size = len(rows)
    cache = decoder.new_cache()
    if inject_positions == "generation":  # the cache of every prompt token but the last is the base's own
        input_ids, mask = left_pad([row[:-1] for row in rows], pad_token_id)
        decoder.forward_rows(input_ids, cache, mask, padded_position_ids(mask))
        input_ids = torch.stack([row[-1] for row in rows]).unsqueeze(1)
        mask = torch.cat([mask, torch.ones(size, 1, dtype=mask.dtype)], dim=1)
        positions = (mask.sum(dim=1) - 1).unsqueeze(1)
    else:
        input_ids, mask = left_pad(list(rows), pad_token_id)
        positions = padded_position_ids(mask)
    with injecting(decoder.structure.layers, doubter, InjectionState(cognitive_tokens=cognitive_tokens)):
        logits = decoder.forward_rows(input_ids, cache, mask, positions)
        tokens: list[list[int]] = [[] for _ in rows]
        finish = ["length"] * size
        active = torch.ones(size, dtype=torch.bool)
        next_position = mask.sum(dim=1)
        for step in range(max_new_tokens):
            chosen = logits.argmax(dim=-1)
            for i in torch.nonzero(active).flatten().tolist():
                tokens[i].append(int(chosen[i]))
                if tokens[i][-1] in decoder.eos_token_ids:
                    finish[i], active[i] = "eos", False
            if step == max_new_tokens - 1 or not bool(active.any()):
                break
            feed = torch.where(active, chosen, torch.full_like(chosen, pad_token_id))
            mask = torch.cat([mask, active.long().unsqueeze(1)], dim=1)
            logits = decoder.forward_rows(feed.unsqueeze(1), cache, mask, next_position.unsqueeze(1))
            next_position = next_position + active.long()
    return list(zip(tokens, finish))


def reference_logprobs(decoder: TwoPassDecoder, rows: Sequence[torch.Tensor], *, pad_token_id: int) -> np.ndarray:
    """``log p_ref`` ``[V]`` (float64): the log of the base's next-token
    distribution averaged over every position of the prompt ids ``rows``
    (1-D each) that predicts a prompt token (each prompt's last position
    predicts the answer and is left out), each probability at least
    float32's smallest normal. Prefill only, in left-padded batches of
    :data:`REFERENCE_BATCH`."""
    total: np.ndarray | None = None
    positions = 0
    for start in range(0, len(rows), REFERENCE_BATCH):
        batch = rows[start:start + REFERENCE_BATCH]
        input_ids, mask = left_pad(batch, pad_token_id)
        width = input_ids.shape[1]
        logits = decoder.forward_rows(input_ids, decoder.new_cache(), mask, padded_position_ids(mask), all_logits=True)
        for i, row in enumerate(batch):
            if len(row) < 2:
                continue
            probs = torch.softmax(logits[i, width - len(row): width - 1].double(), dim=-1).sum(dim=0).numpy()
            total = probs if total is None else total + probs
            positions += len(row) - 1
    if total is None:
        raise ValueError("the reference distribution needs at least one prompt of two or more tokens")
    # A token the base never gives any mass underflows to 0: floor it at
    # float32's smallest normal so log p_ref stays finite once stored as float32.
    return np.log(np.maximum(total / positions, np.finfo(np.float32).tiny))
