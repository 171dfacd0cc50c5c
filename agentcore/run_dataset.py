"""What a run's dataset lends the agent: the knowledge base behind the
``lookup`` tool and the tool's schema as the base saw it in training.

A dataset plugin may give its examples a world to look facts up in: a
``knowledge_base()`` method (or ``knowledge_base`` attribute) returning a
:class:`~meta_spider.tools.KnowledgeBase`, and a ``lookup_tool_schema``
(OpenAI function form) when its base was trained on tool calls with its own
description of the tool. The embedded world provides both. This module reads
those duck-typed hooks; it knows nothing about any particular dataset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from meta_spider.tools import KnowledgeBase

if TYPE_CHECKING:
    import pluggy

    from meta_spider.agentcore.rundir import RunSettings

__all__ = ["dataset_knowledge_base", "dataset_lookup_schema", "load_run_dataset"]


def dataset_knowledge_base(dataset: Any) -> KnowledgeBase | None:
    """The knowledge base ``dataset`` supplies (its ``knowledge_base()``
    method or ``knowledge_base`` attribute), or None."""
    supplied = getattr(dataset, "knowledge_base", None)
    if callable(supplied) and not isinstance(supplied, KnowledgeBase):
        supplied = supplied()
    return supplied if isinstance(supplied, KnowledgeBase) else None


def dataset_lookup_schema(dataset: Any) -> Mapping[str, Any] | None:
    """The ``lookup`` tool schema ``dataset`` was trained with, or None."""
    schema = getattr(dataset, "lookup_tool_schema", None)
    return schema if isinstance(schema, Mapping) else None


def load_run_dataset(pm: "pluggy.PluginManager", settings: "RunSettings") -> Any | None:
    """The dataset run.json names (``dataset.name`` and ``options``), built
    through the plugins' ``register_datasets``; None when the run names none."""
    name = settings.dataset.get("name")
    if not name:
        return None
    from meta_spider.loom.datasets import create_dataset

    return create_dataset(pm, name, **dict(settings.dataset.get("options") or {}))
