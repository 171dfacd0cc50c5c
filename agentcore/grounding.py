"""Grounding a call's arguments in the user's words.

A small model asked about "Beastruinwyn Gromton" looks up "Beastruin
Gromton"; asked "What is 17 * 23?" it calls the calculator with "17 * 22":
it meant to copy part of the question and miscopied it. :func:`ground_call`
replaces each string argument that nearly copies a run of the question's
words with that run, as the user wrote it: the nearest run of words
holding the argument's names and numbers in their order, or one more
among them, never a number for a word (so "17 + 23" may copy "17*23",
"8 * 48" does not copy "by 48", and "Besa Gromton" does not copy
"Gromton"), by edit distance (insertions, deletions, substitutions and
swaps of adjacent characters, case and spaces ignored), when it is at
most :data:`MAX_FRACTION` of the argument's length away and no other run
is as near. An argument that copies exactly (any
part of the question, up to case and spaces), or
that is far from every run (the model's own words), is left as it is; so
is one the model spelt better than the user did ("Paris" for the user's
"Pari" becomes "Pari"), which is why it is a choice of the run, not a
default: a lookup that forgives typos (:class:`~meta_spider.tools.TypoIndex`)
finds either.

An arithmetic expression (numbers and operators only) is held to the
question's numbers rather than its words: "What's 12 plus 30?" is not
copied by "12 + 30", but each of its numbers is one the question gives,
in digits or in words ("twelve", "twenty-one", "a hundred"). One the
model miscopied, where the expression has as many numbers as the question
writes in digits and only that one differs, by one edit, from the
question's number in its place ("14 + 30"), becomes the question's
(:func:`ground_numbers`).

Where the question names one operation in words or symbols ("Sum of 70
and 80?"), an expression that does not do it ("70/80") is the model's own
too (:func:`expression_problem`).

It knows nothing about tools: the agent loop applies it to every parsed
call when its ``ground_arguments`` is on (a run's dataset can ask for it:
``agent_ground_arguments``), and for the tools whose arguments must come
from the question (``grounded_tools``: the world's lookup, whose query is
a name the user gave, and its calculator, whose numbers are the user's)
:func:`ungrounded` finds an argument that does not, a name or a number the
model made up: the call does not run and finds nothing.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from meta_spider.policies.actions import ToolInvocation
from meta_spider.tools.knowledge import edit_distance

__all__ = ["MAX_FRACTION", "expression_problem", "ground_call", "ground_numbers", "ground_text", "grounding",
           "is_expression", "named_operations", "question_numbers", "ungrounded"]

MAX_FRACTION = 0.5
"""Most edits, as a share of the argument's characters (spaces left out), between an argument and the run of
the question's words it is taken to copy."""

_MAX_ARGUMENT = 200
_MAX_QUESTION = 4000
_WORD = re.compile(r"\S+")
_TOKEN = re.compile(r"\w+")
_EDGE_PUNCTUATION = "\"'.,;:!?()[]{}"
_POSSESSIVES = ("'s", "\u2019s")


_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_EXPRESSION = re.compile(r"[\d\s.,+\-*/^%()x\u00d7\u00f7]+", re.IGNORECASE)
_UNITS = {word: value for value, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {word: 10 * value for value, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(),
                                                       start=2)}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_OPERATION_WORDS = {
    "add": ("plus", "add", "adds", "added", "sum", "total", "more"),
    "subtract": ("minus", "subtract", "subtracted", "less", "difference", "away", "deduct", "fewer"),
    "multiply": ("times", "multiply", "multiplied", "product", "double", "triple"),
    "divide": ("divide", "divided", "over", "quotient", "half", "per"),
    "raise": ("power", "squared", "cubed"),
}
"""The operations a question can name in words, by the words that name them."""
_OPERATION_SYMBOLS = (("raise", re.compile(r"\*\*|\^")), ("multiply", re.compile(r"(?<!\*)\*(?!\*)|\u00d7|(?<=[\d\s)])x(?=[\s\d(])", re.IGNORECASE)),
                      ("divide", re.compile(r"/|\u00f7")), ("add", re.compile(r"\+")),
                      ("subtract", re.compile(r"(?<=[\d\s)])-(?=[\s\d(])")))
"""The operations arithmetic writes, by the symbols that write them (a minus between operands, not a sign)."""
_VERBS = {"add": "adds", "subtract": "subtracts", "multiply": "multiplies", "divide": "divides",
          "raise": "raises to a power"}


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
    words = []  # (start, end) of each word, sentence punctuation at its edges and a possessive left out
    for match in _WORD.finditer(question):
        text = match.group()
        left = len(text) - len(text.lstrip(_EDGE_PUNCTUATION))
        right = len(text.rstrip(_EDGE_PUNCTUATION))
        if text[left:right].endswith(_POSSESSIVES):  # "Tollan's job": the name is "Tollan"
            right -= 2
        if left < right:
            words.append((match.start() + left, match.start() + right))
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
                best.append((distance, run))
    if not best:
        return value, False
    best.sort(key=lambda item: item[0])
    distance, run = best[0]
    if distance == 0 or any(other[0] == distance and _compact(other[1]) != _compact(run) for other in best[1:]):
        return value, True  # copied exactly, or two runs as near: keep the model's own
    return run, True


def _canonical(number: str) -> str:
    """A number as written ("1,000", "2.50", "07") in one spelling ("1000", "2.5", "7")."""
    digits = number.replace(",", "")
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    return digits.lstrip("0") or "0"


