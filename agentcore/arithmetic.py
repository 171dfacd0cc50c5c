"""What arithmetic a question asks: its numbers and the operation it names.

Knows nothing about tools or calls: :mod:`~meta_spider.agentcore.grounding`
holds a calculator's expression to the question with it, and the agent loop
computes what :func:`question_expression` reads when the model's own
expression is not the question's. A number is given
in digits ("1,000", "2.5") or in English words ("twenty-one", "a hundred
and five"), each compared in one spelling; an operation is named in words
("the product of", "divided by") or in symbols between numbers ("17*23",
"7 x 8"), among them a square or cube root of one number ("the square root
of 144", "sqrt(64)") and the average of several ("the mean of 4 and 8").
English only: a question in another language names no operation and gives
only its digits.
"""

from __future__ import annotations

import re

from meta_spider.tools.calculator import CalculatorError, CalculatorSyntaxError, evaluate
from meta_spider.tools.knowledge import edit_distance

__all__ = [
    "expression_problem", "ground_numbers", "is_expression", "named_operations", "question_expression",
    "question_numbers",
]

MAX_EXPRESSION = 200
"""Longest expression (characters) read as arithmetic."""
MAX_QUESTION = 4000
"""Longest question (characters) read for numbers and operations."""

_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_EXPRESSION = re.compile(r"(?:sqrt|[\d\s.,+\-*/^%()x\u00d7\u00f7])+", re.IGNORECASE)
_UNITS = {word: value for value, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {word: 10 * value for value, word in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(),
                                                       start=2)}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_OPERATION_WORDS = {
    "add": ("plus", "add", "adds", "added", "sum", "total", "more"),
    "subtract": ("minus", "subtract", "subtracted", "less", "difference", "away", "deduct", "fewer", "exceed",
                 "exceeds"),
    "multiply": ("times", "multiply", "multiplied", "product", "double", "triple", "twice"),
    "divide": ("divide", "divided", "over", "quotient", "half", "halve", "per", "share", "shared", "split"),
    "raise": ("power", "squared", "cubed"),
    "take a percentage": ("percent", "percentage"),
    "take a remainder": ("remainder", "modulo", "mod"),
    "take a root": ("root", "sqrt"),
    "average": ("average", "mean"),
}
"""The operations a question can name in words, by the words that name them.
A percentage is one no expression of the question's numbers alone computes
(the calculator's ``%`` is the remainder); a cube root and an average bring
numbers of their own too (:func:`_implied_numbers`)."""
_SHARING_OUT = {"share", "shared", "split"}
"""Words for sharing out: the number shared out is the one they come before
("share 48 among 6" and "5 friends share 60" both divide the number shared)."""
_SHARING = {"divide", "divided"} | _SHARING_OUT
"""Words that divide the number they come before, "into" or not ("split 90 into 3")."""
_OPERATION_SYMBOLS = (  # a minus between operands, not a sign
    ("raise", re.compile(r"\*\*|\^")),
    ("multiply", re.compile(r"(?<!\*)\*(?!\*)|\u00d7|(?<=[\d\s)])x(?=[\s\d(])", re.IGNORECASE)),
    ("divide", re.compile(r"/|\u00f7")),
    ("add", re.compile(r"\+")),
    ("subtract", re.compile(r"(?<=[\d\s)])-(?=[\s\d(])")),
    ("take a remainder", re.compile(r"(?<=[\d\s)])%(?=\s*[\d(])")),
    ("take a root", re.compile(r"\bsqrt\s*\(|\*\*\s*\(\s*1\s*/\s*3\s*\)", re.IGNORECASE)),
    ("average", re.compile(r"\)\s*/\s*\d")),
)
_WRITTEN = re.compile(r"[\d(][\d\s.,+\-*/^%()x\u00d7\u00f7]*[\d)]", re.IGNORECASE)
"""A run of a question that may be arithmetic written out ("17*23 + 5"): it is when it holds an operator."""
_PERCENT = re.compile(r"\d\s*%(?!\s*[\d(])")
"""A percentage, as a question writes it ("15%")."""
_ON_ONE_NUMBER = {"double": ("*", "2"), "twice": ("*", "2"), "triple": ("*", "3"), "half": ("/", "2"),
                  "halve": ("/", "2"), "squared": ("**", "2"), "cubed": ("**", "3")}
