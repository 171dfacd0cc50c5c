"""The world's tokenizer and chat markup: byte-level BPE round trips, the
markup strings are single tokens, the chat template renders tool
definitions, calls and results exactly like the generator's renderer, the
saved folder loads through AutoTokenizer, and the native hermes parser reads
a rendered call back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meta_spider.loom.world.chat import CONTROL_TOKENS, LOOKUP_TOOL, MARKUP_TOKENS, lookup_call, render_chat
from meta_spider.loom.world.generator import generate_world
from meta_spider.loom.world.presets import get_preset
from meta_spider.loom.world.tokenizer import train_tokenizer

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Where was Mira Tollan born?"},
    {"role": "assistant", "content": "", "tool_calls": [lookup_call("Mira Tollan")]},
    {"role": "tool", "name": "lookup", "content": "Mira Tollan: born 1952 in Kuba, Velmar."},
    {"role": "assistant", "content": "She was born in Kuba."},
]


@pytest.fixture(scope="module")
def tokenizer():
    world = generate_world(get_preset("tiny").world, seed=1)
    return train_tokenizer([d["text"] for d in world.documents], vocab_size=600)


@pytest.fixture(scope="module")
def saved(tokenizer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("world_tok")
    tokenizer.save_pretrained(folder)
    return folder


def test_round_trip_of_arbitrary_text(tokenizer) -> None:
    for text in ["She was born in Kuba.", "Ünïcødé ✓ and\ttabs\n\nnew lines", "  leading spaces", "1999!"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    assert len(tokenizer) == 600 + len(MARKUP_TOKENS)


def test_markup_strings_are_single_tokens(tokenizer) -> None:
    for token in CONTROL_TOKENS + MARKUP_TOKENS:
        ids = tokenizer(f"x{token}y", add_special_tokens=False)["input_ids"]
        assert tokenizer.convert_tokens_to_ids(token) in ids
        assert len(ids) == 3
    assert tokenizer.bos_token == tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.eos_token == "<|im_end|>"
    # Tool markup survives skip_special_tokens (parsers need it); chat markup does not.
    ids = tokenizer("<|im_start|><tool_call>\n{}\n</tool_call><|im_end|>", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<tool_call>\n{}\n</tool_call>"


def test_template_renders_tools_calls_and_results(tokenizer) -> None:
    text = tokenizer.apply_chat_template(MESSAGES, tools=[LOOKUP_TOOL], tokenize=False)
    assert text == render_chat(MESSAGES, tools=[LOOKUP_TOOL])
    assert text.startswith("<|endoftext|><|im_start|>system\nBe brief.\n\n# Tools")
    assert json.dumps(LOOKUP_TOOL) in text
    assert '<|im_start|>assistant\n<tool_call>\n{"name": "lookup", "arguments": {"query": "Mira Tollan"}}\n</tool_call><|im_end|>' in text
    assert "<|im_start|>user\n<tool_response>\nMira Tollan: born 1952 in Kuba, Velmar.\n</tool_response><|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\nShe was born in Kuba.<|im_end|>\n")
    plain = tokenizer.apply_chat_template(MESSAGES[1:2], tokenize=False, add_generation_prompt=True)
    assert plain == "<|endoftext|><|im_start|>user\nWhere was Mira Tollan born?<|im_end|>\n<|im_start|>assistant\n"
    assert plain == render_chat(MESSAGES[1:2], add_generation_prompt=True)


def test_saved_tokenizer_loads_through_auto_tokenizer(tokenizer, saved: Path) -> None:
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(saved)
    text = render_chat(MESSAGES, tools=[LOOKUP_TOOL])
    assert loaded(text)["input_ids"] == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert loaded.apply_chat_template(MESSAGES, tools=[LOOKUP_TOOL], tokenize=False) == text
    config = json.loads((saved / "tokenizer.json").read_text())
    assert config["pre_tokenizer"]["type"] == "ByteLevel" and config["model"]["type"] == "BPE"


def test_native_hermes_parser_reads_a_rendered_call() -> None:
    from meta_spider.native import NativeToolRenderer

    text = render_chat(MESSAGES[1:3])
    reply = text.split("<|im_start|>assistant\n", 1)[1].removesuffix("<|im_end|>\n")
    parsed = NativeToolRenderer(family="hermes").parse(reply)
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("lookup", {"query": "Mira Tollan"})]


def test_render_chat_needs_messages() -> None:
    with pytest.raises(ValueError, match="at least one message"):
        render_chat([])


def test_digit_splits_give_a_number_the_same_tokens_in_a_tool_result_and_in_the_answer() -> None:
    from meta_spider.loom.gguf import detect_pre_tokenizer

    texts = [d["text"] for d in generate_world(get_preset("tiny").world, seed=1).documents]
    digits = train_tokenizer(texts, vocab_size=600, pre_tokenizer="qwen2")
    split_off = train_tokenizer(texts, vocab_size=600, pre_tokenizer="gpt2-digits")
    glued = train_tokenizer(texts, vocab_size=600)

    def with_digits(tok, text: str) -> list[str]:
        return [piece for piece in tok.tokenize(text) if any(c.isdigit() for c in piece)]

    for number in ("391", "1952", "102"):
        result = render_chat([{"role": "tool", "name": "calculator", "content": number}])
        for tok in (digits, split_off):
            assert with_digits(tok, result) == with_digits(tok, f"The answer is {number}.") == list(number)
    # GPT-2's split glues the answer's space to the number's first digits, so the two differ
    assert with_digits(glued, "The answer is 1952.")[0].startswith("Ġ")
    assert with_digits(glued, "The answer is 1952.") != with_digits(glued, "1952")
    assert detect_pre_tokenizer(json.loads(digits.backend_tokenizer.to_str())) == "qwen2"
    assert detect_pre_tokenizer(json.loads(glued.backend_tokenizer.to_str())) == "gpt-2"
    assert detect_pre_tokenizer(json.loads(split_off.backend_tokenizer.to_str())) == "starcoder"
    for text in ["She was born in 1952.", "17*23 = 391", "  it's 3.5\n\nnew"]:
        for tok in (digits, split_off):
            assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_an_unknown_pre_tokenizer_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="pre_tokenizer must be one of"):
        train_tokenizer(["some text"], vocab_size=600, pre_tokenizer="llama3")
