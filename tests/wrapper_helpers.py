"""Tiny in-process models and a tiny tokenizer for tests.

Everything here is built from configs and a few training strings, in
process, in well under a second: no hub download, no network. The tokenizer
is a byte-level BPE with a small ChatML chat template; every tiny model
shares its vocabulary so any model can be paired with it.

Families (``TINY_FAMILIES``): Llama, Mistral, Qwen2, Qwen3, Gemma 2,
Gemma 3 (text), Gemma 3 multimodal (``Gemma3ForConditionalGeneration``),
GPT-2, Phi-3, Llava (Llama text model inside a multimodal wrapper), Gemma 4
(text), GPT-OSS, OLMo 3, and the hybrids with recurrent state
(``HYBRID_FAMILIES``): Qwen3-Next, Falcon-H1, Granite 4 (GraniteMoeHybrid),
Jamba, Mamba 2.

This module knows nothing about meta-spider: other areas' tests reuse it
for any "give me a small real transformers model" need.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""A minimal ChatML template (the Qwen/Hermes turn format, no tools)."""

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|image|>")
"""``<|image|>`` is reserved for the multimodal families' image-token id."""

TRAINING_TEXTS = (
    "The capital of France is Paris. The capital of Italy is Rome.",
    "What is two plus two? Two plus two is four.",
    "Question: who wrote the book? Answer: I do not know.",
    "user assistant system tool call result answer refuse lookup",
    "0123456789 + - * / = ( ) [ ] { } : ; , . ! ? ' \"",
    "the quick brown fox jumps over the lazy dog",
)

PROMPTS = tuple(
    f"{question} {detail}"
    for question in (
        "What is the capital of France?",
        "Who wrote the book?",
        "How much is two plus two?",
        "Name a lazy animal.",
        "Tell me about the fox.",
    )
    for detail in ("Answer briefly.", "Think first.", "Be exact.", "One word please.")
)
"""Twenty short user prompts (the no-harm test uses all of them)."""


