"""The knowledge base of the embedded world: the full truth about every
person, queried by name. It backs the ``lookup`` tool.

It satisfies ``lookup(query: str) -> str | None`` and has a ``name``; it knows
nothing about models, prompts or how the tool is registered. Like a search
box it forgives typos: a name a few edits from one person's (and nearer to
no other) finds that person, and so does a query with words around the
name (:class:`~meta_spider.tools.knowledge.TypoIndex`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from meta_spider.tools.knowledge import TypoIndex

from .generator import Person, fact_line

_SPACE = re.compile(r"\s+")


def _key(text: str) -> str:
    # Case, surrounding punctuation and spacing never decide a lookup.
    return _SPACE.sub(" ", text.strip().strip(".?!,;:'\"")).casefold()


@dataclass
class KnowledgeBase:
    """Name -> fact record over all people of a world (train, validation,
    test and unseen alike: the tool knows what the base may not)."""

    people: tuple[Person, ...]
    name: str = "lookup"
    forgive_typos: bool = True
    """False: only a name spelt right (up to case, spacing and end punctuation) finds its person."""

    def __post_init__(self) -> None:
        self.people = tuple(self.people)
        self._index = {_key(p.name): p for p in self.people}
        if len(self._index) != len(self.people):
            raise ValueError(f"people names must be unique; got {len(self.people) - len(self._index)!r} duplicates")
        self._typos = TypoIndex(self._index)

    @classmethod
    def from_people(cls, people: Iterable[Person], name: str = "lookup", *,
                    forgive_typos: bool = True) -> "KnowledgeBase":
        """Build from the generator's people."""
        return cls(tuple(people), name=name, forgive_typos=forgive_typos)

    def lookup(self, query: str) -> str | None:
        """The fact record of the person named ``query`` (case-insensitive,
        spacing-insensitive, forgiving a typo or two, or named by a run of
        its words, "Mira Tolan was born": the record names the person found),
        or None when no person is named."""
        if not isinstance(query, str):
            return None
        person = self._index.get(_key(query))
        if person is None and self.forgive_typos:
            key = self._typos.find(query) or self._typos.find_within(query)
            person = self._index[key] if key is not None else None
        return fact_line(person) if person is not None else None

    def person(self, query: str) -> Person | None:
        """The person named ``query`` or None."""
        return self._index.get(_key(query))

    def __len__(self) -> int:
        return len(self.people)
