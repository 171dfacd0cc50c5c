"""Quantise a GGUF base with llama.cpp's own quantiser (through llama-cpp-python).

`quantize_gguf(src, dst, kind)` calls `llama_cpp.llama_model_quantize` with
`llama_model_quantize_default_params()` and the llama.cpp file type named by
`kind` ('Q8_0', 'Q4_K_M', 'Q4_0', ...). llama.cpp chooses the per-tensor
types itself: k-quants need rows that are a multiple of 256 values, so on
small models it falls back to a legacy type for such tensors (Q4_K to Q5_0,
for example); `tensor_types` reads back what each tensor became.

This module knows nothing about transformers or tokenizers; llama_cpp is
imported inside the function so importing the package stays light.
"""

from __future__ import annotations

import ctypes
import os
from collections import Counter
from pathlib import Path

import gguf

from meta_spider.loom.gguf.errors import QuantizationFailedError, UnknownQuantizationError

# 'Q8_0' -> LlamaFileType.MOSTLY_Q8_0; the gguf package mirrors llama.h's enum.
QUANT_KINDS: dict[str, int] = {
    member.name.removeprefix("MOSTLY_"): int(member.value)
    for member in gguf.LlamaFileType
    if member.name.startswith("MOSTLY_")
}


def quantize_gguf(src: str | os.PathLike, dst: str | os.PathLike, kind: str = "Q8_0",
                  *, nthread: int = 1) -> Path:
    """Quantise the f16/f32 GGUF `src` to `dst` as llama.cpp file type `kind`; return `dst`."""
    kind_key = kind.upper()
    if kind_key not in QUANT_KINDS:
        raise UnknownQuantizationError(kind, sorted(QUANT_KINDS))
    if nthread < 1:
        raise ValueError(f"nthread must be >= 1, got {nthread!r}")
    source, destination = Path(src), Path(dst)
    if not source.is_file():
        raise FileNotFoundError(f"GGUF to quantise not found: {str(source)!r}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_KINDS[kind_key]
    params.nthread = nthread
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
    if status != 0:
        partial.unlink(missing_ok=True)
        raise QuantizationFailedError(source, destination, kind_key, int(status))
    os.replace(partial, destination)
    return destination


def tensor_types(path: str | os.PathLike) -> dict[str, str]:
    """GGUF tensor name -> storage type name ('F32', 'F16', 'Q8_0', 'Q5_0', ...)."""
    reader = gguf.GGUFReader(str(path))
    return {tensor.name: tensor.tensor_type.name for tensor in reader.tensors}


def tensor_type_counts(path: str | os.PathLike) -> dict[str, int]:
    """How many tensors of each storage type a GGUF holds, e.g. {'Q5_0': 12, 'F32': 9}."""
    return dict(Counter(tensor_types(path).values()))
