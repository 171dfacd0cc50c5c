"""ctypes bindings the llama.cpp eval-callback hooks need: ggml's tensor API and version-resolved llama names.

llama-cpp-python binds llama.h but not ggml's tensor API. The hooks receive a
raw ``struct ggml_tensor *`` in the scheduler's eval callback and need its
name, its shape as rows of f32 values, and a way to copy rows out and back
in. This module loads the ``libggml-base`` shared library that ships inside
the installed ``llama_cpp`` package (``llama_cpp/lib``; preferring the soname
file libllama is linked against, so the loader hands back the already-mapped
library rather than a second copy) and binds, from ``ggml.h`` / ``ggml-backend.h``:

- ``ggml_get_name``, ``ggml_nelements``, ``ggml_nrows``, ``ggml_nbytes``,
  ``ggml_element_size``, ``ggml_is_contiguous``;
- ``ggml_backend_tensor_get`` / ``ggml_backend_tensor_set`` (synchronous copies
  that work for any backend buffer: CPU, CUDA, Metal).

The tensor's type is read from the first field of ``struct ggml_tensor``
(``enum ggml_type type``, the struct's first field in ggml.h); everything else goes through functions, so a change
in the struct's later fields cannot silently misread a shape.

:class:`LlamaApi` resolves, once, the llama.h functions whose Python names
changed between llama-cpp-python releases (model loading, context creation,
KV-cache edits), so callers use one spelling.

This module knows nothing about llama.cpp graphs, layer names or models.
Importing it loads numpy only; llama_cpp and the ggml library load on first use.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from meta_spider.backends.base import BackendError

GGML_TYPE_F32 = 0
GGML_TYPE_F16 = 1
_F32_SIZE = 4


class GGMLLibraryNotFoundError(BackendError, ImportError, fields=("searched",)):
    """The ggml base library could not be found next to the installed llama_cpp package."""

    def describe(self) -> str:
        return (
            "libggml-base was not found in "
            + ", ".join(str(p) for p in self.searched)
            + ": install llama-cpp-python >= 0.3.8 (it bundles libggml-base in llama_cpp/lib), "
            "e.g. `pip install 'meta-spider[llamacpp]'`"
        )


class TensorLayoutError(BackendError, RuntimeError, fields=("name", "detail")):
    """A graph tensor is not the contiguous f32 ``[row_len, n_rows]`` matrix the hooks expect."""

    template = "graph tensor {name!r}: {detail}"


def _library_candidates() -> list[Path]:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return []
    lib_dir = Path(spec.origin).parent / "lib"
    if sys.platform == "win32":
        return [lib_dir / "ggml-base.dll", lib_dir / "libggml-base.dll"]
    if sys.platform == "darwin":
        versioned = sorted(lib_dir.glob("libggml-base.*.dylib"), key=lambda p: len(p.name))
        return [*versioned, lib_dir / "libggml-base.dylib", lib_dir / "libggml-base.so"]
    # Wheels store the soname link (libggml-base.so.0) as a separate copy of the file. libllama
    # loads that one, and opening the same path returns the library already mapped, not a second copy.
    versioned = sorted(lib_dir.glob("libggml-base.so.*"), key=lambda p: len(p.name))
    return [*versioned, lib_dir / "libggml-base.so"]


@lru_cache(maxsize=1)
def ggml_library() -> ctypes.CDLL:
    """The bundled libggml-base with argument and return types set (loaded once)."""
    candidates = _library_candidates()
    for path in candidates:
        if path.exists():
            lib = ctypes.CDLL(str(path))
            break
    else:
        raise GGMLLibraryNotFoundError(candidates)
    tensor_p = ctypes.c_void_p
    signatures = {
        "ggml_get_name": ([tensor_p], ctypes.c_char_p),
        "ggml_nelements": ([tensor_p], ctypes.c_int64),
        "ggml_nrows": ([tensor_p], ctypes.c_int64),
        "ggml_nbytes": ([tensor_p], ctypes.c_size_t),
        "ggml_element_size": ([tensor_p], ctypes.c_size_t),
        "ggml_is_contiguous": ([tensor_p], ctypes.c_bool),
        "ggml_backend_tensor_get": ([tensor_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t], None),
        "ggml_backend_tensor_set": ([tensor_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t], None),
    }
    for name, (argtypes, restype) in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = restype
    return lib


def tensor_name(tensor: int) -> bytes:
    """The tensor's name as ggml stores it (for llama.cpp graph nodes: ``b"l_out-3"`` and the like)."""
    return ggml_library().ggml_get_name(tensor)


