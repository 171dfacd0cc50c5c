"""What a run's dataset lends the agent: the knowledge base behind the
``lookup`` tool and the tool's schema as the base saw it in training.

A dataset plugin may give its examples a world to look facts up in: a
``knowledge_base()`` method (or ``knowledge_base`` attribute) returning a
:class:`~meta_spider.tools.KnowledgeBase`, and a ``lookup_tool_schema``
(OpenAI function form) when its base was trained on tool calls with its own
description of the tool, ``agent_tools``, the names of the tools its
base's transcripts offered (a small base trained on two tools answers
differently once a third one's schema stands in its prompt), and
``agent_context``, ``"question"`` when its base was trained on one question
per chat and earlier turns only confuse it, ``agent_direct_tools``, the
tools whose result its base was trained to state as the answer, and
``agent_ground_arguments``, True when its base miscopies the question's
words into its calls, with ``agent_grounded_tools``, the tools whose
arguments must be the user's words. The embedded world provides them all. This module reads those duck-typed hooks; it knows
nothing about any particular dataset.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

from meta_spider.agentcore.session import CONTEXTS
from meta_spider.plugins.datasets import create_dataset
from meta_spider.tools import KnowledgeBase

if TYPE_CHECKING:
    import pluggy

    from meta_spider.agentcore.rundir import RunSettings

__all__ = ["dataset_context", "dataset_direct_tools", "dataset_ground_arguments", "dataset_grounded_tools",
           "dataset_knowledge_base", "dataset_lookup_schema", "dataset_tool_names", "load_run_dataset"]

logger = logging.getLogger(__name__)


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


def _names(dataset: Any, hook: str) -> tuple[str, ...] | None:
    """``dataset``'s ``hook`` as a tuple of tool names, or None when it is not a sequence of names."""
    names = getattr(dataset, hook, None)
    if isinstance(names, str) or not isinstance(names, (tuple, list)) or not all(isinstance(n, str) for n in names):
        return None
    return tuple(names)


def dataset_tool_names(dataset: Any) -> tuple[str, ...] | None:
    """The tools ``dataset``'s base was trained to be offered
    (``agent_tools``: a sequence of names), or None when it names none."""
    return _names(dataset, "agent_tools")


def dataset_direct_tools(dataset: Any) -> tuple[str, ...]:
    """The tools whose result ``dataset``'s base states as its answer
    (``agent_direct_tools``: a sequence of names), else none."""
    return _names(dataset, "agent_direct_tools") or ()


def dataset_ground_arguments(dataset: Any) -> bool:
    """Whether ``dataset``'s base should have its calls' arguments grounded
    in the user's words (``agent_ground_arguments`` is True)."""
    return getattr(dataset, "agent_ground_arguments", None) is True


def dataset_grounded_tools(dataset: Any) -> tuple[str, ...]:
    """The tools whose arguments must be the user's words for ``dataset``'s
    base (``agent_grounded_tools``: a sequence of names), else none."""
    return _names(dataset, "agent_grounded_tools") or ()


def dataset_context(dataset: Any) -> str | None:
    """What of a conversation ``dataset``'s base can read (``agent_context``:
    one of :data:`~meta_spider.agentcore.session.CONTEXTS`), or None when it
    says nothing."""
    context = getattr(dataset, "agent_context", None)
    return context if isinstance(context, str) and context in CONTEXTS else None


def load_run_dataset(pm: "pluggy.PluginManager", settings: "RunSettings") -> Any | None:
    """The dataset run.json names (``dataset.name`` and ``options``), built
    through the plugins' ``register_datasets``; None when the run names none.

    The agent only borrows facts from it, so a dataset that cannot be built
    here (a JSONL file moved since collection, a plugin not installed) is a
    warning, not an error: the agent runs without that knowledge base."""
    name = settings.dataset.get("name")
    if not name:
        return None
    try:
        return create_dataset(pm, name, **dict(settings.dataset.get("options") or {}))
    except Exception as error:  # noqa: BLE001 - any failure of a plugin's factory means "no facts from it"
        logger.warning("run.json's dataset %r cannot be loaded (%s); the lookup tool gets no facts from it. "
                       "Name a facts file in run.json's knowledge_base.facts_path to give it some.", name, error)
        return None
