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

    def __init__(self, path: Path, reason: str, fix: str) -> None:
        self.path = path
        self.reason = reason
        self.fix = fix
        super().__init__(f"{path}: {reason}; {fix}")


class LayerOutOfRangeError(LlamaHookError, ValueError):
    """A requested layer does not exist in the model."""

    def __init__(self, layer: int, n_layer: int) -> None:
        self.layer = layer
        self.n_layer = n_layer
        super().__init__(f"layer {layer} is out of range: the model has decoder layers 0..{n_layer - 1}")


class PositionError(LlamaHookError, ValueError):
    """A read/inject/output position is not among the positions this decode computes."""

    def __init__(self, role: str, positions: Sequence[int], first: int, stop: int) -> None:
        self.role = role
        self.positions = tuple(positions)
        self.first = first
        self.stop = stop
        super().__init__(
            f"{role} positions {list(self.positions)} are outside this decode's positions {first}..{stop - 1}: "
            "positions already in the KV cache cannot be revisited; truncate the cache to before them first"
        )


class ContextFullError(LlamaHookError):
    """The tokens do not fit in the context window."""

    def __init__(self, needed: int, n_ctx: int) -> None:
        self.needed = needed
        self.n_ctx = n_ctx
        super().__init__(f"{needed} tokens do not fit in the context of {n_ctx}; open the context with a larger n_ctx")


class DecodeError(LlamaHookError):
    """``llama_decode`` returned a non-zero status."""

    def __init__(self, status: int, n_tokens: int) -> None:
        self.status = status
        self.n_tokens = n_tokens
        super().__init__(f"llama_decode failed with status {status} on a batch of {n_tokens} tokens "
                         "(1: no KV-cache slot, 2: aborted, negative: invalid batch)")


class LayerTensorNotFoundError(LlamaHookError):
    """The graph has no (or more than one) tensor named ``l_out-<L>`` for a hooked layer."""

    def __init__(self, layer: int, times_seen: int) -> None:
        self.layer = layer
        self.times_seen = times_seen
        super().__init__(
            f"the decode graph produced {times_seen} tensors named {LAYER_OUTPUT_NAME.format(layer=layer)!r}, "
            "expected exactly one: this architecture's llama.cpp graph does not name its layer outputs that way"
        )


class InjectionError(LlamaHookError):
    """An injection callable raised or returned an unusable delta."""

    def __init__(self, layer: int, positions: Sequence[int], reason: str) -> None:
        self.layer = layer
        self.positions = tuple(positions)
        self.reason = reason
        super().__init__(f"injection at layer {layer}, positions {list(self.positions)}: {reason}")


class KVCacheEditError(LlamaHookError):
    """llama.cpp refused to remove part of the sequence from its memory."""

    def __init__(self, n_keep: int, n_past: int) -> None:
        self.n_keep = n_keep
        self.n_past = n_past
        super().__init__(
            f"llama.cpp could not remove positions {n_keep}..{n_past - 1} from the KV cache (a recurrent or "
            "sliding-window memory cannot drop a partial sequence); decode the prompt again from scratch"
        )
