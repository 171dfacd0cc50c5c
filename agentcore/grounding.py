"""Grounding a call's arguments in the user's question; knows nothing about tools.

A small model miscopies what it meant to copy ("Beastruin Gromton" for
"Beastruinwyn Gromton", "17 * 22" for "17 * 23"). :func:`ground_call`
replaces an argument that nearly copies a run of the question's words with
that run as the user wrote it: the nearest run holding the argument's names
and numbers in order (or one more among them, never a number for a word),
at most :data:`MAX_FRACTION` of its length away by edit distance, with no
other run as near (of two as near, the one without a word more wins); an arithmetic argument only by an arithmetic run, or
with one miscopied number put back (:mod:`~meta_spider.agentcore.arithmetic`).
An exact copy and an argument far from every run are left as they are;
one the model spelt better than the user is not ("Paris" for the user's
"Pari" becomes "Pari"), which is why grounding is a run's choice, not a
default (a lookup that forgives typos finds either). For the tools whose arguments
must come from the question (the agent loop's ``grounded_tools``: the
world's lookup and calculator), :func:`ungrounded` finds one that does not,
a name or a number the model made up, and the call does not run. The other
way round, :func:`respelled` writes a name the user misspelt as a record
found for the question spells it.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Mapping

from meta_spider.agentcore.arithmetic import expression_problem, ground_numbers, is_expression
from meta_spider.policies.actions import ToolInvocation
from meta_spider.tools.knowledge import edit_distance

__all__ = ["MAX_FRACTION", "complete_word", "ground_call", "ground_text", "grounding", "respelled", "unfounded",
           "ungrounded"]

MAX_FRACTION = 0.5
"""Most edits, as a share of the argument's characters (spaces left out), between an argument and the run of
the question's words it is taken to copy."""

_MAX_ARGUMENT = 200
_MAX_QUESTION = 4000
_WORD = re.compile(r"\S+")
_TOKEN = re.compile(r"\w+")
_EDGE_PUNCTUATION = "\"'.,;:!?()[]{}"
_POSSESSIVES = ("'s", "\u2019s")
_MAX_RECORD = 2000
"""Characters of a record read for names (a record names its subject first)."""
_NAME_WORDS = 4
"""Most words of a name :func:`respelled` writes as a record spells it."""


