"""The two passes on token ids: greedy decoding with a KV cache, pass-1
reads and pass-2 injected decoding.

:class:`TwoPassDecoder` runs a frozen base one forward at a time with a
``DynamicCache`` (batch 1, greedy). Pass 1 prefills the prompt while an
:class:`ActivationCollector` reads the target layers, at the last prompt
token (``read_position="prompt"``) or at the end of a greedy draft
(``"draft"``), and, for a Doubter that reads pass-1 signals
(:mod:`meta_spider.wrapper.signals`), keeps the token log-probs of the prompt
and of the draft. Pass 2 with ``inject_positions="generation"`` crops pass 1's
cache back to every prompt token before the last (recurrent layers of hybrid
models restore the state they kept before that token) and re-decodes only
that token with injection on; ``"all"`` re-prefills the whole prompt with
injection. AGC and dynamic refresh act between forwards. :meth:`forward_rows`
is the same cached forward for a padded batch, which the batched passes
(:mod:`meta_spider.wrapper.batched`) decode with.

This module knows token ids only: no chat templates, no text.
"""

from __future__ import annotations

import inspect
import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from meta_spider.wrapper.collector import ActivationCollector, left_pad, padded_position_ids
from meta_spider.wrapper.doubter import Doubter
from meta_spider.wrapper.encoders import EncoderOutput
from meta_spider.wrapper.gates import AdaptiveGateControl, RefreshGate
from meta_spider.wrapper.injection import InjectionState, injecting
from meta_spider.wrapper.layers import DecoderStructure
from meta_spider.wrapper.signals import Occlusion, reads_occlusion, signal_vector, token_logprobs, without_word

logger = logging.getLogger(__name__)


OCCLUSION_BATCH = 64
"""Rows (question without one word, plus the draft) per forward of
:meth:`TwoPassDecoder.occluded_draft_logprobs`."""
SHARED_PREFIX_TOKENS = 64
"""From this many prompt tokens before the question's first word on, one
prompt's occlusion forwards share that prefix's KV cache (prefilled once)
instead of each running the whole prompt again."""


@dataclass
class Pass1:
    """What pass 1 left behind for pass 2."""

    input_ids: torch.Tensor
    """``[1, T]`` the prompt."""
    layer_states: torch.Tensor
    """``[1, L, d]`` read at the prompt's last token or the draft's end."""
    encoded: EncoderOutput
    draft_ids: list[int] = field(default_factory=list)
    cache: Any = None
    """Pass 1's KV cache (prompt, plus draft); consumed by the first pass 2."""
    signals: torch.Tensor | None = None
    """``[1, K]`` the Doubter's pass-1 signals (None when it reads none)."""

    @property
    def p_correct(self) -> float:
        return float(torch.sigmoid(self.encoded.p_correct_logit.detach()[0]))


@dataclass
class ReadStates:
    """Pass-1 states of one prompt, before any encoder."""

    prompt_states: torch.Tensor
    """``[1, L, d]`` at the last prompt token."""
    draft_states: torch.Tensor | None
    """``[1, L, d]`` at the end of the greedy draft (None without a draft)."""
    draft_ids: list[int]
    cache: Any = None
    prompt_logprobs: Any = None
    """``[T - 1]`` numpy log-probs of prompt tokens 1.. (when asked for)."""
    draft_logprobs: Any = None
    """``[len(draft_ids)]`` numpy log-probs of the draft's tokens (when asked for)."""
    first_token_max_prob: float | None = None
    """The highest probability of the distribution the draft's first token
    was chosen from, i.e. at the last prompt token (when log-probs are asked for)."""
    draft_logprob_mean: float | None = None
    """The mean of ``draft_logprobs`` (when asked for, with a draft)."""


@dataclass
class DecodeStats:
    """Filled in while a stream runs (read it after exhausting the stream)."""

    finish_reason: str = "length"
    """``"eos"`` or ``"length"``."""
    refreshes: int = 0
    reused_prompt_cache: bool = False
    prompt_cache: str | None = None
    """How pass 2 (``inject_positions="generation"``) got the cache of every
    prompt token but the last: ``"cropped"`` (pass 1's attention cache cut
    back), ``"snapshot"`` (pass 1's cache cut back, its recurrent
    linear-attention / state-space layers restored from the state they kept
    before the last prompt token) or ``"prefilled"`` (the prompt run again);
    None when pass 2 did not start that way."""
    injection_scales: list[float] = field(default_factory=list)
    """The injection scale of every pass-2 forward (the AGC trace)."""


