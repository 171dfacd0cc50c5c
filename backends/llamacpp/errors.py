"""Typed errors of the llama.cpp hook machinery.

Each carries the data that identifies the problem (file, layer, position)
and says how to fix it. Knows nothing about llama.cpp itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from meta_spider.backends.base import BackendError

LAYER_OUTPUT_NAME = "l_out-{layer}"
"""llama.cpp's name for the residual stream after decoder layer L."""


class LlamaHookError(BackendError):
    """Base class of this module's errors."""


class GGUFModelError(LlamaHookError):
    """The GGUF file is missing or llama.cpp could not load it."""

    path: Path
    reason: str
    fix: str

    def describe(self) -> str:
        return f"{self.path}: {self.reason}; {self.fix}"


class LayerOutOfRangeError(LlamaHookError, ValueError):
    """A requested layer does not exist in the model."""

    layer: int
    n_layer: int

    def describe(self) -> str:
        return f"layer {self.layer} is out of range: the model has decoder layers 0..{self.n_layer - 1}"


class PositionError(LlamaHookError, ValueError):
    """A read/inject/output position is not among the positions this decode computes."""

    role: str
    positions: Sequence[int]
    first: int
    stop: int

    def __post_init__(self) -> None:
        self.positions = tuple(self.positions)

    def describe(self) -> str:
        return (
            f"{self.role} positions {list(self.positions)} are outside this decode's positions "
            f"{self.first}..{self.stop - 1}: "
            "positions already in the KV cache cannot be revisited; truncate the cache to before them first"
        )


class ContextFullError(LlamaHookError):
    """The tokens do not fit in the context window."""

    needed: int
    n_ctx: int

    def describe(self) -> str:
        return f"{self.needed} tokens do not fit in the context of {self.n_ctx}; open the context with a larger n_ctx"


class DecodeError(LlamaHookError):
    """``llama_decode`` returned a non-zero status."""

    status: int
    n_tokens: int

    def describe(self) -> str:
        return (f"llama_decode failed with status {self.status} on a batch of {self.n_tokens} tokens "
                "(1: no KV-cache slot, 2: aborted, negative: invalid batch)")


class LayerTensorNotFoundError(LlamaHookError):
    """The graph has no (or more than one) tensor named ``l_out-<L>`` for a hooked layer."""

    layer: int
    times_seen: int

    def describe(self) -> str:
        return (
            f"the decode graph produced {self.times_seen} tensors named "
            f"{LAYER_OUTPUT_NAME.format(layer=self.layer)!r}, "
            "expected exactly one: this architecture's llama.cpp graph does not name its layer outputs that way"
        )


class InjectionError(LlamaHookError):
    """An injection callable raised or returned an unusable delta."""

    layer: int
    positions: Sequence[int]
    reason: str

    def __post_init__(self) -> None:
        self.positions = tuple(self.positions)

    def describe(self) -> str:
        return f"injection at layer {self.layer}, positions {list(self.positions)}: {self.reason}"


class KVCacheEditError(LlamaHookError):
    """llama.cpp refused to remove part of the sequence from its memory."""

    n_keep: int
    n_past: int

    def describe(self) -> str:
        return (
            f"llama.cpp could not remove positions {self.n_keep}..{self.n_past - 1} from the KV cache (a recurrent "
            "or sliding-window memory cannot drop a partial sequence); decode the prompt again from scratch"
        )
