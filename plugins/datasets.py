"""The dataset contract: what a ``register_datasets`` factory returns and
how a dataset is found by name.

It sits here, below everything that reads datasets, so the agent (which
borrows a run's knowledge base from its dataset) and loom (which collects,
trains and evaluates on it) share one contract without the agent importing
loom. The example and prompt types themselves (``QAExample``,
``QAPrompt``) and the built-in datasets live in :mod:`meta_spider.loom.datasets`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import pluggy

from meta_spider.plugins.registry import ComponentRegistry

__all__ = ["DATASET_HOOK", "QADataset", "create_dataset", "dataset_registry"]

DATASET_HOOK = "register_datasets"


@runtime_checkable
class QADataset(Protocol):
    """What a ``register_datasets`` factory returns. Examples are
    :class:`~meta_spider.loom.datasets.QAExample` and prompts
    :class:`~meta_spider.loom.datasets.QAPrompt`."""

    name: str

    @property
    def splits(self) -> tuple[str, ...]:
        """Names of the available splits. Beside train / validation / test,
        loom reads ``test_*`` as shift splits (``metaloom eval --shifts``) and
        ``train_lookup`` / ``validation_lookup`` as questions asked with their
        lookup, whose :meth:`prompt` is the conversation up to the record the
        lookup found (``metaloom eval`` fits the gate after a lookup there)."""
        ...

    def split(self, name: str) -> list[Any]:
        """The examples of split ``name``; raises
        :class:`~meta_spider.loom.datasets.UnknownSplitError`."""
        ...

    def prompt(self, example: Any) -> Any:
        """The messages and template switches to ask ``example`` with."""
        ...

    def check_fn(self, prediction: str, example: Any) -> bool:
        """Whether ``prediction`` answers ``example`` correctly."""
        ...

    def describe(self) -> dict[str, Any]:
        """``name``, ``options``, ``splits`` and ``sizes`` for ``run.json``."""
        ...


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