def _holds_recurrent_state(cache: Any) -> bool:
    """Whether some layer of ``cache`` carries a recurrent state (linear
    attention, state space) rather than only keys and values."""
    return any(hasattr(layer, "recurrent_states") for layer in getattr(cache, "layers", ()))


class TwoPassDecoder:
    """Greedy, cached, batch-1 decoding of a frozen base, with or without
    a Doubter's injection."""

    def __init__(self, model: nn.Module, structure: DecoderStructure, eos_token_ids: Sequence[int]) -> None:
        self.model = model
        self.structure = structure
        self.eos_token_ids = frozenset(int(i) for i in eos_token_ids)
        parameters = inspect.signature(model.forward).parameters
        # Computing the LM head over the whole prompt is the single largest
        # cost of a prefill with a big vocabulary; transformers lets most
        # families skip it.
        self._keeps_logits = "logits_to_keep" in parameters
        self._cache_kwarg = "cache" if "cache" in parameters else "past_key_values"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------ primitives

    def new_cache(self) -> Any:
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        # Sliding-window layers drop old states unless told to keep them
        # until the next crop, and recurrent layers (linear attention, state
        # space) keep no past state unless told to: pass 2 rolls the cache
        # back to before the last prompt token, so each keeps the state
        # before its newest token (one snapshot per later token).
        cache.activate_past_recording(recurrent_states_to_keep=2)
        return cache

    def _logits(self, input_ids: torch.Tensor, cache: Any, all_logits: bool, keep_last: int | None = None,
                **inputs: torch.Tensor) -> torch.Tensor:
        """The base's raw logits ``[B, T or 1, V]`` of one cached forward
        (with ``keep_last``, of the last ``keep_last`` positions only)."""
        kwargs: dict[str, Any] = {"input_ids": input_ids.to(self.device),
                                  **{name: value.to(self.device) for name, value in inputs.items()},
                                  self._cache_kwarg: cache, "use_cache": True}
        keep = keep_last if keep_last is not None else (None if all_logits else 1)
        if self._keeps_logits and keep is not None:
            kwargs["logits_to_keep"] = keep
        with torch.no_grad():
            logits = self.model(**kwargs).logits
        return logits[:, -keep:] if keep is not None else logits

    def forward(self, input_ids: torch.Tensor, cache: Any, *, all_logits: bool = False) -> torch.Tensor:
        """One cached forward; returns the next-token logits ``[V]`` (float32),
        or with ``all_logits`` those of every input position ``[T, V]``."""
        logits = self._logits(input_ids, cache, all_logits)
        return logits[0].float() if all_logits else logits[0, -1].float()

    def forward_rows(self, input_ids: torch.Tensor, cache: Any, attention_mask: torch.Tensor,
                     position_ids: torch.Tensor, *, all_logits: bool = False,
                     keep_last: int | None = None) -> torch.Tensor:
        """One cached forward of a padded batch ``[B, T]``; returns each row's
        next-token logits ``[B, V]`` (float32, on the CPU), or with
        ``all_logits`` those of every position ``[B, T, V]`` (with
        ``keep_last``, of the last ``keep_last`` positions ``[B, keep_last, V]``).
        ``attention_mask`` covers the cache and the input."""
        logits = self._logits(input_ids, cache, all_logits, keep_last if all_logits else None,
                              attention_mask=attention_mask, position_ids=position_ids).float()
        return logits.cpu() if all_logits else logits[:, -1].cpu()

    def occluded_draft_logprobs(self, prompts: Sequence[Sequence[int]], drafts: Sequence[Sequence[int]],
                                words: Sequence[Sequence[Sequence[int]]], *,
                                pad_token_id: int) -> list[tuple[float, ...]]:
        """Per prompt, per word of its question (``words[i]``: the prompt
        positions of each), the summed log-prob of the draft ``drafts[i]``
        given the prompt without that word: the forwards of
        ``occluded_name_logprob`` (:mod:`meta_spider.wrapper.signals`), in
        left-padded batches of :data:`OCCLUSION_BATCH` rows, no cache kept.
        One prompt whose question starts :data:`SHARED_PREFIX_TOKENS` tokens
        or more in (a conversation, a long system prompt) prefills what comes
        before the question once and runs only the rest per word, where the
        base's cache can be cut back (:meth:`_occluded_after_prefix`)."""
        if len(prompts) == 1 and words[0] and min(word[0] for word in words[0]) >= SHARED_PREFIX_TOKENS:
            shared = self._occluded_after_prefix(prompts[0], drafts[0], words[0])
            if shared is not None:
                return [shared]
        rows: list[tuple[int, list[int]]] = [
            (index, without_word(prompt, word) + list(draft))
            for index, (prompt, draft, question_words) in enumerate(zip(prompts, drafts, words))
            for word in question_words]
        sums: list[list[float]] = [[] for _ in prompts]
        for start in range(0, len(rows), OCCLUSION_BATCH):
            batch = rows[start:start + OCCLUSION_BATCH]
            input_ids, mask = left_pad([torch.tensor(row) for _, row in batch], pad_token_id)
            keep = max(len(drafts[index]) for index, _ in batch) + 1
            logits = self.forward_rows(input_ids, self.new_cache(), mask, padded_position_ids(mask), all_logits=True,
                                       keep_last=keep)
            for row, (index, _) in enumerate(batch):
                draft = list(drafts[index])
                predicting = logits[row, keep - len(draft) - 1: keep - 1].numpy()  # left padding: the draft ends the row
                sums[index].append(float(token_logprobs(predicting, draft).sum()))
        return [tuple(values) for values in sums]

    def _occluded_after_prefix(self, prompt: Sequence[int], draft: Sequence[int],
                               words: Sequence[Sequence[int]]) -> tuple[float, ...] | None:
        """:meth:`occluded_draft_logprobs` of one prompt with the tokens
        before its question's first word prefilled once: per word the rest
        of the prompt without it and the draft, then the cache cut back to
        the prefix. None where the cache cannot be cut back (a recurrent
        layer keeps no earlier state): the caller runs whole rows instead."""
        start = min(word[0] for word in words)
        draft = list(draft)
        cache = self.new_cache()
        prefix_logits = self.forward(torch.tensor([list(prompt[:start])]), cache)
        sums = []
        for word in words:
            rest = without_word(prompt, word)[start:] + draft
            logits = self.forward(torch.tensor([rest]), cache, all_logits=True).cpu()
            before = len(rest) - len(draft)  # rows predicting the draft: the last token before it, then the draft's own
            rows = logits[before - 1: len(rest) - 1] if before else torch.cat([prefix_logits[None].cpu(),
                                                                                  logits[:len(draft) - 1]])
            sums.append(float(token_logprobs(rows.numpy(), draft).sum()))
            try:
                cache.crop(-(int(cache.get_seq_length()) - start))
            except (RuntimeError, ValueError, IndexError, AttributeError) as exc:  # a layer kind that cannot roll back
                logger.debug("occlusion prefix cache not reusable (%s); whole rows instead", exc)
                return None
        return tuple(sums)

    def _continue(
        self,
        logits: torch.Tensor,
        cache: Any,
        max_new_tokens: int,
        stats: DecodeStats,
        before_forward: Callable[[int], None] | None = None,
        after_forward: Callable[[], None] | None = None,
        observe: Callable[[int, torch.Tensor], None] | None = None,
    ) -> Iterator[int]:
        """Greedy continuation from ``logits`` (the forward for step 0 is
        already done); ``before_forward(step)`` runs before the forward that
        produces new token ``step``; ``observe(token, logits)`` sees every
        token with the logits it was chosen from."""
        for step in range(max_new_tokens):
            token = int(logits.argmax())
            if observe is not None:
                observe(token, logits)
            yield token
            if token in self.eos_token_ids:
                stats.finish_reason = "eos"
                return
            if step == max_new_tokens - 1:
                return
            if before_forward is not None:
                before_forward(step + 1)
            logits = self.forward(torch.tensor([[token]]), cache)
            if after_forward is not None:
                after_forward()

    # ------------------------------------------------------------ plain

    def stream_plain(self, input_ids: torch.Tensor, max_new_tokens: int, stats: DecodeStats | None = None) -> Iterator[int]:
        """The base's own greedy decoding (what ``model.generate`` does)."""
        stats = stats if stats is not None else DecodeStats()
        cache = self.new_cache()
        logits = self.forward(input_ids, cache)
        yield from self._continue(logits, cache, max_new_tokens, stats)

    # ------------------------------------------------------------ pass 1

    def read_states(self, input_ids: torch.Tensor, layers: Sequence[int], *, max_draft_tokens: int = 0,
                    logprobs: bool = False) -> ReadStates:
        """Prefill ``input_ids`` reading ``layers`` at the last prompt token;
        with ``max_draft_tokens > 0`` also draft greedily and read at the
        draft's end (one cache, one pass: collection keeps both). With
        ``logprobs`` keep the token log-probs of the prompt and the draft."""
        collector = ActivationCollector(self.structure.layers, layers)
        cache = self.new_cache()
        with collector.recording() as record:
            logits = self.forward(input_ids, cache, all_logits=logprobs)
        prompt_logprobs = first_token_max_prob = draft_logprob_mean = None
        if logprobs:
            prompt = input_ids[0].tolist()
            prompt_logprobs = token_logprobs(logits[:-1].cpu().numpy(), prompt[1:])
            logits = logits[-1]
            first_token_max_prob = float(torch.softmax(logits.cpu(), dim=-1).max())
        prompt_states, draft_states, draft, draft_logprobs = record.states(), None, [], None
        if max_draft_tokens > 0:
            rows: list[torch.Tensor] = []
            observe = (lambda token, step_logits: rows.append(step_logits)) if logprobs else None
            draft = list(self._continue(logits, cache, max_draft_tokens, DecodeStats(), observe=observe))
            if logprobs:
                draft_logprobs = token_logprobs(torch.stack(rows).cpu().numpy(), draft)
                draft_logprob_mean = float(draft_logprobs.mean())
            # The draft's last token has not been fed yet; feeding it gives
            # the state at the end of the answer.
            with collector.recording() as record:
                self.forward(torch.tensor([[draft[-1]]]), cache)
            draft_states = record.states()
        return ReadStates(prompt_states, draft_states, draft, cache, prompt_logprobs, draft_logprobs,
                          first_token_max_prob, draft_logprob_mean)

    def read(self, doubter: Doubter, input_ids: torch.Tensor, *, read_position: str = "prompt",
             max_draft_tokens: int = 64, words: Sequence[Sequence[int]] | None = None,
             pad_token_id: int = 0) -> Pass1:
        """Pass 1: prefill (and draft), read the target layers, encode (with
        the pass-1 signals the Doubter reads, if any). A Doubter that reads
        ``occluded_name_logprob`` needs ``words``, the prompt positions of each
        word of the user's question (:func:`~meta_spider.wrapper.signals.question_words`)."""
        if read_position not in ("prompt", "draft"):
            raise ValueError(f"read_position must be 'prompt' or 'draft', got {read_position!r}")
        config = doubter.config
        drafts = read_position == "draft" or config.drafts
        if drafts and max_draft_tokens < 1:
            raise ValueError(f"a draft read (or a draft signal) needs max_draft_tokens >= 1, got {max_draft_tokens!r}")
        read = self.read_states(input_ids, config.target_layers, max_draft_tokens=max_draft_tokens if drafts else 0,
                                logprobs=bool(config.signals))
        occlusion = None
        if reads_occlusion(config.signals):
            if words is None:
                raise ValueError("this Doubter reads occluded_name_logprob, which needs the user's question: give "
                                 "its words' prompt positions (words=pipe.question_words(text, question))")
            sums = self.occluded_draft_logprobs([input_ids[0].tolist()], [read.draft_ids], [words],
                                                pad_token_id=pad_token_id)
            occlusion = Occlusion(words, sums[0])
        return encode_read(doubter, read, input_ids, read_position=read_position, occlusion=occlusion)

    def read_reference(self, doubter: Doubter, input_ids: torch.Tensor, *, read_position: str = "prompt",
                       max_draft_tokens: int = 64) -> Pass1:
        """The states dynamic refresh compares against, when pass 2 injects
        cognitive tokens of an earlier read: pass 1's states at
        ``read_position`` without the pass-1 signals (its P(correct) is the
        encoder's own; nothing reads it)."""
        read = self.read_states(input_ids, doubter.config.target_layers,
                                max_draft_tokens=max_draft_tokens if read_position == "draft" else 0)
        states = read.draft_states if read_position == "draft" else read.prompt_states
        with torch.no_grad():
            encoded = doubter.encoder_output(states)
        return Pass1(input_ids=input_ids, layer_states=states, encoded=encoded, draft_ids=read.draft_ids,
                     cache=read.cache)

    # ------------------------------------------------------------ pass 2

    def prompt_cache_without_last(self, pass1: Pass1 | None, input_ids: torch.Tensor, stats: DecodeStats) -> Any:
        """A cache holding every prompt token but the last, reusing pass 1's
        when it is there (cropping it) and prefilling otherwise."""
        prompt_length = input_ids.shape[1]
        cache = pass1.cache if pass1 is not None and torch.equal(pass1.input_ids.cpu(), input_ids.cpu()) else None
        if cache is not None:
            pass1.cache = None  # a crop mutates it: one pass 2 per pass 1
            try:
                cache.crop(-(int(cache.get_seq_length()) - (prompt_length - 1)))
                stats.reused_prompt_cache = True
                stats.prompt_cache = "snapshot" if _holds_recurrent_state(cache) else "cropped"
                return cache
            except (RuntimeError, ValueError, IndexError) as exc:  # a layer kind that cannot roll back
                logger.debug("pass-1 cache not reusable (%s); prefilling again", exc)
        stats.prompt_cache = "prefilled"
        cache = self.new_cache()
        if prompt_length > 1:
            self.forward(input_ids[:, :-1], cache)
        return cache

    def stream_injected(
        self,
        doubter: Doubter,
        input_ids: torch.Tensor,
        cognitive_tokens: torch.Tensor,
        max_new_tokens: int,
        *,
        inject_positions: str = "generation",
        pass1: Pass1 | None = None,
        agc: AdaptiveGateControl | None = None,
        refresh: RefreshGate | None = None,
        stats: DecodeStats | None = None,
    ) -> Iterator[int]:
        """Pass 2: greedy decoding with ``cognitive_tokens`` injected."""
        stats = stats if stats is not None else DecodeStats()
        if inject_positions not in ("generation", "all"):
            raise ValueError(f"inject_positions must be 'generation' or 'all', got {inject_positions!r}")
        state = InjectionState(cognitive_tokens=cognitive_tokens, scale=agc.alpha(0) if agc else 1.0)
        reference = pass1.layer_states if pass1 is not None else None
        if refresh is not None and reference is None:
            raise ValueError("dynamic refresh needs pass 1's layer states (pass pass1=...)")
        doubter.buffer.store(cognitive_tokens, pass1.encoded.p_correct_logit if pass1 else None, reference)
        collector = ActivationCollector(self.structure.layers, doubter.config.target_layers)

        if inject_positions == "generation":
            cache = self.prompt_cache_without_last(pass1, input_ids, stats)
            first_input = input_ids[:, -1:]
        else:
            cache, first_input = self.new_cache(), input_ids
            if pass1 is not None:
                pass1.cache = None  # every prompt position is recomputed with injection

        # The collector (only needed for refresh) is entered first so its
        # hooks run before injection and see the state pass 1 saw.
        recording = collector.recording() if refresh is not None else nullcontext(None)
        with recording as record, injecting(self.structure.layers, doubter, state):

            def before_forward(step: int) -> None:
                if agc is not None:
                    state.scale = agc.alpha(step)
                stats.injection_scales.append(state.scale)

            def after_forward() -> None:
                if refresh is None:
                    return
                live = record.states()
                if refresh.should_refresh(live, doubter.buffer.reference_states):
                    with torch.no_grad():
                        tokens = doubter.cognitive_tokens(live)
                    doubter.buffer.refresh(tokens, live)
                    state.cognitive_tokens = tokens
                    stats.refreshes += 1

            stats.injection_scales.append(state.scale)
            logits = self.forward(first_input, cache)
            after_forward()
            yield from self._continue(logits, cache, max_new_tokens, stats, before_forward, after_forward)


def encode_read(doubter: Doubter, read: ReadStates, input_ids: torch.Tensor, *, read_position: str,
                occlusion: Occlusion | None = None) -> Pass1:
    """The :class:`Pass1` of one prompt's ``read``: the states at
    ``read_position`` and the pass-1 signals the Doubter reads (``occlusion``:
    the draft's log-probs without each question word, for a Doubter that reads
    ``occluded_name_logprob``), encoded. Shared by the batch-1 read and the
    batched one (:func:`~meta_spider.wrapper.batched.read_pass1`)."""
    config = doubter.config
    states = read.draft_states if read_position == "draft" else read.prompt_states
    signals = None
    if config.signals:
        reference = None if doubter.log_reference is None else doubter.log_reference.detach().cpu().numpy()
        signals = torch.from_numpy(signal_vector(config.signals, read.prompt_logprobs, read.draft_logprobs,
                                                 prompt_ids=input_ids[0].tolist(), log_reference=reference,
                                                 occlusion=occlusion)).float().unsqueeze(0)
    with torch.no_grad():
        encoded = doubter.encode(states, signals)
    return Pass1(input_ids=input_ids, layer_states=states, encoded=encoded, draft_ids=read.draft_ids,
                 cache=read.cache, signals=signals)
