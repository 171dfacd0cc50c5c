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
  the greedy draft's tokens (these need pass 1 to draft);
- ``prompt_pmi_top4``: the mean of the :data:`PMI_TOP_K` highest per-token
  PMIs of the prompt, ``log p(t | context) - log p_ref(t)``, where ``p_ref``
  is the base's mean next-token distribution over the training prompts (one
  vector over the vocabulary, ``log_reference``). Its highest values are a
  known name's later tokens, which the base predicts far better than their
  marginal; a frame word the base never read is unlikely under both terms,
  so unlike the plain log-probs this survives new wordings (docs/loom.md).
  It is not recorded unless asked for (:data:`PMI_SIGNALS`), because it
  needs ``p_ref``, which the Doubter then carries.

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

__all__ = ["DRAFT_SIGNALS", "KNOWN_SIGNALS", "LOW_K", "PMI_SIGNALS", "PMI_TOP_K", "PROMPT_SIGNALS", "SIGNALS",
           "WINDOW", "check_signal_names", "reads_prompt", "reads_reference", "reference_problem", "signal_vector",
           "token_logprobs"]

PROMPT_SIGNALS = ("prompt_logprob_sum", "prompt_logprob_mean", "prompt_logprob_min", "prompt_logprob_low_mean",
                  "prompt_window_logprob_min")
DRAFT_SIGNALS = ("draft_logprob_mean", "draft_logprob_min")
SIGNALS = PROMPT_SIGNALS[:2] + DRAFT_SIGNALS + PROMPT_SIGNALS[2:]
"""The signals every collection records, in the order an activation dataset
stores them (the first four are the ones collections recorded before the
rarest-token signals)."""
PMI_SIGNALS = ("prompt_pmi_top4",)
"""Signals that read the base's reference distribution ``p_ref``: recorded
only when a collection asks for them (after :data:`SIGNALS`)."""
KNOWN_SIGNALS = SIGNALS + PMI_SIGNALS
PMI_TOP_K = 4
"""How many of the prompt's highest token PMIs ``prompt_pmi_top4`` averages."""
LOW_K = 4
"""How many of the prompt's least probable tokens ``prompt_logprob_low_mean`` averages."""
WINDOW = 3
"""Consecutive prompt tokens per window of ``prompt_window_logprob_min``."""


def check_signal_names(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple; raises ValueError naming any unknown or repeated one."""
    if isinstance(names, str):
        raise ValueError(f"signals must be a list of names, got the string {names!r}")
    names = tuple(names)
    unknown = [name for name in names if name not in KNOWN_SIGNALS]
    if unknown:
        raise ValueError(f"unknown signals {unknown}; known: {list(KNOWN_SIGNALS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"signals must not repeat, got {list(names)}")
    return names


def reads_prompt(names: Sequence[str]) -> bool:
    """Whether any of ``names`` needs the prompt's token log-probs (so the
    prefill computes the LM head at every prompt position)."""
    return any(name in PROMPT_SIGNALS or name in PMI_SIGNALS for name in names)


def reads_reference(names: Sequence[str]) -> bool:
    """Whether any of ``names`` needs the reference distribution ``p_ref``."""
    return any(name in PMI_SIGNALS for name in names)


def reference_problem(log_reference: np.ndarray) -> str | None:
    """What makes ``log_reference`` unusable as ``[V]`` log p_ref (it must be
    one finite, non-empty vector), or None."""
    if log_reference.ndim != 1 or log_reference.size == 0 or not bool(np.isfinite(log_reference).all()):
        return f"log_reference must be one finite, non-empty vector over the vocabulary, got shape " \
               f"{list(log_reference.shape)}"
    return None


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


def _prompt_pmi_top(prompt: np.ndarray, prompt_ids: np.ndarray | None, log_reference: np.ndarray | None) -> float:
    """The mean of the :data:`PMI_TOP_K` highest ``prompt - log_reference[ids]``
    (fewer when the prompt is shorter; 0 for a one-token prompt)."""
    if log_reference is None:
        raise ValueError("signal 'prompt_pmi_top4' needs the base's reference distribution (log_reference): a "
                         "Doubter gets it from training on a collection made with the PMI signals")
    if prompt_ids is None or prompt_ids.shape != (prompt.size + 1,):
        raise ValueError(f"signal 'prompt_pmi_top4' needs the prompt's {prompt.size + 1} token ids, got "
                         f"{None if prompt_ids is None else list(prompt_ids.shape)}")
    if prompt.size == 0:
        return 0.0
    ids = prompt_ids[1:]
    if ids.min() < 0 or ids.max() >= log_reference.shape[0]:
        raise ValueError(f"prompt token id {int(ids.max())} is outside the reference distribution's "
                         f"{log_reference.shape[0]} tokens: the Doubter was trained on another base's vocabulary")
    pmi = prompt - np.asarray(log_reference)[ids].astype(np.float64)  # the T entries it reads, not all V
    return float(np.sort(pmi)[-PMI_TOP_K:].mean())


def signal_vector(names: Sequence[str], prompt_logprobs: np.ndarray | None,
                  draft_logprobs: np.ndarray | None, *, prompt_ids: Sequence[int] | None = None,
                  log_reference: np.ndarray | None = None) -> np.ndarray:
    """The signals ``names`` (float64, in that order) from the prompt's token
    log-probs (every prompt token but the first) and the draft's. A prompt
    of one token has every prompt signal 0; draft signals need a non-empty
    draft; PMI signals also need the whole prompt's ``prompt_ids`` and
    ``log_reference`` (``[V]`` log p_ref)."""
    values = []
    ids = None if prompt_ids is None else np.asarray(prompt_ids, dtype=np.int64).reshape(-1)
    for name in check_signal_names(names):
        if name in PROMPT_SIGNALS or name in PMI_SIGNALS:
            if prompt_logprobs is None:
                raise ValueError(f"signal {name!r} needs the prompt's token log-probs")
            prompt = np.asarray(prompt_logprobs, dtype=np.float64)
            values.append(_prompt_pmi_top(prompt, ids, log_reference) if name in PMI_SIGNALS
                          else _prompt_signal(name, prompt))
        else:
            if draft_logprobs is None or len(draft_logprobs) == 0:
                raise ValueError(f"signal {name!r} needs a draft: pass 1 must draft at least one token")
            draft = np.asarray(draft_logprobs, dtype=np.float64)
            values.append(float(draft.mean() if name == "draft_logprob_mean" else draft.min()))
    return np.asarray(values, dtype=np.float64)