"""Words that name an operation on one number, with the operator and the number they bring ("half of 86" is 86 / 2)."""
_IMPLIED = {word: number for word, (_operator, number) in _ON_ONE_NUMBER.items()} | {"percent": "100",
                                                                                     "percentage": "100"}
"""The number an operation word brings with it."""
_HUNDREDTHS = re.compile(r"/\s*100(?![\d.])")
"""An expression taking a percentage: one that divides by 100."""
_COMPARATIVE = "more|bigger|larger|greater|higher|older|taller|longer|less|fewer|smaller|lower|younger|shorter"
_NUMERAL = r"\d[\d,]*(?:\.\d+)?"
_PHRASES = (
    (re.compile(r"\bhow many times\b", re.IGNORECASE), "divide", "times", True),
    (re.compile(rf"\bhow (?:much|many) (?:{_COMPARATIVE})\b", re.IGNORECASE), "subtract", "more", True),
    (re.compile(rf"\bby how (?:much|many)\b[^?.!]*\b(?:{_COMPARATIVE})\b", re.IGNORECASE), "subtract", "more", True),
    (re.compile(rf"\bhow many {_NUMERAL}'?s\b", re.IGNORECASE), "divide", "", False),
    (re.compile(rf"\btake\s+(?:{_NUMERAL}|(?:{'|'.join([*_UNITS, *_TENS])})(?:-[a-z]+)?)\s+(?:away\s+)?from\b",
                re.IGNORECASE), "subtract", "", False),
)
"""Phrases that name an operation their words alone do not, each with the
operation it asks, the operation word it uses otherwise and whether it
compares two numbers (then only "than" or "into" between them says which
way round): "how many times does 8 go into 64" divides, "how much more is
50 than 20" and "by how much is 50 greater than 20" subtract; "how many 5s
are in 65" divides, "take 9 from 40" subtracts."""
_GROUPS = re.compile(rf"\bhow many {_NUMERAL}'?s\b[^?.!]*\bin(?:to)?\b", re.IGNORECASE)
"""How many of one number another holds ("how many 5s are there in 65"): the second divided by the first."""
_DENOMINATORS = {"half": "2", "halves": "2", "third": "3", "thirds": "3", "quarter": "4", "quarters": "4",
                 "fourth": "4", "fourths": "4", "fifth": "5", "fifths": "5", "sixth": "6", "sixths": "6",
                 "seventh": "7", "sevenths": "7", "eighth": "8", "eighths": "8", "ninth": "9", "ninths": "9",
                 "tenth": "10", "tenths": "10"}
_FRACTION_OF = re.compile(r"\b(?:an?\s+|(?:one|two|three|four|five|six|seven|eight|nine|\d+)[\s-]+)?"
                          rf"({'|'.join(_DENOMINATORS)})\s+of\b", re.IGNORECASE)
"""A fraction of a number in words ("a quarter of 84", "three quarters of 200", "one third of 27")."""
_DIGIT_FRACTION_OF = re.compile(r"(?<![\d.])\d+\s*/\s*\d+\s+of\s+(?=\d)", re.IGNORECASE)
"""A fraction of a number in digits ("2/5 of 50")."""
_CHAINED = (("**", r"to the power of|raised to the power of|raised to"), ("*", r"times|multiplied by|x|\*|\u00d7"),
            ("/", r"divided by|over|\u00f7|/"), ("+", r"plus|\+"), ("-", r"minus|-"), ("%", r"mod|modulo"))
"""The operators a chain of numbers names between each two ("250 plus 250 minus 100")."""
_POSTFIX = {word: number for word, (operator, number) in _ON_ONE_NUMBER.items() if operator == "**"}
"""Powers written after their number ("4 squared"), with the exponent each brings."""
_GAP = re.compile(rf"\s*(?:({'|'.join(_POSTFIX)})\b)?\s*,?\s*((?:and\s+)?then\s+)?"
                  rf"(?:{'|'.join(f'(?P<o{k}>{words})' for k, (_symbol, words) in enumerate(_CHAINED))})\s*",
                  re.IGNORECASE)
