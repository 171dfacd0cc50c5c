"""The world's base model: a Qwen2 decoder built from a
:class:`~.presets.ModelSpec` (an architecture both transformers and
llama.cpp run), with tied embeddings and the tokenizer's special-token ids.

This module only builds configs and models; it knows nothing about data or
training (see :mod:`.train`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .presets import ModelSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM


def build_config(spec: ModelSpec, tokenizer: "PreTrainedTokenizerFast") -> "Qwen2Config":
    """A ``Qwen2Config`` for ``spec`` whose vocabulary is the tokenizer's."""
    from transformers import Qwen2Config

    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_positions,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=im_end,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_model(spec: ModelSpec, tokenizer: "PreTrainedTokenizerFast", seed: int) -> "Qwen2ForCausalLM":
    """A freshly initialised Qwen2 causal LM; the same seed gives the same
    weights."""
    import torch
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(build_config(spec, tokenizer))
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.bos_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.do_sample = False
    return model
