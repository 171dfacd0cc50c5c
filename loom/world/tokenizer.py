"""Byte-level BPE tokenizer of the embedded world, trained with the
``tokenizers`` library on the world's corpus and wrapped as a transformers
fast tokenizer carrying the chat template.

Pre-tokenisation is GPT-2's byte-level regex split (what llama.cpp calls the
``gpt-2`` pre-tokenizer), or one that splits every digit off on its own, so
that a number is the same tokens wherever it stands (in a tool's result and
in the answer that states it) where GPT-2's split glues a leading space and
frequent digit pairs into tokens of their own: Qwen2's split (``qwen2``),
or GPT-2's after the digits are split off, as StarCoder's tokenizer does
(``gpt2-digits``). The chat control tokens are special; the tool markup
tokens (``<tool_call>`` ...) are single added tokens that stay visible when
decoding with ``skip_special_tokens`` because tool-call parsers need them.
This module knows nothing about models or the world's facts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from .chat import BOS_TOKEN, CHAT_TEMPLATE, CONTROL_TOKENS, IM_END, MARKUP_TOKENS

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


def _strip_markup(text: str) -> str:
    # Markup strings become their own tokens; BPE merges should be spent on
    # the prose, so they are blanked out of the training text.
    for token in CONTROL_TOKENS + MARKUP_TOKENS:
        text = text.replace(token, "\n")
    return text


PRE_TOKENIZERS: tuple[str, ...] = ("gpt2", "qwen2", "gpt2-digits")
"""The splits a world tokenizer can train with: GPT-2's, Qwen2's, and GPT-2's
after the digits are split off."""

# Qwen2's split as its tokenizer.json writes it (and as llama.cpp's `qwen2`
# pre-tokenizer implements it): near GPT-2's, but one digit per piece, one
# non-letter kept with the letters after it, line breaks kept together.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def train_tokenizer(texts: Iterable[str], vocab_size: int, pre_tokenizer: str = "gpt2") -> "PreTrainedTokenizerFast":
    """Train a byte-level BPE on ``texts`` and return it as a
    ``PreTrainedTokenizerFast`` with bos/eos/pad and the chat template.

    ``vocab_size`` counts the control tokens and the merges (the tool markup
    tokens are appended after it); ``pre_tokenizer`` is one of
    :data:`PRE_TOKENIZERS`. Deterministic for the same texts.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(CONTROL_TOKENS):
        raise ValueError(f"vocab_size must cover the 256 byte symbols and specials, got {vocab_size!r}")
    if pre_tokenizer not in PRE_TOKENIZERS:
        raise ValueError(f"pre_tokenizer must be one of {PRE_TOKENIZERS}, got {pre_tokenizer!r}")
    bpe = Tokenizer(models.BPE())
    if pre_tokenizer == "qwen2":
        bpe.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    elif pre_tokenizer == "gpt2-digits":
        bpe.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    else:
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        special_tokens=list(CONTROL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator((_strip_markup(t) for t in texts), trainer=trainer)
    bpe.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKUP_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=BOS_TOKEN, eos_token=IM_END, pad_token=BOS_TOKEN,
        unk_token=None, chat_template=CHAT_TEMPLATE, padding_side="left",
        model_max_length=4096, clean_up_tokenization_spaces=False,
    )
    return tokenizer
