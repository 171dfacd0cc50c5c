"""Read and write llama.cpp's residual stream on stock llama-cpp-python, without torch.

:class:`HookedLlamaContext` opens a GGUF with llama.cpp's low-level API and
sets ``llama_context_params.cb_eval``, the graph scheduler's eval callback.
Answering "yes" when asked about a tensor named ``l_out-<L>`` (the residual
stream after decoder layer L, what a forward hook on transformers' decoder
layer L returns) makes the scheduler compute the graph up to it and hand it
over: ``ggml_backend_tensor_get`` copies rows out (a *read*) and
``ggml_backend_tensor_set`` writes ``h + delta`` back (an *injection*), which
the later layers, their KV entries and the logits all see. A delta is any
callable ``(hidden_rows, positions) -> delta`` run in numpy, so
input-dependent injection is exact.

Positions are absolute positions in the context's one sequence; a decode
reads or injects only at positions it decodes itself. :meth:`redecode_last`
removes the last cached token and decodes it again (pass 2 reusing pass 1's
KV cache). Each ``llama_decode`` is exactly one micro-batch (``n_ubatch =
n_batch``; longer inputs are split first), so tensor rows map to known
positions. The last layer's ``l_out`` holds only the rows that produce logits;
reading or injecting there makes those positions outputs. Reads return the
values before this decode's injection at the same layer. transformers'
``hidden_states[L + 1]`` equals ``l_out-L`` for every layer but the last,
where transformers applies the final norm first.

llama-cpp-python specifics (tested on 0.3.36 only, libggml-base 0.25.3):
``cb_eval`` / ``cb_eval_user_data`` and ``ggml_backend_sched_eval_callback``;
``llama_model_load_from_file`` / ``llama_init_from_model`` /
``llama_model_free`` (older: ``llama_load_model_from_file`` /
``llama_new_context_with_model`` / ``llama_free_model``); the vocab API
(``llama_model_get_vocab``, ``llama_vocab_n_tokens``, ``llama_tokenize`` on a
vocab); KV edits via ``llama_get_memory`` + ``llama_memory_seq_rm`` /
``llama_memory_clear`` (older: ``llama_kv_self_*``, then ``llama_kv_cache_*``);
``flash_attn_type`` (older: bool ``flash_attn``). Older names are resolved at
run time by :class:`~meta_spider.backends.llamacpp.ggml_ctypes.LlamaApi`. If the
callback returns false after a computed tensor the scheduler skips the rest of
that graph split; a failed hook does that and the decode is rolled back.

The scheduler asks the callback about every graph node (about 40 per
layer), so the callback is the compiled filter of
:mod:`~meta_spider.backends.llamacpp.eval_filter` when it can be built: it declines
unhooked nodes in C, enters Python (:class:`~meta_spider.backends.llamacpp.eval_hook.EvalHook`)
only for the layer outputs a decode reads or writes, and adds a one-token
decode's injections itself when their callables offer a ``native_delta()``
(every generated token of pass 2). Without it the Python hook is the
callback, with the same results.

Loading the model and opening or freeing the context is
:mod:`~meta_spider.backends.llamacpp.context`'s. This module knows nothing
about encoders, cross-attention, sampling or chat templates; importing it imports neither torch nor llama_cpp (opening a
context imports llama_cpp).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from meta_spider.backends.llamacpp import ggml_ctypes
from meta_spider.backends.llamacpp.context import HookedContextConfig, LlamaHandles
from meta_spider.backends.llamacpp.eval_filter import load_filter
from meta_spider.backends.llamacpp.eval_hook import ChunkPlan, EvalHook, Injection
from meta_spider.backends.llamacpp.errors import (
    GGUFModelError,
    LAYER_OUTPUT_NAME,
    LlamaHookError,
    LayerOutOfRangeError,
    PositionError,
    ContextFullError,
    DecodeError,
    LayerTensorNotFoundError,
    InjectionError,
    KVCacheEditError,
)

LLAMA_CPP_LOGGER = "llama-cpp-python"


@dataclass
class DecodeOutput:
    """What one :meth:`HookedLlamaContext.decode` produced."""

    logits: np.ndarray
    """``[len(output_positions), n_vocab]`` float32."""
    output_positions: tuple[int, ...]
    hidden: dict[int, np.ndarray]
    """layer -> ``[len(read_positions), n_embd]`` float32, rows in ``read_positions`` order."""
    read_positions: tuple[int, ...]
    first_position: int
    """The first position this decode computed (earlier ones came from the KV cache)."""

    def logits_at(self, position: int) -> np.ndarray:
        """The logits row produced at absolute ``position``."""
        if position not in self.output_positions:
            raise KeyError(f"no logits at position {position}; outputs are at {list(self.output_positions)}")
        return self.logits[self.output_positions.index(position)]


class HookedLlamaContext(contextlib.AbstractContextManager):
    """A llama.cpp model + context (one sequence) whose layer outputs can be read and written.

    One decode at a time: the object is not thread-safe.

    >>> with HookedLlamaContext("base.gguf") as hooked:            # doctest: +SKIP
    ...     ids = hooked.tokenize("Where was Ada born?")
    ...     states = hooked.read(ids, layers=[4, 8])                 # pass 1, cache kept
    ...     out = hooked.redecode_last(inject={8: my_delta_fn})      # pass 2, reuses the cache
    """

    def __init__(self, model_path: str | os.PathLike[str], config: HookedContextConfig | None = None) -> None:
        self.path = Path(model_path)
        self.config = config or HookedContextConfig()
        if not self.path.is_file():
            raise GGUFModelError(self.path, "no such file", "pass the path of a GGUF base model")
        self._api = ggml_ctypes.LlamaApi.load()
        logging.getLogger(LLAMA_CPP_LOGGER).setLevel(logging.DEBUG if self.config.verbose else logging.ERROR)
        self._api.init_backend()
        # llama.cpp keeps the callback's function pointer for the context's lifetime: the handles
        # hold the ctypes object until the context is freed. The hook object never refers back to self.
        self._hook = EvalHook(n_embd=0)
        # The compiled filter answers the scheduler's ~40 questions per layer in C and enters Python only
        # for the layer outputs a decode reads or writes; without a compiler the hook itself is the callback.
        self._filter = load_filter(self._hook)
        make_callback = self._api.lib.ggml_backend_sched_eval_callback
        if self._filter is not None:
            callback: Any = self._filter
            eval_callback, user_data = make_callback(self._filter.callback), self._filter.user_data
        else:
            callback = eval_callback = make_callback(self._hook)
            user_data = None
        self._llama = LlamaHandles(self._api, self.path, self.config, eval_callback, user_data, keep_alive=callback)
        self.n_layer, self.n_embd, self.n_vocab = self._llama.n_layer, self._llama.n_embd, self._llama.n_vocab
        self.n_ctx, self.n_batch = self._llama.n_ctx, self._llama.n_batch
        self._hook.n_embd = self.n_embd
        self._tokens: list[int] = []
        self._clean_prefix = 0

    # ---- lifecycle -------------------------------------------------------

    def close(self) -> None:
        """Free the llama.cpp context and model; further calls raise."""
        self._llama.close()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ctx(self) -> Any:
        if not self._llama.is_open:
            raise LlamaHookError(f"the llama.cpp context for {self.path} is closed; open a new HookedLlamaContext")
        return self._llama.ctx

    # ---- tokens ----------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Token ids of `text` with the GGUF's own tokenizer (bos added when the model asks for it)."""
        return self._api.tokenize(self._llama.vocab, text.encode("utf-8"), add_special, parse_special)

    def detokenize(self, tokens: Iterable[int], *, special: bool = False) -> bytes:
        """The bytes of `tokens` (concatenated pieces; may end inside a UTF-8 character)."""
        return b"".join(self._api.token_piece(self._llama.vocab, int(token), special) for token in tokens)

    def is_end_of_generation(self, token: int) -> bool:
        """Whether `token` ends a turn (eos, eot, <|im_end|> ...) according to the GGUF vocab."""
        return bool(self._api.lib.llama_vocab_is_eog(self._llama.vocab, int(token)))

    # ---- KV cache ----------------------------------------------------------

    @property
    def tokens(self) -> tuple[int, ...]:
        """The tokens in the KV cache, position 0 first."""
        return tuple(self._tokens)

    @property
    def n_past(self) -> int:
        """Number of positions in the KV cache (the position the next token gets)."""
        return len(self._tokens)

    @property
    def clean_prefix(self) -> int:
        """Leading cached positions whose KV entries were computed with no injection (reusable by pass 1)."""
        return self._clean_prefix

    def reset(self) -> None:
        """Empty the KV cache."""
        self._api.memory_clear(self._ctx())
        self._tokens.clear()
        self._clean_prefix = 0

    def truncate(self, n_keep: int) -> None:
        """Keep positions ``0..n_keep-1`` in the KV cache and drop the rest."""
        if not 0 <= n_keep <= len(self._tokens):
            raise ValueError(f"n_keep must be in 0..{len(self._tokens)}, got {n_keep!r}")
        if n_keep == len(self._tokens):
            return
        if not self._api.memory_seq_rm(self._ctx(), 0, n_keep, -1):
            raise KVCacheEditError(n_keep, len(self._tokens))
        del self._tokens[n_keep:]
        self._clean_prefix = min(self._clean_prefix, n_keep)

    def redecode_last(self, **decode_options: Any) -> DecodeOutput:
        """Remove the last cached token and decode it again (with `decode_options`, e.g. ``inject=``).

        This is pass 2's entry: every earlier prompt token's KV entries from
        pass 1 are reused. If the decode fails the token stays removed.
        """
        if not self._tokens:
            raise LlamaHookError("the KV cache is empty: decode a prompt before re-decoding its last token")
        last = self._tokens[-1]
        self.truncate(len(self._tokens) - 1)
        return self.decode([last], **decode_options)

    # ---- decoding ----------------------------------------------------------

    def read(self, tokens: Sequence[int], layers: Iterable[int], positions: Iterable[int] | None = None,
             *, reuse_prefix: bool = True) -> dict[int, np.ndarray]:
        """Pass 1: the cache becomes exactly `tokens`; return layer -> ``[k, n_embd]`` at `positions`.

        `positions` default to the last token. With `reuse_prefix`, cached
        positions that match `tokens`, were computed without injection and
        lie before every read position are kept instead of decoded again.
        """
        return self.prefill(tokens, read_layers=layers, read_positions=positions, reuse_prefix=reuse_prefix).hidden

    def prefill(self, tokens: Sequence[int], *, reuse_prefix: bool = True, **decode_options: Any) -> DecodeOutput:
        """Make the cache hold exactly `tokens` and return the decode of the part that was not reusable."""
        tokens = [int(token) for token in tokens]
        if not tokens:
            raise ValueError("tokens is empty: a prompt needs at least one token")
        must_decode_from = len(tokens) - 1
        for key in ("read_positions", "inject_positions", "output_positions"):
            if decode_options.get(key) is not None:
                must_decode_from = min([must_decode_from, *(int(p) for p in decode_options[key])])
        n_keep = 0
        if reuse_prefix:
            limit = min(self._clean_prefix, len(tokens))
            while n_keep < limit and self._tokens[n_keep] == tokens[n_keep]:
                n_keep += 1
            n_keep = max(0, min(n_keep, must_decode_from))
        if n_keep == 0:
            self.reset()
        else:
            self.truncate(n_keep)
        return self.decode(tokens[n_keep:], **decode_options)

    def decode(
        self,
        tokens: Sequence[int],
        *,
        read_layers: Iterable[int] = (),
        read_positions: Iterable[int] | None = None,
        inject: Mapping[int, Injection] | None = None,
        inject_positions: Iterable[int] | None = None,
        output_positions: Iterable[int] | None = None,
    ) -> DecodeOutput:
        """Append `tokens` to the sequence, reading and injecting on the way.

        Defaults: read and output at the last new token, inject at every new
        token. Positions are absolute and must be among the new tokens'. On
        any failure the new tokens are removed from the cache again.
        """
        ctx = self._ctx()
        tokens = [int(token) for token in tokens]
        if not tokens:
            raise ValueError("tokens is empty: decode needs at least one token")
        bad = [token for token in tokens if not 0 <= token < self.n_vocab]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary of {self.n_vocab}")
        start = len(self._tokens)
        stop = start + len(tokens)
        if stop > self.n_ctx:
            raise ContextFullError(stop, self.n_ctx)
        if (len(tokens) == 1 and not read_layers and read_positions is None and inject_positions is None
                and output_positions is None):
            natives = self._all_native(inject or {})
            if natives is not None:
                return self._decode_one(ctx, tokens[0], natives)
        layers_read = self._layers(read_layers)
        injections = {layer: inject[layer] for layer in self._layers(inject or {})}
        reads = self._positions("read", read_positions, (stop - 1,), start, stop) if layers_read else np.empty(0, np.int64)
        injected = (self._positions("inject", inject_positions, range(start, stop), start, stop)
                    if injections else np.empty(0, np.int64))
        outputs = self._positions("output", output_positions, (stop - 1,), start, stop)
        last = self.n_layer - 1
        # The last layer's l_out holds only output rows: anything read or injected there must be an output.
        if last in layers_read:
            outputs = np.union1d(outputs, reads)
        if last in injections:
            outputs = np.union1d(outputs, injected)
        hidden: dict[int, dict[int, np.ndarray]] = {layer: {} for layer in layers_read}
        logits_rows: list[np.ndarray] = []
        try:
            for chunk_start in range(start, stop, self.n_batch):
                chunk = tokens[chunk_start - start: chunk_start - start + self.n_batch]
                positions = np.arange(chunk_start, chunk_start + len(chunk), dtype=np.int64)

                def within(selected: np.ndarray) -> np.ndarray:
                    return selected[(selected >= positions[0]) & (selected <= positions[-1])]

                read = {layer: within(reads) for layer in layers_read if within(reads).size}
                inject_here = {layer: (fn, within(injected)) for layer, fn in injections.items() if within(injected).size}
                plan = ChunkPlan(
                    # Only layers with work in this chunk: the callback touches no other tensor.
                    layer_by_name={LAYER_OUTPUT_NAME.format(layer=layer).encode(): layer
                                   for layer in {*read, *inject_here}},
                    positions=positions, output_positions=within(outputs), read=read, inject=inject_here,
                    hidden=hidden,
                )
                self._decode_chunk(ctx, chunk, plan)
                self._tokens.extend(chunk)
                if self._clean_prefix == chunk_start:
                    injected_here = within(injected) if plan.inject else np.empty(0, np.int64)
                    self._clean_prefix = int(injected_here.min()) if injected_here.size else chunk_start + len(chunk)
                for position in plan.output_positions.tolist():
                    logits_rows.append(self._api.logits_row(ctx, position - chunk_start, self.n_vocab))
        except BaseException:
            self._rollback(start)
            raise
        return DecodeOutput(
            logits=np.stack(logits_rows) if logits_rows else np.empty((0, self.n_vocab), np.float32),
            output_positions=tuple(int(p) for p in outputs),
            hidden={layer: np.stack([rows[int(p)] for p in reads]) for layer, rows in hidden.items()},
            read_positions=tuple(int(p) for p in reads),
            first_position=start,
        )

    def _decode_chunk(self, ctx: Any, chunk: list[int], plan: ChunkPlan) -> None:
        batch = self._llama.batch
        outputs = set(plan.output_positions.tolist())
        batch.n_tokens = len(chunk)
        for index, (token, position) in enumerate(zip(chunk, plan.positions.tolist())):
            batch.token[index] = token
            batch.pos[index] = position
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = 0
            batch.logits[index] = position in outputs
        # With nothing to read or write the callback declines every tensor without looking at it
        # (the compiled filter without entering Python at all).
        active = bool(plan.read or plan.inject)
        self._hook.plan = plan if active else None
        natives = self._native_deltas(plan, len(chunk))
        slots: list[bytes] = []
        if self._filter is not None:
            slots = self._filter.want(plan.layer_by_name if active else (), natives)
        try:
            status = int(self._api.lib.llama_decode(ctx, batch))
            if natives:
                self._check_natives(plan, slots, natives)
        finally:
            self._hook.plan = None
            if self._filter is not None:
                self._filter.want(())
        error = plan.error
        if error is not None:
            if isinstance(error, (LlamaHookError, ggml_ctypes.TensorLayoutError)) or not isinstance(error, Exception):
                raise error  # typed errors as they are; KeyboardInterrupt and the like unchanged
            raise LlamaHookError(f"the eval callback failed: {error!r}") from error
        if status != 0:
            raise DecodeError(status, len(chunk))
        for layer in set(plan.read) | set(plan.inject):
            if plan.seen.get(layer, 0) != 1:
                raise LayerTensorNotFoundError(layer, plan.seen.get(layer, 0))

    def _all_native(self, inject: Mapping[int, Injection]) -> dict[bytes, Any] | None:
        """name -> native delta for every injection, or None when one of them needs the Python hook."""
        if not inject:
            return {}
        if self._filter is None:
            return None
        natives = {}
        for layer in self._layers(inject):
            offer = getattr(inject[layer], "native_delta", None)
            native = offer() if callable(offer) else None
            if native is None or native.dim != self.n_embd:
                return None
            natives[LAYER_OUTPUT_NAME.format(layer=layer).encode()] = native
        return natives

    def _decode_one(self, ctx: Any, token: int, natives: dict[bytes, Any]) -> DecodeOutput:
        """One generated token: no reads, every injection native (or none). The general path's
        results with a few dozen fewer Python operations, which run cache-cold after each forward."""
        position = len(self._tokens)
        batch = self._llama.batch
        batch.n_tokens = 1
        batch.token[0] = token
        batch.pos[0] = position
        batch.n_seq_id[0] = 1
        batch.seq_id[0][0] = 0
        batch.logits[0] = True
        layers = {name: int(name.rsplit(b"-", 1)[1]) for name in natives}
        try:
            slots = self._filter.want((), natives) if natives else []
            try:
                status = int(self._api.lib.llama_decode(ctx, batch))
                if natives:
                    for slot, name in enumerate(slots):
                        if self._filter.seen(slot) != 1:
                            raise LayerTensorNotFoundError(layers[name], self._filter.seen(slot))
                    failure = self._filter.error
                    if failure is not None:
                        layer = layers[slots[failure[0]]]
                        if failure[1] == self._filter.NOT_FINITE:
                            raise InjectionError(layer, [position], "delta contains NaN or infinity")
                        raise ggml_ctypes.TensorLayoutError(
                            slots[failure[0]].decode(), f"is not one contiguous f32 row of n_embd={self.n_embd} values")
            finally:
                if natives:
                    self._filter.want(())
            if status != 0:
                raise DecodeError(status, 1)
        except BaseException:
            self._rollback(position)
            raise
        self._tokens.append(token)
        if self._clean_prefix == position and not natives:
            self._clean_prefix = position + 1
        logits = self._api.logits_row(ctx, 0, self.n_vocab)
        return DecodeOutput(logits=logits[None, :], output_positions=(position,), hidden={}, read_positions=(),
                            first_position=position)

    def _native_deltas(self, plan: ChunkPlan, n_tokens: int) -> dict[bytes, Any]:
        """The injections of a one-token decode that the compiled filter adds itself: those whose
        callable offers a ``native_delta()`` of this model's width, at layers not also read."""
        if self._filter is None or n_tokens != 1 or not plan.inject:
            return {}
        natives = {}
        for name, layer in plan.layer_by_name.items():
            offer = getattr(plan.inject[layer][0], "native_delta", None) if layer in plan.inject else None
            if layer in plan.read or not callable(offer):
                continue
            native = offer()
            if native is not None and native.dim == self.n_embd:
                natives[name] = native
        return natives

    def _check_natives(self, plan: ChunkPlan, slots: list[bytes], natives: dict[bytes, Any]) -> None:
        assert self._filter is not None
        for slot, name in enumerate(slots):
            if name in natives:
                plan.seen[plan.layer_by_name[name]] = self._filter.seen(slot)
        failure = self._filter.error
        if failure is None:
            return
        slot, kind = failure
        layer, positions = plan.layer_by_name[slots[slot]], plan.positions.tolist()
        if kind == self._filter.NOT_FINITE:
            raise InjectionError(layer, positions, "delta contains NaN or infinity")
        raise ggml_ctypes.TensorLayoutError(slots[slot].decode("utf-8", "replace"),
                                            f"is not one contiguous f32 row of n_embd={self.n_embd} values")

    def _rollback(self, n_keep: int) -> None:
        if not self._llama.is_open:
            return
        # The failed chunk may have written KV entries even though its tokens were never recorded.
        self._api.memory_seq_rm(self._llama.ctx, 0, n_keep, -1)
        del self._tokens[n_keep:]
        self._clean_prefix = min(self._clean_prefix, n_keep)

    def _layers(self, layers: Iterable[int]) -> list[int]:
        checked = sorted({int(layer) for layer in layers})
        for layer in checked:
            if not 0 <= layer < self.n_layer:
                raise LayerOutOfRangeError(layer, self.n_layer)
        return checked

    @staticmethod
    def _positions(role: str, given: Iterable[int] | None, default: Iterable[int], start: int, stop: int) -> np.ndarray:
        positions = np.unique(np.asarray(list(default if given is None else given), dtype=np.int64))
        outside = positions[(positions < start) | (positions >= stop)]
        if outside.size:
            raise PositionError(role, outside.tolist(), start, stop)
        return positions
