"""Every vendored real chat template, end to end: tool definitions and a
full tool round reach the prompt, the template's family is detected, its
own call text parses back exactly, and the model outputs that llama.cpp's
chat tests (tests/test-chat.cpp) state a parse for parse the same here."""

from __future__ import annotations

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


# llama.cpp's expected parses (tests/test-chat.cpp): template, model output,
# calls (name, arguments, id or None), content and reasoning (both stripped).
ARG1 = {"arg1": 1}
LLAMA_CPP_CASES: list[tuple[str, str, list[tuple[str, dict[str, Any], str | None]], str, str]] = [
    ("Qwen3-Coder", "<tool_call>\n<function=special_function>\n<parameter=arg1>\n1\n</parameter>\n</function>\n</tool_call>",
     [("special_function", ARG1, None)], "", ""),
    ("Qwen3-Coder", "<function=special_function>\n<parameter=arg1>\n1\n</parameter>\n</function>\n</tool_call>",
     [("special_function", ARG1, None)], "", ""),
    ("Qwen3-Coder", "Let me call it.\n<function=special_function>\n<parameter=arg1>\n1\n</parameter>\n</function>\n</tool_call>",
     [("special_function", ARG1, None)], "Let me call it.", ""),
    ("Qwen3-Coder", "<function=special_function>\n<parameter=arg1>\n1\n</parameter>\n</function>\n</tool_call>\n"
     "<tool_call>\n<function=special_function_with_opt>\n<parameter=arg1>\n1\n</parameter>\n<parameter=arg2>\n2\n"
     "</parameter>\n</function>\n</tool_call>",
     [("special_function", ARG1, None), ("special_function_with_opt", {"arg1": 1, "arg2": 2}, None)], "", ""),
    ("NVIDIA-Nemotron-Nano-v2", 'I\'m\nthinking\n</think>\n<TOOLCALL>[{"name": "special_function", "arguments": '
     '{"arg1": 1}}]</TOOLCALL>', [("special_function", ARG1, None)], "", "I'm\nthinking"),
    ("CohereForAI-c4ai-command-r7b-12-2024-tool_use", "<|START_RESPONSE|>Hello, world!\nWhat's up?<|END_RESPONSE|>",
     [], "Hello, world!\nWhat's up?", ""),
    ("CohereForAI-c4ai-command-r7b-12-2024-tool_use", "<|START_THINKING|>I'm\nthinking<|END_THINKING|><|START_ACTION|>[\n"
     '    {"tool_call_id": "0", "tool_name": "special_function", "parameters": {"arg1": 1}}\n]<|END_ACTION|>',
     [("special_function", ARG1, "0")], "", "I'm\nthinking"),
    ("CohereForAI-c4ai-command-r-plus-tool_use", 'Action:\n```json\n[{"tool_name": "special_function", "parameters": '
     '{"arg1": 1}}]\n```', [("special_function", ARG1, None)], "", ""),
    ("mistralai-Mistral-Nemo-Instruct-2407", '[TOOL_CALLS][{"name": "special_function", "arguments": {"arg1": 1}, '
     '"id": "123456789"}]', [("special_function", ARG1, "123456789")], "", ""),
    ("Mistral-Small-3.2-24B-Instruct-2506", '[TOOL_CALLS]special_function[CALL_ID]123456789[ARGS]{"arg1": 1}',
     [("special_function", ARG1, "123456789")], "", ""),
    ("Mistral-Small-3.2-24B-Instruct-2506", '[TOOL_CALLS]special_function[CALL_ID]000000001[ARGS]{"arg1": 1}'
     '[TOOL_CALLS]special_function_with_opt[CALL_ID]000000002[ARGS]{"arg1": 1, "arg2": 2}',
     [("special_function", ARG1, "000000001"), ("special_function_with_opt", {"arg1": 1, "arg2": 2}, "000000002")],
     "", ""),
    ("unsloth-mistral-Devstral-Small-2507", "Hello, world!\nWhat's up?[TOOL_CALLS]special_function[ARGS]{\"arg1\": 1}",
     [("special_function", ARG1, None)], "Hello, world!\nWhat's up?", ""),
    ("meetkai-functionary-medium-v3.1", '<function=special_function>{"arg1": 1}</function>',
     [("special_function", ARG1, None)], "", ""),
    ("meetkai-functionary-medium-v3.2", "all\nHello, world!\nWhat's up?", [], "Hello, world!\nWhat's up?", ""),
    ("meetkai-functionary-medium-v3.2", 'special_function\n{"arg1": 1}', [("special_function", ARG1, None)], "", ""),
    ("fireworks-ai-llama-3-firefunction-v2", ' functools[{"name": "special_function", "arguments": {"arg1": 1}}]',
     [("special_function", ARG1, None)], "", ""),
    ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "I'm\nthinking</think>Hello, world!\nWhat's up?", [],
     "Hello, world!\nWhat's up?", "I'm\nthinking"),
    ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>"
     'special_function\n```json\n{"arg1": 1}```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
     [("special_function", ARG1, None)], "", ""),
    ("llama-cpp-deepseek-r1", "</think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>special_function\n"
     '```json\n{"arg1": 1}```<｜tool▁call▁end｜><｜tool▁calls▁end｜>', [("special_function", ARG1, None)], "", ""),
    ("deepseek-ai-DeepSeek-V3.1", '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{"city": '
     '"XYZCITY"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>', [("get_time", {"city": "XYZCITY"}, None)], "", ""),
    ("GLM-4.6", "<tool_call>special_function\n<arg_key>arg1</arg_key>\n<arg_value>1</arg_value>\n</tool_call>",
     [("special_function", ARG1, None)], "", ""),
    ("moonshotai-Kimi-K2", "<|tool_calls_section_begin|><|tool_call_begin|>functions.special_function:0"
     '<|tool_call_argument_begin|>{"arg1": 1}<|tool_call_end|><|tool_calls_section_end|>',
     [("special_function", ARG1, "functions.special_function:0")], "", ""),
    ("LFM2.5-8B-A1B", "<think>I'm\nthinking</think><|tool_call_start|>[special_function(arg1=1)]<|tool_call_end|>",
     [("special_function", ARG1, None)], "", "I'm\nthinking"),
    ("LFM2.5-8B-A1B", "<think>I need to call a function</think>Let me check the time.<|tool_call_start|>"
     '[get_time(city="Paris")]<|tool_call_end|>', [("get_time", {"city": "Paris"}, None)], "Let me check the time.",
     "I need to call a function"),
    ("MiniMax-M2", '\n</think>\n\n<minimax:tool_call>\n<invoke name="special_function">\n<parameter name="arg1">1'
     "</parameter>\n</invoke>\n</minimax:tool_call>", [("special_function", ARG1, None)], "", ""),
    ("MiniMax-M2", "Let's call a tool:\n</think>\n\n<minimax:tool_call>\n<invoke name=\"empty_args\">\n</invoke>\n"
     "</minimax:tool_call>", [("empty_args", {}, None)], "", "Let's call a tool:"),
    ("MiMo-VL", '<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}\n</tool_call>',
     [("special_function", ARG1, None)], "", ""),
    ("ibm-granite-granite-4.0", '<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}\n</tool_call>',
     [("special_function", ARG1, None)], "", ""),
    ("ibm-granite-granite-3.3-2B-Instruct", "<think>I'm\nthinking</think>Hello, world!\nWhat's up?", [],
     "Hello, world!\nWhat's up?", "I'm\nthinking"),
    ("openai-gpt-oss-120b", "<|channel|>final<|message|>Hello, world!\nWhat's up?", [], "Hello, world!\nWhat's up?", ""),
    ("openai-gpt-oss-120b", "<|channel|>analysis<|message|>I'm\nthinking<|end|><|start|>assistant<|channel|>final"
     "<|message|>Hello, world!\nWhat's up?", [], "Hello, world!\nWhat's up?", "I'm\nthinking"),
    ("openai-gpt-oss-120b", "<|channel|>analysis<|message|>I'm\nthinking", [], "", "I'm\nthinking"),
    ("openai-gpt-oss-120b", ' to=functions.special_function<|channel|>analysis<|message|>{"arg1": 1}',
     [("special_function", ARG1, None)], "", ""),
    ("openai-gpt-oss-120b", '<|channel|>analysis to=functions.special_function<|message|>{"arg1": 1}',
     [("special_function", ARG1, None)], "", ""),
    ("ByteDance-Seed-OSS", "<seed:think>I'm thinking about the answer</seed:think>\nHello, world!", [],
     "Hello, world!", "I'm thinking about the answer"),
    ("ByteDance-Seed-OSS", "<seed:tool_call>\n<function=special_function>\n<parameter=arg1>1</parameter>\n</function>\n"
     "</seed:tool_call>", [("special_function", ARG1, None)], "", ""),
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
