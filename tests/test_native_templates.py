"""Every vendored real chat template, end to end: tool definitions and a
full tool round reach the prompt, the template's family is detected, its
own call text parses back exactly, and the model outputs that llama.cpp's
chat tests (tests/test-chat.cpp) state a parse for parse the same here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from native_fixtures import VENDORED_DIR, VENDORED_IDS, template_family, template_text

from meta_spider.native import (
    NativeToolPrompt,
    NativeToolRenderer,
    assistant_tool_calls_message,
    detect_family,
    tool_result_message,
)


def one_string_tool(name: str, description: str, parameter: str) -> dict[str, Any]:
    """A tool definition taking one required string ``parameter``."""
    parameters = {"type": "object", "properties": {parameter: {"type": "string"}}, "required": [parameter]}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


WEATHER = one_string_tool("get_weather", "Current weather for a city.", "city")
LOOKUP = one_string_tool("kb_lookup", "Look a fact up.", "query")
SYSTEM = {"role": "system", "content": "Answer briefly."}
USER = {"role": "user", "content": "What is the weather in Paris?"}


def prompt_for(template_id: str) -> NativeToolPrompt:
    return NativeToolPrompt.from_template(template_text(template_id), bos_token="<s>", eos_token="</s>")


def test_at_least_25_real_templates_are_vendored_with_sources_and_licence() -> None:
    files = sorted(path.stem for path in VENDORED_DIR.glob("*.jinja"))
    assert len(files) >= 25
    assert files == sorted(VENDORED_IDS)  # each has a row (source, licence, family) in SOURCES.md
    assert (VENDORED_DIR / "LICENSE-llama.cpp").read_text(encoding="utf-8").startswith("MIT License")
    assert "Apache License" in (VENDORED_DIR / "LICENSE-Apache-2.0").read_text(encoding="utf-8")


@pytest.mark.parametrize("template_id", VENDORED_IDS)
def test_detection_picks_the_documented_family(template_id: str) -> None:
    assert detect_family(template_text(template_id)) is template_family(template_id)


@pytest.mark.parametrize("template_id", VENDORED_IDS)
def test_system_user_and_tools_render_with_every_tool_name(template_id: str) -> None:
    text = prompt_for(template_id).render([SYSTEM, USER], tools=[WEATHER, LOOKUP])
    assert "get_weather" in text and "kb_lookup" in text
    assert "Answer briefly." in text and "What is the weather in Paris?" in text


@pytest.mark.parametrize("template_id", VENDORED_IDS)
def test_a_full_tool_round_renders_with_the_result(template_id: str) -> None:
    prompt = prompt_for(template_id)
    call = assistant_tool_calls_message([("get_weather", {"city": "Paris"})])
    assert call["content"] == ""
    result = tool_result_message("get_weather", "sunny, 18 C", call["tool_calls"][0]["id"])
    messages = [SYSTEM, USER, call, result]
    # The next step's prompt: the result is there for the model to read ...
    assert "sunny, 18 C" in prompt.render(messages, tools=[WEATHER, LOOKUP])
    # ... and the finished round, final answer included, renders too.
    done = prompt.render([*messages, {"role": "assistant", "content": "It is sunny."}], tools=[WEATHER, LOOKUP],
                         add_generation_prompt=False)
    assert "sunny, 18 C" in done and "It is sunny." in done
    assert "get_weather" in done


@pytest.mark.parametrize("template_id", VENDORED_IDS)
def test_the_familys_own_call_text_parses_to_exact_calls(template_id: str) -> None:
    renderer = NativeToolRenderer(template=template_text(template_id))
    calls = [("get_weather", {"city": "Paris"}), ("kb_lookup", {"query": "capital of Peru", "limit": 3})]
    for batch in (calls[:1], calls):
        parsed = renderer.parse(renderer.format_calls(batch))
        assert parsed.ok, parsed.failures
        assert [(c.name, c.arguments) for c in parsed.tool_calls] == batch
        assert parsed.content.strip() == ""


def test_templates_without_tools_support_get_the_definitions_and_a_call_example() -> None:
    # Phi-3.5 and Gemma 2 ignore `tools`; Gemma has no system role either.
    for template_id in ("microsoft-Phi-3.5-mini-instruct", "google-gemma-2-2b-it"):
        prompt = prompt_for(template_id)
        assert not prompt.capabilities().tools
        text = prompt.render([SYSTEM, USER], tools=[WEATHER])
        assert '"name": "get_weather"' in text and "Current weather for a city." in text
        assert "<tool_call>" in text  # the example call, in the family's syntax
    gemma = prompt_for("google-gemma-2-2b-it")
    assert not gemma.capabilities().system
    text = gemma.render([SYSTEM, USER])
    assert text.index("Answer briefly.") < text.index("What is the weather in Paris?")


@pytest.mark.parametrize("template_id", VENDORED_IDS)
def test_the_occlusion_finds_the_users_words_in_the_users_turn(template_id: str) -> None:
    # Where the question's words are (the occluded name's signal) is looked for before the template's generation
    # tail; the user's turn is where the rendering changes with the user's text. Role words are asked too: each is
    # also in some template's headers; and every thinking switch, which changes a reasoning template's tail.
    # Tool-use templates that render only with tools are given them.
    from meta_spider.native import ChatTemplateError
    from meta_spider.wrapper.signals import THINKING_SWITCHES, generation_tails, question_words

    prompt = prompt_for(template_id)
    tools = None
    try:
        prompt.render([USER])
    except ChatTemplateError:
        tools = [LOOKUP]

    def render(messages: list[dict[str, Any]], thinking: bool | None) -> str:
        return prompt.render(messages, tools=tools, enable_thinking=thinking)

    tails = generation_tails(render)
    assert tails, "every vendored template writes something after the user's turn"
    encode = lambda text: list(range(len(text)))  # noqa: E731  one token per character
    earlier = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    for thinking in THINKING_SWITCHES:
        for question in ("Where was Ada Lovelace born?", "assistant", "user", "model", "system"):
            for history in ([], earlier):
                asked = [SYSTEM, *history, {"role": "user", "content": question}]
                text = render(asked, thinking)
                other = render([*asked[:-1], {"role": "user", "content": "\ue004" * len(question)}], thinking)
                users_turn = next(k for k, (a, b) in enumerate(zip(text, other)) if a != b)
                words = question_words(encode, text, question, tails=tails)
                assert words[0][0] == users_turn and words[-1][-1] == users_turn + len(question) - 1


# llama.cpp's expected parses (tests/test-chat.cpp): template, model output,
# calls (name, arguments, id or None), content and reasoning (both stripped).
LLAMA_CPP_PARSES = Path(__file__).parent / "fixtures" / "llama_cpp_parses.json"
LLAMA_CPP_CASES: list[tuple[str, str, list[tuple[str, dict[str, Any], str | None]], str, str]] = [
    (case["template"], case["output"], [tuple(call) for call in case["calls"]], case["content"], case["reasoning"])
    for case in json.loads(LLAMA_CPP_PARSES.read_text(encoding="utf-8"))["cases"]
]


@pytest.mark.parametrize(("template_id", "output", "calls", "content", "reasoning"), LLAMA_CPP_CASES)
def test_llama_cpp_expected_parses_hold(
    template_id: str, output: str, calls: list[tuple[str, dict[str, Any], str | None]], content: str, reasoning: str
) -> None:
    result = NativeToolRenderer(template=template_text(template_id)).parse(output)
    assert result.ok, result.failures
    assert [(c.name, c.arguments, c.call_id) for c in result.tool_calls] == calls
    assert result.content.strip() == content
    assert result.reasoning.strip() == reasoning