"""What a chain writes between two numbers: a power of the first ("4 squared plus 9"), "then" (what came
before is computed first), the operator."""
_YES_OR_NO = re.compile(r"\s*(?:is|are|was|were|does|did)\b", re.IGNORECASE)
"""A question that asks whether, not how much ("Is 50 more than 20?"; not "Can you ..." or "Do you know ...",
which ask for the result)."""
_SMALLER = {"less", "fewer", "smaller", "lower", "younger", "shorter"}
"""Words that put the larger number second around "than" ("5 less than 20" is 20 - 5)."""
_VERBS = {"add": "adds", "subtract": "subtracts", "multiply": "multiplies", "divide": "divides",
          "raise": "raises to a power", "take a percentage": "takes a percentage",
          "take a remainder": "takes a remainder", "take a root": "takes a root", "average": "averages"}
_OWN_KIND = {"take a root", "average"}
"""Operations no other stands in for: one a question names is checked even beside others ("the square root of 16
plus 9" is not 16 + 9)."""
_SYMBOLS = {"subtract": "-", "divide": "/", "take a remainder": "%"}
"""The operator of an operation on two numbers in the order given."""


def _canonical(number: str) -> str:
    """A number as written ("1,000", "2.50", "07") in one spelling ("1000", "2.5", "7")."""
    digits = number.replace(",", "")
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    digits = digits.lstrip("0") or "0"
    return "0" + digits if digits.startswith(".") else digits  # "0.5", which the calculator reads; ".5" it does not


def _phrased(question: str) -> dict[str, str]:
    """The operations ``question``'s phrases ask (:data:`_PHRASES`), each
    with the operation word its phrase uses otherwise ("" for none)."""
    return {operation: word for phrase, operation, word, _compares in _PHRASES if phrase.search(question)}


def _compares(question: str) -> bool:
    """Whether ``question`` compares two numbers (:data:`_PHRASES`)."""
    return any(compares and phrase.search(question) for phrase, _operation, _word, compares in _PHRASES)


def _fraction(question: str) -> tuple[re.Match[str], str] | None:
    """The one fraction of a number ``question`` names in words, with its
    denominator, or None when it names none or several."""
    found = list(_FRACTION_OF.finditer(question))
    return (found[0], _DENOMINATORS[found[0].group(1).casefold()]) if len(found) == 1 else None


def _words(text: str) -> set[str]:
    """The words of ``text``, case folded (what operation words are looked up in)."""
    return set(re.findall(r"[a-z]+", text.casefold()))


def _written_runs(question: str) -> list[str]:
    """The runs of ``question`` that write arithmetic out in symbols ("17*23 + 5")."""
    return [run for run in _WRITTEN.findall(question) if _symbol_operations(run)]


def _spelt_numbers(text: str) -> list[tuple[int, int, str]]:
    """The numbers ``text`` writes in English words, in order, each with
    where it starts and ends ("twenty-one", "a hundred and five"; "one and
    two" is two numbers)."""
    found: list[tuple[int, int, str]] = []
    total = current = 0
    start = end = 0  # where the number being read starts, and where its last word ends
    last = ""  # the kind of the number's last word: "unit" (0-19), "tens", "scale", or "" outside a number
    # punctuation ends a number; a hyphen does not
    matches = list(re.finditer(r"[a-z]+|[^\sa-z-]", text, re.IGNORECASE | re.ASCII))
    words = [match.group().casefold() for match in matches]

    def close() -> None:
        nonlocal total, current, last
        if last:
            found.append((start, end, str(total + current)))
        total = current = 0
        last = ""

    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else ""
        if word in _UNITS:
            if last == "unit" or last == "tens" and _UNITS[word] >= 10:
                close()
            start = start if last else matches[index].start()
            current, last, end = current + _UNITS[word], "unit", matches[index].end()
        elif word in _TENS:
            if last in ("unit", "tens"):
                close()
            start = start if last else matches[index].start()
            current, last, end = current + _TENS[word], "tens", matches[index].end()
        elif word in _SCALES and (last or index > 0 and words[index - 1] == "a"):
            start = start if last else matches[index - 1].start()  # "a hundred" starts at "a"
            if _SCALES[word] == 100:
                current = (current or 1) * 100
            else:
                total, current = total + (current or 1) * _SCALES[word], 0
            last, end = "scale", matches[index].end()
        elif word == "a" and following in _SCALES:
            continue
        elif not (word == "and" and last == "scale" and (following in _UNITS or following in _TENS)):
            close()
    close()
    return found