def _word_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each word of ``text``, sentence punctuation at its
    edges and a possessive left out ("Tollan's job?": "Tollan", "job")."""
    words = []
    for match in _WORD.finditer(text):
        word = match.group()
        left = len(word) - len(word.lstrip(_EDGE_PUNCTUATION))
        right = len(word.rstrip(_EDGE_PUNCTUATION))
        if word[left:right].endswith(_POSSESSIVES):
            right -= 2
        if left < right:
            words.append((match.start() + left, match.start() + right))
    return words


def _names(record: str) -> list[str]:
    """The names ``record`` writes: runs of one to :data:`_NAME_WORDS`
    capitalised words with only spaces between them ("Mira Tollan: born in
    Kuba." names "Mira Tollan" and "Kuba")."""
    names, run = [], []
    spans = _word_spans(record[:_MAX_RECORD])
    for index, (start, end) in enumerate(spans):
        word = record[start:end]
        joined = bool(run) and record[spans[index - 1][1]:start] == " "
        if not word[:1].isupper():
            word = ""
        if run and not (word and joined):
            names.append(run)
            run = []
        if word:
            run.append(word)
    if run:
        names.append(run)
    return [" ".join(run) for run in names if len(run) <= _NAME_WORDS]


def _misspells(word: str, part: str) -> bool:
    """Whether ``word`` is at most an edit from ``part`` (two from a word of eight letters or more)."""
    allowed = 1 if len(part) < 8 else 2
    return edit_distance(word, part, allowed) <= allowed


@functools.lru_cache(maxsize=1024)
def respelled(text: str, record: str) -> str:
    """``text`` with each name it misspells written as ``record`` spells it:
    a run of capitalised words of ``text``, as many as a name of ``record``
    has (:func:`_names`), each an edit from the name's word (two from a word
    of eight letters or more), not all alike ("Could you tell me when
    Zerpieth Kilrideg was born?" with the record "Zerpieth Kilridge: born
    1975 ..." reads "... when Zerpieth Kilridge was born?"). A name of two
    words or more typed all in lower case counts too, its case aside ("when
    was zerpieth kilrideg born?" reads "when was Zerpieth Kilridge born?"):
    the base read every name capitalised; so does a word of five letters or
    more of the name the record names first (its subject) in a text typed
    all in lower case ("when was tollan born?" reads "when was Tollan
    born?"), spelt right. A copy, any other one-word name the user did not
    capitalise (a word like "these" is an edit from a record's "There") and
    a name under five letters are left as they are; so is all
    of ``text`` when it is too long to read. A text typed all in capitals
    reads in lower case, its names as the record writes them ("WHERE WAS
    MIRA TOLLAN BORN?" reads "where was Mira Tollan born?"), when it writes
    one of them; else it stays as it is."""
    if len(text) > _MAX_QUESTION or not record:
        return text
    if text.isupper():
        lowered = _respelled(text.lower(), record)
        return lowered if lowered != text.lower() else text
    return _respelled(text, record)


def _respelled(text: str, record: str) -> str:
    """:func:`respelled` of a text not typed all in capitals."""
    spans = _word_spans(text)
    found: list[tuple[int, int, str]] = []
    names = _names(record)
    for name in sorted(set(names), key=len, reverse=True):
        parts = name.split(" ")
        if sum(map(len, parts)) < 5:
            continue
        for first in range(len(spans) - len(parts) + 1):
            run = spans[first:first + len(parts)]
            words = [text[start:end] for start, end in run]
            lowered = len(parts) > 1 and all(word.islower() for word in words)
            if words == parts or not (lowered or all(word[:1].isupper() for word in words)):
                continue
            if any(not text[end:start].isspace() for (_, end), (start, _) in zip(run, run[1:])):
                continue
            pairs = [(word.casefold(), part.casefold()) if lowered else (word, part) for word, part in zip(words, parts)]
            if all(_misspells(word, part) for word, part in pairs):
                found.append((run[0][0], run[-1][1], name))
    if text.islower() and names:  # a word of the record's subject's name, spelt right but not capitalised
        parts = {part.casefold(): part for part in names[0].split(" ") if len(part) >= 5}
        found.extend((start, end, parts[text[start:end]]) for start, end in spans if text[start:end] in parts
                     and not any(start < taken_end and taken_start < end for taken_start, taken_end, _ in found))
    out, last = [], len(text)
    for start, end, name in sorted(found, reverse=True):  # from the end, so earlier places stay where they are
        if end <= last:
            out.append(text[end:last])
            out.append(name)
            last = start
    out.append(text[:last])
    return "".join(reversed(out))


def _compact(text: str) -> str:
    return "".join(text.split()).casefold()


def _kinds(text: str) -> str:
    """Each name or number of ``text`` in order: "n" for a number, "w" for a word."""
    return "".join("n" if token.isdigit() else "w" for token in _TOKEN.findall(text))


def _keeps(kinds: str, run_kinds: str) -> bool:
    """Whether a run with ``run_kinds`` can be what an argument with ``kinds``
    miscopied: the same names and numbers in order, or one more anywhere
    among them (a model drops a word it miscopies more often than it adds
    one); never a number for a word or a word for a number."""
    if len(run_kinds) == len(kinds):
        return run_kinds == kinds
    return len(run_kinds) == len(kinds) + 1 and any(run_kinds[:k] + run_kinds[k + 1:] == kinds
                                                    for k in range(len(run_kinds)))


def ground_text(value: str, question: str) -> str:
    """``value``, or the run of ``question``'s words it nearly copies."""
    return grounding(value, question)[0]


def grounding(value: str, question: str) -> tuple[str, bool]:
    """``value`` grounded in ``question`` (:func:`ground_text`), and whether
    it is the question's words: a copy, or near enough to a run of them
    (two runs as near count too). A value too long to compare is not."""
    target = _compact(value)
    if not target or len(value) > _MAX_ARGUMENT or len(question) > _MAX_QUESTION:
        return value, False
    if target in _compact(question):
        return value, True  # a copy, if not of whole words ("Mira Tollan" from "Mira Tollan's")
    words = _word_spans(question)
    limit = int(MAX_FRACTION * len(target))
    kinds = _kinds(value)
    arithmetic = is_expression(value)  # copies only a run that is arithmetic too ("25*4" is not "25 by 4")
    sizes = [(len(_compact(question[start:end])), _kinds(question[start:end])) for start, end in words]
    best: list[tuple[int, str]] = []
    for first in range(len(words)):  # every run of words that could be near enough
        length, run_kinds = 0, ""
        for last in range(first, len(words)):
            length, run_kinds = length + sizes[last][0], run_kinds + sizes[last][1]
            if length > len(target) + limit or len(run_kinds) > len(kinds) + 1:
                break
            if length < len(target) - limit or not _keeps(kinds, run_kinds):
                continue
            run = question[words[first][0]:words[last][1]]
            if arithmetic and not is_expression(run):
                continue
            distance = edit_distance(target, _compact(run), limit)
            if distance <= limit:
                best.append((distance, run_kinds != kinds, run))
    if not best:
        return value, False
    best.sort(key=lambda item: item[:2])  # nearest; of those as near, one with the argument's names and numbers
    distance, extra, run = best[0]
    if distance == 0 or any(other[:2] == (distance, extra) and _compact(other[2]) != _compact(run)
                            for other in best[1:]):
        return value, True  # copied exactly, or two runs as near: keep the model's own
    return run, True


def unfounded(call: ToolInvocation, question: str) -> tuple[str, str | None] | None:
    """The first top-level string argument of ``call`` that does not come
    from the question, and why when it is arithmetic, or None when every one
    does: an arithmetic expression that is not the question's arithmetic
    (why: :func:`~meta_spider.agentcore.arithmetic.expression_problem`), any
    other argument that is not the question's words (:func:`grounding`; why:
    None)."""
    for value in call.arguments.values():
        if not isinstance(value, str):
            continue
        if is_expression(value):
            problem = expression_problem(value, question)
            if problem is not None:
                return value, problem
        elif not grounding(value, question)[1]:
            return value, None
    return None


def ungrounded(call: ToolInvocation, question: str) -> str | None:
    """The argument :func:`unfounded` finds, or None."""
    found = unfounded(call, question)
    return None if found is None else found[0]


def complete_word(value: str, question: str) -> str:
    """``value`` with the word it was cut off inside written out: when it is a
    copy of ``question``'s text from a word's start that ends inside one word
    ("capital of Velor" from "the capital of Veloria?"), that copy to the
    word's end; anything else (a whole copy, one of two words, no copy) as
    it is."""
    cut = value.strip()
    if not cut or len(value) > _MAX_ARGUMENT or len(question) > _MAX_QUESTION:
        return value
    copy = r"(?<!\w)" + re.escape(cut)
    if re.search(copy + r"(?!\w)", question):
        return value
    words = {match.group() for match in re.finditer(copy + r"\w+", question)}
    return words.pop() if len(words) == 1 else value


def ground_call(call: ToolInvocation, question: str, cut: bool = False) -> ToolInvocation:
    """``call`` with each top-level string argument grounded in ``question``
    (:func:`ground_text`, then
    :func:`~meta_spider.agentcore.arithmetic.ground_numbers`), after the word
    it was cut off inside is written out (:func:`complete_word`) when ``cut``
    (a call closed where the model broke it off); the same object when
    nothing changed."""
    arguments: Mapping[str, Any] = call.arguments
    grounded = {key: ground_numbers(ground_text(complete_word(value, question) if cut else value, question),
                                    question) if isinstance(value, str) else value
                for key, value in arguments.items()}
    if grounded == dict(arguments):
        return call
    return ToolInvocation(call.name, grounded, call.call_id, call.raw)
