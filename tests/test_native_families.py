"""Family detection from template text, the explicit override, call prefixes."""

from __future__ import annotations

import pytest

from native_fixtures import VENDORED_IDS, template_family, template_text

from meta_spider.native import NativeToolRenderer, ToolCallFamily, coerce_family, detect_family


@pytest.mark.parametrize("template_id", VENDORED_IDS)
def test_detect_family_for_each_real_template(template_id: str) -> None:
    assert detect_family(template_text(template_id)) is template_family(template_id)


def test_the_vendored_templates_cover_every_family_with_a_public_template() -> None:
    # Hermes-3 is a Llama-3.1 fine-tune but writes <tool_call> blocks: the
    # family comes from the template, not the base model's name.
    assert detect_family(template_text("hermes3")) is ToolCallFamily.HERMES
    covered = {detect_family(template_text(t)) for t in VENDORED_IDS}
    assert covered == set(ToolCallFamily)


@pytest.mark.parametrize(
    ("template", "family"),
    [
        (None, ToolCallFamily.HERMES),
        ("", ToolCallFamily.HERMES),
        ("{{ messages[0].content }}", ToolCallFamily.HERMES),
        ("{{- '<function=' + tool.name + '>' }}", ToolCallFamily.FUNCTION_TAG),
        ("{%- if message.role == 'ipython' %}", ToolCallFamily.LLAMA3),
        ("{{- '<|python_tag|>' }}", ToolCallFamily.LLAMA3),
        # Qwen3-Coder writes <function= inside <tool_call>: the outer marker wins.
        ("{{- '<tool_call>\\n<function=' + name + '>' }}", ToolCallFamily.HERMES),
        # Functionary has an ipython role and <function= calls.
        ("ipython ... <function=", ToolCallFamily.FUNCTION_TAG),
        ("[AVAILABLE_TOOLS] ... [TOOL_CALLS]", ToolCallFamily.MISTRAL),
    ],
)
def test_detect_family_markers(template: str | None, family: ToolCallFamily) -> None:
    assert detect_family(template) is family


def test_explicit_family_overrides_detection() -> None:
    qwen = template_text("qwen25")
    assert NativeToolRenderer(template=qwen).family is ToolCallFamily.HERMES
    assert NativeToolRenderer("mistral", template=qwen).family is ToolCallFamily.MISTRAL
    assert NativeToolRenderer(ToolCallFamily.FUNCTION_TAG, template=qwen).family is ToolCallFamily.FUNCTION_TAG
    assert NativeToolRenderer().family is ToolCallFamily.HERMES


def test_coerce_family_accepts_values_and_names_and_rejects_others() -> None:
    assert coerce_family("llama3") is ToolCallFamily.LLAMA3
    assert coerce_family("FUNCTION_TAG") is ToolCallFamily.FUNCTION_TAG
    with pytest.raises(ValueError, match="'qwen'"):
        coerce_family("qwen")
    with pytest.raises(ValueError, match="unknown tool-call family"):
        NativeToolRenderer("react")


def test_call_prefixes() -> None:
    prefixes = {family: NativeToolRenderer(family).call_prefix() for family in ToolCallFamily}
    assert prefixes[ToolCallFamily.HERMES] == "<tool_call>\n"
    assert prefixes[ToolCallFamily.LLAMA3] == "<|python_tag|>"
    assert prefixes[ToolCallFamily.MISTRAL] == "[TOOL_CALLS]"
    assert prefixes[ToolCallFamily.FUNCTION_TAG] == "<function="
    # Functionary v3.2's generation prompt ends with ">>>" already.
    assert [f for f, prefix in prefixes.items() if not prefix] == [ToolCallFamily.FUNCTIONARY_V32]
    # Template variants: LFM2 wraps pythonic lists, Command R+ writes "Action:".
    assert NativeToolRenderer(template="<|tool_call_start|>").call_prefix() == "<|tool_call_start|>["
    assert NativeToolRenderer("command_r", template="<|CHATBOT_TOKEN|>").call_prefix() == "Action: ```json\n"


# What a model writes after each family's prefix.
COMPLETIONS = {
    ToolCallFamily.HERMES: '{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
    ToolCallFamily.QWEN3_CODER: "get_weather>\n<parameter=city>\nOslo\n</parameter>\n</function>\n</tool_call>",
    ToolCallFamily.LLAMA3: '{"name": "get_weather", "parameters": {"city": "Oslo"}}',
    ToolCallFamily.PYTHONIC: 'get_weather(city="Oslo")]',
    ToolCallFamily.MISTRAL: '[{"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "Zq81kLm0a"}]',
    ToolCallFamily.FUNCTION_TAG: 'get_weather>{"city": "Oslo"}</function>',
    ToolCallFamily.FUNCTIONARY_V32: 'get_weather\n{"city": "Oslo"}',
    ToolCallFamily.FUNCTOOLS: '{"name": "get_weather", "arguments": {"city": "Oslo"}}]',
    ToolCallFamily.GRANITE: '{"name": "get_weather", "arguments": {"city": "Oslo"}}]',
    ToolCallFamily.DEEPSEEK_R1: 'get_weather\n```json\n{"city": "Oslo"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
    ToolCallFamily.DEEPSEEK_V3: 'get_weather<｜tool▁sep｜>{"city": "Oslo"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
    ToolCallFamily.COMMAND_R: '[{"tool_call_id": "0", "tool_name": "get_weather", "parameters": {"city": "Oslo"}}]'
    "<|END_ACTION|>",
    ToolCallFamily.INTERNLM: '{"name": "get_weather", "parameters": {"city": "Oslo"}}<|action_end|>',
    ToolCallFamily.XLAM: '{"name": "get_weather", "arguments": {"city": "Oslo"}}]',
    ToolCallFamily.HARMONY: 'get_weather <|constrain|>json<|message|>{"city": "Oslo"}<|call|>',
    ToolCallFamily.KIMI_K2: 'get_weather:0<|tool_call_argument_begin|>{"city": "Oslo"}<|tool_call_end|>'
    "<|tool_calls_section_end|>",
    ToolCallFamily.GLM45: "get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n</tool_call>",
    ToolCallFamily.MINIMAX_M2: 'get_weather">\n<parameter name="city">Oslo</parameter>\n</invoke>\n</minimax:tool_call>',
    ToolCallFamily.NEMOTRON: '{"name": "get_weather", "arguments": {"city": "Oslo"}}]</TOOLCALL>',
    ToolCallFamily.SEED_OSS: "get_weather>\n<parameter=city>Oslo</parameter>\n</function>\n</seed:tool_call>",
}


@pytest.mark.parametrize("family", list(ToolCallFamily))
def test_prefix_plus_a_model_completion_parses(family: ToolCallFamily) -> None:
    """The agent prefills the call prefix and appends what the model writes."""
    renderer = NativeToolRenderer(family)
    parsed = renderer.parse(renderer.call_prefix() + COMPLETIONS[family])
    assert parsed.ok and parsed.content.strip() == "", parsed
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("get_weather", {"city": "Oslo"})]
    end = renderer.call_end()
    if end is not None:  # the stop string the agent uses closes the call
        assert COMPLETIONS[family].rstrip().endswith(end)
