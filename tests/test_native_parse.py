"""Golden model outputs per family: exact names and arguments, parallel
calls, content around calls, nested JSON, braces and quotes in strings; and
malformed output that must come back as typed failures with the raw text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from native_fixtures import assert_every_character_accounted_for

from meta_spider.native import NativeToolRenderer, ParsedToolCall, ToolCallFamily
from meta_spider.native import parsers
from meta_spider.native.formatting import reasoning_tags

H, L, M, F = ToolCallFamily.HERMES, ToolCallFamily.LLAMA3, ToolCallFamily.MISTRAL, ToolCallFamily.FUNCTION_TAG

NESTED_ARGS: dict[str, Any] = {
    "filter": {
        "and": [
            {"field": "name", "op": "=", "value": "O'Brien {x}"},
            {"field": "tags", "op": "in", "value": ["a}", "{b", '"quoted"', "]", "[TOOL_CALLS]"]},
        ]
    },
    "limit": 5,
    "ratio": 0.25,
    "dry_run": False,
    "note": None,
    "path": "C:\\temp\\{dir}",
}
NESTED_JSON = (
    '{"filter": {"and": [{"field": "name", "op": "=", "value": "O\'Brien {x}"}, '
    '{"field": "tags", "op": "in", "value": ["a}", "{b", "\\"quoted\\"", "]", "[TOOL_CALLS]"]}]}, '
    '"limit": 5, "ratio": 0.25, "dry_run": false, "note": null, "path": "C:\\\\temp\\\\{dir}"}'
)
PARIS = {"city": "Paris", "unit": "celsius"}
PERU = {"query": "capital of Peru"}

# family, model output, expected (name, arguments, call_id) list, expected content
GOLDEN: list[tuple[ToolCallFamily, str, list[tuple[str, dict, str | None]], str]] = [
    # ---- Hermes / Qwen
    (H, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>',
     [("get_weather", PARIS, None)], ""),
    (H, 'Let me check both.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n'
        '</tool_call>\n<tool_call>\n{"name": "kb_lookup", "arguments": {"query": "capital of Peru"}}\n</tool_call>\n'
        "I'll report back.",
     [("get_weather", PARIS, None), ("kb_lookup", PERU, None)], "Let me check both.\n\n\nI'll report back."),
    (H, f'<tool_call>\n{{"name": "search", "arguments": {NESTED_JSON}}}\n</tool_call>',
     [("search", NESTED_ARGS, None)], ""),
    (H, '<tool_call>{"name": "echo", "arguments": {"text": "a literal </tool_call> <tool_call> inside"}}</tool_call>',
     [("echo", {"text": "a literal </tool_call> <tool_call> inside"}, None)], ""),
    (H, '<tool_call>\n{"name": "kb_lookup", "arguments": "{\\"query\\": \\"Zürich\\"}"}\n</tool_call><|im_end|>',
     [("kb_lookup", {"query": "Zürich"}, None)], "<|im_end|>"),
    (H, "No tools needed: 2 + 2 = 4. {braces} stay content.", [], "No tools needed: 2 + 2 = 4. {braces} stay content."),
    # ---- Llama 3.x
    (L, '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}',
     [("get_weather", PARIS, None)], ""),
    (L, '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}<|eom_id|>',
     [("get_weather", PARIS, None)], "<|eom_id|>"),
    (L, '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}; '
        '{"name": "kb_lookup", "arguments": {"query": "capital of Peru"}}',
     [("get_weather", PARIS, None), ("kb_lookup", PERU, None)], ""),
    (L, 'I need two facts.\n{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}\n'
        '<|python_tag|>{"name": "kb_lookup", "parameters": {"query": "capital of Peru"}}\nThen I answer.',
     [("get_weather", PARIS, None), ("kb_lookup", PERU, None)], "I need two facts.\n\n\nThen I answer."),
    (L, '{\n    "name": "search",\n    "parameters": ' + NESTED_JSON + "\n}", [("search", NESTED_ARGS, None)], ""),
    (L, '<|python_tag|>brave_search.call(query="weather in Paris {today}", count=3)<|eom_id|>',
     [("brave_search", {"query": "weather in Paris {today}", "count": 3}, None)], "<|eom_id|>"),
    (L, 'The answer as JSON: {"city": "Paris", "temp": 18}.\n{"name": "Paris"}',
     [], 'The answer as JSON: {"city": "Paris", "temp": 18}.\n{"name": "Paris"}'),
    # ---- Mistral
    (M, '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}, "id": "a1B2c3D4e"}]',
     [("get_weather", PARIS, "a1B2c3D4e")], ""),
    (M, 'Checking.[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}, '
        '"id": "a1B2c3D4e"}, {"name": "kb_lookup", "arguments": {"query": "capital of Peru"}, "id": "Zz9Yy8Xx7"}]</s>',
     [("get_weather", PARIS, "a1B2c3D4e"), ("kb_lookup", PERU, "Zz9Yy8Xx7")], "Checking.</s>"),
    (M, f'[TOOL_CALLS][{{"name": "search", "arguments": {NESTED_JSON}}}] done', [("search", NESTED_ARGS, None)],
     " done"),
    (M, '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "unit": "celsius"}'
        '[TOOL_CALLS]kb_lookup[CALL_ID]Zz9Yy8Xx7[ARGS]{"query": "capital of Peru"}</s>',
     [("get_weather", PARIS, None), ("kb_lookup", PERU, "Zz9Yy8Xx7")], "</s>"),
    # ---- <function=name>
    (F, '<function=get_weather>{"city": "Paris", "unit": "celsius"}</function>', [("get_weather", PARIS, None)], ""),
    (F, 'Two lookups.\n<function=get_weather>{"city": "Paris", "unit": "celsius"}</function>\n'
        '<function=kb_lookup>{"query": "capital of Peru"}</function><|eot_id|>',
     [("get_weather", PARIS, None), ("kb_lookup", PERU, None)], "Two lookups.\n\n<|eot_id|>"),
    (F, f"<function=search>{NESTED_JSON}</function>", [("search", NESTED_ARGS, None)], ""),
    (F, '<function=echo>{"text": "</function> <function=x>"}</function> after', [("echo", {"text": "</function> <function=x>"}, None)],
     " after"),
    (F, "<function=now></function>", [("now", {}, None)], ""),
]


@pytest.mark.parametrize(("family", "text", "calls", "content"), GOLDEN, ids=lambda v: getattr(v, "value", None))
def test_golden_outputs_parse_to_exact_calls(
    family: ToolCallFamily, text: str, calls: list[tuple[str, dict, str | None]], content: str
) -> None:
    result = NativeToolRenderer(family).parse(text)
    assert result.ok, result.failures
    assert [(c.name, c.arguments, c.call_id) for c in result.tool_calls] == calls
    assert result.content == content
    assert_every_character_accounted_for(result, text)


def test_raw_of_each_call_is_its_exact_source_text() -> None:
    text = GOLDEN[1][1]
    result = NativeToolRenderer(H).parse(text)
    assert [c.raw for c in result.tool_calls] == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>',
        '<tool_call>\n{"name": "kb_lookup", "arguments": {"query": "capital of Peru"}}\n</tool_call>',
    ]
    mistral = NativeToolRenderer(M).parse(GOLDEN[14][1])
    # The list markup is split over the calls: opener to the first, ", " and "]" to the second.
    assert mistral.tool_calls[0].raw.startswith("[TOOL_CALLS] [{")
    assert mistral.tool_calls[1].raw.startswith(', {"name": "kb_lookup"')
    assert mistral.tool_calls[1].raw.endswith('"Zz9Yy8Xx7"}]')


@pytest.mark.parametrize("family", list(ToolCallFamily))
def test_format_calls_round_trips_two_parallel_calls(family: ToolCallFamily) -> None:
    renderer = NativeToolRenderer(family)
    calls = [("get_weather", PARIS, "a1B2c3D4e"), ("search", NESTED_ARGS, "Zz9Yy8Xx7")]
    text = renderer.format_calls(calls)
    result = renderer.parse(text)
    # Mistral writes the ids it is given; Command R numbers the calls of a
    # turn and Kimi K2 names them functions.<name>:<index>.
    expected_ids = {
        M: ["a1B2c3D4e", "Zz9Yy8Xx7"],
        ToolCallFamily.COMMAND_R: ["0", "1"],
        ToolCallFamily.KIMI_K2: ["functions.get_weather:0", "functions.search:1"],
    }.get(family, [None, None])
    assert result.ok
    assert [(c.name, c.arguments, c.call_id) for c in result.tool_calls] == [
        (name, arguments, call_id) for (name, arguments, _), call_id in zip(calls, expected_ids)
    ]
    assert result.content.strip() == ""
    assert_every_character_accounted_for(result, text)


def test_format_call_spellings() -> None:
    assert NativeToolRenderer(H).format_call("f", {"a": "é"}) == '<tool_call>\n{"name": "f", "arguments": {"a": "é"}}\n</tool_call>'
    assert NativeToolRenderer(L).format_call("f", {"a": 1}) == '{"name": "f", "parameters": {"a": 1}}'
    assert NativeToolRenderer(M).format_call("f", {}, call_id="abcdefghi") == (
        '[TOOL_CALLS][{"name": "f", "arguments": {}, "id": "abcdefghi"}]'
    )
    assert NativeToolRenderer(F).format_call("f", {"a": [1]}) == '<function=f>{"a": [1]}</function>'
    with pytest.raises(ValueError, match="non-empty name"):
        NativeToolRenderer(H).format_call("", {})
    with pytest.raises(ValueError, match="at least one call"):
        NativeToolRenderer(H).format_calls([])


# Malformed output per family, with the reason fragments of its one failure,
# the names of the calls that still parse and the content that remains.
MALFORMED: list[tuple[ToolCallFamily, str, list[str], list[str], str]] = [
    (ToolCallFamily(case["family"]), case["output"], case["reasons"], case["calls"], case["content"])
    for case in json.loads((Path(__file__).parent / "fixtures" / "malformed_calls.json").read_text(encoding="utf-8"))
]


@pytest.mark.parametrize(("family", "text", "reasons", "names", "content"), MALFORMED, ids=lambda v: getattr(v, "value", None))
def test_malformed_output_gives_typed_failures_and_keeps_the_text(
    family: ToolCallFamily, text: str, reasons: list[str], names: list[str], content: str
) -> None:
    result = NativeToolRenderer(family).parse(text)
    assert not result.ok
    assert len(result.failures) == 1, result.failures
    for fragment in reasons:
        assert fragment in result.failures[0].reason, (fragment, result.failures[0].reason)
    assert [c.name for c in result.tool_calls] == names
    assert result.content == content
    assert result.raw == text
    assert_every_character_accounted_for(result, text)


@pytest.mark.parametrize("family", [f for f in ToolCallFamily if f is not ToolCallFamily.HARMONY])
def test_calls_drafted_in_a_leading_reasoning_block_are_not_calls(family: ToolCallFamily) -> None:
    renderer = NativeToolRenderer(family)
    opening, closing = reasoning_tags(family)
    draft = renderer.format_call("kb_lookup", {"query": "draft"})
    real = renderer.format_call("get_weather", PARIS)
    thought = f"\nMaybe {draft} or {renderer.call_prefix()} ... no, the weather.\n"
    thinking = f"{opening}{thought}{closing}\n\n"
    for text in (thinking + real, thinking.removeprefix(opening) + real):  # second: template prefilled the tag
        result = renderer.parse(text)
        assert result.ok
        assert [(c.name, c.arguments) for c in result.tool_calls] == [("get_weather", PARIS)]
        assert result.reasoning == thought
        assert result.content == "\n\n"
        assert_every_character_accounted_for(result, text)
    still_thinking = renderer.parse(f"{opening}\nI will call " + real)
    assert still_thinking.tool_calls == () and still_thinking.ok
    assert still_thinking.reasoning == "\nI will call " + real
    # A reasoning tag that does not lead the output is ordinary text.
    later = renderer.parse(f"Done. {opening} \n" + real)
    assert [c.name for c in later.tool_calls] == ["get_weather"]


def test_harmony_analysis_is_reasoning_and_a_recipient_makes_a_call() -> None:
    renderer = NativeToolRenderer(ToolCallFamily.HARMONY)
    # Special tokens end a harmony message, so a drafted call in the analysis
    # channel is prose: to=functions.kb_lookup {"query": "draft"}.
    draft = 'to=functions.kb_lookup {"query": "draft"}'
    text = (
        f"<|channel|>analysis<|message|>Maybe {draft}.<|end|>"
        '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>'
        '{"city": "Paris", "unit": "celsius"}<|call|>'
    )
    result = renderer.parse(text)
    assert result.ok and result.content == ""
    assert result.reasoning == f"Maybe {draft}."
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("get_weather", PARIS)]
    final = renderer.parse("<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>4")
    assert (final.reasoning, final.content, final.tool_calls) == ("Easy.", "4", ())
    assert_every_character_accounted_for(result, text)


def test_a_parser_bug_becomes_a_failure_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(builder: Any) -> None:
        builder.content(3)
        raise RuntimeError("boom")

    monkeypatch.setitem(parsers.PARSERS, ToolCallFamily.HERMES, broken)
    result = NativeToolRenderer(H).parse("abcdef")
    assert result.content == "abc"
    assert result.failures[0].reason == "internal parser error: RuntimeError: boom"
    assert result.failures[0].raw == "def"
    assert_every_character_accounted_for(result, "abcdef")


def test_parse_rejects_non_strings_with_a_type_error() -> None:
    with pytest.raises(TypeError, match="got bytes"):
        NativeToolRenderer(H).parse(b"<tool_call>")  # type: ignore[arg-type]


def test_parsed_call_converts_to_the_message_form() -> None:
    call = ParsedToolCall("get_weather", {"city": "Paris"}, "a1B2c3D4e")
    assert call.to_message_call() == {
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
        "id": "a1B2c3D4e",
    }
