"""Tokenizer metadata for GGUF: pre-tokenizer detection, token types, merges, flags, typed errors."""

from __future__ import annotations

import json

import gguf
import pytest

from gguf_helpers import CHATML_TEMPLATE, SPECIAL_TOKENS, USER_TOKENS, build_tokenizer
from meta_spider.loom.gguf import (
    NonBPETokenizerError,
    UnknownPreTokenizerError,
    UnsupportedTokenizerError,
    detect_pre_tokenizer,
    tokenizer_metadata,
)


@pytest.fixture(scope="module")
def gpt2_split_tokenizer():
    return build_tokenizer(split="gpt2", add_bos=True)


@pytest.fixture(scope="module")
def qwen2_split_tokenizer():
    return build_tokenizer(split="qwen2", add_bos=False)


def _json(tokenizer) -> dict:
    return json.loads(tokenizer.backend_tokenizer.to_str())


def test_gpt2_splitting_maps_to_llama_cpp_gpt_2(gpt2_split_tokenizer):
    # llama.cpp knows GPT-2 splitting as "gpt-2"; "gpt2" would make it refuse the file.
    assert detect_pre_tokenizer(_json(gpt2_split_tokenizer)) == "gpt-2"


def test_qwen2_split_regex_maps_to_qwen2(qwen2_split_tokenizer):
    assert detect_pre_tokenizer(_json(qwen2_split_tokenizer)) == "qwen2"


def test_digits_split_off_before_gpt2_splitting_maps_to_starcoder():
    data = _json(build_tokenizer(split="gpt2-digits"))
    assert detect_pre_tokenizer(data) == "starcoder"
    data["pre_tokenizer"]["pretokenizers"][0]["individual_digits"] = False  # runs of digits: no llama.cpp match
    with pytest.raises(UnknownPreTokenizerError, match="Digits"):
        detect_pre_tokenizer(data)


def test_unknown_split_regex_is_a_typed_error_naming_the_pre_tokenizer(qwen2_split_tokenizer):
    data = _json(qwen2_split_tokenizer)
    data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+|\s+"
    with pytest.raises(UnknownPreTokenizerError) as caught:
        detect_pre_tokenizer(data)
    assert caught.value.pre_tokenizer == data["pre_tokenizer"]
    assert "gpt-2" in str(caught.value) and r"\\p{L}+|\\s+" in str(caught.value)


def test_byte_level_with_prefix_space_is_refused(gpt2_split_tokenizer):
    data = _json(gpt2_split_tokenizer)
    data["pre_tokenizer"]["add_prefix_space"] = True
    with pytest.raises(UnknownPreTokenizerError):
        detect_pre_tokenizer(data)


def test_missing_pre_tokenizer_is_refused():
    with pytest.raises(UnknownPreTokenizerError):
        detect_pre_tokenizer({"pre_tokenizer": None})


def test_word_level_tokenizer_is_not_bpe():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    with pytest.raises(NonBPETokenizerError) as caught:
        tokenizer_metadata(tokenizer)
    assert caught.value.model_type == "WordLevel"


def test_bpe_without_byte_level_decoding_is_not_accepted():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2, "<unk>": 3}, [("a", "b")], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(NonBPETokenizerError, match="not byte-level"):
        tokenizer_metadata(tokenizer)


def test_token_types_merges_and_special_ids(gpt2_split_tokenizer):
    tokenizer = gpt2_split_tokenizer
    meta = tokenizer_metadata(tokenizer)
    vocab = tokenizer.get_vocab()
    assert meta.model == "gpt2" and meta.pre == "gpt-2"
    assert len(meta.tokens) == len(vocab)
    for text, token_id in vocab.items():
        assert meta.tokens[token_id] == text
    for special in SPECIAL_TOKENS:
        assert meta.token_types[vocab[special]] == gguf.TokenType.CONTROL
    for user in USER_TOKENS:
        assert meta.token_types[vocab[user]] == gguf.TokenType.USER_DEFINED
    assert meta.token_types[vocab["Ġ"]] == gguf.TokenType.NORMAL
    raw_merges = _json(tokenizer)["model"]["merges"]
    assert len(meta.merges) == len(raw_merges) > 0
    first = raw_merges[0] if isinstance(raw_merges[0], str) else " ".join(raw_merges[0])
    assert meta.merges[0] == first
    assert meta.bos_id == vocab["<|endoftext|>"] and meta.eos_id == vocab["<|im_end|>"]
    assert meta.pad_id == vocab["<|pad|>"]
    assert meta.add_bos is True and meta.add_eos is False
    assert meta.chat_template == CHATML_TEMPLATE


def test_add_bos_follows_the_post_processor(qwen2_split_tokenizer):
    assert tokenizer_metadata(qwen2_split_tokenizer).add_bos is False


def test_vocab_is_padded_to_the_embedding_rows(qwen2_split_tokenizer):
    n = len(qwen2_split_tokenizer)
    meta = tokenizer_metadata(qwen2_split_tokenizer, vocab_size=n + 3)
    assert len(meta.tokens) == n + 3
    assert meta.tokens[n:] == [f"[PAD{n}]", f"[PAD{n + 1}]", f"[PAD{n + 2}]"]
    assert set(meta.token_types[n:]) == {gguf.TokenType.UNUSED}


def test_lowercasing_normalizer_is_refused():
    from tokenizers import normalizers

    tokenizer = build_tokenizer(split="gpt2")
    tokenizer.backend_tokenizer.normalizer = normalizers.Lowercase()
    with pytest.raises(UnsupportedTokenizerError, match="normalizer"):
        tokenizer_metadata(tokenizer)
