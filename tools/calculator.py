"""A safe arithmetic evaluator: a tokenizer and a recursive-descent parser.

Nothing here calls ``eval`` or compiles Python. The grammar (Python's
precedence, ``**`` right-associative and binding tighter than unary minus)::

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/" | "//" | "%") unary)*
    unary  := ("+" | "-") unary | power
    power  := atom ("**" unary)?
    atom   := NUMBER | NAME | NAME "(" expr ("," expr)* ")" | "(" expr ")"

People write multiplication and division as they learnt them: ``×`` and
``÷`` are ``*`` and ``/``, and so is an ``x`` between two operands
(``17 x 23``, ``17x23``; no name is ``x``). Names are a fixed whitelist of
constants and math functions. Limits on length, nesting and result size
turn hostile input into a typed
:class:`CalculatorError` before it can exhaust time or memory. The module
knows nothing about tools or models; :func:`calculator` is the tool function.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

from meta_spider.plugins.errors import MetaSpiderError

__all__ = [
    "CalculatorDomainError",
    "CalculatorError",
    "CalculatorLimitError",
    "CalculatorSyntaxError",
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "MAX_RESULT_DIGITS",
    "calculator",
    "evaluate",
    "format_number",
]

MAX_EXPRESSION_LENGTH = 1000
MAX_DEPTH = 60
"""Nesting of parentheses, unary signs and powers; far below Python's recursion limit."""
MAX_RESULT_DIGITS = 4000
"""Largest integer magnitude (in decimal digits) any step may produce."""

Number = int | float


class CalculatorError(MetaSpiderError, ValueError, fields=("expression", "reason", "position")):
    """The expression cannot be evaluated; ``position`` is a 0-based index
    into ``expression`` when the problem has one place."""

    position = None

    def describe(self) -> str:
        where = f" at position {self.position}" if self.position is not None else ""
        return f"cannot evaluate {self.expression[:80]!r}{where}: {self.reason}"


class CalculatorSyntaxError(CalculatorError):
    """Not an arithmetic expression this calculator reads."""


class CalculatorDomainError(CalculatorError):
    """A mathematically undefined step: division by zero, sqrt of a negative, ..."""


class CalculatorLimitError(CalculatorError):
    """The expression or a result is too large or too deeply nested."""