def tensor_type(tensor: int) -> int:
    """The ``enum ggml_type`` value of the tensor (first field of ``struct ggml_tensor``)."""
    return ctypes.c_int32.from_address(tensor).value


def f32_matrix_shape(tensor: int) -> tuple[int, int]:
    """``(n_rows, row_len)`` of a contiguous f32 tensor, or TensorLayoutError naming what differs."""
    lib = ggml_library()
    name = tensor_name(tensor).decode("utf-8", "replace")
    kind = tensor_type(tensor)
    if kind != GGML_TYPE_F32 or lib.ggml_element_size(tensor) != _F32_SIZE:
        raise TensorLayoutError(name, f"has ggml type {kind}, expected f32 ({GGML_TYPE_F32})")
    if not lib.ggml_is_contiguous(tensor):
        raise TensorLayoutError(name, "is not contiguous in memory")
    n_elements = lib.ggml_nelements(tensor)
    n_rows = lib.ggml_nrows(tensor)
    if n_rows <= 0 or n_elements % n_rows or lib.ggml_nbytes(tensor) != n_elements * _F32_SIZE:
        raise TensorLayoutError(name, f"has {n_elements} elements in {n_rows} rows: not a dense f32 matrix")
    return int(n_rows), int(n_elements // n_rows)


def read_rows(tensor: int, first_row: int, n_rows: int, row_len: int) -> np.ndarray:
    """Copy rows ``[first_row, first_row + n_rows)`` of an f32 matrix tensor into a new ``[n_rows, row_len]`` array."""
    out = np.empty((n_rows, row_len), dtype=np.float32)
    offset = first_row * row_len * _F32_SIZE
    _check_bounds(tensor, offset, out.nbytes)
    ggml_library().ggml_backend_tensor_get(tensor, out.ctypes.data, offset, out.nbytes)
    return out


def write_rows(tensor: int, first_row: int, rows: np.ndarray) -> None:
    """Overwrite rows starting at ``first_row`` of an f32 matrix tensor with ``rows`` (``[k, row_len]``)."""
    # The copy is synchronous; `data` only has to live for the duration of the call.
    data = np.ascontiguousarray(rows, dtype=np.float32)
    offset = first_row * data.shape[1] * _F32_SIZE
    _check_bounds(tensor, offset, data.nbytes)
    ggml_library().ggml_backend_tensor_set(tensor, data.ctypes.data, offset, data.nbytes)


def _check_bounds(tensor: int, offset: int, size: int) -> None:
    # ggml asserts (aborts the whole process) on an out-of-range copy; fail in Python instead.
    n_bytes = ggml_library().ggml_nbytes(tensor)
    if offset < 0 or offset + size > n_bytes:
        name = tensor_name(tensor).decode("utf-8", "replace")
        raise TensorLayoutError(name, f"copy of {size} bytes at offset {offset} exceeds its {n_bytes} bytes")


class LlamaApiMissingError(BackendError, ImportError, fields=("names",)):
    """The installed llama-cpp-python lacks a function the hooks need under every known name."""

    def describe(self) -> str:
        return (
            f"llama_cpp has none of {', '.join(self.names)}: install llama-cpp-python >= 0.3.8 "
            "(`pip install 'meta-spider[llamacpp]'`)"
        )


def _first(module: ModuleType, *names: str) -> Callable[..., Any]:
    for name in names:
        function = getattr(module, name, None)
        if function is not None:
            return function
    raise LlamaApiMissingError(names)


class LlamaApi:
    """llama.h functions under the names this llama-cpp-python release uses."""

    _backend_initialised = False

    def __init__(self, lib: ModuleType) -> None:
        self.lib = lib
        self.load_model = _first(lib, "llama_model_load_from_file", "llama_load_model_from_file")
        self.new_context = _first(lib, "llama_init_from_model", "llama_new_context_with_model")
        self.free_model = _first(lib, "llama_model_free", "llama_free_model")
        self.n_layer = _first(lib, "llama_model_n_layer", "llama_n_layer")
        self.n_embd = _first(lib, "llama_model_n_embd", "llama_n_embd")
        self.n_vocab = _first(lib, "llama_vocab_n_tokens", "llama_n_vocab")
        # Newest: a llama_memory_t handle; before that llama_kv_self_*; before that llama_kv_cache_*.
        if hasattr(lib, "llama_get_memory") and hasattr(lib, "llama_memory_seq_rm"):
            self._seq_rm = lambda ctx, *args: lib.llama_memory_seq_rm(lib.llama_get_memory(ctx), *args)
            self._clear = lambda ctx: lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
        else:
            self._seq_rm = _first(lib, "llama_kv_self_seq_rm", "llama_kv_cache_seq_rm")
            self._clear = _first(lib, "llama_kv_self_clear", "llama_kv_cache_clear")

    @classmethod
    def load(cls) -> "LlamaApi":
        """Import llama_cpp (heavy: loads libllama) and resolve the names."""
        import llama_cpp

        return cls(llama_cpp)

    def init_backend(self) -> None:
        """``llama_backend_init`` once per process."""
        if not LlamaApi._backend_initialised:
            self.lib.llama_backend_init()
            LlamaApi._backend_initialised = True

    def set_flash_attn(self, params: Any, enabled: bool) -> None:
        """Set flash attention on context params (a ``flash_attn_type`` enum in recent releases, a bool ``flash_attn`` before)."""
        if hasattr(self.lib, "LLAMA_FLASH_ATTN_TYPE_ENABLED"):
            params.flash_attn_type = (self.lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if enabled
                                      else self.lib.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        else:
            params.flash_attn = enabled

    def memory_seq_rm(self, ctx: Any, seq_id: int, p0: int, p1: int) -> bool:
        """Remove positions ``[p0, p1)`` (p1 < 0: to the end) of `seq_id`; False if llama.cpp refuses."""
        result = self._seq_rm(ctx, seq_id, p0, p1)
        # Some older spellings return void; they cannot refuse.
        return True if result is None else bool(result)

    def memory_clear(self, ctx: Any) -> None:
        """Drop every cached position."""
        self._clear(ctx)

    def tokenize(self, vocab: Any, text: bytes, add_special: bool, parse_special: bool) -> list[int]:
        """``llama_tokenize`` with the buffer grown when llama.cpp reports it too small."""
        capacity = len(text) + 16
        for _ in range(2):
            buffer = (self.lib.llama_token * capacity)()
            count = self.lib.llama_tokenize(vocab, text, len(text), buffer, capacity, add_special, parse_special)
            if count >= 0:
                return list(buffer[:count])
            capacity = -count
        raise RuntimeError(f"llama_tokenize kept asking for a larger buffer ({capacity} tokens)")

    def token_piece(self, vocab: Any, token: int, special: bool) -> bytes:
        """The bytes of one token."""
        capacity = 64
        for _ in range(2):
            buffer = ctypes.create_string_buffer(capacity)
            count = self.lib.llama_token_to_piece(vocab, token, buffer, capacity, 0, special)
            if count >= 0:
                return buffer.raw[:count]
            capacity = -count
        raise RuntimeError(f"llama_token_to_piece kept asking for a larger buffer ({capacity} bytes)")

    def logits_row(self, ctx: Any, batch_index: int, n_vocab: int) -> np.ndarray:
        """A copy of the logits the last decode produced for batch entry `batch_index`."""
        pointer = self.lib.llama_get_logits_ith(ctx, batch_index)
        if not pointer:
            raise RuntimeError(f"llama.cpp has no logits for batch entry {batch_index}")
        return np.ctypeslib.as_array(pointer, shape=(n_vocab,)).astype(np.float32, copy=True)