def make_tokenizer(vocab_size: int = 320) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` with bos/eos/pad and a
    ChatML chat template; ``<|im_end|>`` is the end-of-turn (eos) token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(TRAINING_TEXTS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _common_text(vocab_size: int, tokenizer: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    return dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,  # the agent tests render tool schemas: prompts pass 256
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ) | overrides


def _llama(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(**_common_text(v, tok, over)))


def _mistral(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import MistralConfig, MistralForCausalLM

    return MistralForCausalLM(MistralConfig(**_common_text(v, tok, over), sliding_window=None))


def _qwen2(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM(Qwen2Config(**_common_text(v, tok, over)))


def _qwen3(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return Qwen3ForCausalLM(Qwen3Config(**_common_text(v, tok, over), head_dim=8))


def _gemma2(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    # A sliding window shorter than the test prompts so the wrapper's cache
    # handling meets real sliding-window layers.
    return Gemma2ForCausalLM(Gemma2Config(**_common_text(v, tok, over), head_dim=8, sliding_window=16))


def _gemma3_text_config(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(**_common_text(v, tok, over), head_dim=8, sliding_window=16)


def _gemma3(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import Gemma3ForCausalLM

    return Gemma3ForCausalLM(_gemma3_text_config(v, tok, over))


def _gemma3_multimodal(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig

    vision = SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=6, num_attention_heads=2,
        image_size=28, patch_size=14,
    )  # six vision blocks on purpose: as deep as the text decoder
    image_id = tok.convert_tokens_to_ids("<|image|>")
    config = Gemma3Config(
        text_config=_gemma3_text_config(v, tok, over).to_dict(),
        vision_config=vision.to_dict(),
        mm_tokens_per_image=4,
        boi_token_index=image_id,
        eoi_token_index=image_id,
        image_token_index=image_id,
    )
    return Gemma3ForConditionalGeneration(config)


def _gpt2(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=v, n_embd=32, n_layer=6, n_head=4, n_positions=256,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def _phi3(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import Phi3Config, Phi3ForCausalLM

    return Phi3ForCausalLM(Phi3Config(**_common_text(v, tok, over)))


def _llava(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    vision = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        image_size=28, patch_size=14, projection_dim=16,
    )
    config = LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=LlamaConfig(**_common_text(v, tok, over)).to_dict(),
        image_token_index=tok.convert_tokens_to_ids("<|image|>"),
        image_seq_length=4,
    )
    return LlavaForConditionalGeneration(config)


def _qwen3_next(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

    # Gated-DeltaNet linear attention with full attention every third layer, MoE MLPs.
    return Qwen3NextForCausalLM(Qwen3NextConfig(
        **_common_text(v, tok, over), head_dim=8, full_attention_interval=3, linear_num_value_heads=4,
        linear_num_key_heads=2, linear_key_head_dim=8, linear_value_head_dim=8, linear_conv_kernel_dim=4,
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, shared_expert_intermediate_size=16))


def _falcon_h1(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import FalconH1Config, FalconH1ForCausalLM

    # Attention and a Mamba-2 mixer side by side in every layer.
    return FalconH1ForCausalLM(FalconH1Config(
        **_common_text(v, tok, over), head_dim=8, mamba_d_ssm=32, mamba_n_heads=4, mamba_d_head=8,
        mamba_d_state=8, mamba_n_groups=1, mamba_chunk_size=16, mamba_d_conv=4))


def _granitemoehybrid(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import GraniteMoeHybridConfig, GraniteMoeHybridForCausalLM

    # Granite 4: Mamba-2 layers with attention layers between them.
    return GraniteMoeHybridForCausalLM(GraniteMoeHybridConfig(
        **_common_text(v, tok, over), num_local_experts=4, num_experts_per_tok=2, shared_intermediate_size=32,
        mamba_n_heads=4, mamba_d_head=16, mamba_d_state=8, mamba_n_groups=1, mamba_chunk_size=16, mamba_expand=2,
        layer_types=["mamba", "mamba", "attention", "mamba", "mamba", "attention"]))


def _jamba(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import JambaConfig, JambaForCausalLM

    # Mamba and attention blocks of different classes in one list; MoE every other layer.
    return JambaForCausalLM(JambaConfig(
        **_common_text(v, tok, over), num_experts=4, num_experts_per_tok=2, expert_layer_period=2,
        expert_layer_offset=1, attn_layer_period=3, attn_layer_offset=2, mamba_d_state=8, mamba_d_conv=4,
        mamba_expand=2, mamba_dt_rank=4))


def _mamba2(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import Mamba2Config, Mamba2ForCausalLM

    return Mamba2ForCausalLM(Mamba2Config(
        vocab_size=v, hidden_size=32, num_hidden_layers=6, num_heads=4, head_dim=16, state_size=8, n_groups=1,
        chunk_size=16, expand=2, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id))


def _gemma4(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    return Gemma4ForCausalLM(Gemma4TextConfig(**_common_text(v, tok, over), head_dim=8, sliding_window=16))


def _gpt_oss(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import GptOssConfig, GptOssForCausalLM

    return GptOssForCausalLM(GptOssConfig(**_common_text(v, tok, over), head_dim=8, sliding_window=16,
                                          num_local_experts=4, num_experts_per_tok=2))


def _olmo3(v: int, tok: Any, over: dict[str, Any]) -> Any:
    from transformers import Olmo3Config, Olmo3ForCausalLM

    return Olmo3ForCausalLM(Olmo3Config(**_common_text(v, tok, over), sliding_window=16))


HYBRID_FAMILIES = ("qwen3_next", "falcon_h1", "granitemoehybrid", "jamba", "mamba2")
"""The families whose cache holds recurrent (linear-attention or state-space) state."""

TINY_FAMILIES: dict[str, Callable[[int, Any, dict[str, Any]], Any]] = {
    "llama": _llama,
    "mistral": _mistral,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "gemma2": _gemma2,
    "gemma3": _gemma3,
    "gemma3_multimodal": _gemma3_multimodal,
    "gpt2": _gpt2,
    "phi3": _phi3,
    "llava": _llava,
    "qwen3_next": _qwen3_next,
    "falcon_h1": _falcon_h1,
    "granitemoehybrid": _granitemoehybrid,
    "jamba": _jamba,
    "mamba2": _mamba2,
    "gemma4": _gemma4,
    "gpt_oss": _gpt_oss,
    "olmo3": _olmo3,
}
"""Family name -> builder ``(vocab_size, tokenizer, text_config_overrides) -> model``; 6 decoder
layers, hidden size 32, every one of them."""


def make_tiny_model(family: str, tokenizer: Any, *, seed: int = 0, **text_config: Any) -> Any:
    """A randomly initialised tiny model of ``family`` in float32, eval mode,
    with its generation config's eos/pad set to the tokenizer's.
    ``text_config`` overrides the text-config fields of the families built
    on the shared text config (all but GPT-2 and Mamba 2), e.g. ``hidden_size=64``."""
    if family not in TINY_FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; known: {sorted(TINY_FAMILIES)}")
    if text_config and family in ("gpt2", "mamba2"):
        raise ValueError(f"{family} takes no text-config overrides, got {sorted(text_config)}")
    torch.manual_seed(seed)
    model = TINY_FAMILIES[family](len(tokenizer), tokenizer, text_config)
    model = model.to(torch.float32).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def save_tiny_model(model: Any, tokenizer: Any, folder: Path) -> Path:
    """Write ``model`` and ``tokenizer`` with ``save_pretrained`` into
    ``folder`` (a local hub-style folder) and return it."""
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def chat_ids(tokenizer: Any, user_text: str) -> torch.Tensor:
    """``[1, T]`` input ids of one user turn rendered with the chat template
    (with the generation prompt), the way the pipeline renders it."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]


@lru_cache(maxsize=None)
def shared_tokenizer() -> Any:
    """One tokenizer per test process (treat it as read-only)."""
    return make_tokenizer()


@lru_cache(maxsize=None)
def shared_model(family: str = "qwen2") -> Any:
    """One tiny model per family per test process, paired with
    :func:`shared_tokenizer`. Read-only: build your own with
    :func:`make_tiny_model` when a test changes the model (checkpointing,
    weights, dtype)."""
    return make_tiny_model(family, shared_tokenizer())


def forward_hook_counts(modules: Any) -> list[int]:
    """Forward hooks per module. transformers installs its own recording
    hooks the first time ``output_hidden_states`` is used, so compare counts
    before and after rather than expecting zero."""
    return [len(module._forward_hooks) for module in modules]