_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    # name: (function, min args, max args)
    "abs": (abs, 1, 1),
    "round": (round, 1, 2),
    # min()/max() of one number is that number, not "int is not iterable".
    "min": (lambda *values: min(values), 1, 16),
    "max": (lambda *values: max(values), 1, 16),
    "sqrt": (math.sqrt, 1, 1),
    "exp": (math.exp, 1, 1),
    "log": (math.log, 1, 2),
    "log10": (math.log10, 1, 1),
    "log2": (math.log2, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|//|[-+*/%(),\u00d7\u00f7]))"
)
_TIMES = re.compile(r"[xX](?:\d|$)")
"""A name that is an ``x`` before a number or alone: multiplication after an operand."""
_SIGNS = {"\u00d7": "*", "\u00f7": "/"}
"""Operators written as people write them, and the operator each is."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "number" | "name" | "op" | "end"
    text: str
    position: int


def _tokenize(expression: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(expression):
        if expression[position:].strip() == "":
            break
        match = _TOKEN.match(expression, position)
        if match is None or match.end() == position:
            bad = position + (len(expression[position:]) - len(expression[position:].lstrip()))
            char = expression[bad]
            hint = " (use ** for powers)" if char == "^" else ""
            raise CalculatorSyntaxError(expression, f"unexpected character {char!r}{hint}", bad)
        kind = match.lastgroup or "op"
        text = match.group(kind)
        start = match.start(kind)
        if kind == "name" and _TIMES.match(text) and tokens and (tokens[-1].kind == "number"
                                                                  or tokens[-1].text == ")"):
            tokens.append(_Token("op", "*", start))  # "17 x 23", "17x23": x after an operand multiplies
            position = start + 1
            continue
        tokens.append(_Token(kind, _SIGNS.get(text, text) if kind == "op" else text, start))
        position = match.end()
    tokens.append(_Token("end", "", len(expression)))
    return tokens


class _Parser:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokenize(expression)
        self.index = 0
        self.depth = 0

    # -- helpers
    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, text: str) -> None:
        if self.current.text != text or self.current.kind == "end":
            found = repr(self.current.text) if self.current.kind != "end" else "the end"
            raise CalculatorSyntaxError(self.expression, f"expected {text!r}, found {found}", self.current.position)
        self.advance()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CalculatorLimitError(self.expression, f"nested deeper than {MAX_DEPTH} levels", self.current.position)

    def fail(self, reason: str, position: int | None = None) -> CalculatorError:
        return CalculatorDomainError(self.expression, reason, position)

    # -- grammar
    def parse(self) -> Number:
        if self.current.kind == "end":
            raise CalculatorSyntaxError(self.expression, "the expression is empty", 0)
        value = self.expr()
        if self.current.kind != "end":
            raise CalculatorSyntaxError(self.expression, f"unexpected {self.current.text!r}", self.current.position)
        return value

    def expr(self) -> Number:
        value = self.term()
        while self.current.text in ("+", "-") and self.current.kind == "op":
            op = self.advance()
            value = self.apply(op, value, self.term())
        return value

    def term(self) -> Number:
        value = self.unary()
        while self.current.text in ("*", "/", "//", "%") and self.current.kind == "op":
            op = self.advance()
            value = self.apply(op, value, self.unary())
        return value

    def unary(self) -> Number:
        self.enter()
        try:
            if self.current.kind == "op" and self.current.text in ("+", "-"):
                sign = self.advance().text
                value = self.unary()
                return -value if sign == "-" else +value
            return self.power()
        finally:
            self.depth -= 1

    def power(self) -> Number:
        base = self.atom()
        if self.current.kind == "op" and self.current.text == "**":
            op = self.advance()
            return self.apply(op, base, self.unary())
        return base

    def atom(self) -> Number:
        token = self.current
        if token.kind == "number":
            self.advance()
            text = token.text
            if any(c in text for c in ".eE"):
                return self.check_size(float(text), token.position)  # 1e999 is inf
            if len(text) > MAX_RESULT_DIGITS:
                raise CalculatorLimitError(self.expression, "number literal too long", token.position)
            return int(text)
        if token.kind == "op" and token.text == "(":
            self.advance()
            self.enter()
            try:
                value = self.expr()
            finally:
                self.depth -= 1
            self.expect(")")
            return value
        if token.kind == "name":
            self.advance()
            if self.current.kind == "op" and self.current.text == "(":
                return self.call(token)
            if token.text in _CONSTANTS:
                return _CONSTANTS[token.text]
            if token.text in _FUNCTIONS:
                raise CalculatorSyntaxError(
                    self.expression, f"function {token.text!r} needs arguments in parentheses", token.position
                )
            raise CalculatorSyntaxError(
                self.expression,
                f"unknown name {token.text!r}; known: {', '.join(sorted(_CONSTANTS))}",
                token.position,
            )
        found = "the end" if token.kind == "end" else repr(token.text)
        raise CalculatorSyntaxError(self.expression, f"expected a number, found {found}", token.position)

    def call(self, name: _Token) -> Number:
        if name.text not in _FUNCTIONS:
            raise CalculatorSyntaxError(
                self.expression,
                f"unknown function {name.text!r}; known: {', '.join(sorted(_FUNCTIONS))}",
                name.position,
            )
        function, low, high = _FUNCTIONS[name.text]
        self.expect("(")
        self.enter()
        try:
            args = [self.expr()]
            while self.current.kind == "op" and self.current.text == ",":
                self.advance()
                args.append(self.expr())
        finally:
            self.depth -= 1
        self.expect(")")
        if not low <= len(args) <= high:
            raise CalculatorSyntaxError(
                self.expression, f"{name.text}() takes {low}..{high} arguments, got {len(args)}", name.position
            )
        if name.text == "round" and len(args) == 2:
            if not isinstance(args[1], int):
                raise CalculatorDomainError(self.expression, "round()'s digits must be an integer", name.position)
            args[1] = _bounded_round_digits(args[1])
        try:
            result = function(*args)
        except (ValueError, ZeroDivisionError) as exc:
            shown = ", ".join(format_number(arg) for arg in args)
            raise CalculatorDomainError(
                self.expression, f"{name.text}({shown}) is undefined ({exc})", name.position
            ) from None
        except OverflowError:
            raise CalculatorLimitError(self.expression, f"{name.text}() result is too large", name.position) from None
        return self.check_size(result, name.position)

    def apply(self, op: _Token, left: Number, right: Number) -> Number:
        symbol = op.text
        if symbol in ("/", "//", "%") and right == 0:
            raise CalculatorDomainError(self.expression, "division by zero", op.position)
        if symbol == "**":
            self.check_power(left, right, op.position)
        try:
            result: Number
            if symbol == "+":
                result = left + right
            elif symbol == "-":
                result = left - right
            elif symbol == "*":
                result = left * right
            elif symbol == "/":
                result = left / right
            elif symbol == "//":
                result = left // right
            elif symbol == "%":
                result = left % right
            else:
                result = left**right
        except OverflowError:
            raise CalculatorLimitError(self.expression, f"the result of {symbol!r} is too large", op.position) from None
        except ZeroDivisionError:  # 0 ** -1
            raise CalculatorDomainError(self.expression, "division by zero", op.position) from None
        if isinstance(result, complex):  # (-8) ** 0.5
            raise CalculatorDomainError(self.expression, "the result is not a real number", op.position)
        return self.check_size(result, op.position)

    def check_power(self, base: Number, exponent: Number, position: int) -> None:
        # Estimate the size before computing: 9 ** 9 ** 9 must never start.
        if base in (0, 1, -1) or exponent <= 0:
            return
        try:
            digits = abs(exponent) * math.log10(abs(base))
        except OverflowError:  # an exponent too large for a float: the power is huge or tiny
            digits = math.inf if abs(base) > 1 else -math.inf
        if isinstance(base, int) and isinstance(exponent, int) and digits > MAX_RESULT_DIGITS:
            raise CalculatorLimitError(
                self.expression,
                f"the power would have about {digits:.0f} digits (limit {MAX_RESULT_DIGITS})"
                if math.isfinite(digits) else f"the power would have far more than {MAX_RESULT_DIGITS} digits",
                position,
            )
        if (isinstance(base, float) or isinstance(exponent, float)) and digits > 308:
            raise CalculatorLimitError(self.expression, "the power overflows a float", position)

    def check_size(self, value: Number, position: int) -> Number:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int) and value.bit_length() > MAX_RESULT_DIGITS * 3.33:
            raise CalculatorLimitError(self.expression, f"a result exceeds {MAX_RESULT_DIGITS} digits", position)
        if isinstance(value, float) and math.isinf(value):
            raise CalculatorLimitError(self.expression, "a result is infinite", position)
        if isinstance(value, float) and math.isnan(value):
            raise CalculatorDomainError(self.expression, "a result is not a number", position)
        return value


_ROUND_DIGITS_LOW = -(MAX_RESULT_DIGITS + 2)
_ROUND_DIGITS_HIGH = 1100
"""Python computes ``10 ** -digits`` to round an int to negative ``digits``
(``round(1, -10**8)`` runs for minutes). Every value here is below
``10 ** (MAX_RESULT_DIGITS + 1)`` and every float's last decimal place is
above ``10 ** -1100``, so rounding to digits outside these bounds gives the
same result as rounding to the bound."""


def _bounded_round_digits(digits: int) -> int:
    return min(max(digits, _ROUND_DIGITS_LOW), _ROUND_DIGITS_HIGH)


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression and return an int or a float.

    Raises :class:`CalculatorSyntaxError`, :class:`CalculatorDomainError` or
    :class:`CalculatorLimitError` (all :class:`CalculatorError`).
    """
    if not isinstance(expression, str):
        raise CalculatorSyntaxError(repr(expression), "the expression must be a string")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CalculatorLimitError(expression, f"longer than {MAX_EXPRESSION_LENGTH} characters")
    return _Parser(expression).parse()


def format_number(value: Number) -> str:
    """Integers exactly; floats with 15 significant digits, so that
    ``0.1 + 0.2`` reads ``0.3`` and ``4.0`` reads ``4``."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.15g}"


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression such as '(17 + 4) * 2 / 3'.

    Args:
        expression: Numbers, + - * / // % ** and parentheses; functions sqrt, abs,
            round, min, max, log, exp, sin, cos, tan, floor, ceil; constants pi, e.
    """
    return format_number(evaluate(expression))
