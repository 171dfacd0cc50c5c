"""The transformers inference backend: :class:`InferenceBackend` over a
:class:`~meta_spider.wrapper.MetaSpiderPipeline` (torch; CPU or GPU; nf4,
fp4 or int8 through bitsandbytes).

Prompts are rendered with the model's own chat template through
:class:`~meta_spider.native.NativeToolPrompt`, guarded and budgeted by
:class:`~meta_spider.backends.prompt_guard.SpecialTextGuard` (content never
becomes a control token; the oldest tool results are cut to fit the model's
positions, else ``ContextFullError``); ``generate`` is greedy and
cached, stops at the end-of-turn token, at a stop string (cut off, never
streamed) or at ``max_new_tokens``; ``read`` is pass 1 and keeps its KV cache
so that the following ``generate(prompt, inject=...)`` for the same prompt
costs about one extra token. This module knows nothing about policies or
how an introspection is turned into an action.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from meta_spider.backends.base import BackendCapabilityError, Completion, Introspection
from meta_spider.backends.llamacpp.errors import ContextFullError
from meta_spider.backends.prompt_guard import GuardedPrompts, SpecialTextGuard
from meta_spider.backends.stop import DecodedText
from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline, Pass1
from meta_spider.wrapper.passes import DecodeStats

__all__ = ["TransformersBackend"]


class TransformersBackend(GuardedPrompts):
    """Greedy generation, pass-1 reads and pass-2 injection on transformers."""

    name = "transformers"

    def __init__(self, pipeline: MetaSpiderPipeline, *, dynamic_refresh: bool = False, agc: bool = False) -> None:
        self.pipeline = pipeline
        self.dynamic_refresh = dynamic_refresh
        self.agc = agc
        self._prompt_renderer: Any = None
        self._last_read: tuple[str, Pass1] | None = None
        self._guard: SpecialTextGuard | None = None

    @classmethod
    def from_settings(
        cls,
        model_name: str,
        checkpoint: str | Path | None = None,
        *,
        dynamic_refresh: bool = False,
        agc: bool = False,
        **config_fields: Any,
    ) -> "TransformersBackend":
        """Load ``model_name`` with :class:`MetaSpiderConfig` fields
        (``device``, ``dtype``, ``quantization``, ...) and attach the Doubter
        checkpoint at ``checkpoint`` if given."""
        config = MetaSpiderConfig(model_name=model_name, **config_fields)
        return cls(MetaSpiderPipeline.from_pretrained(config, doubter=checkpoint),
                   dynamic_refresh=dynamic_refresh, agc=agc)

    # ------------------------------------------------------------ prompts

    @property
    def tokenizer(self) -> Any:
        return self.pipeline.tokenizer

    @property
    def chat_template(self) -> str | None:
        template = getattr(self.tokenizer, "chat_template", None)
        if isinstance(template, dict):
            return template.get("tool_use") or template.get("default")
        return template or None

    def _new_prompt_renderer(self) -> Any:
        from meta_spider.native import NativeToolPrompt

        return NativeToolPrompt.from_tokenizer(self.tokenizer)

    def _prompt_context_length(self) -> int | None:
        return self.context_length

    @property
    def guard(self) -> SpecialTextGuard:
        """The tokenizer's special-token texts, kept out of message content."""
        if self._guard is None:
            decoder = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
            specials = [token.content for token in decoder.values() if getattr(token, "special", False)]
            self._guard = SpecialTextGuard(specials or list(getattr(self.tokenizer, "all_special_tokens", [])))
        return self._guard

    @property
    def context_length(self) -> int | None:
        """Positions the base was trained on (None when its config does not say)."""
        config = self.pipeline.model.config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        length = getattr(text_config, "max_position_embeddings", None)
        return int(length) if isinstance(length, int) and length > 0 else None

    def _encode_ids(self, prompt: str) -> list[int]:
        tokenizer = self.tokenizer
        return self.guard.encode(
            prompt,
            lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
            lambda text: tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"],
        )

    def encode(self, prompt: str) -> torch.Tensor:
        """``[1, T]`` ids of a rendered prompt (content pieces with special-token
        parsing off); raises ``ContextFullError`` when it leaves no position free."""
        ids = self._encode_ids(prompt)
        if not ids:
            raise ValueError(f"prompt {prompt[:80]!r} encodes to no tokens")
        length = self.context_length
        if length is not None and len(ids) >= length:
            raise ContextFullError(len(ids) + 1, length)
        return torch.tensor([ids], dtype=torch.long)

    # ------------------------------------------------------------ passes

    def _require_doubter(self, capability: str) -> None:
        if self.pipeline.doubter is None:
            raise BackendCapabilityError(
                self.name, capability, "attach a Doubter (settings checkpoint=<folder>, or pipeline.attach(...))"
            )

    def read(self, prompt: str, *, question: str | None = None) -> Introspection:
        """Pass 1 at ``prompt``: P(correct) and the cognitive tokens ``[N, d]``
        (``question``: the user's words, for a Doubter that reads the occlusion signal)."""
        self._require_doubter("read activations (pass 1)")
        words = self.question_words(prompt, question, self.pipeline.doubter.config.signals)
        pass1 = self.pipeline.read_ids(self.encode(prompt), words=words)
        self._last_read = (prompt, pass1)
        extras: dict[str, Any] = {"layer_states": pass1.layer_states[0]}
        if pass1.signals is not None:
            extras["signals"] = dict(zip(self.pipeline.doubter.config.signals, pass1.signals[0].tolist()))
        if pass1.encoded.probe_logits is not None:
            extras["probe_logits"] = pass1.encoded.probe_logits[0].detach().tolist()
        if pass1.draft_ids:
            extras["draft_text"] = self.pipeline.decode(pass1.draft_ids)
        return Introspection(p_correct=pass1.p_correct, cognitive_tokens=pass1.encoded.cognitive_tokens[0].detach(),
                             extras=extras, calibration=self.pipeline.doubter.calibration)

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        inject: Introspection | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        """Greedy completion of the rendered ``prompt``; with ``inject`` the
        cognitive tokens are injected (pass 2)."""
        input_ids = self.encode(prompt)
        length = self.context_length
        if length is not None:  # past the trained positions a model only produces noise
            max_new_tokens = min(max_new_tokens, length - input_ids.shape[1])
        pass1, tokens = None, None
        if inject is not None:
            self._require_doubter("inject cognitive tokens (pass 2)")
            tokens = torch.as_tensor(inject.cognitive_tokens)
            if self._last_read is not None and self._last_read[0] == prompt:
                pass1 = self._last_read[1]
        self._last_read = None
        stats = DecodeStats()
        stream = self.pipeline.stream_ids(
            input_ids, max_new_tokens=max_new_tokens, pass1=pass1, cognitive_tokens=tokens,
            inject=inject is not None, dynamic_refresh=self.dynamic_refresh and inject is not None,
            agc=self.agc, stats=stats,
        )
        decoded = DecodedText(stop, on_text)
        eos = self.pipeline.decoder.eos_token_ids
        token_ids: list[int] = []
        finish = "length"
        with closing(stream):
            for token in stream:
                if token in eos:
                    finish = "eos"
                    break
                token_ids.append(token)
                # Special tokens stay in the text: native tool-call markers
                # are special in several templates.
                if decoded.update(self.tokenizer.decode(token_ids, skip_special_tokens=False)):
                    finish = "stop"
                    break
        return Completion(text=decoded.finish(), finish_reason=finish, num_tokens=len(token_ids) + (finish == "eos"))
