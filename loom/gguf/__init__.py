"""GGUF export of a transformers base: f16/f32 writer, tokenizer metadata, quantisation.

`export_base_gguf` turns a Qwen2 or Llama causal LM (a `save_pretrained`
folder or an in-memory model + tokenizer) into a GGUF that stock llama.cpp
loads; `quantize_gguf` makes Q8_0 / 4-bit files from it with llama.cpp's own
quantiser. This package knows nothing about the Doubter sidecar or any
trained world model. Importing it loads `gguf` and numpy only; torch,
transformers and llama_cpp load inside the functions that need them.
"""

from meta_spider.loom.gguf.errors import (
    GGUFExportError,
    MissingModelFileError,
    NonBPETokenizerError,
    QuantizationFailedError,
    UnknownPreTokenizerError,
    UnknownQuantizationError,
    UnsupportedArchitectureError,
    UnsupportedConfigError,
    UnsupportedTokenizerError,
)
from meta_spider.loom.gguf.quantize import QUANT_KINDS, quantize_gguf, tensor_type_counts, tensor_types
from meta_spider.loom.gguf.tensor_map import SUPPORTED_ARCHITECTURES, ArchitectureSpec, resolve_architecture
from meta_spider.loom.gguf.tokenizer_meta import TokenizerMetadata, detect_pre_tokenizer, tokenizer_metadata
from meta_spider.loom.gguf.writer import export_base_gguf

__all__ = [
    "ArchitectureSpec",
    "GGUFExportError",
    "MissingModelFileError",
    "NonBPETokenizerError",
    "QUANT_KINDS",
    "QuantizationFailedError",
    "SUPPORTED_ARCHITECTURES",
    "TokenizerMetadata",
    "UnknownPreTokenizerError",
    "UnknownQuantizationError",
    "UnsupportedArchitectureError",
    "UnsupportedConfigError",
    "UnsupportedTokenizerError",
    "detect_pre_tokenizer",
    "export_base_gguf",
    "quantize_gguf",
    "resolve_architecture",
    "tensor_type_counts",
    "tensor_types",
    "tokenizer_metadata",
]
