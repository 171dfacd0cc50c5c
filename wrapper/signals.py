"""Pass-1 log-probability signals: what the base's own output distribution
says about a question and its draft answer.

Pass 1 computes the base's logits anyway; from them come, per question,

- ``prompt_logprob_sum`` / ``prompt_logprob_mean``: the log-probability the
  base gives the prompt's own tokens (each token given the ones before it).
  A question about an entity the base has read about many times is less
  surprising to it than one about a name it never saw, so this is a
  familiarity signal the answer's probability does not carry;
- ``draft_logprob_mean`` / ``draft_logprob_min``: the log-probabilities of
  the greedy draft's tokens (these need pass 1 to draft).

A Doubter whose config names some of them (``DoubterConfig.signals``)
combines them with its encoder's P(correct) logit
(:class:`~meta_spider.wrapper.doubter.SignalMix`). They are not free: prompt
signals make the prefill compute the LM head at every prompt position (the
logits take prompt length x vocabulary floats), draft signals make pass 1
draft an answer. The functions here are numpy only, so the llama.cpp
backend computes the very same numbers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["DRAFT_SIGNALS", "PROMPT_SIGNALS", "SIGNALS", "check_signal_names", "signal_vector", "token_logprobs"]

PROMPT_SIGNALS = ("prompt_logprob_sum", "prompt_logprob_mean")
DRAFT_SIGNALS = ("draft_logprob_mean", "draft_logprob_min")
SIGNALS = PROMPT_SIGNALS + DRAFT_SIGNALS
"""Every signal, in the order an activation dataset stores them."""


def check_signal_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple; raises ValueError naming any unknown or repeated one."""
    if isinstance(names, str):
        raise ValueError(f"signals must be a list of names, got the string {names!r}")
    names = tuple(names)
    unknown = [name for name in names if name not in SIGNALS]
    if unknown:
        raise ValueError(f"unknown signals {unknown}; known: {list(SIGNALS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"signals must not repeat, got {list(names)}")
    return names


CHUNK_ROWS = 64
"""Rows of logits converted to float64 at a time (a long prompt times a large
vocabulary would not fit twice)."""


def token_logprobs(logits: np.ndarray, token_ids: Sequence[int]) -> np.ndarray:
    """``log softmax(logits[i])[token_ids[i]]`` for every row, in float64."""
    ids = np.asarray(token_ids, dtype=np.int64)
    if np.ndim(logits) != 2 or ids.shape != (np.shape(logits)[0],):
        raise ValueError(f"need logits [T, V] and T token ids, got {np.shape(logits)} and {ids.shape}")
    result = np.empty(len(ids), dtype=np.float64)
    for start in range(0, len(ids), CHUNK_ROWS):
        rows = np.asarray(logits[start:start + CHUNK_ROWS], dtype=np.float64)
        top = rows.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(rows - top).sum(axis=1)) + top[:, 0]
        result[start:start + len(rows)] = rows[np.arange(len(rows)), ids[start:start + len(rows)]] - log_norm
    return result


def signal_vector(names: Sequence[str], prompt_logprobs: np.ndarray | None,
                  draft_logprobs: np.ndarray | None) -> np.ndarray:
    """The signals ``names`` (float64, in that order) from the prompt's token
    log-probs (every prompt token but the first) and the draft's. A prompt
    of one token has sum and mean 0; draft signals need a non-empty draft."""
    values = []
    for name in check_signal_names(names):
        if name in PROMPT_SIGNALS:
            if prompt_logprobs is None:
                raise ValueError(f"signal {name!r} needs the prompt's token log-probs")
            prompt = np.asarray(prompt_logprobs, dtype=np.float64)
            total = float(prompt.sum())
            values.append(total if name == "prompt_logprob_sum" else (total / prompt.size if prompt.size else 0.0))
        else:
            if draft_logprobs is None or len(draft_logprobs) == 0:
                raise ValueError(f"signal {name!r} needs a draft: pass 1 must draft at least one token")
            draft = np.asarray(draft_logprobs, dtype=np.float64)
            values.append(float(draft.mean() if name == "draft_logprob_mean" else draft.min()))
    return np.asarray(values, dtype=np.float64)
