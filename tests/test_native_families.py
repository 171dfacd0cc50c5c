"""Family detection from template text, the explicit override, call prefixes."""

from __future__ import annotations

import pytest

from native_fixtures import TEMPLATE_IDS, template_family, template_text

from meta_spider.native import NativeToolRenderer, ToolCallFamily, coerce_family, detect_family


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_detect_family_for_each_real_template(template_id: str) -> None:
    assert detect_family(template_text(template_id)) is template_family(template_id)


def test_the_four_templates_cover_three_families() -> None:
    # Hermes-3 is a Llama-3.1 fine-tune but writes <tool_call> blocks: the
    # family comes from the template, not the base model's name.
    assert detect_family(template_text("hermes3")) is ToolCallFamily.HERMES
    assert {detect_family(template_text(t)) for t in TEMPLATE_IDS} == {
        ToolCallFamily.HERMES,
        ToolCallFamily.LLAMA3,
        ToolCallFamily.MISTRAL,
    }


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
    assert prefixes == {
        ToolCallFamily.HERMES: "<tool_call>\n",
        ToolCallFamily.LLAMA3: "<|python_tag|>",
        ToolCallFamily.MISTRAL: "[TOOL_CALLS]",
        ToolCallFamily.FUNCTION_TAG: "<function=",
    }


@pytest.mark.parametrize("family", list(ToolCallFamily))
def test_prefix_plus_a_model_completion_parses(family: ToolCallFamily) -> None:
    """The agent prefills the call prefix and appends what the model writes."""
    completions = {
        ToolCallFamily.HERMES: '{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
        ToolCallFamily.LLAMA3: '{"name": "get_weather", "parameters": {"city": "Oslo"}}',
        ToolCallFamily.MISTRAL: '[{"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "Zq81kLm0a"}]',
        ToolCallFamily.FUNCTION_TAG: 'get_weather>{"city": "Oslo"}</function>',
    }
    renderer = NativeToolRenderer(family)
    parsed = renderer.parse(renderer.call_prefix() + completions[family])
    assert parsed.ok and parsed.content == ""
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("get_weather", {"city": "Oslo"})]
