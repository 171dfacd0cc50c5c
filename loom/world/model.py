"""The world's base model: a Qwen2 decoder built from a
:class:`~.presets.ModelSpec`, with tied embeddings and the tokenizer's
special-token ids, and its checkpoint form.

The base trains as Qwen2 and is saved, by default, as the equivalent Llama
checkpoint (:func:`as_llama`: the same weights, attention biases on, a zero
output-projection bias). transformers 5 loads every ``qwen2`` checkpoint with
its own Qwen2 tokenizer class, which rebuilds the pre-tokenizer with Qwen2's
split; a Llama checkpoint keeps the trained tokenizer as saved, so
``AutoTokenizer`` gives the ids the base learnt. Both architectures run in
transformers and llama.cpp. This module only builds configs and models; it
knows nothing about data or training (see :mod:`.train`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .presets import ModelSpec

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM


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


def as_llama(model: "Qwen2ForCausalLM") -> "LlamaForCausalLM":
    """The same function as a ``LlamaForCausalLM``: Qwen2 is Llama with
    biases on the q/k/v projections, so Llama with ``attention_bias`` and a
    zero ``o_proj`` bias computes exactly what ``model`` does."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    source = model.config
    config = LlamaConfig(
        vocab_size=source.vocab_size, hidden_size=source.hidden_size, intermediate_size=source.intermediate_size,
        num_hidden_layers=source.num_hidden_layers, num_attention_heads=source.num_attention_heads,
        num_key_value_heads=source.num_key_value_heads, max_position_embeddings=source.max_position_embeddings,
        rope_theta=source.rope_parameters["rope_theta"] if getattr(source, "rope_parameters", None) else 10000.0,
        rms_norm_eps=source.rms_norm_eps, tie_word_embeddings=source.tie_word_embeddings,
        attention_bias=True, mlp_bias=False, bos_token_id=source.bos_token_id, eos_token_id=source.eos_token_id,
        pad_token_id=source.pad_token_id,
    )
    llama = LlamaForCausalLM(config)
    state = dict(model.state_dict())
    for layer in range(config.num_hidden_layers):
        state[f"model.layers.{layer}.self_attn.o_proj.bias"] = torch.zeros(config.hidden_size)
    missing, unexpected = llama.load_state_dict(state, strict=False)
    if unexpected or [name for name in missing if name != "lm_head.weight"]:
        raise RuntimeError(f"Qwen2 -> Llama conversion left parameters unmatched: missing {missing}, "
                           f"unexpected {unexpected}")
    llama.tie_weights()
    llama.generation_config = model.generation_config
    return llama.eval()


def checkpoint_model(model: "Qwen2ForCausalLM", spec: ModelSpec) -> "PreTrainedModel":
    """The model to save for ``spec.checkpoint_architecture``."""
    return as_llama(model) if spec.checkpoint_architecture == "llama" else model
