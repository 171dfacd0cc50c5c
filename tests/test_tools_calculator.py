"""The safe calculator: golden expressions and hostile inputs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_spider.tools import (
    CalculatorDomainError, CalculatorError, CalculatorLimitError, CalculatorSyntaxError, calculator, evaluate,
)
from meta_spider.tools.calculator import MAX_DEPTH, MAX_EXPRESSION_LENGTH


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("-2 ** 2", "-4"),  # ** binds tighter than unary minus, as in Python
        ("2 ** -1", "0.5"),
        ("2 ** 3 ** 2", "512"),  # right-associative
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("7 % 3", "1"),
        ("-7 % 3", "2"),
        ("10 / 4", "2.5"),
        ("8 / 2", "4"),
        ("0.1 + 0.2", "0.3"),
        ("1e3 + .5", "1000.5"),
        ("--3", "3"),
        ("+4 - -4", "8"),
        ("sqrt(16) + abs(-2)", "6"),
        ("max(1, 7, 3) - min(4, 2)", "5"),
        ("max(5)", "5"),
        ("round(2.567, 2)", "2.57"),
        ("log(8, 2)", "3"),
        ("floor(2.7) + ceil(2.1)", "5"),
        ("2 * pi", "6.28318530717959"),
        ("17 * 23 + 4", "395"),
        ("17 x 23", "391"),  # as people write it: x after an operand, the signs
        ("(2 + 3) X 4", "20"),
        ("17x23", "391"),
        ("2x3x4", "24"),
        ("17 \u00d7 23", "391"),
        ("9 \u00f7 4", "2.25"),
        ("2 ** 100", "1267650600228229401496703205376"),
    ],
)
def test_golden_expressions(expression: str, expected: str) -> None:
    assert calculator(expression) == expected


def test_evaluate_returns_numbers() -> None:
    assert evaluate("3 * 4") == 12 and isinstance(evaluate("3 * 4"), int)
    assert evaluate("3 / 4") == 0.75


@pytest.mark.parametrize(
    "expression, error, reason",
    [
        ("__import__('os')", CalculatorSyntaxError, "unexpected character"),
        ("__import__(1)", CalculatorSyntaxError, "unknown function '__import__'"),
        ("os.system(1)", CalculatorSyntaxError, "unexpected character '.'"),
        ("().__class__", CalculatorSyntaxError, "unexpected character '.'"),
        ("()", CalculatorSyntaxError, "expected a number, found ')'"),
        ("x + 1", CalculatorSyntaxError, "unknown name 'x'"),
        ("3 x x", CalculatorSyntaxError, "unknown name 'x'"),  # x multiplies only after an operand
        ("3 xy", CalculatorSyntaxError, "unexpected 'xy'"),
        ("sqrt", CalculatorSyntaxError, "needs arguments"),
        ("2 ^ 3", CalculatorSyntaxError, "use ** for powers"),
        ("", CalculatorSyntaxError, "empty"),
        ("1 +", CalculatorSyntaxError, "found the end"),
        ("(1 + 2", CalculatorSyntaxError, "expected ')'"),
        ("1 2", CalculatorSyntaxError, "unexpected '2'"),
        ("sqrt(1, 2)", CalculatorSyntaxError, "takes 1..1 arguments"),
        ("1 / 0", CalculatorDomainError, "division by zero"),
        ("5 // 0.0", CalculatorDomainError, "division by zero"),
        ("5 % 0", CalculatorDomainError, "division by zero"),
        ("0 ** -1", CalculatorDomainError, "division by zero"),
        ("sqrt(-1)", CalculatorDomainError, "undefined"),
        ("(-8) ** 0.5", CalculatorDomainError, "not a real number"),
        ("9 ** 9 ** 9", CalculatorLimitError, "digits"),
        ("2 ** 100000", CalculatorLimitError, "digits"),
        ("10.0 ** 400", CalculatorLimitError, "overflows a float"),
        ("0.5 ** -5000", CalculatorLimitError, "too large"),
        ("10 ** 3999 * 10 ** 3999", CalculatorLimitError, "exceeds"),
        ("exp(1000)", CalculatorLimitError, "too large"),
        ("1e308 * 10", CalculatorLimitError, "infinite"),
        ("1e999 - 1e999", CalculatorLimitError, "infinite"),
    ],
)
def test_hostile_and_bad_inputs_raise_typed_errors(expression: str, error: type, reason: str) -> None:
    with pytest.raises(error) as info:
        evaluate(expression)
    assert reason in info.value.reason
    assert info.value.expression == expression


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    depth = MAX_DEPTH + 5
    for expression in ("(" * depth + "1" + ")" * depth, "-" * depth + "1", "sqrt(" * depth + "1" + ")" * depth):
        with pytest.raises(CalculatorLimitError, match="nested deeper"):
            evaluate(expression)
    # Within the limit, nesting is fine.
    assert calculator("(" * 20 + "1" + ")" * 20) == "1"


def test_overlong_expression_is_refused() -> None:
    with pytest.raises(CalculatorLimitError, match="longer than"):
        evaluate("1+" * MAX_EXPRESSION_LENGTH + "1")


def test_errors_are_value_errors_with_a_position() -> None:
    with pytest.raises(ValueError) as info:
        evaluate("1 + $")
    assert isinstance(info.value, CalculatorError)
    assert info.value.position == 4


def test_calculator_is_a_builtin_tool_through_the_schema(plugin_manager) -> None:
    from meta_spider.tools import ToolArgumentError, ToolRegistry

    tool = ToolRegistry.from_plugins(plugin_manager)["calculator"]
    assert tool(expression="6 * 7") == "42"
    with pytest.raises(ToolArgumentError):
        tool(expression=42)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789.e+-*/%(), sqrtabminxpilog^_'", max_size=60))
def test_fuzz_only_numbers_or_calculator_errors(expression: str) -> None:
    try:
        value = evaluate(expression)
    except CalculatorError:
        return
    assert isinstance(value, (int, float)) and not isinstance(value, bool)
