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
  needs ``p_ref``, which the Doubter then carries;
- ``occluded_name_logprob``: where the question's subject is, found by
  occlusion, and how predictable the base finds it there. Each word of the
  user's question is left out in turn (its tokens removed from the prompt)
  and the draft's log-probability given what remains is read; the
  :data:`OCCLUDED_WORDS` words whose absence lowers it most are the ones the
  answer leans on (in the world, the person's name), and the signal is the
  sum of the prompt's token log-probs at their tokens after the first. A
  name the base has read often has predictable later tokens whatever the
  frame around it, so this survives new wordings without being told where
  the name is (docs/loom.md). It costs one forward of (prompt without the
  word + draft) per word of the question (its last
  :data:`OCCLUSION_MAX_WORDS`), needs the question's words in the prompt
  (:func:`question_words`) and is recorded only when asked for
  (:data:`OCCLUSION_SIGNALS`).

A Doubter whose config names some of them (``DoubterConfig.signals``)
combines them with its encoder's P(correct) logit
(:class:`~meta_spider.wrapper.doubter.SignalMix`). They are not free: prompt
signals make the prefill compute the LM head at every prompt position (the
logits take prompt length x vocabulary floats), draft signals make pass 1
draft an answer. The functions here are numpy only, so the llama.cpp
backend computes the very same numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["DRAFT_SIGNALS", "KNOWN_SIGNALS", "LOW_K", "OCCLUDED_WORDS", "OCCLUSION_MAX_WORDS", "OCCLUSION_SIGNALS",
           "Occlusion", "PMI_SIGNALS", "PMI_TOP_K", "PROMPT_SIGNALS", "SIGNALS", "THINKING_SWITCHES", "WINDOW",
           "check_signal_names", "generation_tails", "last_user_text", "needs_draft", "question_words",
           "reads_occlusion", "reads_prompt", "reads_reference", "reference_problem", "signal_vector",
           "token_logprobs", "without_word", "word_spans"]

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
OCCLUSION_SIGNALS = ("occluded_name_logprob",)
"""Signals that need the question's words and one more forward per word:
recorded only when a collection asks for them (after the PMI ones)."""
KNOWN_SIGNALS = SIGNALS + PMI_SIGNALS + OCCLUSION_SIGNALS
OCCLUDED_WORDS = 2
"""How many of the words the draft leans on most ``occluded_name_logprob`` reads."""
OCCLUSION_MAX_WORDS = 32
"""The most words of a question left out in turn (its last ones): the cost of
the signal is a forward per word, and a long message ends with its question."""
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
    return any(name not in DRAFT_SIGNALS for name in names)


def needs_draft(names: Sequence[str]) -> bool:
    """Whether any of ``names`` needs pass 1 to draft an answer."""
    return any(name in DRAFT_SIGNALS or name in OCCLUSION_SIGNALS for name in names)


def reads_occlusion(names: Sequence[str]) -> bool:
    """Whether any of ``names`` needs the question's words and a forward per word."""
    return any(name in OCCLUSION_SIGNALS for name in names)


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


def word_spans(question: str) -> list[tuple[int, int]]:
    """``(begin, end)`` of each whitespace-separated word of ``question``."""
    return [match.span() for match in re.finditer(r"\S+", question)]


def question_words(encode: Callable[[str], Sequence[int]], text: str, question: str, *,
                   tails: Sequence[str] = ()) -> list[tuple[int, ...]]:
    """The prompt positions of each word of ``question`` (its last
    :data:`OCCLUSION_MAX_WORDS` words), found at its last occurrence in the
    rendered prompt ``text`` before the longest of ``tails`` it ends with
    (:func:`generation_tails`: what the template writes after the last user
    turn, so that a question such as "assistant" is not found in the
    assistant's header), which ``encode`` (the backend's own tokenization of
    a rendered prompt) turns into the prompt's ids. A word's positions run
    from the token count of ``text`` up to the end of the word before it to
    that of ``text`` up to its own end (so a word's leading space goes with
    it), never position 0 (it has no log-prob) nor one past the prompt;
    words that add no token are left out, and an empty question has none
    (the signal then reads 0). Raises ValueError when ``question`` is not in
    ``text``."""
    stripped = question.strip()
    if not stripped:
        return []
    ending = max((tail for tail in tails if tail and text.endswith(tail)), key=len, default="")
    text = text[:len(text) - len(ending)]
    start = text.rfind(stripped)
    if start < 0:
        raise ValueError(f"signal 'occluded_name_logprob' reads the words of the user's question, and "
                         f"{stripped[:80]!r} is not in the prompt: pass the last user message's text as it was "
                         "rendered")
    spans = word_spans(stripped)[-OCCLUSION_MAX_WORDS:]
    total = len(encode(text))
    counts = [len(encode(text[:start + end])) for end in [spans[0][0]] + [end for _, end in spans]]
    words = []
    for before, after in zip(counts, counts[1:]):
        positions = tuple(range(max(1, before), min(after, total)))
        if positions:
            words.append(positions)
    return words


THINKING_SWITCHES = (None, False, True)
"""``enable_thinking`` as a prompt may be rendered with (None: the
template's default); reasoning templates write another generation header
for each."""


def generation_tails(render: Callable[[list[dict[str, str]], bool | None], str]) -> tuple[str, ...]:
    """What a chat template writes after the content of a conversation's
    last user turn (its end of turn and the generation header), once per
    :data:`THINKING_SWITCHES`: ``render(messages, enable_thinking)`` renders
    one user turn holding a private-use mark, generation header included.
    The distinct non-empty tails, longest first. Errors of ``render``
    propagate."""
    mark = "\ue002"
    tails = set()
    for thinking in THINKING_SWITCHES:
        text = render([{"role": "user", "content": mark}], thinking)
        if mark in text and text[text.rindex(mark) + len(mark):]:
            tails.add(text[text.rindex(mark) + len(mark):])
    return tuple(sorted(tails, key=lambda tail: (-len(tail), tail)))


def last_user_text(prompt: str | Sequence[Mapping[str, Any]]) -> str:
    """The user's words in ``prompt``: the string itself, or the text of the
    last user message (its text parts joined as a chat template renders them,
    with nothing between, when the content is a list of parts; empty when it
    has none); raises ValueError when there is no user message."""
    if isinstance(prompt, str):
        return prompt
    for message in reversed(list(prompt)):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content
                              if isinstance(part, Mapping) and part.get("type") == "text")
        return content if isinstance(content, str) else ""
    raise ValueError("the prompt has no user message: the occlusion signal reads the user's question")


