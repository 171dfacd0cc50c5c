"""A compiled eval-callback filter, so hooking costs what is hooked.

llama.cpp's graph scheduler asks the eval callback about every graph node,
about 480 times per token for a 12-layer model; a Python callback pays the
interpreter's entry for each, even when it declines. :func:`load_filter`
builds ``eval_filter.c`` (beside this module) once per source version into
the user cache, with the C compiler Python itself was built with, and loads
it: the filter declines every node in C while nothing is hooked and enters
Python only for the layer outputs a read or an injection names. A one-row
injection whose delta is a :class:`NativeDelta` (a layer-normed row's
softmax attention over a few keys, weights folded) is added in C without
entering Python at all: every generated token's case. Without a compiler
(or with ``META_SPIDER_EVAL_FILTER=python``) :func:`load_filter` returns
None and the hooks keep their pure-Python callback, with the same results.
This module knows nothing about which tensors are hooked or why.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import logging
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

__all__ = ["ENV_VAR", "EvalFilter", "MAX_NAMES", "NAME_LEN", "NativeDelta", "load_filter"]

logger = logging.getLogger(__name__)

ENV_VAR = "META_SPIDER_EVAL_FILTER"
"""``python`` turns the compiled filter off (the pure-Python callback is used)."""
SOURCE = Path(__file__).with_name("eval_filter.c")
MAX_NAMES = 256
NAME_LEN = 64

EvalFunction = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_bool, ctypes.c_void_p)


class _DeltaState(ctypes.Structure):
    _fields_ = [
        ("dim", ctypes.c_int64),
        ("heads", ctypes.c_int64),
        ("keys", ctypes.c_int64),
        ("score_weight", ctypes.c_void_p),
        ("score_bias", ctypes.c_void_p),
        ("out_weight", ctypes.c_void_p),
        ("scale", ctypes.c_float),
        ("eps", ctypes.c_float),
        ("row", ctypes.c_void_p),
        ("scores", ctypes.c_void_p),
    ]


class _FilterState(ctypes.Structure):
    _fields_ = [
        ("n_names", ctypes.c_int),
        ("names", (ctypes.c_char * NAME_LEN) * MAX_NAMES),
        ("native", ctypes.c_void_p * MAX_NAMES),
        ("seen", ctypes.c_int * MAX_NAMES),
        ("error", ctypes.c_int),
        ("hook", ctypes.c_void_p),
        ("get_name", ctypes.c_void_p),
        ("nbytes", ctypes.c_void_p),
        ("is_contiguous", ctypes.c_void_p),
        ("tensor_get", ctypes.c_void_p),
        ("tensor_set", ctypes.c_void_p),
    ]


class NativeDelta:
    """A delta the filter adds in C to a one-row tensor ``x`` of ``dim`` values:
    ``softmax_per_head(norm(x) @ score_weight + score_bias) @ out_weight * scale``, where
    ``norm`` is layer normalisation without affine (``eps`` inside the root) and the softmax
    runs over each of ``heads`` groups of ``keys`` columns. Holds float32 copies of the weights
    and its scratch space for as long as the filter may use it."""

    def __init__(self, score_weight: Any, score_bias: Any, out_weight: Any, heads: int, *,
                 scale: float = 1.0, eps: float = 1e-5) -> None:
        import numpy as np

        self.score_weight = np.ascontiguousarray(score_weight, dtype=np.float32)
        self.score_bias = np.ascontiguousarray(score_bias, dtype=np.float32)
        self.out_weight = np.ascontiguousarray(out_weight, dtype=np.float32)
        dim, columns = self.score_weight.shape
        shapes_fit = self.score_bias.shape == (columns,) and self.out_weight.shape == (columns, dim)
        if heads < 1 or columns % heads or not shapes_fit:
            raise ValueError(f"a native delta needs score_weight [d, heads*keys], score_bias [heads*keys] and "
                             f"out_weight [heads*keys, d]; got {self.score_weight.shape}, {self.score_bias.shape}, "
                             f"{self.out_weight.shape} with {heads} heads")
        if not math.isfinite(scale):
            raise ValueError(f"scale must be finite, got {scale!r}")
        self.dim = dim
        self._row = np.empty(dim, dtype=np.float32)
        self._scores = np.empty(columns, dtype=np.float64)
        self.state = _DeltaState(dim, heads, columns // heads, self.score_weight.ctypes.data,
                                 self.score_bias.ctypes.data, self.out_weight.ctypes.data, scale, eps,
                                 self._row.ctypes.data, self._scores.ctypes.data)

    def set_scale(self, scale: float) -> None:
        if not math.isfinite(scale):
            raise ValueError(f"scale must be finite, got {scale!r}")
        self.state.scale = scale


def _cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("meta-spider")) / "native"


def _compiler() -> list[str]:
    configured = sysconfig.get_config_var("CC") or "cc"
    return shlex.split(os.environ.get("CC", configured))


def _build(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        command = [*_compiler(), "-O2", "-shared", "-fPIC", "-o", str(built), str(SOURCE)]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
        os.replace(built, target)  # atomic: a concurrent builder never loads half a file


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    if os.environ.get(ENV_VAR, "").lower() == "python" or sys.platform == "win32":
        return None
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    target = _cache_dir() / f"eval_filter-{digest}-{sysconfig.get_platform()}{suffix}"
    try:
        if not target.is_file():
            _build(target)
        library = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("the compiled llama.cpp eval filter is unavailable (%s); the hooks use the slower "
                       "pure-Python callback", exc)
        return None
    library.meta_spider_filter_size.restype = ctypes.c_size_t
    library.meta_spider_delta_size.restype = ctypes.c_size_t
    if (library.meta_spider_filter_size() != ctypes.sizeof(_FilterState)
            or library.meta_spider_delta_size() != ctypes.sizeof(_DeltaState)):
        logger.warning("the compiled eval filter at %s has an unexpected layout; using the Python callback", target)
        return None
    return library


class EvalFilter:
    """The compiled callback and its state: which layer outputs enter Python right now."""

    NOT_ONE_ROW = 1
    """:attr:`error` kind: a natively injected tensor is not one contiguous f32 row of ``dim`` values."""
    NOT_FINITE = 2
    """:attr:`error` kind: a native delta came out NaN or infinite."""

    def __init__(self, library: ctypes.CDLL, hook: Callable[[int | None, bool, int | None], bool],
                 ggml: ctypes.CDLL) -> None:
        self._hook = EvalFunction(hook)  # held here: llama.cpp keeps calling it through the state
        self._state = _FilterState()
        self._state.hook = ctypes.cast(self._hook, ctypes.c_void_p).value

        def address(function: Any) -> int | None:
            return ctypes.cast(function, ctypes.c_void_p).value

        self._state.get_name = address(ggml.ggml_get_name)
        self._state.nbytes = address(ggml.ggml_nbytes)
        self._state.is_contiguous = address(ggml.ggml_is_contiguous)
        self._state.tensor_get = address(ggml.ggml_backend_tensor_get)
        self._state.tensor_set = address(ggml.ggml_backend_tensor_set)
        self._natives: list[NativeDelta] = []
        self.callback = ctypes.cast(library.meta_spider_filter_eval, ctypes.c_void_p).value
        """The function pointer for ``llama_context_params.cb_eval``."""
        self.user_data = ctypes.addressof(self._state)
        """The pointer for ``cb_eval_user_data``; valid as long as this object lives."""

    def want(self, names: Iterable[bytes], natives: Mapping[bytes, NativeDelta] | None = None) -> list[bytes]:
        """Hook exactly the tensors called ``names`` (none: decline everything in C): those in
        ``natives`` get their delta added in C, the others go to the Python hook. Returns the
        names in slot order (for :meth:`seen` and :attr:`error`)."""
        natives = dict(natives or {})
        names = list(dict.fromkeys([*names, *natives]))
        if len(names) > MAX_NAMES or any(len(name) >= NAME_LEN for name in names):
            raise ValueError(f"at most {MAX_NAMES} tensor names shorter than {NAME_LEN} bytes, got {names!r:.200}")
        self._state.n_names = 0  # never half-updated while named
        self._natives = list(natives.values())  # the C side points into them until the next call
        for index, name in enumerate(names):
            self._state.names[index].value = name
            native = natives.get(name)
            self._state.native[index] = ctypes.addressof(native.state) if native is not None else None
            self._state.seen[index] = 0
        self._state.error = 0
        self._state.n_names = len(names)
        return names

    def seen(self, slot: int) -> int:
        """How many computed tensors of slot ``slot`` got their native delta."""
        return int(self._state.seen[slot])

    @property
    def error(self) -> tuple[int, int] | None:
        """``(slot, kind)`` of the first native failure since :meth:`want`, or None."""
        code = int(self._state.error)
        return None if code == 0 else divmod(code - 1, 4)


def load_filter(hook: Callable[[int | None, bool, int | None], bool]) -> EvalFilter | None:
    """A compiled filter in front of ``hook``, or None when it cannot be built here."""
    library = _library()
    if library is None:
        return None
    from meta_spider.backends.llamacpp.ggml_ctypes import ggml_library

    return EvalFilter(library, hook, ggml_library())
