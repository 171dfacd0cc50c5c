"""Shared fixtures of the native tool-calling tests: the real chat templates
vendored under ``tests/fixtures/templates`` (with the family each model
writes), tool definitions, a tiny tokenizer trained in-process, and the
"every character accounted for" check."""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from meta_spider.native import ParseResult, ToolCallFamily


VENDORED_DIR = Path(__file__).parent / "fixtures" / "templates"

# The four templates the earlier tests were written against (short id ->
# file); they are also vendored, so these ids resolve without shared/.
CORE_TEMPLATES: dict[str, str] = {
    "hermes3": "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
    "qwen25": "Qwen-Qwen2.5-7B-Instruct.jinja",
    "llama31": "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "mistral_nemo": "mistralai-Mistral-Nemo-Instruct-2407.jinja",
}
TEMPLATE_IDS = list(CORE_TEMPLATES)


@lru_cache(maxsize=1)
def vendored_templates() -> dict[str, ToolCallFamily]:
    """Every vendored template (file stem) and the family its model writes,
    read from the table in ``fixtures/templates/SOURCES.md``."""
    table: dict[str, ToolCallFamily] = {}
    for line in (VENDORED_DIR / "SOURCES.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].endswith(".jinja"):
            table[cells[0].removesuffix(".jinja")] = ToolCallFamily(cells[3].split()[0])
    return table


VENDORED_IDS = list(vendored_templates())


def template_path(short_id: str) -> Path:
    file_name = CORE_TEMPLATES.get(short_id, f"{short_id}.jinja")
    path = VENDORED_DIR / file_name
    if not path.is_file():
        raise KeyError(f"no vendored template {file_name} in {VENDORED_DIR}")
    return path


def template_text(short_id: str) -> str:
    return template_path(short_id).read_text(encoding="utf-8")


def template_family(short_id: str) -> ToolCallFamily:
    stem = CORE_TEMPLATES.get(short_id, f"{short_id}.jinja").removesuffix(".jinja")
    return vendored_templates()[stem]


WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
            },
            "required": ["city"],
        },
    },
}
LOOKUP_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "kb_lookup",
        "description": "Look a fact up in the knowledge base.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What to look up"}},
            "required": ["query"],
        },
    },
}
TOOLS = [WEATHER_TOOL, LOOKUP_TOOL]
TOOL_NAMES = ("get_weather", "kb_lookup")

BOS, EOS = "<s>", "</s>"


@lru_cache(maxsize=1)
def _trained_tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = ["What is the weather in Paris?", "<tool_call> get_weather kb_lookup </tool_call>", "hello world"]
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer.to_str()


def tiny_tokenizer(chat_template: str | None) -> Any:
    """A real transformers fast tokenizer (BPE trained here on three strings)
    carrying ``chat_template``."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_tokenizer_json()),
        bos_token=BOS,
        eos_token=EOS,
        unk_token="<unk>",
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def assert_every_character_accounted_for(result: ParseResult, text: str) -> None:
    """The no-lost-text invariant, checked two independent ways.

    1. The spans tile ``text`` exactly, in order, and each span's text is the
       matching content or reasoning piece, markup, call ``raw`` or failure ``raw``.
    2. Without the spans: the multiset of characters of the content, the
       reasoning, the markup, all call raws and all failure raws equals that of ``text``.
    """
    assert result.raw == text
    position = 0
    content_pieces: list[str] = []
    reasoning_pieces: list[str] = []
    markup_pieces: list[str] = []
    call_raws: list[str] = []
    failure_raws: list[str] = []
    for span in result.spans:
        assert span.start == position, (span, position)
        assert span.end > span.start, span
        piece = text[span.start : span.end]
        if span.kind == "content":
            content_pieces.append(piece)
        elif span.kind == "reasoning":
            reasoning_pieces.append(piece)
        elif span.kind == "markup":
            markup_pieces.append(piece)
        elif span.kind == "call":
            assert span.index == len(call_raws)
            call_raws.append(piece)
        else:
            assert span.kind == "failure"
            assert span.index == len(failure_raws)
            failure_raws.append(piece)
        position = span.end
    assert position == len(text)
    assert "".join(content_pieces) == result.content
    assert "".join(reasoning_pieces) == result.reasoning
    assert call_raws == [call.raw for call in result.tool_calls]
    assert failure_raws == [failure.raw for failure in result.failures]

    pieces = [
        result.content, result.reasoning, *markup_pieces, *(c.raw for c in result.tool_calls),
        *(f.raw for f in result.failures),
    ]
    assert sum(len(piece) for piece in pieces) == len(text)
    assert sum((Counter(piece) for piece in pieces), Counter()) == Counter(text)


def malformed_outputs(family: ToolCallFamily, size: int) -> dict[str, str]:
    """Adversarial model output of about ``size`` characters for one family:
    call openings that never close, truncated calls, nesting and markup
    soup, each repeated to fill ``size`` (used by the linear-time test and
    ``benchmarks/native_parse_scaling.py``)."""
    from meta_spider.native import NativeToolRenderer

    renderer = NativeToolRenderer(family)
    call = renderer.format_call("get_weather", {"city": "Paris", "note": "a {b} [c]"})
    prefix = renderer.call_prefix() or ">>>"
    pieces = {
        "unclosed_prefix": prefix + '{"name": "f", "arguments": {"a": "',
        "half_call": call[: len(call) // 2],
        "call_without_last_char": call[:-1] + "\n",
        "open_braces": '{"name": {"arguments": [',
        "markup_soup": "".join(SOUP_TOKENS),
    }
    return {name: (piece * (size // len(piece) + 1))[:size] for name, piece in pieces.items()}


SOUP_TOKENS = (
    "<tool_call>", "<|python_tag|>", "[TOOL_CALLS]", "<function=", "<parameter=", "<arg_key>", "<arg_value>",
    "<seed:tool_call>", "<minimax:tool_call>", '<invoke name="', "<|tool_calls_section_begin|>", "<|tool_call_begin|>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<|START_ACTION|>", "<|action_start|><|plugin|>", "<TOOLCALL>",
    "<|tool_call|>", " functools[", "<|tool_call_start|>[f(", ">>>f\n{", "<|channel|>", "<|message|>", " to=functions.f",
    '{"name": "f", "parameters": {', "```json\n[", "\n[{", '"', "{", "[",
)
