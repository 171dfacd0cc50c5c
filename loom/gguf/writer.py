"""Export a transformers causal LM (folder or in-memory model + tokenizer) to a GGUF base.

`export_base_gguf` reads the hyper-parameters from the model's config, the
weights from its safetensors files (or its state dict), the tokenizer through
`tokenizer_meta`, and writes one GGUF file with the `gguf` package's
`GGUFWriter`: `general.*`, `<arch>.*` hyper-parameters, `tokenizer.*` and
the tensors under their GGUF names (2-D weights in f16 or f32, 1-D norms and
biases always f32, as llama.cpp's own converter does). The file is written
beside its destination and renamed into place, so a crash never leaves a
truncated GGUF under the final name.

This module knows nothing about quantisation (see `quantize`) or about any
particular trained model: every value comes from the config and checkpoint.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Union

import gguf
import numpy as np
from meta_spider.loom.gguf.errors import MissingModelFileError, UnsupportedConfigError
from meta_spider.loom.gguf.tensor_map import (
    ArchitectureSpec,
    TensorConverter,
    resolve_architecture,
)
from meta_spider.loom.gguf.tokenizer_meta import (
    tokenizer_metadata,
    write_tokenizer_metadata,
)

if TYPE_CHECKING:
    import torch

ModelSource = Union[str, os.PathLike, tuple[Any, Any]]
DTYPES: dict[str, gguf.LlamaFileType] = {"f16": gguf.LlamaFileType.MOSTLY_F16, "f32": gguf.LlamaFileType.ALL_F32}


@dataclass(frozen=True)
class BaseHyperParameters:
    """The architecture hyper-parameters a llama.cpp decoder-only graph reads."""

    context_length: int
    embedding_length: int
    block_count: int
    feed_forward_length: int
    head_count: int
    head_count_kv: int
    head_dim: int
    rope_freq_base: float
    rms_norm_eps: float
    vocab_size: int
    tied_embeddings: bool
    rope_linear_factor: float | None = None

    def __post_init__(self) -> None:
        for name in ("context_length", "embedding_length", "block_count", "feed_forward_length",
                     "head_count", "head_count_kv", "head_dim", "vocab_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.head_count % self.head_count_kv != 0:
            raise ValueError(f"head_count={self.head_count} is not a multiple of head_count_kv={self.head_count_kv}")


def _rope_settings(config: Any, arch: str) -> tuple[float, float | None]:
    """(rope theta, linear scaling factor or None) from a v4 or v5 transformers config."""
    # transformers 5 keeps rope in `rope_parameters`; 4.x in `rope_theta` + `rope_scaling`.
    params = getattr(config, "rope_parameters", None) or {}
    scaling = getattr(config, "rope_scaling", None) or {}
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is None:
        raise UnsupportedConfigError(arch, "rope_theta", None, "the config names no rotary base")
    rope_type = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type == "default":
        return float(theta), None
    if rope_type == "linear":
        factor = params.get("factor", scaling.get("factor"))
        return float(theta), float(factor)
    raise UnsupportedConfigError(arch, "rope_type", rope_type, "only 'default' and 'linear' rotary scaling are exported")


def read_hyper_parameters(config: Any, spec: ArchitectureSpec) -> BaseHyperParameters:
    """Read and check the hyper-parameters of a supported config."""
    arch = spec.hf_architecture
    if getattr(config, "hidden_act", "silu") != "silu":
        raise UnsupportedConfigError(arch, "hidden_act", config.hidden_act, "llama.cpp runs SwiGLU (silu) here")
    if getattr(config, "use_sliding_window", False):
        raise UnsupportedConfigError(arch, "use_sliding_window", True, "llama.cpp's qwen2 graph has full attention only")
    if getattr(config, "mlp_bias", False):
        raise UnsupportedConfigError(arch, "mlp_bias", True, "llama.cpp's llama graph has no MLP biases")
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    theta, linear_factor = _rope_settings(config, arch)
    return BaseHyperParameters(
        context_length=int(config.max_position_embeddings),
        embedding_length=int(config.hidden_size),
        block_count=int(config.num_hidden_layers),
        feed_forward_length=int(config.intermediate_size),
        head_count=heads,
        head_count_kv=kv_heads,
        head_dim=head_dim,
        rope_freq_base=theta,
        rms_norm_eps=float(config.rms_norm_eps),
        vocab_size=int(config.vocab_size),
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        rope_linear_factor=linear_factor,
    )


def write_hyper_parameters(writer: gguf.GGUFWriter, hp: BaseHyperParameters, file_type: gguf.LlamaFileType) -> None:
    """Add the `<arch>.*` keys every supported decoder reads."""
    writer.add_context_length(hp.context_length)
    writer.add_embedding_length(hp.embedding_length)
    writer.add_block_count(hp.block_count)
    writer.add_feed_forward_length(hp.feed_forward_length)
    writer.add_head_count(hp.head_count)
    writer.add_head_count_kv(hp.head_count_kv)
    writer.add_rope_freq_base(hp.rope_freq_base)
    writer.add_layer_norm_rms_eps(hp.rms_norm_eps)
    writer.add_vocab_size(hp.vocab_size)
    writer.add_rope_dimension_count(hp.head_dim)
    if hp.head_dim != hp.embedding_length // hp.head_count:
        # llama.cpp assumes n_embd / n_head unless told otherwise.
        writer.add_key_length(hp.head_dim)
        writer.add_value_length(hp.head_dim)
    if hp.rope_linear_factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(hp.rope_linear_factor)
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _folder_tensors(folder: Path) -> Iterator[tuple[str, "torch.Tensor"]]:
    from safetensors import safe_open

    for part in sorted(folder.glob("*.safetensors")):
        with safe_open(str(part), framework="pt") as handle:
            for name in handle.keys():
                yield name, handle.get_tensor(name)


def _load_folder(folder: Path) -> tuple[Any, Any, Iterator[tuple[str, "torch.Tensor"]]]:
    if not folder.is_dir():
        raise MissingModelFileError(folder, "folder (the path does not exist or is not a directory)")
    if not (folder / "config.json").is_file():
        raise MissingModelFileError(folder, "config.json")
    if not (folder / "tokenizer.json").is_file():
        raise MissingModelFileError(folder, "tokenizer.json (a fast tokenizer)")
    if not any(folder.glob("*.safetensors")):
        raise MissingModelFileError(folder, "*.safetensors weights")
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return config, tokenizer, _folder_tensors(folder)


def _load_source(source: ModelSource) -> tuple[Any, Any, Iterator[tuple[str, "torch.Tensor"]], str]:
    if isinstance(source, tuple):
        model, tokenizer = source
        state = model.state_dict()
        name = getattr(model.config, "_name_or_path", "") or model.config.model_type
        return model.config, tokenizer, iter(state.items()), str(name)
    folder = Path(source)
    config, tokenizer, tensors = _load_folder(folder)
    return config, tokenizer, tensors, folder.name


def _storage_array(array: np.ndarray, dtype: str) -> np.ndarray:
    # 1-D tensors (norms, biases) stay f32: llama.cpp's kernels expect them so.
    if dtype == "f16" and array.ndim >= 2:
        return array.astype(np.float16)
    return array.astype(np.float32)


def export_base_gguf(source: ModelSource, out_path: str | os.PathLike, dtype: str = "f16",
                     *, name: str | None = None) -> Path:
    """Write a transformers causal LM to a GGUF file and return its path.

    `source` is a model folder saved with `save_pretrained` (config.json,
    safetensors weights, tokenizer.json) or a `(model, tokenizer)` pair in
    memory. `dtype` is 'f16' (default) or 'f32' for the 2-D weights.
    Raises `UnsupportedArchitectureError`, `UnsupportedConfigError`,
    `UnsupportedTokenizerError` or `MissingModelFileError` before writing.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    config, tokenizer, tensors, default_name = _load_source(source)
    spec = resolve_architecture(config)
    hp = read_hyper_parameters(config, spec)
    vocab = tokenizer_metadata(tokenizer, vocab_size=hp.vocab_size)
    if len(vocab.tokens) != hp.vocab_size:
        raise UnsupportedConfigError(
            spec.hf_architecture, "vocab_size", hp.vocab_size,
            f"the tokenizer defines {len(vocab.tokens)} tokens, more than the embedding has rows",
        )
    converter = TensorConverter(spec, hp.block_count, hp.head_count, hp.head_count_kv, hp.tied_embeddings)

    out = Path(out_path)
    with atomic_gguf_writer(out, spec.gguf_name) as writer:
        writer.add_name(name or default_name)
        write_hyper_parameters(writer, hp, DTYPES[dtype])
        write_tokenizer_metadata(writer, vocab)
        for hf_name, tensor in tensors:
            array = tensor.detach().to("cpu").float().numpy()
            for gguf_name, mapped in converter.convert(hf_name, array):
                writer.add_tensor(gguf_name, _storage_array(mapped, dtype))
    return out


@contextmanager
def atomic_gguf_writer(out: Path, architecture: str) -> Iterator[gguf.GGUFWriter]:
    """A ``GGUFWriter`` for ``architecture`` that writes ``<out>.partial`` and
    renames it to ``out`` only when the block finished: a failure never
    leaves a half-written GGUF under the final name. The block adds metadata
    and tensors; header, key-values and tensors are written on exit."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), architecture)
    try:
        yield writer
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(partial, out)
