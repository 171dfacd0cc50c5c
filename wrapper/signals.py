"""Pass-1 log-probability signals: what the base's own output distribution
says about a question and its draft answer.

Pass 1 computes the base's logits anyway; from them come, per question,

- ``prompt_logprob_sum`` / ``prompt_logprob_mean``: the log-probability the
  base gives the prompt's own tokens (each token given the ones before it).
  A question about an entity the base has read about many times is less
  surprising to it than one about a name it never saw, so this is a
  familiarity signal the answer's probability does not carry;
- ``prompt_logprob_min``, ``prompt_logprob_low_mean`` (the mean of the
  :data:`LOW_K` lowest) and ``prompt_window_logprob_min`` (the least
  probable run of :data:`WINDOW` consecutive tokens, a rare word's
  surprisal without knowing where words end): the prompt's rarest tokens.
  A question asked in new words about a known name has a lower whole-prompt
  log-prob, but its rarest tokens are still the name's; these read the
  prompt alone, so they need no annotation of where the entity is;
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

__all__ = ["DRAFT_SIGNALS", "LOW_K", "PROMPT_SIGNALS", "SIGNALS", "WINDOW", "check_signal_names", "signal_vector",
           "token_logprobs"]

PROMPT_SIGNALS = ("prompt_logprob_sum", "prompt_logprob_mean", "prompt_logprob_min", "prompt_logprob_low_mean",
                  "prompt_window_logprob_min")
DRAFT_SIGNALS = ("draft_logprob_mean", "draft_logprob_min")
SIGNALS = PROMPT_SIGNALS[:2] + DRAFT_SIGNALS + PROMPT_SIGNALS[2:]
"""Every signal, in the order an activation dataset stores them (the first
four are the ones collections recorded before the rarest-token signals)."""
LOW_K = 4
"""How many of the prompt's least probable tokens ``prompt_logprob_low_mean`` averages."""
WINDOW = 3
"""Consecutive prompt tokens per window of ``prompt_window_logprob_min``."""


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


def _prompt_signal(name: str, prompt: np.ndarray) -> float:
    """One prompt signal of the prompt's token log-probs; 0 for an empty
    array (a one-token prompt), and windows or lows shrink to what there is."""
    if prompt.size == 0:
        return 0.0
    if name == "prompt_logprob_sum":
        return float(prompt.sum())
    if name == "prompt_logprob_mean":
        return float(prompt.sum() / prompt.size)
    if name == "prompt_logprob_min":
        return float(prompt.min())
    if name == "prompt_logprob_low_mean":
        return float(np.sort(prompt)[:LOW_K].mean())
    width = min(WINDOW, prompt.size)
    return float(np.convolve(prompt, np.ones(width), mode="valid").min())


def signal_vector(names: Sequence[str], prompt_logprobs: np.ndarray | None,
                  draft_logprobs: np.ndarray | None) -> np.ndarray:
    """The signals ``names`` (float64, in that order) from the prompt's token
    log-probs (every prompt token but the first) and the draft's. A prompt
    of one token has every prompt signal 0; draft signals need a non-empty draft."""
    values = []
    for name in check_signal_names(names):
        if name in PROMPT_SIGNALS:
            if prompt_logprobs is None:
                raise ValueError(f"signal {name!r} needs the prompt's token log-probs")
            values.append(_prompt_signal(name, np.asarray(prompt_logprobs, dtype=np.float64)))
        else:
            if draft_logprobs is None or len(draft_logprobs) == 0:
                raise ValueError(f"signal {name!r} needs a draft: pass 1 must draft at least one token")
            draft = np.asarray(draft_logprobs, dtype=np.float64)
            values.append(float(draft.mean() if name == "draft_logprob_mean" else draft.min()))
    return np.asarray(values, dtype=np.float64)
