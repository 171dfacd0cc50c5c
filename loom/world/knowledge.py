"""The knowledge base of the embedded world: the full truth about every
person, queried by name. It backs the ``lookup`` tool.

It satisfies ``lookup(query: str) -> str | None`` and has a ``name``; it knows
nothing about models, prompts or how the tool is registered. Like a search
box it forgives typos: a name a few edits from one person's (and nearer to
no other) finds that person, and so does a query with words around the
name (:class:`~meta_spider.tools.knowledge.TypoIndex`). So does a query
that names one person by words of their name alone: a first or last name
no one else has ("When was Tollan born?"), or the name in another order
("Tollan, Mira").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from meta_spider.tools.knowledge import TypoIndex, normalise_query

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
        self._named: dict[str, set[str]] = {}  # each word of a name: the people whose name has it
        for key in self._index:
            for word in normalise_query(key).split():
                self._named.setdefault(word, set()).add(key)
        self._words = TypoIndex(self._named)

    @classmethod
    def from_people(cls, people: Iterable[Person], name: str = "lookup", *,
                    forgive_typos: bool = True) -> "KnowledgeBase":
        """Build from the generator's people."""
        return cls(tuple(people), name=name, forgive_typos=forgive_typos)

    def lookup(self, query: str) -> str | None:
        """The fact record of the person named ``query`` (case-insensitive,
        spacing-insensitive, forgiving a typo or two, or named by a run of
        its words, "Mira Tolan was born", or by words of one person's name
        alone, "Tolan", "When was Tollan born?": the record names the person
        found), or None when no person is named."""
        if not isinstance(query, str):
            return None
        person = self._index.get(_key(query))
        if person is None and self.forgive_typos:
            key = self._typos.find(query) or self._typos.find_within(query) or self._by_name_words(query)
            person = self._index[key] if key is not None else None
        return fact_line(person) if person is not None else None

    def matches(self, query: str) -> tuple[str, ...]:
        """The names of the people ``query`` names by words of their names
        when it names more than one and :meth:`lookup` finds no one ("Tolan"
        when Mira and Kai Tolan are two people), in name order; else none."""
        if not isinstance(query, str) or not self.forgive_typos or self.lookup(query) is not None:
            return ()
        named = self._named_by_words(query)
        return tuple(sorted(self._index[key].name for key in named)) if len(named) > 1 else ()

    def _by_name_words(self, query: str) -> str | None:
        """The key of the one person :meth:`_named_by_words` leaves, or None."""
        named = self._named_by_words(query)
        return next(iter(named)) if len(named) == 1 else None

    def _named_by_words(self, query: str) -> set[str]:
        """The keys of the people whom every word of ``query`` that is a
        word of a name names ("When was Tollan born?", "Tollan, Mira": a
        word several people's names share counts with another that tells
        them apart); none when no word is one, or the words name different
        people. A query of one word may carry a typo or two, as a whole name
        may. In a longer one a word counts only as it is spelt and, unless
        the query is typed in one case, only capitalised, so a frame word
        ("the deepest sea") is not taken for a name that has it."""
        typed = query.split()
        if len(typed) == 1:
            word = self._words.find(typed[0])
            named = [self._named[word]] if word is not None else []
        elif len(typed) <= TypoIndex.MAX_WORDS:
            one_case = query.islower() or query.isupper()
            named = [self._named[word] for token in typed if one_case or _capitalised(token)
                     for word in normalise_query(token).split() if word in self._named]
        else:
            return set()
        return set.intersection(*named) if named else set()

    def person(self, query: str) -> Person | None:
        """The person named ``query`` or None."""
        return self._index.get(_key(query))

    def __len__(self) -> int:
        return len(self.people)


def _capitalised(token: str) -> bool:
    """Whether the first letter of a word as typed is a capital ("'Tollan's" is, "sea?" is not)."""
    return next((char.isupper() for char in token if char.isalpha()), False)
