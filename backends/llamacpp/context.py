"""Opening and freeing a llama.cpp model and context for hooking, without torch.

:class:`HookedContextConfig` says how the context is opened; :class:`LlamaHandles`
loads a GGUF with llama.cpp's low-level API and creates one context for one
sequence whose micro-batch is its whole batch (``n_ubatch = n_batch``, so one
``llama_decode`` is one micro-batch and tensor rows map to known positions),
with the graph scheduler's eval callback it is given, and a token batch of
that size. Batch, context and model are freed together, once, on
:meth:`LlamaHandles.close` or when the handles are collected; the callback is
kept alive until then, since llama.cpp calls it through a raw pointer.

This module knows nothing about what the callback reads or writes, nor about
tokens or positions; importing it imports neither torch nor llama_cpp.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meta_spider.backends.llamacpp import ggml_ctypes
from meta_spider.backends.llamacpp.errors import GGUFModelError

__all__ = ["HookedContextConfig", "LlamaHandles"]


@dataclass(frozen=True)
class HookedContextConfig:
    """How the llama.cpp context is opened."""

    n_ctx: int = 2048
    """Context window in tokens (the KV cache size)."""
    n_batch: int = 512
    """Tokens per ``llama_decode`` call; longer inputs are decoded in chunks."""
    n_threads: int | None = None
    """CPU threads; None = half the cores (at least 1)."""
    n_gpu_layers: int = 0
    """Layers offloaded to a GPU build of llama.cpp (-1 = all)."""
    type_k: int | None = None
    """ggml type of the K cache (0 = f32 for tight numerical tests); None = llama.cpp's default (f16)."""
    type_v: int | None = None
    """ggml type of the V cache; None = llama.cpp's default (f16)."""
    flash_attn: bool = False
    """Use flash attention. Off by default, as in ``llama_cpp.Llama``; llama.cpp's own
    default (auto) turns it on, and its CPU kernel rounds through f16 (about 1e-3 relative)."""
    verbose: bool = False
    """Let llama.cpp's log through (otherwise only errors)."""

    def __post_init__(self) -> None:
        if self.n_ctx <= 0:
            raise ValueError(f"n_ctx must be positive, got {self.n_ctx!r}")
        if self.n_batch <= 0:
            raise ValueError(f"n_batch must be positive, got {self.n_batch!r}")
        if self.n_threads is not None and self.n_threads <= 0:
            raise ValueError(f"n_threads must be positive or None, got {self.n_threads!r}")
        if self.n_gpu_layers < -1:
            raise ValueError(f"n_gpu_layers must be -1 (all) or >= 0, got {self.n_gpu_layers!r}")
        for name in ("type_k", "type_v"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be a ggml type id >= 0 or None, got {value!r}")


def _free_handles(api: ggml_ctypes.LlamaApi, handles: dict[str, Any], callback: Any) -> None:
    """Free the batch, context and model (in that order). `callback` is held until the context is gone."""
    if handles.get("batch") is not None:
        api.lib.llama_batch_free(handles.pop("batch"))
    if handles.get("ctx") is not None:
        api.lib.llama_free(handles.pop("ctx"))
    if handles.get("model") is not None:
        api.free_model(handles.pop("model"))
    del callback


class LlamaHandles:
    """A GGUF's llama.cpp model, its one-sequence context and a token batch.

    ``keep_alive`` (the callback's ctypes object, or whatever owns it) is held
    until the context is freed. Raises :class:`GGUFModelError` when the model
    does not load or no context can be created for it (nothing is left open).
    """

    def __init__(self, api: ggml_ctypes.LlamaApi, path: Path, config: HookedContextConfig, eval_callback: Any,
                 user_data: Any, *, keep_alive: Any) -> None:
        lib = api.lib
        self._handles: dict[str, Any] = {}
        self._finalizer = weakref.finalize(self, _free_handles, api, self._handles, keep_alive)
        model_params = lib.llama_model_default_params()
        model_params.n_gpu_layers = config.n_gpu_layers
        model = api.load_model(str(path).encode("utf-8"), model_params)
        if not model:
            raise GGUFModelError(path, "llama.cpp could not load it (not a GGUF, truncated, or an "
                                 "unsupported architecture)", "check the file with `gguf-dump` or export it again")
        self._handles["model"] = model
        self.n_layer = int(api.n_layer(model))
        self.n_embd = int(api.n_embd(model))
        self.vocab: Any = lib.llama_model_get_vocab(model)
        """The model's vocabulary handle (tokenizing, detokenizing, end-of-generation tokens)."""
        self.n_vocab = int(api.n_vocab(self.vocab))
        threads = config.n_threads or max(1, (os.cpu_count() or 2) // 2)
        params = lib.llama_context_default_params()
        params.n_ctx = config.n_ctx
        params.n_batch = config.n_batch
        params.n_ubatch = config.n_batch  # one llama_decode = one micro-batch: rows map to positions
        params.n_seq_max = 1
        params.n_threads = threads
        params.n_threads_batch = threads
        if config.type_k is not None:
            params.type_k = config.type_k
        if config.type_v is not None:
            params.type_v = config.type_v
        api.set_flash_attn(params, config.flash_attn)
        params.cb_eval = eval_callback
        params.cb_eval_user_data = user_data
        ctx = api.new_context(model, params)
        if not ctx:
            self.close()
            raise GGUFModelError(path, "llama.cpp could not create a context for it",
                                 f"lower n_ctx ({config.n_ctx}) or n_batch ({config.n_batch})")
        self._handles["ctx"] = ctx
        self.n_ctx = int(lib.llama_n_ctx(ctx))
        # llama.cpp may pad n_ctx and clamp the batch sizes; chunking must use what it actually chose.
        self.n_batch = int(min(lib.llama_n_batch(ctx), lib.llama_n_ubatch(ctx)))
        self._handles["batch"] = lib.llama_batch_init(self.n_batch, 0, 1)

    @property
    def is_open(self) -> bool:
        """Whether the context is still there (not closed)."""
        return self._handles.get("ctx") is not None

    @property
    def ctx(self) -> Any:
        """The ``llama_context`` pointer (None once closed)."""
        return self._handles.get("ctx")

    @property
    def batch(self) -> Any:
        """The ``llama_batch`` of ``n_batch`` tokens that every decode fills."""
        return self._handles["batch"]

    def close(self) -> None:
        """Free batch, context and model (a no-op when already freed)."""
        self._finalizer()
