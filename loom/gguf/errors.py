"""Typed errors of the GGUF exporter and quantiser.

Every error carries the data that identifies the problem (the architecture,
the pre-tokenizer, the missing file, the quantisation kind) and its message
names the fix. This module knows nothing about models, tokenizers or files;
it only describes what went wrong.
"""

from __future__ import annotations

from pathlib import Path

from meta_spider.plugins.errors import MetaSpiderError


class GGUFExportError(MetaSpiderError):
    """Base class of every error raised by `meta_spider.loom.gguf`."""


class UnsupportedArchitectureError(GGUFExportError, fields=("architecture", "supported")):
    """The transformers architecture has no GGUF mapping here."""

    template = ("cannot export architecture {architecture!r} to GGUF: supported are {names}; convert other "
                "architectures with llama.cpp's convert_hf_to_gguf.py and pass the GGUF path instead")

    def __post_init__(self) -> None:
        self.supported = tuple(self.supported)
        self.names = ", ".join(self.supported)


class UnsupportedConfigError(GGUFExportError, fields=("architecture", "field", "value", "reason")):
    """A config field has a value the exporter cannot represent faithfully."""

    template = (
        "cannot export {architecture!r}: config field {field}={value!r} is not "
        "supported ({reason})"
    )


class UnsupportedTokenizerError(GGUFExportError, fields=("reason", "detail")):
    """The tokenizer cannot be written as a llama.cpp BPE vocabulary."""

    detail = None

    def describe(self) -> str:
        return self.reason if self.detail is None else f"{self.reason}: {self.detail!r}"


class NonBPETokenizerError(UnsupportedTokenizerError, fields=("model_type",)):
    """The tokenizer's model is not byte-level BPE (WordPiece, Unigram, ...)."""

    def __post_init__(self) -> None:
        self.reason = (f"tokenizer model {self.model_type!r} is not byte-level BPE; only byte-level BPE tokenizers "
                       "(tokenizer.ggml.model 'gpt2') are exported; convert SentencePiece or WordPiece tokenizers "
                       "with llama.cpp's convert_hf_to_gguf.py")


class UnknownPreTokenizerError(UnsupportedTokenizerError, fields=("pre_tokenizer", "known")):
    """The byte-level BPE's pre-tokenizer does not match one llama.cpp implements."""

    def __post_init__(self) -> None:
        self.known = tuple(self.known)
        self.reason = ("the tokenizer's pre-tokenizer matches none that llama.cpp implements (known here: "
                       f"{', '.join(self.known)}); retrain the tokenizer with ByteLevel(add_prefix_space=False, "
                       "use_regex=True) (GPT-2 splitting), with Digits(individual_digits=True) before it, or the Qwen2 "
                       "split regex")
        self.detail = self.pre_tokenizer


class MissingModelFileError(GGUFExportError, fields=("folder", "missing")):
    """A transformers model folder lacks a file the export needs."""

    template = ("model folder {shown!r} has no {missing}; save the model and its tokenizer there with "
                "save_pretrained(...) (safetensors) first")

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.shown = str(self.folder)


class UnknownQuantizationError(GGUFExportError, fields=("kind", "known")):
    """The requested quantisation kind is not a llama.cpp file type."""

    template = "unknown quantisation kind {kind!r}; choose one of {names}"

    def __post_init__(self) -> None:
        self.known = tuple(self.known)
        self.names = ", ".join(self.known)


class QuantizationFailedError(GGUFExportError, fields=("source", "destination", "kind", "status")):
    """llama.cpp's quantiser returned a non-zero status."""

    def __post_init__(self) -> None:
        self.source, self.destination = Path(self.source), Path(self.destination)

    def describe(self) -> str:
        return (
            f"llama_model_quantize({str(self.source)!r} -> {str(self.destination)!r}, {self.kind}) "
            f"returned {self.status}; check that the source is a readable f16/f32 GGUF and "
            "the destination folder is writable (llama.cpp's log above says which tensor failed)"
        )
