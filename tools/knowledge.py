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
from typing import Any, Iterable, Mapping, Protocol, runtime_checkable

from meta_spider.tools.errors import NothingFound, SeveralFound
from meta_spider.tools.tool import Tool

__all__ = [
    "DictKnowledgeBase",
    "EmptyKnowledgeBase",
    "KNOWLEDGE_BASE_KEY",
    "KnowledgeBase",
    "LOOKUP_TOOL_NAME",
    "TypoIndex",
    "edit_distance",
    "is_search",
    "make_lookup_tool",
    "normalise_query",
]

LOOKUP_TOOL_NAME = "lookup"
KNOWLEDGE_BASE_KEY = "knowledge_base"
"""Where a tool made by :func:`make_lookup_tool` names its knowledge base in its metadata."""


@runtime_checkable
class KnowledgeBase(Protocol):
    """Something that can answer a query with a fact. It may also have
    ``matches(query) -> Sequence[str]``: the entries a query names when it
    names several and ``lookup`` finds none (:func:`make_lookup_tool`)."""

    name: str

    def lookup(self, query: str) -> str | None:
        """The fact for ``query``, or None when the knowledge base has none."""


def normalise_query(text: str) -> str:
    """Case-fold, drop punctuation and collapse whitespace, so that
    ``"Capital of  France?"`` and ``"capital of france"`` meet."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


class TypoIndex:
    """The one key a query names despite its typos.

    Keys and queries are compared after :func:`normalise_query` with the
    spaces taken out ("Mira  tollan?" and "MiraTollan" name "Mira Tollan").
    A query names a key within its allowance of edits (insertions,
    deletions, substitutions and swaps of two adjacent characters: the
    optimal string alignment distance): one per :attr:`CHARS_PER_EDIT`
    characters of the query, at most ``max_edits``, so a short query must
    match exactly. The nearest key wins; two keys equally near name
    nothing, as does a query too far from every key. Candidates come from a
    symmetric-delete index (each key with up to ``max_edits`` characters
    left out), built on the first query that is not a key itself.
    """

    CHARS_PER_EDIT = 6
    MAX_WORDS = 16
    """Longest query (in words) :meth:`find_within` reads runs of."""

    def __init__(self, keys: Iterable[str], *, max_edits: int = 2) -> None:
        if isinstance(max_edits, bool) or not isinstance(max_edits, int) or max_edits < 0:
            raise ValueError(f"max_edits must be a non-negative int, got {max_edits!r}")
        self.max_edits = max_edits
        self._keys: dict[str, str] = {}
        for key in keys:
            self._keys.setdefault(_compact(key), key)
        self._longest = max(map(len, self._keys), default=0)
        self._deletes: dict[str, list[str]] | None = None

    def find(self, query: str) -> str | None:
        """The key ``query`` names, or None."""
        compact = _compact(query)
        if compact in self._keys:
            return self._keys[compact]
        allowance = min(self.max_edits, len(compact) // self.CHARS_PER_EDIT)
        if allowance == 0 or len(compact) > self._longest + allowance:
            return None  # a long query (a model's runaway text) is far from every key: no work
        if self._deletes is None:
            self._deletes = {}
            for key in self._keys:
                for variant in _deletions(key, self.max_edits):
                    self._deletes.setdefault(variant, []).append(key)
        candidates = {key for variant in _deletions(compact, allowance) for key in self._deletes.get(variant, ())}
        scored = sorted((distance, key) for key in candidates
                        if (distance := edit_distance(compact, key, allowance)) <= allowance)
        if not scored or (len(scored) > 1 and scored[0][0] == scored[1][0]):
            return None  # nothing near enough, or two keys as near: no guess
        return self._keys[scored[0][1]]

    def find_within(self, query: str) -> str | None:
        """The key a run of ``query``'s words names (:meth:`find`): the
        longest runs first, and only when the runs of that length name one
        key ("Fersteara Hzounmark was born" names "Fersteara Hazounmark";
        runs naming two keys name nothing), or None."""
        words = normalise_query(query).split()
        if len(words) > self.MAX_WORDS:
            return None
        for size in range(len(words) - 1, 0, -1):
            found = {key for start in range(len(words) - size + 1)
                     if (key := self.find(" ".join(words[start:start + size]))) is not None}
            if found:
                return found.pop() if len(found) == 1 else None
        return None


def _compact(text: str) -> str:
    return normalise_query(text).replace(" ", "")


def _deletions(text: str, depth: int) -> set[str]:
    """``text`` with every choice of up to ``depth`` characters left out."""
    found, frontier = {text}, {text}
    for _ in range(depth):
        frontier = {word[:i] + word[i + 1:] for word in frontier for i in range(len(word))} - found
        found |= frontier
    return found


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance of ``a`` and ``b`` (insertions,
    deletions, substitutions and swaps of two adjacent characters), or
    ``limit + 1`` once it is sure to exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before: list[int] = []
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        previous, row = row, [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], before[j - 2] + 1)
        if min(row) > limit:
            return limit + 1
        before = previous
    return row[-1]


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


def is_search(tool: Tool) -> bool:
    """Whether ``tool`` answers from a knowledge base (one :func:`make_lookup_tool` made)."""
    return KNOWLEDGE_BASE_KEY in tool.metadata


def make_lookup_tool(knowledge_base: KnowledgeBase, schema: Mapping[str, Any] | None = None) -> Tool:
    """The ``lookup`` tool answering from ``knowledge_base``.

    A miss is a normal result (the model should learn it has to answer or
    refuse), not an error. A knowledge base that also has ``matches(query)
    -> Sequence[str]`` (the entries a query names when it names more than
    one, as the embedded world's does for a surname two people share) turns
    such a miss into :class:`SeveralFound`, whose message lists them.

    ``schema`` (OpenAI function form, with or without
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
            matches = getattr(knowledge_base, "matches", None)
            several = tuple(matches(query)) if callable(matches) else ()
            raise SeveralFound(query, several) if len(several) > 1 else NothingFound(query)
        return fact

    return Tool(
        name=LOOKUP_TOOL_NAME,
        description=description,
        parameters=parameters,
        function=lookup,
        metadata={KNOWLEDGE_BASE_KEY: knowledge_base.name},
    )