def _numbers_at(question: str) -> list[tuple[int, int, str]]:
    """Each number ``question`` gives, in digits or in words, in order, with where it starts and ends."""
    digits = [(match.start(), match.end(), _canonical(match.group())) for match in _NUMBER.finditer(question)]
    return sorted(digits + _spelt_numbers(question))


def question_numbers(question: str) -> list[str]:
    """The numbers ``question`` gives, in digits or in words, in order, each
    in one spelling ("1,000" and "a thousand" are both "1000")."""
    if len(question) > MAX_QUESTION:
        return []
    return [number for _start, _end, number in _numbers_at(question)]


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
    "divide", "raise", "take a percentage", "take a remainder", "take a
    root", "average", in words ("the product of") or
    in symbols between numbers ("17*23", "7 x 8", "15%")."""
    if len(question) > MAX_QUESTION:
        return set()
    words = _words(question)
    phrased = _phrased(question)
    words -= set(phrased.values())
    named = {operation for operation, names in _OPERATION_WORDS.items() if words.intersection(names)}
    named |= phrased.keys()
    if "take a remainder" in named:  # "the remainder when 29 is divided by 4"
        named.discard("divide")
    if _fraction(question) is not None:
        named.add("divide")
    if _PERCENT.search(question):
        named.add("take a percentage")
    for run in _written_runs(question):
        named |= _symbol_operations(run)
    return named


def _implied_numbers(question: str) -> set[str]:
    """The numbers ``question``'s operation words bring with them (:data:`_IMPLIED`; "15%" brings 100; a
    cube root 1 and 3, the exponent 1/3; an average how many numbers it gives)."""
    words = _words(question)
    implied = {number for word, number in _IMPLIED.items() if word in words}
    if "cube" in words and words.intersection(_OPERATION_WORDS["take a root"]):
        implied |= {"1", "3"}
    if words.intersection(_OPERATION_WORDS["average"]):
        implied.add(str(len(question_numbers(question))))
    fraction = _fraction(question)
    implied |= {fraction[1]} if fraction is not None else set()
    return implied | ({"100"} if _PERCENT.search(question) else set())


def _written_numbers(question: str) -> list[str] | None:
    """The numbers of the one expression ``question`` writes out in symbols
    ("What is 17*23 + 5?": 17, 23, 5), or None when it writes none or several."""
    runs = _written_runs(question)
    return [_canonical(number) for number in _NUMBER.findall(runs[0])] if len(runs) == 1 else None


def expression_problem(value: str, question: str) -> str | None:
    """Why the arithmetic ``value`` is not the question's: it holds a number
    the question does not give (:func:`question_numbers`, or one its
    operation word brings: "half" a 2, "percent" a 100), it leaves out one
    of the expression the question writes out ("17*23" for "What is 17*23 +
    5?"), the question names one operation (:func:`named_operations`), or
    a root or an average beside others, and ``value`` does not do it (a
    percentage is a division by 100; "12, 30" does nothing), or the
    question states its arithmetic plainly (:func:`question_expression`)
    and ``value`` computes another result ("17 + 5" for "What is 17 plus
    38 plus 5?"); None when none of these."""
    problem = _unlike_the_question(value, question)
    if problem is not None:
        return problem
    stated = question_expression(question)
    if stated is None:
        return None
    try:
        result, wanted = evaluate(value), evaluate(stated)
    except CalculatorError:  # the calculator says what is wrong with it when it runs
        return None
    return None if result == wanted else f"computes {result} where the question states {stated}"


def _unlike_the_question(value: str, question: str) -> str | None:
    """:func:`expression_problem` without the comparison with what the question states plainly."""
    if len(question) > MAX_QUESTION:
        return f"cannot be checked against a question over {MAX_QUESTION} characters"
    given = set(question_numbers(question)) | _implied_numbers(question)
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
    if _HUNDREDTHS.search(value):
        done.add("take a percentage")
    unmet = named - done if len(named) == 1 else (named & _OWN_KIND) - done
    if unmet:
        asked = min(unmet)
        asking = {"raise": "raise to a power"}.get(asked, asked)
        doing = " and ".join(sorted(_VERBS[operation] for operation in done)) or "computes nothing"
        return f"{doing} where the question asks to {asking}"
    return None


def _for_calculator(run: str) -> str:
    """An expression as a question writes it ("7 x 8", "81 \u00f7 9", "1,000 + 5") as the calculator reads it."""
    run = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", run)
    run = re.sub(r"\u00d7|(?<=[\d\s)])x(?=[\s\d(])", "*", run, flags=re.IGNORECASE)
    return run.replace("\u00f7", "/").replace("^", "**").strip()


def question_expression(question: str) -> str | None:
    """The arithmetic ``question`` states plainly, as the calculator reads
    it, or None when it states none or leaves room for doubt.

    Plainly is: one expression written out in symbols and no other number
    or operation ("What is 17*23 + 5?"), or a fraction of a number in digits
    ("2/5 of 50"); or, in words, one operation (:func:`named_operations`) on
    the question's numbers in the order it gives them ("300 minus 45"),
    every number added or multiplied ("the sum of 12, 30 and 8", "45 more
    than 30"), one number doubled, halved, squared or cubed, the square or
    cube root of one number ("sqrt 64", "the cube root of 27"), the average
    of two numbers or more ("the mean of 4 and 8"), a fraction of a
    number ("three quarters of 200"), "P percent of N", "A to the power of
    B", the remainder of A divided by B, how many of A are in B, and two
    numbers subtracted or divided the other way round when "from" stands
    between them ("Subtract 58 from 200"), "into" without a word for
    sharing out ("how many times does 8 go into 64", but "split 90 into 3"),
    a word for sharing out ("5 friends share 60") or "than" after a word
    for smaller ("4 less than 10"), and in the order
    given when "than" follows a word for larger ("how much more is 50 than
    20", "by how much is 500 greater than 320"), or larger less smaller for
    "the difference between"; or a chain of numbers with an operator
    between each two ("250 plus 250 minus 100", "4 squared plus 9", "144
    divided by 12, then times 3": what comes before "then" first). Never
    for a comparison with neither "than" nor "into" ("how many times does 8
    fit in 64"), a rate ("per"), a question that asks whether ("Is 50 more
    than 20?"), a number written with a sign, an expression the calculator
    cannot read, or a question :func:`expression_problem` would not pass as
    its own.
    """
    if len(question) > MAX_QUESTION:
        return None
    numbers = _numbers_at(question)
    named = named_operations(question)
    runs = _written_runs(question)
    fraction = _DIGIT_FRACTION_OF.search(question)
    if fraction is not None and len(runs) == 1 and len(numbers) == 3 and named == {"divide"}:
        (_, _, numerator), (_, _, denominator), (_, _, whole) = numbers
        expression: str | None = f"{numerator} / {denominator} * {whole}"
    elif runs:
        if len(runs) > 1 or not named <= _symbol_operations(runs[0]) or len(numbers) != len(
                _NUMBER.findall(runs[0])):
            return None
        expression = _for_calculator(runs[0])
    elif len(numbers) > 8 or re.search(r"-\s*\d", question) or _YES_OR_NO.match(question):
        return None
    else:
        expression = _worded_expression(question, named.pop(), numbers) if len(named) == 1 else None
        expression = expression or _chained_expression(question, numbers)
    if expression is None or _unlike_the_question(expression, question) is not None:
        return None
    try:
        evaluate(expression)
    except CalculatorSyntaxError:  # "(+0": written out, but not arithmetic the calculator reads
        return None
    except CalculatorError:  # the question's own arithmetic, which the calculator refuses (a division by zero)
        pass
    return expression


def _worded_expression(question: str, operation: str, numbers: list[tuple[int, int, str]]) -> str | None:
    """:func:`question_expression` for a question that names ``operation`` in words."""
    words = _words(question)
    values = [value for _start, _end, value in numbers]
    more_than = operation == "add" and re.search(r"\bmore than\b", question, re.IGNORECASE) is not None
    if "than" in words and operation not in ("subtract", "divide") and not more_than or "per" in words:
        return None
    if len(_FRACTION_OF.findall(question)) > 1:
        return None
    fraction = _fraction(question)
    if fraction is not None:
        return _fraction_expression(question, fraction, numbers)
    if operation == "take a root":
        return _root_expression(words, values)
    if operation == "average":
        return f"({' + '.join(values)}) / {len(values)}" if len(values) >= 2 else None
    on_one = [(operator, number) for word, (operator, number) in _ON_ONE_NUMBER.items() if word in words]
    if on_one:
        return f"{values[0]} {on_one[0][0]} {on_one[0][1]}" if len(on_one) == 1 and len(values) == 1 else None
    if operation in ("add", "multiply"):
        return f" {'+' if operation == 'add' else '*'} ".join(values) if len(values) >= 2 else None
    if len(values) != 2:
        return None
    (_, first_end, first), (second_start, _, second) = numbers
    between = _words(question[first_end:second_start])
    if operation == "take a percentage":
        percent = question[first_end:second_start].lstrip()
        return f"{first} / 100 * {second}" if re.match(r"(%|percent)\s+of\b", percent, re.IGNORECASE) else None
    if operation == "raise":
        return f"{first} ** {second}" if "power" in words else None
    if operation == "subtract" and "difference" in words:
        low, high = sorted((first, second), key=float)
        return f"{high} - {low}"
    if operation == "divide" and _GROUPS.search(question):
        return f"{second} / {first}"
    if _compares(question) and not between & {"than", "into"} or operation not in _SYMBOLS:
        return None
    if ("from" in between or "into" in between and not words & _SHARING or between & _SHARING_OUT
            or "than" in between and words & _SMALLER):
        first, second = second, first
    return f"{first} {_SYMBOLS[operation]} {second}"


def _root_expression(words: set[str], values: list[str]) -> str | None:
    """The square or cube root of the question's one number ("the square root of 144", "sqrt 64",
    "the cube root of 27"), or None for another root or more numbers."""
    if len(values) != 1 or "cube" in words and words & {"square", "sqrt"}:
        return None
    if "cube" in words:
        return f"{values[0]} ** (1/3)"
    return f"sqrt({values[0]})" if words & {"square", "sqrt"} else None


def _fraction_expression(question: str, fraction: tuple[re.Match[str], str],
                         numbers: list[tuple[int, int, str]]) -> str | None:
    """A fraction of the one number that follows it ("three quarters of
    200": 200 * 3 / 4), or None when other numbers stand elsewhere."""
    match, denominator = fraction
    whole = [number for number in numbers if number[0] >= match.end()]
    numerator = [number for number in numbers if match.start() <= number[0] < match.end()]
    if len(whole) != 1 or len(numerator) + 1 != len(numbers) or question[match.end():whole[0][0]].strip():
        return None
    times = numerator[0][2] if numerator else "1"
    return f"{whole[0][2]} / {denominator}" if times == "1" else f"{whole[0][2]} * {times} / {denominator}"


def _chained_expression(question: str, numbers: list[tuple[int, int, str]]) -> str | None:
    """:func:`question_expression` for a chain of numbers with an operator
    in words between each two (:data:`_GAP`), none before the first, at
    most "squared" or "cubed" after the last."""
    if len(numbers) < 2 or _phrased(question) or named_operations(question[:numbers[0][0]]):
        return None
    rest = question[numbers[-1][1]:]
    last = re.match(rf"\s*({'|'.join(_POSTFIX)})\b", rest, re.IGNORECASE)
    if last is not None:
        rest = rest[last.end():]
    if named_operations(rest) or _FRACTION_OF.search(question):
        return None
    expression = numbers[0][2]
    for (_, end, _), (start, _, value) in zip(numbers, numbers[1:]):
        gap = _GAP.fullmatch(question[end:start])
        if gap is None:
            return None
        if gap.group(1):
            expression += f" ** {_POSTFIX[gap.group(1).casefold()]}"
        if gap.group(2):
            expression = f"({expression})"
        symbol = next(symbol for k, (symbol, _words) in enumerate(_CHAINED) if gap.group(f"o{k}"))
        expression += f" {symbol} {value}"
    return expression + (f" ** {_POSTFIX[last.group(1).casefold()]}" if last is not None else "")
