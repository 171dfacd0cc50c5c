"""What arithmetic a question asks: its numbers and the operation it names.

Knows nothing about tools or calls: :mod:`~meta_spider.agentcore.grounding`
holds a calculator's expression to the question with it. A number is given
in digits ("1,000", "2.5") or in English words ("twenty-one", "a hundred
and five"), each compared in one spelling; an operation is named in words
("the product of", "divided by") or in symbols between numbers ("17*23",
"7 x 8"). English only: a question in another language names no operation
and gives only its digits.
"""

from __future__ import annotations

import re

from meta_spider.tools.knowledge import edit_distance

__all__ = ["expression_problem", "ground_numbers", "is_expression", "named_operations", "question_numbers"]

MAX_EXPRESSION = 200
"""Longest expression (characters) read as arithmetic."""
MAX_QUESTION = 4000
"""Longest question (characters) read for numbers and operations."""

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
    "take a percentage": ("percent", "percentage"),
}
"""The operations a question can name in words, by the words that name them.
A percentage is one no expression of the question's numbers alone computes
(the calculator's ``%`` is the remainder)."""
_OPERATION_SYMBOLS = (
    ("raise", re.compile(r"\*\*|\^")),
    ("multiply", re.compile(r"(?<!\*)\*(?!\*)|\u00d7|(?<=[\d\s)])x(?=[\s\d(])", re.IGNORECASE)),
    ("divide", re.compile(r"/|\u00f7")),
    ("add", re.compile(r"\+")),
    ("subtract", re.compile(r"(?<=[\d\s)])-(?=[\s\d(])")),
)
_WRITTEN = re.compile(r"[\d(][\d\s.,+\-*/^%()x\u00d7\u00f7]*[\d)]", re.IGNORECASE)
"""A run of a question that may be arithmetic written out ("17*23 + 5"): it is when it holds an operator."""
_PERCENT = re.compile(r"\d\s*%")
"""A percentage, as a question writes it ("15%")."""
"""The operations arithmetic writes, by the symbols that write them (a minus between operands, not a sign)."""
_VERBS = {"add": "adds", "subtract": "subtracts", "multiply": "multiplies", "divide": "divides",
          "raise": "raises to a power"}


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
    if len(question) > MAX_QUESTION:
        return []
    return [_canonical(number) for number in _NUMBER.findall(question)] + _spelt_numbers(question)


def is_expression(value: str) -> bool:
    """Whether ``value`` is arithmetic: numbers and operators only, what a calculator reads."""
    return (len(value) <= MAX_EXPRESSION and _NUMBER.search(value) is not None
            and _EXPRESSION.fullmatch(value) is not None)


def ground_numbers(value: str, question: str) -> str:
    """An arithmetic ``value`` with the one number it miscopied from
    ``question`` put back: when it writes as many numbers as the question
    does in digits, all but one of them the question's in the same places,
    and that one an edit from the question's there ("14 + 30" for "What's
    12 plus 30?"). Anything else is left as it is."""
    if not is_expression(value) or len(question) > MAX_QUESTION:
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
    "divide", "raise", "take a percentage", in words ("the product of") or
    in symbols between numbers ("17*23", "7 x 8", "15%")."""
    if len(question) > MAX_QUESTION:
        return set()
    words = set(re.findall(r"[a-z]+", question.casefold()))
    named = {operation for operation, names in _OPERATION_WORDS.items() if words.intersection(names)}
    if _PERCENT.search(question):
        named.add("take a percentage")
    for run in _WRITTEN.findall(question):
        named |= _symbol_operations(run)
    return named


def _written_numbers(question: str) -> list[str] | None:
    """The numbers of the one expression ``question`` writes out in symbols
    ("What is 17*23 + 5?": 17, 23, 5), or None when it writes none or several."""
    runs = [run for run in _WRITTEN.findall(question) if _symbol_operations(run)]
    return [_canonical(number) for number in _NUMBER.findall(runs[0])] if len(runs) == 1 else None


def expression_problem(value: str, question: str) -> str | None:
    """Why the arithmetic ``value`` is not the question's: it holds a number
    the question does not give (:func:`question_numbers`), it leaves out one
    of the expression the question writes out ("17*23" for "What is 17*23 +
    5?"), or the question names one operation (:func:`named_operations`)
    and ``value`` does not do it; None when none of these."""
    if len(question) > MAX_QUESTION:
        return f"cannot be checked against a question over {MAX_QUESTION} characters"
    given = set(question_numbers(question))
    numbers = _NUMBER.findall(value)
    written = [_canonical(number) for number in numbers]
    for number, canonical in zip(numbers, written):
        if canonical not in given:
            return f"holds {number}, which the question does not give"
    for number in _written_numbers(question) or ():
        if number not in written:
            return f"leaves out {number}, which the question gives"
        written.remove(number)
    named, done = named_operations(question), _symbol_operations(value)
    if len(named) == 1 and done and not named <= done:
        (asked,) = named
        asking = {"raise": "raise to a power"}.get(asked, asked)
        return f"{' and '.join(sorted(_VERBS[operation] for operation in done))} where the question asks to {asking}"
    return None
