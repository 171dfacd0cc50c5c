"""Hypothesis fuzzing of every family's parser: random text, markup soup,
random truncations of valid output, and junk mixed with valid calls. The
parser must never raise and must account for every character; where the
input is valid output plus marker-free junk, the calls must come back
exactly.

The parsers are run directly (``PARSERS[family]`` on a ``SpanBuilder``), so
the renderer's last-resort exception net cannot hide a parser bug; the
public ``parse`` must then agree with them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from native_fixtures import assert_every_character_accounted_for

from meta_spider.native import NativeToolRenderer, ParseResult, ToolCallFamily
from meta_spider.native.parsers import PARSERS
from meta_spider.native.renderer import mark_leading_reasoning
from meta_spider.native.scan import xml_value
from meta_spider.native.results import SpanBuilder

FAMILIES = list(ToolCallFamily)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_strictly(family: ToolCallFamily, text: str) -> ParseResult:
    """Run the family's parser (after the renderer's leading-reasoning step)
    with no exception net, then check that the public ``parse`` agrees and
    that the no-lost-text invariant holds."""
    builder = SpanBuilder(text)
    mark_leading_reasoning(builder, family)
    PARSERS[family](builder)
    result = builder.finish()
    # repr, not ==, so a NaN decoded from the text compares equal to itself
    assert repr(NativeToolRenderer(family).parse(text)) == repr(result)
    assert_every_character_accounted_for(result, text)
    return result


# ---------------------------------------------------------------- strategies

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,15}", fullmatch=True)
# Strings inside arguments: braces, quotes, backslashes, brackets, newlines,
# non-ASCII; no '<' so argument text cannot spell a family's opening tag.
argument_text = st.text(
    alphabet=st.sampled_from(list("ab xyz{}[]\"'\\:,;/>\n\tÜé€😀")), max_size=12
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | argument_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(argument_text, children, max_size=3),
    max_leaves=10,
)
arguments = st.dictionaries(argument_text, json_values, max_size=4)
calls = st.lists(st.tuples(names, arguments), min_size=1, max_size=3)

# Families that write one tag per parameter (or Python keywords) name each
# argument with an identifier, and a string value that reads as JSON
# ("1", "null") comes back as that JSON value: the exact round trip holds
# for values that are not such strings.
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
tag_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False) | argument_text.filter(lambda s: xml_value(s) == s),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(argument_text, children, max_size=3),
    max_leaves=10,
)
TAGGED = {
    ToolCallFamily.QWEN3_CODER, ToolCallFamily.SEED_OSS, ToolCallFamily.GLM45, ToolCallFamily.MINIMAX_M2,
    ToolCallFamily.PYTHONIC,
}
# Bare lists count as calls only at the start of a line.
LINE_START = {ToolCallFamily.PYTHONIC, ToolCallFamily.XLAM}


def calls_for(family: ToolCallFamily) -> st.SearchStrategy[list[tuple[str, dict[str, Any]]]]:
    if family in TAGGED:
        return st.lists(st.tuples(names.filter(lambda n: n.replace(".", "").replace("-", "").isidentifier() and
                                               ".." not in n and not n.endswith(".") and "-" not in n and
                                               all(part.isidentifier() for part in n.split("."))),
                                  st.dictionaries(identifiers, tag_values, max_size=4)), min_size=1, max_size=3)
    return calls


# Junk that spells no family's markup: no '<', '[', '{', '>' or ';' (Llama's
# call separator), so the exact-calls property is well defined.
clean_junk = st.text(alphabet=st.characters(blacklist_characters="<[{;>", blacklist_categories=("Cs",)), max_size=20)

MARKUP = [
    "<tool_call>", "</tool_call>", "<|python_tag|>", "<|eom_id|>", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]",
    "<function=", "</function>", "<think>", "</think>", ">", "{", "}", "[", "]", '"', "\\", ",", ":", ";", "\n", " ",
    "<parameter=", "</parameter>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>", "<seed:tool_call>",
    "</seed:tool_call>", "<minimax:tool_call>", '<invoke name="', "</invoke>", '<parameter name="',
    "<|tool_calls_section_begin|>", "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>", "```json", "```",
    "<|START_ACTION|>", "<|END_ACTION|>", "Action:", "<|action_start|><|plugin|>", "<|action_end|>", "<TOOLCALL>",
    "</TOOLCALL>", "<|tool_call|>", " functools", "<|tool_call_start|>", "<|tool_call_end|>", "<|python_start|>",
    ">>>", "all\n", "<|channel|>", "<|message|>", "<|end|>", "<|call|>", "<|start|>", " to=functions.", "analysis",
    "function", "f(x=1)", "\n[f(", "<seed:think>", "<|START_THINKING|>", "<|END_THINKING|>",
    '"name"', '"arguments"', '"parameters"', '"id"', "get_weather", "null", "1e999", "[[[[", "{{{{",
    '{"name": "f", "arguments": {}}', '{"name": "f", "parameters": {"x": 1}}', "f.call(x=1)",
]
markup_soup = st.lists(st.sampled_from(MARKUP) | st.text(max_size=5), max_size=30).map("".join)


def valid_output(family: ToolCallFamily, call_list: list[tuple[str, dict[str, Any]]], junk: list[str]) -> str:
    """junk[0] call junk[1] call ... junk[n]: each call written by format_call."""
    renderer = NativeToolRenderer(family)
    newline = "\n" if family in LINE_START else ""
    pieces = [junk[0]]
    for (name, args), after in zip(call_list, junk[1:]):
        pieces += [newline, renderer.format_call(name, args), after]
    return "".join(pieces)


def draw_valid_output(data: Any, family: ToolCallFamily) -> tuple[list[tuple[str, dict[str, Any]]], list[str], str]:
    """Draw calls for ``family`` and clean junk around them: ``(calls, junk, valid_output(...))``."""
    call_list = data.draw(calls_for(family))
    junk = data.draw(st.lists(clean_junk, min_size=len(call_list) + 1, max_size=len(call_list) + 1))
    return call_list, junk, valid_output(family, call_list, junk)


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.value)
@FUZZ
@given(text=st.text(max_size=300))
def test_random_text_never_raises_and_loses_nothing(family: ToolCallFamily, text: str) -> None:
    parse_strictly(family, text)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.value)
@FUZZ
@given(text=markup_soup)
def test_markup_soup_never_raises_and_loses_nothing(family: ToolCallFamily, text: str) -> None:
    parse_strictly(family, text)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.value)
@FUZZ
@given(data=st.data())
def test_valid_calls_among_clean_junk_parse_exactly(family: ToolCallFamily, data: Any) -> None:
    call_list, junk, text = draw_valid_output(data, family)
    result = parse_strictly(family, text)
    assert result.ok, result.failures
    assert [(c.name, c.arguments) for c in result.tool_calls] == [(n, json.loads(json.dumps(a))) for n, a in call_list]
    newline = "\n" if family in LINE_START else ""
    assert result.content == newline.join(junk)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.value)
@FUZZ
@given(data=st.data())
def test_truncated_valid_output_never_raises_and_keeps_a_prefix_of_the_calls(family: ToolCallFamily, data: Any) -> None:
    call_list, junk, full = draw_valid_output(data, family)
    cut = data.draw(st.integers(min_value=0, max_value=len(full)))
    result = parse_strictly(family, full[:cut])
    # A cut never invents a call: what parses is the first k calls, intact.
    parsed = [(c.name, c.arguments) for c in result.tool_calls]
    expected = [(n, json.loads(json.dumps(a))) for n, a in call_list]
    assert parsed == expected[: len(parsed)]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.value)
@FUZZ
@given(call_list=calls, data=st.data())
def test_valid_calls_mixed_with_any_junk_never_raise_and_lose_nothing(
    family: ToolCallFamily, call_list: list, data: Any
) -> None:
    junk = data.draw(st.lists(st.text(max_size=15) | markup_soup, min_size=len(call_list) + 1, max_size=len(call_list) + 1))
    parse_strictly(family, valid_output(family, call_list, junk))
