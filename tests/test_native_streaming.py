"""The streaming parser: fed any split of a model's output, it emits exactly
the content, reasoning and calls that parsing the whole output gives, in
order, so a terminal printing its content events never shows call markup."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_native_fuzz import clean_junk, draw_valid_output

from meta_spider.native import NativeToolRenderer, ToolCallFamily
from meta_spider.native.formatting import reasoning_tags
from meta_spider.native.streaming import StreamEvent, StreamingToolParser

FAMILIES = list(ToolCallFamily)
STREAM = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def stream(renderer: NativeToolRenderer, text: str, cuts: list[int], prefill: str = "") -> tuple[
    StreamingToolParser, list[StreamEvent]
]:
    parser = StreamingToolParser(renderer, prefill=prefill)
    events: list[StreamEvent] = []
    previous = 0
    for cut in sorted(set(cuts)) + [len(text)]:
        events += parser.feed(text[previous:cut])
        previous = cut
    events += parser.finish()
    return parser, events


def joined(events: list[StreamEvent], kind: str) -> str:
    return "".join(event.text for event in events if event.kind == kind)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.value)
@STREAM
@given(data=st.data())
def test_any_split_streams_exactly_the_final_parse(family: ToolCallFamily, data: Any) -> None:
    _, _, text = draw_valid_output(data, family)
    if data.draw(st.booleans()) and family is not ToolCallFamily.HARMONY:
        opening, closing = reasoning_tags(family)
        text = f"{opening}{data.draw(clean_junk)}{closing}{text}"
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(text)), max_size=12))
    renderer = NativeToolRenderer(family)
    parser, events = stream(renderer, text, cuts)
    result = parser.result
    assert result is not None and result == renderer.parse(text)
    assert joined(events, "content") == result.content
    assert joined(events, "reasoning") == result.reasoning
    assert [event.call for event in events if event.kind == "call"] == list(result.tool_calls)
    assert [event.failure for event in events if event.kind == "failure"] == list(result.failures)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.value)
def test_character_by_character_shows_no_markup(family: ToolCallFamily) -> None:
    renderer = NativeToolRenderer(family)
    text = "Checking.\n" + renderer.format_calls([("get_weather", {"city": "Paris"}), ("kb_lookup", {"query": "x"})])
    _, events = stream(renderer, text, list(range(len(text))))
    assert joined(events, "content").strip() == "Checking."
    assert [event.call.name for event in events if event.call] == ["get_weather", "kb_lookup"]


def test_a_prefilled_call_prefix_is_parsed_but_not_shown() -> None:
    renderer = NativeToolRenderer(ToolCallFamily.HERMES)
    completion = '{"name": "lookup", "arguments": {"query": "capital"}}\n</tool_call>'
    _, events = stream(renderer, completion, [5, 17, 40], prefill=renderer.call_prefix())
    assert joined(events, "content") == ""
    assert [event.call.name for event in events if event.call] == ["lookup"]


def test_content_streams_before_the_output_ends() -> None:
    parser = StreamingToolParser(NativeToolRenderer(ToolCallFamily.HERMES))
    assert joined(parser.feed("The answer is 4"), "content") == "The answer is 4"
    assert joined(parser.feed(" <tool_c"), "content") == " "  # "<tool_c" may open a call
    assert joined(parser.feed("all>"), "content") == ""
    assert joined(parser.feed('{"name": "f", "arguments": {}}</tool_call>'), "call") == ""  # the call ends the output
    events = parser.finish()
    assert [event.call.name for event in events if event.call] == ["f"]


def test_a_truncated_bare_call_is_not_streamed_as_a_failure_and_content() -> None:
    """Cut inside a bare JSON call whose string holds a bracket, the prefix
    parses as a failure and content; neither may be emitted before the rest
    arrives and turns it into one call."""
    renderer = NativeToolRenderer(ToolCallFamily.XLAM)
    text = ('00000\n[{"name": "A0000y", "arguments": {"\\"],Ü": -2198377, "]ba": {"\\"": 228, "x/]b ;a": null, '
            '"\\"y[\\n:{;é": null}, ",aé}€": [[], [null, null], {";": null, "\\n::}Ü\\t€y\\n\\"bÜ": null, '
            '"": 1.3510798882109952e+16}]}}]')  # found by the property above
    whole = renderer.parse(text)
    assert len(whole.tool_calls) == 1 and not whole.failures
    cut = text.index("1.35") + 2
    assert [span.kind for span in renderer.parse(text[:cut]).spans] == ["content", "failure", "content"]
    _, events = stream(renderer, text, [cut])
    assert joined(events, "content") == whole.content == "00000\n"
    assert [event.kind for event in events if event.kind in ("call", "failure")] == ["call"]