def without_word(prompt_ids: Sequence[int], positions: Sequence[int]) -> list[int]:
    """``prompt_ids`` with the tokens at ``positions`` (one word) removed."""
    dropped = set(positions)
    return [int(token) for k, token in enumerate(prompt_ids) if k not in dropped]


@dataclass(frozen=True)
class Occlusion:
    """What ``occluded_name_logprob`` reads beyond the prompt's and the
    draft's token log-probs: the prompt positions of each word of the
    question (:func:`question_words`), and per word the draft's summed
    log-prob given the prompt without it (:func:`without_word`)."""

    words: tuple[tuple[int, ...], ...]
    draft_logprob_sums: tuple[float, ...]

    def __post_init__(self) -> None:
        # any sequences of ints and floats in, tuples out (the dataclass is frozen)
        object.__setattr__(self, "words", tuple(tuple(int(k) for k in word) for word in self.words))
        object.__setattr__(self, "draft_logprob_sums", tuple(float(v) for v in self.draft_logprob_sums))
        if len(self.words) != len(self.draft_logprob_sums):
            raise ValueError(f"an occlusion needs one draft log-prob per word, got {len(self.words)} words and "
                             f"{len(self.draft_logprob_sums)} log-probs")


def _occluded_name_logprob(prompt: np.ndarray, draft: np.ndarray, occlusion: Occlusion | None) -> float:
    """The prompt's log-probs, after the first, at the tokens of the
    :data:`OCCLUDED_WORDS` words whose absence lowers the draft's log-prob
    most (0 for a question without words or with one token there)."""
    if occlusion is None:
        raise ValueError("signal 'occluded_name_logprob' needs the question's words and the draft's log-prob "
                         "without each (an Occlusion): give the backend the user's question")
    if not occlusion.words:
        return 0.0
    drops = float(draft.sum()) - np.asarray(occlusion.draft_logprob_sums, dtype=np.float64)
    chosen = np.argsort(-drops, kind="stable")[:OCCLUDED_WORDS]
    positions = sorted({k for index in chosen for k in occlusion.words[index]})
    if max(positions) > prompt.size:
        raise ValueError(f"occlusion position {max(positions)} is past the prompt's {prompt.size + 1} tokens")
    return float(prompt[np.asarray(positions[1:], dtype=np.int64) - 1].sum())


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
                  log_reference: np.ndarray | None = None, occlusion: Occlusion | None = None) -> np.ndarray:
    """The signals ``names`` (float64, in that order) from the prompt's token
    log-probs (every prompt token but the first) and the draft's. A prompt
    of one token has every prompt signal 0; draft signals need a non-empty
    draft; PMI signals also need the whole prompt's ``prompt_ids`` and
    ``log_reference`` (``[V]`` log p_ref); the occlusion signal needs both
    log-probs and ``occlusion``."""
    values = []
    ids = None if prompt_ids is None else np.asarray(prompt_ids, dtype=np.int64).reshape(-1)
    for name in check_signal_names(names):
        prompt = draft = None
        if name not in DRAFT_SIGNALS:
            if prompt_logprobs is None:
                raise ValueError(f"signal {name!r} needs the prompt's token log-probs")
            prompt = np.asarray(prompt_logprobs, dtype=np.float64)
        if name in DRAFT_SIGNALS or name in OCCLUSION_SIGNALS:
            if draft_logprobs is None or len(draft_logprobs) == 0:
                raise ValueError(f"signal {name!r} needs a draft: pass 1 must draft at least one token")
            draft = np.asarray(draft_logprobs, dtype=np.float64)
        if name in PMI_SIGNALS:
            values.append(_prompt_pmi_top(prompt, ids, log_reference))
        elif name in OCCLUSION_SIGNALS:
            values.append(_occluded_name_logprob(prompt, draft, occlusion))
        elif name in PROMPT_SIGNALS:
            values.append(_prompt_signal(name, prompt))
        else:
            values.append(float(draft.mean() if name == "draft_logprob_mean" else draft.min()))
    return np.asarray(values, dtype=np.float64)
