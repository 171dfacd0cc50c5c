"""Knowledge bases and the ``lookup`` tool over them.

A :class:`KnowledgeBase` answers a free-text query with a fact or ``None``.
The built-in ``lookup`` tool is made for one knowledge base by
:func:`make_lookup_tool`; the embedded world supplies a real one later, and
:class:`DictKnowledgeBase` is a tiny in-memory one for tests and the demo.
This module knows nothing about how facts are stored beyond that protocol.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Mapping, Protocol, runtime_checkable

from meta_spider.tools.errors import NothingFound
from meta_spider.tools.tool import Tool

__all__ = [
    "DictKnowledgeBase",
    "EmptyKnowledgeBase",
    "KnowledgeBase",
    "LOOKUP_TOOL_NAME",
    "make_lookup_tool",
    "normalise_query",
]

LOOKUP_TOOL_NAME = "lookup"


@runtime_checkable
class KnowledgeBase(Protocol):
    """Something that can answer a query with a fact."""

    name: str

    def lookup(self, query: str) -> str | None:
        """The fact for ``query``, or None when the knowledge base has none."""


def normalise_query(text: str) -> str:
    """Case-fold, drop punctuation and collapse whitespace, so that
    ``"Capital of  France?"`` and ``"capital of france"`` meet."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


class DictKnowledgeBase:
    """An in-memory knowledge base: query -> fact, matched after
    :func:`normalise_query` on both sides."""

    def __init__(self, facts: Mapping[str, str], *, name: str = "dict") -> None:
        if not name:
            raise ValueError(f"a knowledge base needs a name, got {name!r}")
        self.name = name
        self._facts: dict[str, str] = {}
        for query, fact in facts.items():
            key = normalise_query(query)
            if not key:
                raise ValueError(f"knowledge-base key {query!r} is empty after normalising")
            self._facts[key] = fact

    def lookup(self, query: str) -> str | None:
        return self._facts.get(normalise_query(query))

    def __len__(self) -> int:
        return len(self._facts)


class EmptyKnowledgeBase:
    """The knowledge base ``lookup`` uses until a real one is installed."""

    name = "none"

    def lookup(self, query: str) -> str | None:
        return None


def make_lookup_tool(knowledge_base: KnowledgeBase, schema: Mapping[str, Any] | None = None) -> Tool:
    """The ``lookup`` tool answering from ``knowledge_base``.

    A miss is a normal result (the model should learn it has to answer or
    refuse), not an error. ``schema`` (OpenAI function form, with or without
    the ``{"type": "function", "function": ...}`` wrapper) replaces the
    description and parameters the prompt shows, e.g. with the ones a base
    saw in its tool-use training; it must name the tool ``lookup`` and take
    a ``query`` string.
    """
    if not isinstance(knowledge_base, KnowledgeBase):
        raise TypeError(f"{knowledge_base!r} is not a KnowledgeBase (needs .name and .lookup(query))")
    description, parameters = "Look up a fact in the knowledge base.", {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "What to look up, e.g. 'capital of France'."}},
        "required": ["query"],
    }
    if schema is not None:
        function = schema.get("function", schema) if isinstance(schema, Mapping) else None
        properties = function.get("parameters", {}).get("properties", {}) if isinstance(function, Mapping) else {}
        if not isinstance(function, Mapping) or function.get("name") != LOOKUP_TOOL_NAME or "query" not in properties:
            raise ValueError(f"a lookup schema must name the tool {LOOKUP_TOOL_NAME!r} and take a 'query' "
                             f"parameter, got {schema!r:.200}")
        description = function.get("description", description)
        parameters = dict(function["parameters"])

    def lookup(query: str) -> str:
        fact = knowledge_base.lookup(query)
        if fact is None:
            raise NothingFound(query)
        return fact

    return Tool(
        name=LOOKUP_TOOL_NAME,
        description=description,
        parameters=parameters,
        function=lookup,
        metadata={"knowledge_base": knowledge_base.name},
    )
