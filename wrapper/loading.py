"""Loading a base from the hub or a local folder, frozen.

Resolves the dtype, builds bitsandbytes' ``BitsAndBytesConfig`` for
``nf4``/``fp4``/``int8``, loads model and tokenizer (multimodal wrappers
through the image-text-to-text auto class), freezes every base parameter,
sets eval mode and switches on non-reentrant activation checkpointing when
asked. It knows nothing about the Doubter.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from meta_spider.wrapper.config import MetaSpiderConfig

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``"auto"`` -> bfloat16 on CUDA (float16 without bf16 support), float32
    elsewhere; names map to torch dtypes."""
    if dtype != "auto":
        return _DTYPES[dtype]
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def quantization_config(kind: str | None, compute_dtype: torch.dtype) -> Any:
    """bitsandbytes' config for ``kind`` (None -> None)."""
    if kind is None:
        return None
    from transformers import BitsAndBytesConfig

    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=kind, bnb_4bit_compute_dtype=compute_dtype
    )


def freeze(model: nn.Module) -> nn.Module:
    """No base parameter requires grad; eval mode (dropout off)."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


def keep_4bit_weights_trainable(model: nn.Module) -> int:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference.

    bitsandbytes (0.50) converts a ``Linear4bit`` weight into an AVX512-BF16
    inference layout on its first eval-mode, no-grad CPU forward; that layout
    has no backward, so every later training forward through the frozen base
    would fail. The pipeline runs pass 1 without grad and trains through the
    same modules, so the repack is switched off (CPU 4-bit inference gets
    slower; CUDA is unaffected). Returns how many modules were changed.
    """
    changed = 0
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed


def enable_checkpointing(model: nn.Module) -> None:
    """Non-reentrant activation checkpointing: the reentrant variant drops
    gradients of parameters that are not inputs of the checkpointed call,
    which is exactly the frozen-base-plus-wrapper situation."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:  # transformers < 5.x
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def load_base(config: MetaSpiderConfig) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)`` for ``config``: frozen, eval mode, on its device."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

    dtype = resolve_dtype(config.dtype, config.device)
    common: dict[str, Any] = {"revision": config.revision, "local_files_only": config.local_files_only}
    kwargs: dict[str, Any] = {"dtype": dtype, **common}
    quant = quantization_config(config.quantization, dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": config.device}
    try:
        model = AutoModelForCausalLM.from_pretrained(config.model_name, **kwargs)
    except ValueError as exc:
        # Multimodal wrappers (Llava, Qwen2-VL, ...) are not causal-LM auto
        # classes but generate text the same way.
        if "Unrecognized configuration class" not in str(exc):
            raise
        model = AutoModelForImageTextToText.from_pretrained(config.model_name, **kwargs)
    if quant is None:
        model = model.to(config.device)
    tokenizer = AutoTokenizer.from_pretrained(config.model_name, **common)
    if config.quantization in ("nf4", "fp4"):
        keep_4bit_weights_trainable(model)
    if config.gradient_checkpointing:
        enable_checkpointing(model)
    return freeze(model), tokenizer
