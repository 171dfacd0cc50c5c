"""MetaSpiderPipeline: a frozen base, its tokenizer and attached Doubters.

``from_pretrained`` loads and freezes a base (hub id or local folder);
``attach`` / ``detach`` / ``detach_all`` manage Doubters (attaching never
touches the base: hooks exist only inside a generation or training call, so
detaching restores the base exactly); ``generate`` renders a prompt with the
tokenizer's chat template and runs the two passes (``answer_ids`` on ids;
``generate_batch`` and ``answer_batch`` on several prompts as batches),
under the optional :class:`~meta_spider.wrapper.gates.AnswerGate` set as
``pipe.answer_gate``; ``read_states`` collects last-token states for
batches, ``collect_states_ids`` both read positions, the draft and its
log-probs for activation datasets (:mod:`reads`, batched pass 1 in
:mod:`batched`); ``training_forward`` is the teacher-forced forward the trainer
backpropagates through. The token-level work lives in :mod:`passes` and
:mod:`training`; this module owns text and bookkeeping.
"""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, Union

import torch
from jinja2 import TemplateError
from torch import nn

from meta_spider.wrapper.batched import decode_injected, read_pass1
from meta_spider.wrapper.config import DoubterConfig, MetaSpiderConfig
from meta_spider.wrapper.doubter import Doubter, base_fingerprint
from meta_spider.wrapper.errors import DoubterNotAttachedError, NoDoubterError
from meta_spider.wrapper.gates import AdaptiveGateControl, AnswerGate, RefreshGate
from meta_spider.wrapper.layers import discover_decoder
from meta_spider.wrapper.loading import freeze, load_base
from meta_spider.wrapper.passes import DecodeStats, Pass1, TwoPassDecoder
from meta_spider.wrapper.reads import CollectionReads
from meta_spider.wrapper.signals import generation_tails, last_user_text, question_words, reads_occlusion
from meta_spider.wrapper.training import TrainingOutput, make_batch, teacher_forced_forward

logger = logging.getLogger(__name__)

PromptLike = Union[str, Sequence[Mapping[str, Any]]]
"""A user message as a string, or a list of chat messages."""

DECISIONS = ("base", "pass2", "gate_refused", "base_answer")
"""Where a :class:`GenerationResult`'s text came from: ``base`` (no Doubter
attached), ``pass2`` (pass 2 wrote it), ``gate_refused`` (P(correct) below the
answer gate's threshold: its refusal, pass 2 not run), ``base_answer``
(P(correct) at or above the threshold but pass 2 refused: the base's own
greedy answer)."""


@dataclass
class GenerationResult:
    """One answer with the Doubter's view of it."""

    text: str
    token_ids: list[int]
    finish_reason: str
    """``"eos"``, ``"length"``, or ``"gate"`` (the answer gate's refusal)."""
    p_correct: float | None = None
    cognitive_tokens: torch.Tensor | None = None
    """``[N, d]`` the tokens pass 2 started with."""
    refreshes: int = 0
    draft_text: str | None = None
    reused_prompt_cache: bool = False
    prompt_cache: str | None = None
    """How pass 2 started: ``"cropped"``, ``"snapshot"`` (recurrent state
    restored), ``"prefilled"``, or None (see :class:`DecodeStats`)."""
    decision: str = "pass2"
    """One of :data:`DECISIONS`."""


def _eos_ids(model: nn.Module, tokenizer: Any) -> list[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)]


