"""The llama.cpp inference backend: :class:`InferenceBackend` on stock
llama-cpp-python with the Doubter evaluated in numpy from its GGUF sidecar.

Pass 1 (``read``) prefills the prompt through
:class:`~meta_spider.backends.llamacpp.hooks.HookedLlamaContext`, reading the
sidecar's target layers at the last prompt token (or, when the sidecar's
config says ``read_position="draft"``, drafting greedily and reading at the
draft's end), and encodes the states with
:class:`~meta_spider.backends.llamacpp.numpy_doubter.NumpyDoubter`. Pass 2
(``generate(..., inject=...)``) keeps every prompt token's KV entries but the
last, re-decodes that token with the cross-attention delta added after each
cross-attention layer, and keeps injecting while it decodes greedily (with
``inject_positions="all"`` the whole prompt is re-prefilled with injection).
AGC scales the delta per generated token; dynamic refresh re-encodes the
tokens when the live states drift, as the transformers backend does.
Prompts are rendered from the GGUF's own chat template (jinja2, through
:class:`~meta_spider.native.NativeToolPrompt`); generation is greedy and
stops at an end-of-generation token, a stop string (cut off, never streamed)
or ``max_new_tokens``.

Importing this module imports neither torch nor llama_cpp; building a
backend loads llama_cpp, never torch. It knows nothing about policies.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from meta_spider.backends.base import BackendCapabilityError, Completion, Introspection
from meta_spider.backends.llamacpp.eval_filter import NativeDelta
from meta_spider.backends.llamacpp.errors import ContextFullError, GGUFModelError
from meta_spider.backends.llamacpp.hooks import HookedContextConfig, HookedLlamaContext
from meta_spider.backends.llamacpp.numpy_doubter import LAYER_NORM_EPS, NumpyDoubter
from meta_spider.backends.llamacpp.sidecar_format import (
    SidecarContents,
    base_gguf_fingerprint,
    check_sidecar_fits,
    read_sidecar,
)
from meta_spider.backends.prompt_guard import GuardedPrompts, SpecialTextGuard, gguf_control_tokens
from meta_spider.backends.stop import DecodedText
from meta_spider.wrapper.signals import Occlusion, reads_prompt, signal_vector, token_logprobs, without_word

__all__ = ["KV_CACHE_TYPES", "LlamaCppBackend"]

logger = logging.getLogger(__name__)

KV_CACHE_TYPES = {"f32": 0, "f16": 1}
"""KV-cache element types by name (ggml type ids). f16 is llama.cpp's default; f32 for tight comparisons."""


