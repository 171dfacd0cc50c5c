"""Closing a JSON tool call the model broke off: the kept prefix, what is
dropped, the family's markers around it, and for any text either nothing
or JSON that decodes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_spider.native import NativeToolRenderer
from meta_spider.native.heal import MAX_HEAL_CHARS, close_json, heal_call


@pytest.mark.parametrize("text, closed", [
    # What the world's base wrote after a prefilled "<tool_call>\n":
    ('{"name": "calculator", "arguments": {"expression": "9 * 9\n</tool_response>',  # a newline in the string
     '{"name": "calculator", "arguments": {"expression": "9 * 9"}}'),
    ('{"name": "lookup", "arguments": {"query": "Rouia Sal 1987 in',  # the end of the output
     '{"name": "lookup", "arguments": {"query": "Rouia Sal 1987 in"}}'),
    ('{"name": "lookup", "arguments": {"query": "Br": "description": "Evaluate',  # a colon where a comma goes
     '{"name": "lookup", "arguments": {"query": "Br"}}'),
    ('{"name": "lookup", "arguments": {"query": "Vea ""}}\n', '{"name": "lookup", "arguments": {"query": "Vea "}}'),
    # What cannot be completed is dropped: a key without its value, a number that may go on, a broken escape.
    ('{"a": 1, "b": ', '{"a": 1}'),
    ('{"a": 1, "b', '{"a": 1}'),
    ('{"a": 12', "{}"),
    ('{"a": [1, 2', '{"a": [1]}'),
    ('{"a": tru', "{}"),
    ('{"a": "x\\u12', '{"a": "x"}'),
    ('{"a": "x\\q', '{"a": "x"}'),
    ('{"a": "x\\"y', '{"a": "x\\"y"}'),  # an escaped quote does not end the string
    ('{"a": {"b": [{"c": "d', '{"a": {"b": [{"c": "d"}]}}'),
    ('{"a": {}, "b": []} and more', '{"a": {}, "b": []}'),  # complete: as it is, without what follows
    ("  [1, true, null, -2.5e3]", "[1, true, null, -2.5e3]"),
    ("{", "{}"),
    ("not json", None),
    ('"a string"', None),  # only an object or a list is a call's body
    ("", None),
])
def test_close_json_keeps_what_can_be_completed(text: str, closed: str | None) -> None:
    assert close_json(text) == closed


def test_heal_call_closes_the_body_between_the_familys_markers() -> None:
    hermes = NativeToolRenderer("hermes")
    written = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "9 * 9\n</tool_response>'
    healed = heal_call(written, hermes.call_prefix(), hermes.call_end())
    assert healed == '<tool_call>\n{"name": "calculator", "arguments": {"expression": "9 * 9"}}</tool_call>'
    assert [(call.name, call.arguments) for call in hermes.parse(healed).tool_calls] == [
        ("calculator", {"expression": "9 * 9"})]
    # The close marker written inside the string is where the model broke off.
    assert heal_call('<tool_call>\n{"name": "lookup", "arguments": {"query": "Rouia</tool_call>',
                     "<tool_call>\n", "</tool_call>") == (
        '<tool_call>\n{"name": "lookup", "arguments": {"query": "Rouia"}}</tool_call>')
    # A list of calls opens with the list (Mistral's "[TOOL_CALLS][{"); a family without a close marker gets none.
    mistral = NativeToolRenderer("mistral")
    healed = heal_call('[TOOL_CALLS][{"name": "lookup", "arguments": {"query": "Ve', mistral.call_prefix(),
                       mistral.call_end())
    assert healed == '[TOOL_CALLS][{"name": "lookup", "arguments": {"query": "Ve"}}]'
    assert [call.arguments for call in mistral.parse(healed).tool_calls] == [{"query": "Ve"}]
    # Nothing to heal: no JSON body, another prefix, or a text too long to be one call.
    assert heal_call("<tool_call>\nlookup(Veloria)", "<tool_call>\n", "</tool_call>") is None
    assert heal_call('{"name": "x"', "<tool_call>\n", "</tool_call>") is None
    assert heal_call("<tool_call>\n" + '{"a": "' + "x" * MAX_HEAL_CHARS, "<tool_call>\n", "</tool_call>") is None


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4) | st.lists(JSON_VALUES, max_size=4),
       st.integers(min_value=0), st.booleans())
def test_any_cut_of_a_json_body_closes_into_json_that_decodes(value: object, cut: int, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert close_json(text) == text  # whole: as it is
    cut %= len(text) + 1
    closed = close_json(text[:cut])
    if cut > 0:
        assert closed is not None and closed.startswith(text[:1])
        json.loads(closed)  # decodes


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from('{}[]":,\\ \n\tabu0123456789.-+eEtrufalsn\u00e9'), max_size=80))
def test_close_json_of_any_text_never_raises_and_gives_json_or_nothing(text: str) -> None:
    closed = close_json(text)
    if closed is not None:
        json.loads(closed)