class MetaSpiderPipeline(CollectionReads):
    """A frozen causal LM with a feedback channel into its own activations."""

    def __init__(self, model: nn.Module, tokenizer: Any, config: MetaSpiderConfig | None = None,
                 *, model_id: str | None = None) -> None:
        self.model = freeze(model)
        self.tokenizer = tokenizer
        self.config = config if config is not None else MetaSpiderConfig()
        self.structure = discover_decoder(model)
        self.config.resolve(self.structure.num_layers)  # out-of-range layers fail here, not later
        self.model_id = model_id or self.config.model_name or str(getattr(model.config, "_name_or_path", ""))
        self.decoder = TwoPassDecoder(model, self.structure, _eos_ids(model, tokenizer))
        self._doubters: dict[str, Doubter] = {}
        self._active: str | None = None
        self.answer_gate: AnswerGate | None = None
        """When set, generation answers only at P(correct) >= its threshold
        (see :class:`~meta_spider.wrapper.gates.AnswerGate`); attaching a
        calibrated Doubter sets it from the Doubter's calibration."""
        self._gate_of: Doubter | None = None
        self._generation_tails: tuple[Any, tuple[str, ...]] | None = None  # (the template they were found for, tails)

    @classmethod
    def from_pretrained(cls, config: MetaSpiderConfig, doubter: "Doubter | str | Path | None" = None) -> "MetaSpiderPipeline":
        """Load ``config.model_name`` (hub id or local folder), frozen and in
        eval mode; attach ``doubter`` (object or checkpoint path) if given."""
        model, tokenizer = load_base(config)
        pipeline = cls(model, tokenizer, config)
        if doubter is not None:
            pipeline.attach(doubter)
        return pipeline

    # ------------------------------------------------------------ identity

    @property
    def hidden_size(self) -> int:
        return self.structure.hidden_size

    @property
    def num_layers(self) -> int:
        return self.structure.num_layers

    @property
    def vocab_size(self) -> int | None:
        """Rows of the base's LM head (the logits' width); None when unknown."""
        head = self.model.get_output_embeddings()
        size = head.weight.shape[0] if head is not None else getattr(self.model.config, "vocab_size", None)
        return None if size is None else int(size)

    @property
    def device(self) -> torch.device:
        return self.decoder.device

    def fingerprint(self) -> dict[str, Any]:
        return base_fingerprint(self.model_id, self.hidden_size, self.num_layers)

    def base_num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # ------------------------------------------------------------ doubters

    def new_doubter(self, **overrides: Any) -> Doubter:
        """A fresh Doubter sized for this base from the pipeline config
        (``overrides`` go to :class:`DoubterConfig`); not attached."""
        config = DoubterConfig.for_base(self.hidden_size, self.num_layers, self.config, **overrides)
        return Doubter(config, model_id=self.model_id)

    def attach(self, doubter: "Doubter | str | Path", name: str = "default") -> Doubter:
        """Attach (and activate) a Doubter or a checkpoint path. An unsized
        Doubter (``Doubter(DoubterConfig(encoder_type=...))``) is sized from
        this base first, as :meth:`new_doubter` would build it. Raises
        :class:`FingerprintMismatchError` when it was built for another base
        (:class:`ReferenceVocabularyError` when its PMI reference covers
        another vocabulary)."""
        if not isinstance(doubter, Doubter):
            doubter = Doubter.from_checkpoint(doubter)
        doubter.size_for(self.hidden_size, self.num_layers, self.config, model_id=self.model_id)
        doubter.check_fits(self.fingerprint())
        if self.vocab_size is not None:
            doubter.check_vocabulary(self.vocab_size)
        self._doubters[name] = doubter.to(self.device)
        self._active = name
        if doubter.calibration is not None:
            # The threshold `metaloom eval` calibrated travels with the checkpoint.
            self.answer_gate = AnswerGate.from_calibration(doubter.calibration)
            self._gate_of = doubter
        return doubter

    def detach(self, doubter: "Doubter | str | None" = None) -> Doubter:
        """Remove a Doubter (the object itself, its name, or by default the
        active one) and return it; the base then runs as if it had never
        been wrapped. Raises :class:`DoubterNotAttachedError` when that
        Doubter is not attached."""
        if isinstance(doubter, Doubter):
            name = next((key for key, value in self._doubters.items() if value is doubter), None)
            if name is None:
                raise DoubterNotAttachedError(f"a {doubter.config.encoder_type} Doubter object", list(self._doubters))
        else:
            name = self._active if doubter is None else doubter
            if name is None or name not in self._doubters:
                raise DoubterNotAttachedError(repr(name) if name is not None else "the active Doubter",
                                              list(self._doubters))
        removed = self._doubters.pop(name)
        if name == self._active:
            self._active = next(reversed(self._doubters), None)
        if self._gate_of is removed:  # its calibrated gate goes with it
            self.answer_gate, self._gate_of = None, None
        return removed

    def detach_all(self) -> None:
        self._doubters.clear()
        self._active = None
        if self._gate_of is not None:
            self.answer_gate, self._gate_of = None, None

    @property
    def doubter(self) -> Doubter | None:
        """The active Doubter (None when the base is bare)."""
        return self._doubters.get(self._active) if self._active is not None else None

    def _require_doubter(self, operation: str) -> Doubter:
        if self.doubter is None:
            raise NoDoubterError(operation)
        return self.doubter

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Exactly the active Doubter's parameters (walked, not name-matched)."""
        return list(self._require_doubter("trainable_parameters").parameters())

    # ------------------------------------------------------------ text

    def render(self, prompt: PromptLike) -> str:
        """Prompt text through the chat template (a string is one user
        message); without a template a string is used as is."""
        if isinstance(prompt, str):
            if not getattr(self.tokenizer, "chat_template", None):
                return prompt
            prompt = [{"role": "user", "content": prompt}]
        return self.tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)

    def encode(self, text: str) -> torch.Tensor:
        """``[1, T]`` ids of already rendered text (the template carries its
        own special tokens, so none are added)."""
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        if ids.shape[1] == 0:
            raise ValueError(f"prompt {text!r} encodes to no tokens")
        return ids

    @property
    def pad_token_id(self) -> int:
        """The id batches are padded with (the tokenizer's, else 0)."""
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    # ------------------------------------------------------------ passes

    def question_words(self, text: str, question: str) -> list[tuple[int, ...]]:
        """The prompt positions of each word of ``question`` in the rendered
        prompt ``text``, looked for before the text the chat template writes
        after the last user turn (what a Doubter reading
        ``occluded_name_logprob`` needs,
        :func:`~meta_spider.wrapper.signals.question_words`)."""
        return question_words(lambda prefix: self.tokenizer(prefix, add_special_tokens=False)["input_ids"], text,
                              question, tails=self.generation_tails())

    def generation_tails(self) -> tuple[str, ...]:
        """What the chat template writes after the content of a last user
        turn (end of turn, generation header), with ``enable_thinking``
        unset, off and on (:func:`~meta_spider.wrapper.signals.generation_tails`);
        none without a template or when it cannot render one user turn
        alone. Found again when the tokenizer's template changes."""
        template = getattr(self.tokenizer, "chat_template", None)
        if self._generation_tails is None or self._generation_tails[0] != template:
            tails: tuple[str, ...] = ()
            if template:
                def render(messages: list[dict[str, str]], thinking: bool | None) -> str:
                    switches = {} if thinking is None else {"enable_thinking": thinking}
                    return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                              **switches)

                try:
                    tails = generation_tails(render)
                except (ValueError, TemplateError) as error:  # a template that refuses one user turn alone
                    logger.debug("generation tail not rendered (%s)", error)
            self._generation_tails = (template, tails)
        return self._generation_tails[1]

    def read_ids(self, input_ids: torch.Tensor, *, max_draft_tokens: int = 64,
                 words: Sequence[Sequence[int]] | None = None) -> Pass1:
        """Pass 1 on ids with the active Doubter (config's read position);
        ``words``: the question's words (:meth:`question_words`), needed by a
        Doubter that reads ``occluded_name_logprob``."""
        doubter = self._require_doubter("read")
        return self.decoder.read(doubter, input_ids, read_position=doubter.config.read_position,
                                 max_draft_tokens=max_draft_tokens, words=words, pad_token_id=self.pad_token_id)

    def stream_ids(
        self,
        input_ids: torch.Tensor,
        *,
        max_new_tokens: int = 64,
        pass1: Pass1 | None = None,
        cognitive_tokens: torch.Tensor | None = None,
        inject: bool = True,
        dynamic_refresh: bool = False,
        agc: "AdaptiveGateControl | bool | None" = None,
        stats: DecodeStats | None = None,
        words: Sequence[Sequence[int]] | None = None,
    ) -> Iterator[int]:
        """Greedy token stream. Plain base decoding when no Doubter is
        attached or ``inject=False``; otherwise pass 2 with ``cognitive_tokens``
        (default: those of ``pass1``, which is run here when missing). Close
        the stream (``contextlib.closing``) if you stop early: that removes
        the hooks at once instead of at garbage collection."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens!r}")
        doubter = self.doubter
        if doubter is None or not inject:
            yield from self.decoder.stream_plain(input_ids, max_new_tokens, stats)
            return
        if pass1 is None and cognitive_tokens is None:
            pass1 = self.read_ids(input_ids, max_draft_tokens=max_new_tokens, words=words)
        elif pass1 is None and dynamic_refresh:  # only the states refresh compares against: no signals to compute
            pass1 = self.decoder.read_reference(doubter, input_ids, read_position=doubter.config.read_position,
                                                max_draft_tokens=max_new_tokens)
        tokens = cognitive_tokens if cognitive_tokens is not None else pass1.encoded.cognitive_tokens
        if tokens.dim() == 2:
            tokens = tokens.unsqueeze(0)
        if agc is True:
            agc = AdaptiveGateControl(doubter.config.agc_floor, doubter.config.agc_tau)
        refresh = RefreshGate(doubter.config.refresh_threshold) if dynamic_refresh else None
        yield from self.decoder.stream_injected(
            doubter, input_ids, tokens, max_new_tokens,
            inject_positions=doubter.config.inject_positions, pass1=pass1,
            agc=agc or None, refresh=refresh, stats=stats,
        )

    def generate(
        self,
        prompt: PromptLike,
        *,
        max_new_tokens: int = 64,
        dynamic_refresh: bool = False,
        agc: "AdaptiveGateControl | bool | None" = None,
        return_result: bool = False,
    ) -> "str | GenerationResult":
        """Answer ``prompt`` (rendered with the chat template): two passes
        when a Doubter is attached, the plain base otherwise, under
        ``self.answer_gate`` when one is set. Returns the text, or a
        :class:`GenerationResult` with ``return_result=True``."""
        text = self.render(prompt)
        result = self.answer_ids(self.encode(text), max_new_tokens=max_new_tokens, dynamic_refresh=dynamic_refresh,
                                 agc=agc, words=self._words(text, prompt))
        return result if return_result else result.text

    def generate_batch(
        self,
        prompts: Sequence[PromptLike],
        *,
        max_new_tokens: int = 64,
        return_result: bool = False,
    ) -> "list[str] | list[GenerationResult]":
        """:meth:`generate` for several prompts at once, both passes as
        left-padded batches (:meth:`answer_batch`): the same answers up to
        float rounding, in less time. No AGC or dynamic refresh here."""
        texts = [self.render(prompt) for prompt in prompts]
        words = [self._words(text, prompt) for text, prompt in zip(texts, prompts)]
        results = self.answer_batch([self.encode(text) for text in texts], max_new_tokens=max_new_tokens,
                                    words=None if None in words else words)
        return results if return_result else [result.text for result in results]

    def _words(self, text: str, prompt: PromptLike) -> list[tuple[int, ...]] | None:
        """The user's question words in the rendered ``text`` when the active
        Doubter reads the occlusion signal, else None."""
        if self.doubter is None or not reads_occlusion(self.doubter.config.signals):
            return None
        return self.question_words(text, last_user_text(prompt))

    def answer_ids(
        self,
        input_ids: torch.Tensor,
        *,
        max_new_tokens: int = 64,
        dynamic_refresh: bool = False,
        agc: "AdaptiveGateControl | bool | None" = None,
        words: Sequence[Sequence[int]] | None = None,
    ) -> GenerationResult:
        """What :meth:`generate` does, on ``[1, T]`` prompt ids: pass 1, then
        pass 2 unless the answer gate refuses (``result.decision`` says which
        path the text took); ``words`` as :meth:`read_ids` takes them."""
        if self.doubter is None:
            stats = DecodeStats()
            with closing(self.stream_ids(input_ids, max_new_tokens=max_new_tokens, stats=stats)) as stream:
                token_ids = list(stream)
            return GenerationResult(text=self.decode(token_ids), token_ids=token_ids,
                                    finish_reason=stats.finish_reason, decision="base")
        pass1 = self.read_ids(input_ids, max_draft_tokens=max_new_tokens, words=words)
        refused = self._gate_refusal(pass1)
        if refused is not None:
            return refused
        stats = DecodeStats()
        with closing(self.stream_ids(input_ids, max_new_tokens=max_new_tokens, pass1=pass1,
                                     dynamic_refresh=dynamic_refresh, agc=agc, stats=stats)) as stream:
            token_ids = list(stream)
        return self._pass2_result(input_ids, pass1, token_ids, stats, max_new_tokens)

    def answer_batch(
        self,
        prompts: Sequence[torch.Tensor],
        *,
        max_new_tokens: int = 64,
        words: Sequence[Sequence[Sequence[int]]] | None = None,
    ) -> list[GenerationResult]:
        """:meth:`answer_ids` for several ``[1, T]`` prompts as left-padded
        batches: pass 1 read together (:func:`~meta_spider.wrapper.batched.read_pass1`,
        as a batched collection reads), then pass 2 of every prompt the gate
        answers decoded together (:func:`~meta_spider.wrapper.batched.decode_injected`,
        the cache prefilled again). Faster; the states, signals and logits
        equal the batch-1 path's up to float rounding, so a P(correct) at the
        gate's threshold or a token at a near tie may come out the other way.
        One prompt, no Doubter, or a prompt of one token takes
        :meth:`answer_ids` itself. ``words[i]``: prompt i's question words."""
        if not prompts:
            raise ValueError("prompts is empty: give at least one prompt")
        if words is not None and len(words) != len(prompts):
            raise ValueError(f"give one words entry per prompt: {len(prompts)} prompts, {len(words)} words")
        doubter = self.doubter
        if doubter is None or len(prompts) == 1 or min(ids.shape[1] for ids in prompts) < 2:
            return [self.answer_ids(ids, max_new_tokens=max_new_tokens, words=None if words is None else words[i])
                    for i, ids in enumerate(prompts)]
        reads = read_pass1(self.decoder, doubter, [ids[0] for ids in prompts],
                           read_position=doubter.config.read_position, max_draft_tokens=max_new_tokens,
                           pad_token_id=self.pad_token_id, words=words)
        refusals = [self._gate_refusal(pass1) for pass1 in reads]
        answered = [i for i, refusal in enumerate(refusals) if refusal is None]
        passed: dict[int, GenerationResult] = {}
        if answered:
            decoded = decode_injected(self.decoder, doubter, [prompts[i][0] for i in answered],
                                      torch.cat([reads[i].encoded.cognitive_tokens for i in answered]),
                                      max_new_tokens=max_new_tokens, pad_token_id=self.pad_token_id,
                                      inject_positions=doubter.config.inject_positions)
            for i, (token_ids, finish_reason) in zip(answered, decoded):
                stats = DecodeStats(finish_reason=finish_reason, prompt_cache="prefilled")
                passed[i] = self._pass2_result(prompts[i], reads[i], token_ids, stats, max_new_tokens)
        return [refusal if refusal is not None else passed[i] for i, refusal in enumerate(refusals)]

    def _pass1_view(self, pass1: Pass1) -> dict[str, Any]:
        """What every result says of pass 1."""
        return dict(p_correct=pass1.p_correct, cognitive_tokens=pass1.encoded.cognitive_tokens[0].detach(),
                    draft_text=self.decode(pass1.draft_ids) if pass1.draft_ids else None)

    def _gate_refusal(self, pass1: Pass1) -> GenerationResult | None:
        """The answer gate's refusal when P(correct) is below its threshold, else None."""
        gate = self.answer_gate
        if gate is None or gate.answers(pass1.p_correct):
            return None
        token_ids = self.tokenizer(gate.refusal, add_special_tokens=False)["input_ids"]
        return GenerationResult(text=gate.refusal, token_ids=list(token_ids), finish_reason="gate",
                                decision="gate_refused", **self._pass1_view(pass1))

    def _pass2_result(self, input_ids: torch.Tensor, pass1: Pass1, token_ids: list[int], stats: DecodeStats,
                      max_new_tokens: int) -> GenerationResult:
        """Pass 2's tokens as the answer, or, where the gate answered and pass
        2 still wrote a refusal, the base's own answer: the Doubter vouched for it."""
        gate = self.answer_gate
        text, decision = self.decode(token_ids), "pass2"
        if gate is not None and gate.is_refusal(text):
            stats = DecodeStats()
            if pass1.draft_ids:  # pass 1 drafted (a draft read or draft signals): that is the base's answer
                token_ids = list(pass1.draft_ids)
                stats.finish_reason = "eos" if token_ids[-1] in self.decoder.eos_token_ids else "length"
            else:
                with closing(self.stream_ids(input_ids, max_new_tokens=max_new_tokens, inject=False,
                                             stats=stats)) as stream:
                    token_ids = list(stream)
            text, decision = self.decode(token_ids), "base_answer"
        return GenerationResult(
            text=text, token_ids=token_ids, finish_reason=stats.finish_reason, refreshes=stats.refreshes,
            reused_prompt_cache=stats.reused_prompt_cache, prompt_cache=stats.prompt_cache, decision=decision,
            **self._pass1_view(pass1),
        )

    def training_forward(
        self,
        prompt_ids: Sequence[Sequence[int]],
        target_ids: Sequence[Sequence[int]],
        *,
        layer_states: torch.Tensor | None = None,
        correct: "Sequence[bool] | torch.Tensor | None" = None,
        probe_weight: float = 1.0,
        return_logits: bool = False,
    ) -> TrainingOutput:
        """Teacher-forced forward of ``prompt + target`` with injection (see
        :mod:`meta_spider.wrapper.training`); ``layer_states`` (``[B, L, d]``,
        e.g. from a collected dataset) replaces pass 1; ``correct`` labels add
        the P(correct) probe loss."""
        doubter = self._require_doubter("training_forward")
        batch = make_batch(prompt_ids, target_ids, self.pad_token_id)
        return teacher_forced_forward(
            self.model, self.structure, doubter, batch, layer_states=layer_states,
            gradient_checkpointing=self.config.gradient_checkpointing, return_logits=return_logits,
            correct=None if correct is None else torch.as_tensor(correct, dtype=torch.float32),
            probe_weight=probe_weight,
        )
