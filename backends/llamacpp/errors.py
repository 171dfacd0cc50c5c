"""Typed errors of the llama.cpp hook machinery.

Each carries the data that identifies the problem (file, layer, position)
and says how to fix it. Knows nothing about llama.cpp itself.
"""

from __future__ import annotations

from meta_spider.backends.base import BackendError

LAYER_OUTPUT_NAME = "l_out-{layer}"
"""llama.cpp's name for the residual stream after decoder layer L."""


class LlamaHookError(BackendError):
    """Base class of this module's errors."""


class GGUFModelError(LlamaHookError, fields=("path", "reason", "fix")):
    """The GGUF file is missing or llama.cpp could not load it."""

    template = "{path}: {reason}; {fix}"


class LayerOutOfRangeError(LlamaHookError, ValueError, fields=("layer", "n_layer")):
    """A requested layer does not exist in the model."""

    def describe(self) -> str:
        return f"layer {self.layer} is out of range: the model has decoder layers 0..{self.n_layer - 1}"


class PositionError(LlamaHookError, ValueError, fields=("role", "positions", "first", "stop")):
    """A read/inject/output position is not among the positions this decode computes."""

    template = ("{role} positions {shown} are outside this decode's positions {first}..{last}: "
                "positions already in the KV cache cannot be revisited; truncate the cache to before them first")

    def __post_init__(self) -> None:
        self.positions = tuple(self.positions)
        self.shown, self.last = list(self.positions), self.stop - 1


class ContextFullError(LlamaHookError, fields=("needed", "n_ctx")):
    """The tokens do not fit in the context window."""

    template = "{needed} tokens do not fit in the context of {n_ctx}; open the context with a larger n_ctx"


class DecodeError(LlamaHookError, fields=("status", "n_tokens")):
    """``llama_decode`` returned a non-zero status."""

    template = ("llama_decode failed with status {status} on a batch of {n_tokens} tokens "
                "(1: no KV-cache slot, 2: aborted, negative: invalid batch)")


class LayerTensorNotFoundError(LlamaHookError, fields=("layer", "times_seen")):
    """The graph has no (or more than one) tensor named ``l_out-<L>`` for a hooked layer."""

    def describe(self) -> str:
        return (
            f"the decode graph produced {self.times_seen} tensors named "
            f"{LAYER_OUTPUT_NAME.format(layer=self.layer)!r}, "
            "expected exactly one: this architecture's llama.cpp graph does not name its layer outputs that way"
        )


class InjectionError(LlamaHookError, fields=("layer", "positions", "reason")):
    """An injection callable raised or returned an unusable delta."""

    def __post_init__(self) -> None:
        self.positions = tuple(self.positions)

    def describe(self) -> str:
        return f"injection at layer {self.layer}, positions {list(self.positions)}: {self.reason}"


class KVCacheEditError(LlamaHookError, fields=("n_keep", "n_past")):
    """llama.cpp refused to remove part of the sequence from its memory."""

    def describe(self) -> str:
        return (
            f"llama.cpp could not remove positions {self.n_keep}..{self.n_past - 1} from the KV cache (a recurrent "
            "or sliding-window memory cannot drop a partial sequence); decode the prompt again from scratch"
        )
