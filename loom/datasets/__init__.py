"""Question-answer datasets for collection and evaluation.

The common types (:class:`QAExample`, :class:`QAPrompt`, the
:class:`QADataset` protocol), the built-in ``jsonl`` and ``mmlu`` datasets,
the JSONL export, and :func:`register_builtin_datasets`, which the loom
plugin's ``register_datasets`` hook calls. The embedded ``world`` dataset is
registered separately (it lives with the world). Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any, Callable

from meta_spider.loom.datasets.base import QADataset, QAExample, QAPrompt, SplitDataset, canonical_split
from meta_spider.loom.datasets.errors import (
    DatasetDependencyError,
    DatasetError,
    DatasetFormatError,
    DatasetNotFoundError,
    UnknownSplitError,
)
from meta_spider.loom.datasets.jsonl import JsonlDataset, export_jsonl, read_jsonl
from meta_spider.loom.datasets.mcq import extract_choice_letter, format_mcq
from meta_spider.loom.datasets.scoring import check_answer, normalize_answer
from meta_spider.loom.datasets.mmlu import MMLUDataset
from meta_spider.plugins.datasets import create_dataset, dataset_registry

__all__ = [
    "DatasetDependencyError",
    "DatasetError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "JsonlDataset",
    "MMLUDataset",
    "QADataset",
    "QAExample",
    "QAPrompt",
    "SplitDataset",
    "UnknownSplitError",
    "canonical_split",
    "check_answer",
    "create_dataset",
    "dataset_registry",
    "export_jsonl",
    "extract_choice_letter",
    "format_mcq",
    "normalize_answer",
    "read_jsonl",
    "register_builtin_datasets",
]


def register_builtin_datasets(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ``jsonl`` and ``mmlu`` through a ``register_datasets``
    callback: ``register(name, factory)``, ``factory(**options)``."""
    register("jsonl", JsonlDataset.from_options)
    register("mmlu", MMLUDataset.from_options)
