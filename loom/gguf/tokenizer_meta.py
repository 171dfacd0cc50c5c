"""Tokenizer metadata for a GGUF: a transformers byte-level BPE as llama.cpp's `gpt2` vocabulary.

Reads a transformers fast tokenizer (its `tokenizers` JSON, added tokens,
special tokens and chat template) and produces the `tokenizer.*` keys
llama.cpp needs: model `gpt2`, the pre-tokenizer name, tokens, token types,
merges, bos/eos/pad/unk ids, the add-bos/add-eos flags and the chat template.

llama.cpp does not store the split regex in the file; it picks a built-in
pre-tokenizer by the `tokenizer.ggml.pre` name. We detect that name from the
tokenizer's own pre-tokenizer JSON (llama.cpp's converter hashes sample
output instead and refuses tokenizers it has not seen, which every freshly
trained tokenizer is). A pre-tokenizer we cannot map is a typed error, never a
silent guess, because a wrong split changes every token id.

This module knows nothing about model weights or architectures.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import gguf

from meta_spider.loom.gguf.errors import NonBPETokenizerError, UnknownPreTokenizerError, UnsupportedTokenizerError

# Split regexes as they appear in tokenizer.json, keyed by the llama.cpp
# pre-tokenizer that implements the same split. `gpt2` is also what
# ByteLevel(use_regex=True) does on its own.
_GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_SPLIT_REGEX_TO_PRE: dict[str, str] = {
    _GPT2_REGEX: "gpt-2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
}
# llama.cpp's names (llama-vocab.cpp): GPT-2 splitting is "gpt-2" with a hyphen;
# an unknown name such as "gpt2" makes llama.cpp refuse to load the file.
KNOWN_PRE_TOKENIZERS: tuple[str, ...] = ("gpt-2", "qwen2", "llama-bpe", "starcoder")

# Added tokens that look like control markup are control tokens in llama.cpp
# even when transformers does not flag them special (the converter does the same).
_LOOKS_SPECIAL = re.compile(r"^(<\|.*\|>|<｜.*｜>|\[[A-Z_]+\]|<(s|/s|unk|pad|mask)>)$")


@dataclass
class TokenizerMetadata:
    """Everything the GGUF's `tokenizer.*` keys hold, read from one tokenizer."""

    pre: str = field(metadata={"help": "llama.cpp pre-tokenizer name (tokenizer.ggml.pre)"})
    tokens: list[str] = field(metadata={"help": "token strings by id, byte-level encoded as in tokenizer.json"})
    token_types: list[int] = field(metadata={"help": "gguf.TokenType value per token"})
    merges: list[str] = field(metadata={"help": "BPE merges as 'left right', by rank"})
    bos_id: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None
    unk_id: int | None = None
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | None = None
    model: str = field(default="gpt2", metadata={"help": "tokenizer.ggml.model; byte-level BPE is 'gpt2'"})

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.token_types):
            raise ValueError(
                f"tokens and token_types differ in length: {len(self.tokens)} != {len(self.token_types)}"
            )
        if self.pre not in KNOWN_PRE_TOKENIZERS:
            raise ValueError(f"pre={self.pre!r} is not one of {KNOWN_PRE_TOKENIZERS}")
        for name in ("bos_id", "eos_id", "pad_id", "unk_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < len(self.tokens):
                raise ValueError(f"{name}={value!r} is outside the vocabulary of {len(self.tokens)} tokens")


def detect_pre_tokenizer(tokenizer_json: dict[str, Any]) -> str:
    """Map a tokenizer.json's pre-tokenizer to a llama.cpp pre-tokenizer name or raise.

    Accepts ByteLevel(use_regex=True, add_prefix_space=False) alone (GPT-2
    splitting, llama.cpp's "gpt-2"); the same after Digits(individual_digits=True)
    (every digit its own piece, then GPT-2 splitting: StarCoder's and SmolLM's
    tokenizers, llama.cpp's "starcoder"); or a Sequence of one regex Split
    (Isolated) followed by ByteLevel(use_regex=False), whose regex is a known one.
    """
    pre = tokenizer_json.get("pre_tokenizer")
    if not isinstance(pre, dict):
        raise UnknownPreTokenizerError(pre, KNOWN_PRE_TOKENIZERS)
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds in (["ByteLevel"], ["Digits", "ByteLevel"]):
        level = steps[-1]
        gpt2_split = level.get("use_regex", True) and not level.get("add_prefix_space", False)
        if gpt2_split and kinds == ["ByteLevel"]:
            return "gpt-2"
        if gpt2_split and steps[0].get("individual_digits", False):
            return "starcoder"
    if kinds == ["Split", "ByteLevel"]:
        split, level = steps
        regex = (split.get("pattern") or {}).get("Regex")
        if (
            regex in _SPLIT_REGEX_TO_PRE
            and split.get("behavior") == "Isolated"
            and not split.get("invert", False)
            and not level.get("use_regex", True)
            and not level.get("add_prefix_space", False)
        ):
            return _SPLIT_REGEX_TO_PRE[regex]
    raise UnknownPreTokenizerError(pre, KNOWN_PRE_TOKENIZERS)


def _merges_as_strings(raw_merges: list[Any]) -> list[str]:
    # tokenizers >= 0.20 saves merges as [left, right] pairs, older ones as "left right".
    merges: list[str] = []
    for merge in raw_merges:
        if isinstance(merge, str):
            merges.append(merge)
            continue
        left, right = merge
        if " " in left or " " in right:
            # Byte-level tokens never hold a raw space (it is encoded as 'Ġ'),
            # and llama.cpp splits merges on the first space.
            raise UnsupportedTokenizerError("a BPE merge contains a raw space", merge)
        merges.append(f"{left} {right}")
    return merges


def _adds_special(tokenizer: Any) -> tuple[bool, bool]:
    """Whether encoding with special tokens prepends bos / appends eos."""
    plain = tokenizer.encode("a", add_special_tokens=False)
    with_special = tokenizer.encode("a", add_special_tokens=True)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = bos is not None and len(with_special) > len(plain) and with_special[0] == bos
    add_eos = eos is not None and len(with_special) > len(plain) and with_special[-1] == eos
    return add_bos, add_eos


def tokenizer_metadata(tokenizer: Any, vocab_size: int | None = None) -> TokenizerMetadata:
    """Read a transformers fast tokenizer into `TokenizerMetadata`.

    `vocab_size` is the model's embedding rows (config.vocab_size); ids the
    tokenizer does not define up to it become unused `[PAD<id>]` tokens so the
    GGUF vocabulary matches the embedding matrix, as llama.cpp requires.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise NonBPETokenizerError(type(tokenizer).__name__ + " (not a fast tokenizer)")
    tokenizer_json = json.loads(backend.to_str())
    model = tokenizer_json.get("model", {})
    if model.get("type") != "BPE":
        raise NonBPETokenizerError(str(model.get("type")))
    decoder = tokenizer_json.get("decoder") or {}
    decoder_kinds = [d.get("type") for d in decoder.get("decoders", [decoder])]
    if "ByteLevel" not in decoder_kinds:
        # A BPE without byte-level decoding (SentencePiece-style BPE) is another llama.cpp vocab type.
        raise NonBPETokenizerError(f"BPE with decoder {decoder_kinds} (not byte-level)")
    normalizer = tokenizer_json.get("normalizer")
    if normalizer is not None and normalizer.get("type") != "NFC":
        # llama.cpp's BPE path applies no normaliser; NFC only matters for
        # non-NFC input (llama.cpp's converter accepts it too), others change ids.
        raise UnsupportedTokenizerError("the tokenizer's normalizer has no llama.cpp equivalent", normalizer)
    pre = detect_pre_tokenizer(tokenizer_json)

    vocab: dict[str, int] = tokenizer.get_vocab()
    added = tokenizer.added_tokens_decoder  # id -> AddedToken (with its `special` flag)
    n_tokens = max(vocab_size or 0, max(vocab.values()) + 1)
    by_id = {token_id: text for text, token_id in vocab.items()}

    tokens: list[str] = []
    token_types: list[int] = []
    for token_id in range(n_tokens):
        text = by_id.get(token_id)
        if text is None:
            tokens.append(f"[PAD{token_id}]")
            token_types.append(int(gguf.TokenType.UNUSED))
            continue
        tokens.append(text)
        added_token = added.get(token_id)
        if added_token is None:
            token_types.append(int(gguf.TokenType.NORMAL))
        elif added_token.special or _LOOKS_SPECIAL.match(text):
            token_types.append(int(gguf.TokenType.CONTROL))
        else:
            # Non-special added tokens (e.g. '<tool_call>') are matched verbatim in
            # text by both tokenizers; llama.cpp stores them raw, not byte-encoded.
            token_types.append(int(gguf.TokenType.USER_DEFINED))

    add_bos, add_eos = _adds_special(tokenizer)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    return TokenizerMetadata(
        pre=pre,
        tokens=tokens,
        token_types=token_types,
        merges=_merges_as_strings(model.get("merges", [])),
        bos_id=tokenizer.bos_token_id,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        unk_id=tokenizer.unk_token_id,
        add_bos=add_bos,
        add_eos=add_eos,
        chat_template=template if isinstance(template, str) else None,
    )


def write_tokenizer_metadata(writer: gguf.GGUFWriter, meta: TokenizerMetadata) -> None:
    """Add the `tokenizer.*` keys of `meta` to a GGUFWriter."""
    writer.add_tokenizer_model(meta.model)
    writer.add_tokenizer_pre(meta.pre)
    writer.add_token_list(meta.tokens)
    writer.add_token_types(meta.token_types)
    writer.add_token_merges(meta.merges)
    if meta.bos_id is not None:
        writer.add_bos_token_id(meta.bos_id)
    if meta.eos_id is not None:
        writer.add_eos_token_id(meta.eos_id)
    if meta.pad_id is not None:
        writer.add_pad_token_id(meta.pad_id)
    if meta.unk_id is not None:
        writer.add_unk_token_id(meta.unk_id)
    writer.add_add_bos_token(meta.add_bos)
    writer.add_add_eos_token(meta.add_eos)
    if meta.chat_template:
        writer.add_chat_template(meta.chat_template)