def _spelt_numbers(text: str) -> list[str]:
    """The numbers ``text`` writes in English words, in order ("twenty-one",
    "a hundred and five"; "one and two" is two numbers)."""
    found: list[str] = []
    total = current = 0
    last = ""  # the kind of the number's last word: "unit" (0-19), "tens", "scale", or "" outside a number
    words = re.findall(r"[a-z]+|[^\sa-z-]", text.casefold())  # punctuation ends a number; a hyphen does not

    def close() -> None:
        nonlocal total, current, last
        if last:
            found.append(str(total + current))
        total = current = 0
        last = ""

    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else ""
        if word in _UNITS:
            if last == "unit" or last == "tens" and _UNITS[word] >= 10:
                close()
            current, last = current + _UNITS[word], "unit"
        elif word in _TENS:
            if last in ("unit", "tens"):
                close()
            current, last = current + _TENS[word], "tens"
        elif word in _SCALES and (last or index > 0 and words[index - 1] == "a"):
            if _SCALES[word] == 100:
                current = (current or 1) * 100
            else:
                total, current = total + (current or 1) * _SCALES[word], 0
            last = "scale"
        elif word == "a" and following in _SCALES:
            continue
        elif not (word == "and" and last == "scale" and (following in _UNITS or following in _TENS)):
            close()
    close()
    return found


def question_numbers(question: str) -> list[str]:
    """The numbers ``question`` gives, in digits then in words, each in one
    spelling ("1,000" and "a thousand" are both "1000")."""
    if len(question) > _MAX_QUESTION:
        return []
    return [_canonical(number) for number in _NUMBER.findall(question)] + _spelt_numbers(question)


def is_expression(value: str) -> bool:
    """Whether ``value`` is arithmetic: numbers and operators only, what a calculator reads."""
    return len(value) <= _MAX_ARGUMENT and _NUMBER.search(value) is not None and _EXPRESSION.fullmatch(value) is not None


def ground_numbers(value: str, question: str) -> str:
    """An arithmetic ``value`` with the one number it miscopied from
    ``question`` put back: when it writes as many numbers as the question
    does in digits, all but one of them the question's in the same places,
    and that one an edit from the question's there ("14 + 30" for "What's
    12 plus 30?"). Anything else is left as it is."""
    if not is_expression(value) or len(question) > _MAX_QUESTION:
        return value
    spans = list(_NUMBER.finditer(value))
    asked = [_canonical(number) for number in _NUMBER.findall(question)]
    written = [_canonical(match.group()) for match in spans]
    if len(written) != len(asked):
        return value
    differ = [k for k, (mine, theirs) in enumerate(zip(written, asked)) if mine != theirs]
    if len(differ) != 1 or written[differ[0]] in question_numbers(question):
        return value
    k = differ[0]
    if edit_distance(written[k], asked[k], 1) > 1:
        return value
    return value[:spans[k].start()] + asked[k] + value[spans[k].end():]


def _symbol_operations(text: str) -> set[str]:
    return {operation for operation, symbol in _OPERATION_SYMBOLS if symbol.search(text)}


def named_operations(question: str) -> set[str]:
    """The operations ``question`` names: "add", "subtract", "multiply",
    "divide", "raise", in words ("the product of") or in symbols between
    numbers ("17*23", "7 x 8")."""
    if len(question) > _MAX_QUESTION:
        return set()
    words = set(re.findall(r"[a-z]+", question.casefold()))
    named = {operation for operation, names in _OPERATION_WORDS.items() if words.intersection(names)}
    for run in re.findall(r"[\d(][\d\s.,+\-*/^%()x\u00d7\u00f7]*[\d)]", question, re.IGNORECASE):
        named |= _symbol_operations(run)
    return named


def expression_problem(value: str, question: str) -> str | None:
    """Why the arithmetic ``value`` is not the question's: it holds a number
    the question does not give (:func:`question_numbers`), or the question
    names one operation (:func:`named_operations`) and ``value`` does not
    do it; None when neither."""
    given = set(question_numbers(question))
    for number in _NUMBER.findall(value):
        if _canonical(number) not in given:
            return f"holds {number}, which the question does not give"
    named, done = named_operations(question), _symbol_operations(value)
    if len(named) == 1 and done and not named <= done:
        (asked,) = named
        asking = "raise to a power" if asked == "raise" else asked
        return f"{' and '.join(sorted(_VERBS[operation] for operation in done))} where the question asks to {asking}"
    return None


def ungrounded(call: ToolInvocation, question: str) -> str | None:
    """The first top-level string argument of ``call`` that does not come
    from the question, or None when every one does: an arithmetic
    expression that is not the question's arithmetic
    (:func:`expression_problem`), any other argument that is not the
    question's words (:func:`grounding`)."""
    for value in call.arguments.values():
        if not isinstance(value, str):
            continue
        if is_expression(value):
            if expression_problem(value, question) is not None:
                return value
        elif not grounding(value, question)[1]:
            return value
    return None


def ground_call(call: ToolInvocation, question: str) -> ToolInvocation:
    """``call`` with each top-level string argument grounded in ``question``
    (:func:`ground_text`, then :func:`ground_numbers`); the same object when
    nothing changed."""
    arguments: Mapping[str, Any] = call.arguments
    grounded = {key: ground_numbers(ground_text(value, question), question) if isinstance(value, str) else value
                for key, value in arguments.items()}
    if grounded == dict(arguments):
        return call
    return ToolInvocation(call.name, grounded, call.call_id, call.raw)
