"""The calculator against expressions from its own grammar, with huge and
negative arguments everywhere: every one ends in well under a second with a
number or a :class:`CalculatorError`, never another exception."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import campaign_settings, record_campaign
from meta_spider.tools import CalculatorError, calculator

FUNCTIONS = {
    "abs": 1, "round": 2, "min": 3, "max": 3, "sqrt": 1, "exp": 1, "log": 2, "log10": 1, "log2": 1,
    "sin": 1, "cos": 1, "tan": 1, "floor": 1, "ceil": 1,
}

numbers = st.one_of(
    st.integers(min_value=-10, max_value=10).map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["10**8", "-10**8", "999999999", "-999999999", "10**999", "9**9**9", "2**10000",
                     "1e308", "-1e308", "1e-320", "0.5", ".1", "1e999", "7.0"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["pi", "e", "tau"]),
)


def _call(args: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def build(name: str) -> st.SearchStrategy[str]:
        count = st.integers(min_value=1, max_value=FUNCTIONS[name])
        return count.flatmap(lambda n: st.lists(args, min_size=n, max_size=n)).map(
            lambda parts: f"{name}({', '.join(parts)})"
        )

    return st.sampled_from(sorted(FUNCTIONS)).flatmap(build)


expressions = st.recursive(
    numbers,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "x", "\u00d7", "\u00f7"]),
                  inner).map(" ".join),
        inner.map(lambda text: f"-{text}"),
        inner.map(lambda text: f"({text})"),
        _call(inner),
    ),
    max_leaves=12,
)


@campaign_settings(ci_default=400)
@given(expressions)
def test_calculator_grammar_campaign(expression: str) -> None:
    figures = record_campaign("calculator (own grammar, huge and negative arguments)")
    # CPU time of this thread: what a runaway computation spends, unmoved by
    # other processes on a busy machine (wall time read 1.3 s for "--(-3)").
    started = time.thread_time()
    crashed = False
    try:
        calculator(expression)
    except CalculatorError:
        pass
    except Exception:
        crashed = True
        raise
    finally:
        seconds = time.thread_time() - started
        figures.add(seconds, crashed=crashed)
    assert seconds < 1.0, f"{expression!r} took {seconds:.1f} s of CPU"


def test_negative_round_precision_returns() -> None:
    # Python computes 10 ** -digits to round an int: round(1, -10**8) ran for
    # minutes in C, where no thread deadline reaches, so a child process runs it.
    code = (
        "from meta_spider.tools import calculator\n"
        "print(calculator('round(1, -10**8)'), calculator('round(1, -999999999)'),"
        " calculator('round(123456, -2)'), calculator('round(1.25, 10**9)'))"
    )
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("a negative round() precision hangs the calculator")
    assert result.stdout.split() == ["0", "0", "123500", "1.25"], result.stderr
