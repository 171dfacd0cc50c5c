"""Per-architecture tensor mapping: transformers parameter names and layouts to GGUF.

Names come from the `gguf` package's own `TensorNameMap` for the GGUF
architecture (`MODEL_ARCH.QWEN2`, `MODEL_ARCH.LLAMA`), so `model.layers.3.
self_attn.q_proj.weight` becomes `blk.3.attn_q.weight` exactly as llama.cpp
loads it. Layout changes that llama.cpp expects are applied here: its `llama`
graph applies rotary embeddings to interleaved pairs, whereas transformers'
Llama rotates the two halves of each head, so Llama Q/K weights (and biases)
are permuted row-wise per head; Qwen2 runs llama.cpp's NEOX rotary on the
transformers layout and is left unchanged.

This module knows nothing about tokenizers, dtypes or files: it maps one
named float array at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import gguf
import numpy as np

from meta_spider.loom.gguf.errors import GGUFExportError, UnsupportedArchitectureError


@dataclass(frozen=True)
class ArchitectureSpec:
    """How one transformers architecture maps onto a llama.cpp architecture."""

    hf_architecture: str = field(metadata={"help": "config.architectures[0], e.g. 'Qwen2ForCausalLM'"})
    model_type: str = field(metadata={"help": "config.model_type, e.g. 'qwen2'"})
    gguf_arch: gguf.MODEL_ARCH = field(metadata={"help": "the gguf package's architecture enum"})
    permute_rope_qk: bool = field(
        metadata={"help": "permute Q/K rows from halves to interleaved rotary pairs (llama graph)"}
    )

    def __post_init__(self) -> None:
        if not self.hf_architecture or not self.model_type:
            raise ValueError(f"architecture names must be non-empty, got {self.hf_architecture!r}/{self.model_type!r}")

    @property
    def gguf_name(self) -> str:
        """The `general.architecture` string, e.g. 'qwen2'."""
        return gguf.MODEL_ARCH_NAMES[self.gguf_arch]


SUPPORTED_ARCHITECTURES: dict[str, ArchitectureSpec] = {
    spec.hf_architecture: spec
    for spec in (
        ArchitectureSpec("Qwen2ForCausalLM", "qwen2", gguf.MODEL_ARCH.QWEN2, permute_rope_qk=False),
        ArchitectureSpec("LlamaForCausalLM", "llama", gguf.MODEL_ARCH.LLAMA, permute_rope_qk=True),
    )
}


def resolve_architecture(config: Any) -> ArchitectureSpec:
    """The spec for a transformers config, by `architectures[0]`, else by `model_type`."""
    architectures = list(getattr(config, "architectures", None) or [])
    if architectures:
        name = architectures[0]
        if name in SUPPORTED_ARCHITECTURES:
            return SUPPORTED_ARCHITECTURES[name]
        raise UnsupportedArchitectureError(name, list(SUPPORTED_ARCHITECTURES))
    # Configs built in-process have no `architectures` until save_pretrained fills it.
    model_type = getattr(config, "model_type", None)
    for spec in SUPPORTED_ARCHITECTURES.values():
        if spec.model_type == model_type:
            return spec
    raise UnsupportedArchitectureError(str(model_type), list(SUPPORTED_ARCHITECTURES))


def permute_for_interleaved_rope(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder each head's rows from [first half | second half] to interleaved pairs.

    Row r = i (first half) and r = i + d/2 (second half) of a head are one
    rotary pair in transformers; llama.cpp's normal rotary pairs rows 2i and
    2i+1. Works for weights (rows x cols) and biases (rows,).
    """
    rows = weights.shape[0]
    if rows % (2 * n_head) != 0:
        raise ValueError(f"cannot permute {rows} rows into {n_head} heads of rotary pairs")
    head_dim = rows // n_head
    return (
        weights.reshape(n_head, 2, head_dim // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


class UnmappedTensorError(GGUFExportError, fields=("tensor_name", "architecture")):
    """A checkpoint tensor has no GGUF name for the architecture."""

    template = (
        "tensor {tensor_name!r} has no GGUF name for architecture {architecture!r}; "
        "the checkpoint holds a module llama.cpp's graph for this architecture does not run "
        "(e.g. MLP biases), so the export would not be faithful"
    )


@dataclass
class TensorConverter:
    """Maps transformers (name, array) pairs to GGUF (name, array) pairs for one model."""

    spec: ArchitectureSpec
    n_layers: int
    n_head: int
    n_head_kv: int
    tied_embeddings: bool

    def __post_init__(self) -> None:
        for name in ("n_layers", "n_head", "n_head_kv"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        self._names = gguf.get_tensor_name_map(self.spec.gguf_arch, self.n_layers)

    def convert(self, hf_name: str, array: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        """Yield the GGUF tensors for one checkpoint tensor (none for skipped ones)."""
        if hf_name.endswith(".rotary_emb.inv_freq"):
            return  # recomputed by llama.cpp from rope.freq_base
        if hf_name == "lm_head.weight" and self.tied_embeddings:
            return  # llama.cpp reuses token_embd when output.weight is absent
        mapped = self._names.get_type_and_name(hf_name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise UnmappedTensorError(hf_name, self.spec.gguf_name)
        tensor_kind, gguf_name = mapped
        if self.spec.permute_rope_qk:
            if tensor_kind == gguf.MODEL_TENSOR.ATTN_Q:
                array = permute_for_interleaved_rope(array, self.n_head)
            elif tensor_kind == gguf.MODEL_TENSOR.ATTN_K:
                array = permute_for_interleaved_rope(array, self.n_head_kv)
        yield gguf_name, array
