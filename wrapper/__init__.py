"""meta_spider.wrapper: a frozen Hugging Face causal LM plus the Doubter.

The wrapper is the torch side of the project, but importing this package
imports nothing heavy: each public name loads its module on first use, so
torch-free modules (``constants``, ``errors``) can be shared with light code
such as the run manifest. transformers loads only when a base is loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ReflexionBuffer": "buffer",
    "ActivationCollector": "collector",
    "DoubterConfig": "config",
    "MetaSpiderConfig": "config",
    "resolve_layers": "config",
    "BottleneckCrossAttention": "cross_attention",
    "Doubter": "doubter",
    "EncoderOutput": "encoders",
    "build_encoder": "encoders",
    "CheckpointError": "errors",
    "DoubterNotAttachedError": "errors",
    "FingerprintMismatchError": "errors",
    "LayerDiscoveryError": "errors",
    "NoDoubterError": "errors",
    "WrapperError": "errors",
    "AdaptiveGateControl": "gates",
    "AnswerGate": "gates",
    "RefreshGate": "gates",
    "TanhGate": "gates",
    "DecoderStructure": "layers",
    "discover_decoder": "layers",
    "Pass1": "passes",
    "ReadStates": "passes",
    "GenerationResult": "pipeline",
    "MetaSpiderPipeline": "pipeline",
    "TrainingOutput": "training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # the same names for type checkers (F401: they are re-exports)
    from meta_spider.wrapper.buffer import ReflexionBuffer  # noqa: F401
    from meta_spider.wrapper.collector import ActivationCollector  # noqa: F401
    from meta_spider.wrapper.config import DoubterConfig, MetaSpiderConfig, resolve_layers  # noqa: F401
    from meta_spider.wrapper.cross_attention import BottleneckCrossAttention  # noqa: F401
    from meta_spider.wrapper.doubter import Doubter  # noqa: F401
    from meta_spider.wrapper.encoders import EncoderOutput, build_encoder  # noqa: F401
    from meta_spider.wrapper.errors import (  # noqa: F401
        CheckpointError,
        DoubterNotAttachedError,
        FingerprintMismatchError,
        LayerDiscoveryError,
        NoDoubterError,
        WrapperError,
    )
    from meta_spider.wrapper.gates import AdaptiveGateControl, AnswerGate, RefreshGate, TanhGate  # noqa: F401
    from meta_spider.wrapper.layers import DecoderStructure, discover_decoder  # noqa: F401
    from meta_spider.wrapper.passes import Pass1, ReadStates  # noqa: F401
    from meta_spider.wrapper.pipeline import GenerationResult, MetaSpiderPipeline  # noqa: F401
    from meta_spider.wrapper.training import TrainingOutput  # noqa: F401
