"""The embedded world: a deterministic fictional world of people and facts,
a byte-level BPE tokenizer and a small Llama base trained from scratch on it,
so the project has a base that knows some facts and not others without any
download.

Entry points: :func:`~.cache.build_world` (build or reuse a cached world),
:class:`~.knowledge.KnowledgeBase` (the ``lookup`` tool's truth),
:func:`~.scorer.check_answer` (the ``check_fn``),
:func:`~.dataset.register_world_dataset` and the ``world`` click group in
:mod:`meta_spider.loom.cli.world`. Importing this package is light: torch and transformers load
inside the functions that train, evaluate or load models.
"""

from __future__ import annotations

from .cache import WorldArtifacts, build_world
from .generator import GENERATOR_VERSION, World, generate_world
from .knowledge import KnowledgeBase
from .presets import PRESETS, Preset, get_preset
from .scorer import check_answer

__all__ = [
    "GENERATOR_VERSION",
    "KnowledgeBase",
    "PRESETS",
    "Preset",
    "World",
    "WorldArtifacts",
    "build_world",
    "check_answer",
    "generate_world",
    "get_preset",
]

