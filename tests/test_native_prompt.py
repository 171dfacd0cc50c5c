"""NativeToolPrompt: the real chat templates rendered with jinja2 the way
transformers renders them, and through a real transformers tokenizer."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest

from native_fixtures import (
    BOS,
    EOS,
    LOOKUP_TOOL,
    TEMPLATE_IDS,
    TOOL_NAMES,
    TOOLS,
    template_family,
    template_text,
    tiny_tokenizer,
)

from meta_spider.native import (
    ChatTemplateError,
    MissingChatTemplateError,
    NativeToolPrompt,
    ParsedToolCall,
    ToolCallFamily,
    assistant_tool_calls_message,
    make_call_id,
    tool_result_message,
)

SYSTEM_USER = [
    {"role": "system", "content": "You are a careful assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
]

# How each template opens the assistant turn it asks the model to write.
GENERATION_SUFFIX = {
    "hermes3": "<|im_start|>assistant\n",
    "qwen25": "<|im_start|>assistant\n",
    "llama31": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "mistral_nemo": "[/INST]",
}


def tool_conversation(call_id: str = "a1B2c3D4e") -> list[dict]:
    """user -> assistant tool call -> tool result, in the transformers form."""
    return [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,  # OpenAI-style APIs send None here; templates must not see it
            "tool_calls": [
                {
                    "type": "function",
                    "id": call_id,
                    "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
                }
            ],
        },
        {"role": "tool", "name": "get_weather", "content": "18 C, clear", "tool_call_id": call_id},
    ]


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_each_template_renders_system_user_with_two_tools(template_id: str) -> None:
    prompt = NativeToolPrompt.from_template(template_text(template_id), bos_token=BOS, eos_token=EOS)
    rendered = prompt.render(SYSTEM_USER, tools=TOOLS)
    for name in TOOL_NAMES:
        assert name in rendered, f"{name} missing from the {template_id} prompt"
    assert "What is the weather in Paris?" in rendered
    assert "You are a careful assistant." in rendered
    assert rendered.endswith(GENERATION_SUFFIX[template_id])
    assert prompt.family is template_family(template_id)


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_each_template_renders_a_tool_call_exactly_as_the_renderer_writes_it(template_id: str) -> None:
    """Golden: the call text the template writes for an assistant tool call
    is byte-identical to ``format_call``, and parses back to the call."""
    prompt = NativeToolPrompt.from_template(template_text(template_id), bos_token=BOS, eos_token=EOS)
    rendered = prompt.render(tool_conversation(), tools=TOOLS)
    renderer = prompt.renderer()
    arguments = {"city": "Paris", "unit": "celsius"}
    call_id = "a1B2c3D4e" if renderer.family is ToolCallFamily.MISTRAL else None
    written = renderer.format_call("get_weather", arguments, call_id=call_id)
    assert written in rendered
    assert "18 C, clear" in rendered
    parsed = renderer.parse(written)
    assert parsed.ok and parsed.content == ""
    assert parsed.tool_calls == (ParsedToolCall("get_weather", arguments, call_id, written),)


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_from_tokenizer_equals_from_template(template_id: str) -> None:
    text = template_text(template_id)
    tokenizer = tiny_tokenizer(text)
    through_tokenizer = NativeToolPrompt.from_tokenizer(tokenizer)
    through_jinja = NativeToolPrompt.from_template(text, bos_token=BOS, eos_token=EOS)
    assert through_tokenizer.template == text
    for messages in (SYSTEM_USER, tool_conversation()):
        expected = through_jinja.render(messages, tools=TOOLS, enable_thinking=False)
        assert through_tokenizer.render(messages, tools=TOOLS, enable_thinking=False) == expected
    # Without tools templates take their other branch; Hermes-3's tool-use
    # template cannot render without tools, and both paths must say so alike.
    outcomes = []
    for prompt in (through_tokenizer, through_jinja):
        try:
            outcomes.append(prompt.render(SYSTEM_USER))
        except ChatTemplateError as exc:
            outcomes.append(("error", exc.message, exc.cause))
    assert outcomes[0] == outcomes[1]
    assert isinstance(outcomes[0], tuple) == (template_id == "hermes3")


THINKING_PROBE = (
    "{% if enable_thinking is defined %}e={{ enable_thinking }}{% else %}e=unset{% endif %}"
    "|{% if thinking is defined %}t={{ thinking }}{% else %}t=unset{% endif %}"
    "|{{ messages[-1].content }}"
)


def test_enable_thinking_false_reaches_the_template_as_both_variables() -> None:
    messages = [{"role": "user", "content": "hi"}]
    prompt = NativeToolPrompt.from_template(THINKING_PROBE)
    assert prompt.render(messages, enable_thinking=False) == "e=False|t=False|hi"
    assert prompt.render(messages, enable_thinking=True) == "e=True|t=True|hi"
    assert prompt.render(messages) == "e=unset|t=unset|hi"
    # An explicit template variable wins over the switch.
    assert prompt.render(messages, enable_thinking=False, thinking="low") == "e=False|t=low|hi"
    # The same through a real tokenizer's apply_chat_template.
    through_tokenizer = NativeToolPrompt.from_tokenizer(tiny_tokenizer(THINKING_PROBE))
    assert through_tokenizer.render(messages, enable_thinking=False) == "e=False|t=False|hi"


def test_jinja_environment_matches_transformers_features() -> None:
    template = (
        "{{ bos_token }}{{ tools | tojson }}|{{ {'k': [1, 2]} | tojson(indent=2) }}|"
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}|"
        "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}|"
        "{% generation %}G{% endgeneration %}|{{ strftime_now('%Y') }}{{ eos_token }}"
    )
    prompt = NativeToolPrompt.from_template(template, bos_token="<B>", eos_token="<E>")
    messages = [{"role": "user", "content": "first"}, {"role": "user", "content": "second"}]
    rendered = prompt.render(messages, tools=[{"name": "café <b> & 'x'"}])
    # transformers' tojson keeps non-ASCII and does not HTML-escape.
    years = {str(datetime.datetime.now().year + delta) for delta in (-1, 0, 1)}
    head, pretty, first, count, generation, tail = rendered.split("|")
    assert head == '<B>[{"name": "café <b> & \'x\'"}]'
    assert pretty == '{\n  "k": [\n    1,\n    2\n  ]\n}'
    assert (first, count, generation) == ("first", "2", "G")
    assert tail[:4] in years and tail[4:] == "<E>"


def test_extra_context_and_template_kwargs_reach_the_template() -> None:
    llama_text = template_text("llama31")
    prompt = NativeToolPrompt.from_template(llama_text, bos_token=BOS, date_string="01 Jan 2030")
    rendered = prompt.render(SYSTEM_USER, tools=TOOLS)
    assert "Today Date: 01 Jan 2030" in rendered
    # Llama 3.1 can put the tools in the system message instead of the user turn.
    in_system = prompt.render(SYSTEM_USER, tools=TOOLS, tools_in_user_message=False)
    system_turn = in_system.split("<|eot_id|>")[0]
    assert "get_weather" in system_turn and "get_weather" not in rendered.split("<|eot_id|>")[0]
    dict_probe = NativeToolPrompt.from_template("{{ dict(a=1) | tojson }} {{ dict.fromkeys(['x']) | tojson }}")
    assert dict_probe.render([]) == '{"a": 1} {"x": null}'


def test_template_refusals_become_chat_template_errors() -> None:
    mistral = NativeToolPrompt.from_template(template_text("mistral_nemo"), eos_token=EOS)
    with pytest.raises(ChatTemplateError) as caught:
        mistral.render(tool_conversation(call_id="call_1"), tools=TOOLS)
    assert "Tool call IDs should be alphanumeric strings with length 9!" in caught.value.message

    llama = NativeToolPrompt.from_template(template_text("llama31"), bos_token=BOS)
    two_calls = assistant_tool_calls_message([("get_weather", {"city": "Paris"}), ("kb_lookup", {"query": "x"})])
    with pytest.raises(ChatTemplateError, match="only supports single tool-calls"):
        llama.render([{"role": "user", "content": "q"}, two_calls], tools=TOOLS)

    with pytest.raises(ChatTemplateError, match="syntax error"):
        NativeToolPrompt.from_template("{% for x in %}")


def test_mistral_accepts_generated_ids_and_tool_result_helpers() -> None:
    call_id = make_call_id()
    assert len(call_id) == 9 and call_id.isalnum()
    messages = [
        {"role": "user", "content": "Weather in Paris and the capital of Peru?"},
        assistant_tool_calls_message(
            [ParsedToolCall("get_weather", {"city": "Paris"}, call_id), ("kb_lookup", {"query": "capital of Peru"})]
        ),
    ]
    second_id = messages[1]["tool_calls"][1]["id"]
    messages += [
        tool_result_message("get_weather", "18 C", call_id),
        tool_result_message("kb_lookup", "Lima", second_id),
    ]
    mistral = NativeToolPrompt.from_template(template_text("mistral_nemo"), bos_token=BOS, eos_token=EOS)
    rendered = mistral.render(messages, tools=TOOLS, add_generation_prompt=False)
    renderer = mistral.renderer()
    expected = renderer.format_calls(
        [("get_weather", {"city": "Paris"}, call_id), ("kb_lookup", {"query": "capital of Peru"}, second_id)]
    )
    assert expected + EOS in rendered
    assert f'"call_id": "{second_id}"' in rendered
    parsed = renderer.parse(expected)
    assert [(c.name, c.call_id) for c in parsed.tool_calls] == [("get_weather", call_id), ("kb_lookup", second_id)]


def test_malformed_messages_are_the_callers_error_not_the_templates() -> None:
    prompt = NativeToolPrompt.from_template(template_text("qwen25"))
    with pytest.raises(TypeError, match="message 1 must be a mapping"):
        prompt.render([{"role": "user", "content": "hi"}, "hello"])  # type: ignore[list-item]


def test_render_does_not_mutate_the_callers_messages() -> None:
    messages = tool_conversation()
    snapshot = repr(messages)
    NativeToolPrompt.from_template(template_text("qwen25")).render(messages, tools=[LOOKUP_TOOL])
    assert repr(messages) == snapshot


def test_tokenizer_without_template_is_a_typed_error() -> None:
    with pytest.raises(MissingChatTemplateError, match="has no chat_template"):
        NativeToolPrompt.from_tokenizer(tiny_tokenizer(None))


def test_from_gguf_reads_the_template_and_special_tokens(tmp_path: Path) -> None:
    import gguf

    text = template_text("llama31")
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_token_list(["<unk>", "<|begin_of_text|>", "<|eot_id|>", "a"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(text)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    from_file = NativeToolPrompt.from_gguf(path)
    expected = NativeToolPrompt.from_template(text, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    assert from_file.template == text
    assert from_file.family is ToolCallFamily.LLAMA3
    assert from_file.render(SYSTEM_USER, tools=TOOLS) == expected.render(SYSTEM_USER, tools=TOOLS)
    assert from_file.render(SYSTEM_USER, tools=TOOLS).startswith("<|begin_of_text|>")


def test_importing_native_stays_light() -> None:
    code = (
        "import sys, meta_spider.native\n"
        "heavy = [m for m in ('torch', 'transformers', 'llama_cpp', 'gguf') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
