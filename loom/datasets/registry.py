"""Resolve a dataset by name through the plugins' ``register_datasets``
hooks.

This module knows only names and factories; what a factory reads is its own
business (see :mod:`.jsonl`, :mod:`.mmlu`).
"""

from __future__ import annotations

from typing import Any

import pluggy

from meta_spider.loom.datasets.base import QADataset
from meta_spider.plugins.registry import ComponentRegistry

__all__ = ["create_dataset", "dataset_registry"]

DATASET_HOOK = "register_datasets"


def dataset_registry(pm: pluggy.PluginManager) -> ComponentRegistry:
    """Every dataset factory the plugins registered (duplicates and
    malformed registrations raise the plugin errors)."""
    return ComponentRegistry.from_plugins(pm, DATASET_HOOK, "dataset")


def create_dataset(pm: pluggy.PluginManager, name: str, **options: Any) -> QADataset:
    """Build dataset ``name`` with ``factory(**options)``; raises
    :class:`~meta_spider.plugins.UnknownComponentError` listing the known
    names, and TypeError when the factory returns no :class:`QADataset`."""
    dataset = dataset_registry(pm).create(name, **options)
    if not isinstance(dataset, QADataset):
        raise TypeError(
            f"dataset factory {name!r} returned {type(dataset).__name__}, which lacks the QADataset members "
            f"(name, splits, split, prompt, check_fn, describe)"
        )
    return dataset