class _Injection:
    """The per-layer injection callables of one pass 2: tokens, their K/V per layer, the AGC scale."""

    def __init__(self, doubter: NumpyDoubter, cognitive_tokens: np.ndarray) -> None:
        self.doubter = doubter
        self.scale = 1.0
        self.set_tokens(cognitive_tokens)

    def set_tokens(self, cognitive_tokens: np.ndarray) -> None:
        self.cognitive_tokens = np.asarray(cognitive_tokens, dtype=np.float32)
        # Everything that depends on the tokens only is folded once per token set, not once per token.
        self.folded = {layer: self.doubter.fold_cross_attention(layer, self.cognitive_tokens)
                       for layer in self.doubter.cross_attn_layers}
        self._callables = {layer: self._make(layer) for layer in self.doubter.cross_attn_layers}

    def _make(self, layer: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        folded = self.folded[layer]
        native: list[NativeDelta] = []

        def delta(rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
            change = folded(rows)
            return change if self.scale == 1.0 else change * np.float32(self.scale)

        def native_delta() -> NativeDelta:
            # The same delta for the compiled eval filter, which adds it to a generated token's row in C.
            if not native:
                native.append(NativeDelta(folded.score_weight, folded.score_bias, folded.out_weight,
                                          folded.num_heads, eps=LAYER_NORM_EPS))
            native[0].set_scale(self.scale)
            return native[0]

        delta.native_delta = native_delta  # type: ignore[attr-defined]
        return delta

    def callables(self) -> dict[int, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
        return self._callables


class LlamaCppBackend(GuardedPrompts):
    """Greedy generation, pass-1 reads and pass-2 injection on a GGUF base with llama.cpp."""

    name = "llamacpp"

    def __init__(self, context: HookedLlamaContext, doubter: NumpyDoubter | None = None, *,
                 dynamic_refresh: bool = False, agc: bool = False, max_draft_tokens: int = 64,
                 ignore_eos: bool = False) -> None:
        if max_draft_tokens < 1:
            raise ValueError(f"max_draft_tokens must be >= 1, got {max_draft_tokens!r}")
        self.context = context
        self.doubter = doubter
        self.dynamic_refresh = dynamic_refresh
        self.agc = agc
        self.max_draft_tokens = max_draft_tokens
        self.ignore_eos = ignore_eos
        self.model_path = context.path
        from meta_spider.native.gguf_template import read_gguf_chat_template

        self._chat_template = read_gguf_chat_template(self.model_path)[0]
        self._prompt_renderer: Any = None
        self._guard: SpecialTextGuard | None = None
        self._last_read: tuple[str, np.ndarray] | None = None
        self.last_refreshes = 0
        """Dynamic refreshes during the latest pass 2."""
        self.last_injection_scales: list[float] = []
        """The injection scale of every forward of the latest pass 2 (the AGC trace)."""

    @classmethod
    def from_settings(
        cls,
        model_path: str | os.PathLike[str],
        sidecar_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
        kv_cache_type: str = "f16",
        flash_attn: bool = False,
        dynamic_refresh: bool = False,
        agc: bool = False,
        max_draft_tokens: int = 64,
        ignore_eos: bool = False,
        verbose: bool = False,
    ) -> "LlamaCppBackend":
        """Open the base GGUF ``model_path`` and, if given, the Doubter sidecar ``sidecar_path``.

        The sidecar is checked against the base before llama.cpp loads it:
        :class:`~meta_spider.backends.llamacpp.sidecar_format.SidecarBaseMismatchError`
        (or ``SidecarLayerRangeError``) names both files. A missing or
        unreadable base raises :class:`~meta_spider.backends.llamacpp.errors.GGUFModelError`.
        """
        if kv_cache_type not in KV_CACHE_TYPES:
            raise ValueError(f"kv_cache_type must be one of {sorted(KV_CACHE_TYPES)}, got {kv_cache_type!r}")
        if model_path is None or not str(model_path):
            raise GGUFModelError(Path(str(model_path)), "no base model path was given",
                                 "set backends.llamacpp.model_path in run.json (`metadeploy export --run-dir RUN` "
                                 "records it) or pass model_path=")
        model_path = Path(model_path)
        if not model_path.is_file():
            raise GGUFModelError(model_path, "no such file (the base GGUF is missing)",
                                 "set backends.llamacpp.model_path in run.json to an existing base GGUF, or run "
                                 "`metadeploy export --run-dir RUN` to write one")
        contents: SidecarContents | None = read_sidecar(sidecar_path) if sidecar_path is not None else None
        base: dict[str, Any] | None = None
        if contents is not None:
            base = check_sidecar_fits(contents, model_path)
        else:
            base_gguf_fingerprint(model_path)  # a corrupt base fails here with a typed error
        kv = KV_CACHE_TYPES[kv_cache_type]
        config = HookedContextConfig(n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads, n_gpu_layers=n_gpu_layers,
                                     type_k=kv, type_v=kv, flash_attn=flash_attn, verbose=verbose)
        context = HookedLlamaContext(model_path, config)
        doubter = None
        if contents is not None:
            try:
                # llama.cpp's own view of the graph is authoritative (a GGUF's metadata could lie).
                check_sidecar_fits(contents, model_path, {**base, "hidden_size": context.n_embd,
                                                          "num_layers": context.n_layer})
            except BaseException:
                context.close()
                raise
            doubter = NumpyDoubter.from_sidecar(contents)
        return cls(context, doubter, dynamic_refresh=dynamic_refresh, agc=agc, max_draft_tokens=max_draft_tokens,
                   ignore_eos=ignore_eos)

    def close(self) -> None:
        """Free the llama.cpp context and model."""
        self.context.close()

    # ------------------------------------------------------------ prompts

    @property
    def chat_template(self) -> str | None:
        return self._chat_template or None

    def _new_prompt_renderer(self) -> Any:
        from meta_spider.native import NativeToolPrompt

        return NativeToolPrompt.from_gguf(self.model_path)

    def _prompt_context_length(self) -> int:
        # As on transformers: the oldest tool results are cut before the prompt outgrows the context.
        return self.context.n_ctx

    @property
    def guard(self) -> SpecialTextGuard:
        """The GGUF's control-token texts, kept out of message content."""
        if self._guard is None:
            self._guard = SpecialTextGuard(gguf_control_tokens(self.model_path))
        return self._guard

    def _encode_ids(self, text: str) -> list[int]:
        return self.guard.encode(
            text,
            lambda piece: self.context.tokenize(piece, add_special=False, parse_special=True),
            lambda piece: self.context.tokenize(piece, add_special=False, parse_special=False),
        )

    def encode(self, text: str) -> list[int]:
        """Token ids of already rendered text: the template's special-token markup is parsed,
        content pieces are not, no bos is added (the template carries its own special tokens,
        as in the transformers backend). Raises ``ContextFullError`` when no position is left."""
        ids = self._encode_ids(text)
        if not ids:
            raise ValueError(f"prompt {text[:80]!r} encodes to no tokens")
        if len(ids) >= self.context.n_ctx:
            raise ContextFullError(len(ids) + 1, self.context.n_ctx)
        return ids

    def _text(self, token_ids: Sequence[int], *, special: bool = True) -> str:
        return self.context.detokenize(token_ids, special=special).decode("utf-8", errors="replace")

    def _is_end(self, token: int) -> bool:
        return not self.ignore_eos and self.context.is_end_of_generation(token)

    # ------------------------------------------------------------ passes

    def _require_doubter(self, capability: str) -> NumpyDoubter:
        if self.doubter is None:
            raise BackendCapabilityError(
                self.name, capability, "load a Doubter sidecar (settings sidecar_path=<doubter_sidecar.gguf>, "
                "written by `metadeploy export --run-dir RUN`)")
        return self.doubter

    def _states(self, hidden: dict[int, np.ndarray], layers: Sequence[int]) -> np.ndarray:
        return np.stack([hidden[layer][-1] for layer in layers])

    def read_states(self, input_ids: Sequence[int]) -> tuple[np.ndarray, list[int]]:
        """Pass 1 on ids: ``(states [L, d] at the configured read position, draft ids)``; the KV cache keeps
        the prompt (and draft) for pass 2."""
        states, draft, _ = self._pass1(input_ids, signals=False)
        return states, draft

    def _pass1(self, input_ids: Sequence[int], words: Sequence[Sequence[int]] | None = None, *,
               signals: bool = True) -> tuple[np.ndarray, list[int], np.ndarray | None]:
        """Pass 1 on ids: states at the read position, the draft (when the Doubter drafts) and the pass-1
        signals the Doubter reads (None when it reads none or ``signals`` is off), computed as the torch
        pipeline does; ``words``: the prompt positions of the question's words, for the occlusion signal."""
        doubter = self._require_doubter("read activations (pass 1)")
        layers = doubter.target_layers
        prompt_signals = reads_prompt(doubter.signals)
        options: dict[str, Any] = {"output_positions": range(len(input_ids))} if prompt_signals else {}
        out = self.context.prefill(input_ids, read_layers=layers, **options)
        prompt_logprobs = token_logprobs(out.logits[:-1], list(input_ids)[1:]) if prompt_signals else None
        states = self._states(out.hidden, layers)
        draft: list[int] = []
        draft_logprobs: list[float] = []
        if doubter.drafts:
            logits = out.logits[-1]
            for step in range(self.max_draft_tokens):
                token = int(np.argmax(logits))
                draft.append(token)
                draft_logprobs.append(float(token_logprobs(logits[None, :], [token])[0]))
                full = self.context.n_past + 1 >= self.context.n_ctx  # leave room to feed the last draft token
                if self._is_end(token) or step == self.max_draft_tokens - 1 or full:
                    break
                logits = self.context.decode([token]).logits[-1]
            if doubter.read_position == "draft":
                # The draft's last token has not been fed yet; feeding it gives the state at the end of the answer.
                states = self._states(self.context.decode([draft[-1]], read_layers=layers).hidden, layers)
        if not (signals and doubter.signals):
            return states, draft, None
        occlusion = None
        if words is not None and draft:
            occlusion = Occlusion(words, self._occluded_draft_logprobs(input_ids, draft, words))
        values = signal_vector(doubter.signals, prompt_logprobs, np.asarray(draft_logprobs) if draft else None,
                               prompt_ids=list(input_ids), log_reference=doubter.log_reference, occlusion=occlusion)
        return states, draft, values

    def _occluded_draft_logprobs(self, input_ids: Sequence[int], draft: Sequence[int],
                                 words: Sequence[Sequence[int]]) -> tuple[float, ...]:
        """Per word, the draft's summed log-prob given the prompt without that word (the occlusion
        signal's forwards). Each shares the prompt up to the word with the one before, which the KV
        cache keeps; pass 2 decodes again from where its prompt differs from the last of them."""
        sums = []
        for positions in words:
            rest = without_word(input_ids, positions)
            out = self.context.prefill(rest + list(draft), output_positions=range(len(rest) - 1,
                                                                                  len(rest) + len(draft) - 1))
            sums.append(float(token_logprobs(out.logits, list(draft)).sum()))
        return tuple(sums)

    def read(self, prompt: str, *, question: str | None = None) -> Introspection:
        """Pass 1 at ``prompt``: P(correct) and the cognitive tokens ``[N, d]`` (numpy); ``question``: the
        user's words, for a Doubter that reads the occlusion signal."""
        doubter = self._require_doubter("read activations (pass 1)")
        words = self.question_words(prompt, question, doubter.signals)
        states, draft, signals = self._pass1(self.encode(prompt), words)
        encoded = doubter.encode(states, signals)
        self._last_read = (prompt, states)
        extras: dict[str, Any] = {"layer_states": states}
        if signals is not None:
            extras["signals"] = dict(zip(doubter.signals, signals.tolist()))
        if encoded.probe_logits is not None:
            extras["probe_logits"] = encoded.probe_logits.tolist()
        if draft:
            extras["draft_text"] = self._text([t for t in draft if not self.context.is_end_of_generation(t)],
                                              special=False)
        return Introspection(p_correct=encoded.p_correct, cognitive_tokens=encoded.cognitive_tokens, extras=extras,
                             calibration=doubter.calibration)

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        inject: Introspection | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        """Greedy completion of the rendered ``prompt``; with ``inject`` the cognitive tokens are
        injected (pass 2), reusing pass 1's KV cache."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens!r}")
        logits, step_forward = self._start(prompt, inject)
        return self._decode_loop(logits, step_forward, max_new_tokens, stop, on_text)

    def next_token_logits(self, prompt: str, *, inject: Introspection | None = None) -> np.ndarray:
        """The logits ``[n_vocab]`` of the first token ``generate`` would produce (plain or pass 2)."""
        return self._start(prompt, inject)[0].copy()

    def _start(self, prompt: str, inject: Introspection | None) -> tuple[np.ndarray, Callable[[int, int], np.ndarray]]:
        """Run the first forward of a generation; return its logits and ``step_forward(token, step)``."""
        input_ids = self.encode(prompt)
        last_read, self._last_read = self._last_read, None
        if inject is None:
            logits = self.context.prefill(input_ids).logits[-1]
            return logits, lambda token, step: self.context.decode([token]).logits[-1]
        doubter = self._require_doubter("inject cognitive tokens (pass 2)")
        tokens = inject.cognitive_tokens
        if hasattr(tokens, "detach"):  # an introspection made by the torch backend
            tokens = tokens.detach().cpu().numpy()
        injection = _Injection(doubter, np.asarray(tokens, dtype=np.float32))
        reference = last_read[1] if last_read is not None and last_read[0] == prompt else None
        if self.dynamic_refresh and reference is None:
            reference = self.read_states(input_ids)[0]
        refresh = self.dynamic_refresh
        layers = doubter.target_layers if refresh else ()
        self.last_refreshes = 0
        self.last_injection_scales = []
        state = {"reference": reference}

        def after_forward(hidden: dict[int, np.ndarray]) -> None:
            if not refresh:
                return
            live = self._states(hidden, doubter.target_layers)
            if doubter.should_refresh(live, state["reference"]):
                injection.set_tokens(doubter.encode_tokens(live).cognitive_tokens)
                state["reference"] = live
                self.last_refreshes += 1

        def forward(token_ids: list[int], positions: Sequence[int] | None, prefill: bool) -> np.ndarray:
            self.last_injection_scales.append(injection.scale)
            options: dict[str, Any] = {"inject": injection.callables(), "read_layers": layers}
            if prefill:
                out = self.context.prefill(token_ids, inject_positions=positions,
                                           read_positions=[len(token_ids) - 1] if layers else None, **options)
            else:
                out = self.context.decode(token_ids, **options)
            after_forward(out.hidden)
            return out.logits[-1]

        injection.scale = doubter.agc_alpha(0) if self.agc else 1.0
        n = len(input_ids)
        # "generation": only the last prompt token is re-decoded (earlier KV entries are pass 1's);
        # "all": the whole prompt is re-prefilled with injection.
        positions = [n - 1] if doubter.inject_positions == "generation" else list(range(n))
        logits = forward(input_ids, positions, prefill=True)

        def step_forward(token: int, step: int) -> np.ndarray:
            if self.agc:
                injection.scale = doubter.agc_alpha(step)
            return forward([token], None, prefill=False)

        return logits, step_forward

    def _decode_loop(self, logits: np.ndarray, step_forward: Callable[[int, int], np.ndarray], max_new_tokens: int,
                     stop: Sequence[str], on_text: Callable[[str], None] | None) -> Completion:
        """Greedy tokens from ``logits``; ``step_forward(token, step)`` feeds ``token`` and returns the
        logits of new token ``step``."""
        decoded = DecodedText(stop, on_text)
        token_ids: list[int] = []
        pieces: list[bytes] = []  # one token's bytes each: the text grows without detokenizing it all again
        finish = "length"
        for step in range(max_new_tokens):
            token = int(np.argmax(logits))
            if self._is_end(token):
                finish = "eos"
                break
            token_ids.append(token)
            # Special tokens stay in the text: native tool-call markers are special in several templates.
            pieces.append(self.context.detokenize([token], special=True))
            if decoded.update(b"".join(pieces).decode("utf-8", errors="replace")):
                finish = "stop"
                break
            if step == max_new_tokens - 1:
                break
            if self.context.n_past >= self.context.n_ctx:
                logger.warning("context of %d tokens is full; stopping generation", self.context.n_ctx)
                break
            logits = step_forward(token, step + 1)
        return Completion(text=decoded.finish(), finish_reason=finish, num_tokens=len(token_ids) + (finish == "eos"))
