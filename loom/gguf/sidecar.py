"""Export a trained Doubter as a GGUF sidecar (architecture ``meta-spider``).

The sidecar holds every wrapper tensor (encoder, cross-attention, gates) in
float32 under its state-dict name, the DoubterConfig, the base
fingerprint and (once ``metaloom eval`` calibrated it) the answer-threshold
calibration as JSON metadata, and the fields people look for
(``meta-spider.hidden_size``, ``.num_layers``, ``.target_layers``,
``.cross_attn_layers``, ``.encoder_type``, ``.base_model_id``) as plain keys,
so ``gguf-dump`` shows what base it belongs to. Float32 because the tensors
are about 2% of the base and the numpy port must match torch to 1e-5.

The format (key names, the plain keys, the reader behind :func:`load_sidecar`,
torch-free) is owned by :mod:`meta_spider.backends.llamacpp.sidecar_format`,
below the llama.cpp backend that consumes the file; this module writes it and
knows nothing about llama.cpp. torch loads only
when a checkpoint path (not a Doubter object) is exported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Union

import numpy as np
from meta_spider.backends.llamacpp.sidecar_format import (
    KEY_CALIBRATION,
    KEY_CONFIG,
    KEY_FINGERPRINT,
    KEY_FORMAT_VERSION,
    KEY_SCALARS,
    SIDECAR_ARCHITECTURE,
    SidecarContents,
    read_sidecar,
    sidecar_fields,
    sidecar_format_version,
)
from meta_spider.loom.gguf.writer import atomic_gguf_writer

if TYPE_CHECKING:
    from meta_spider.wrapper import Doubter

__all__ = ["SIDECAR_FILE", "SidecarContents", "export_sidecar", "load_sidecar", "sidecar_fields"]

SIDECAR_FILE = "doubter_sidecar.gguf"
"""The file name `metadeploy export` gives the sidecar."""

DoubterSource = Union["Doubter", str, os.PathLike]


def _doubter_parts(source: DoubterSource) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray],
                                                  dict[str, Any] | None]:
    """(config dict, fingerprint, state dict as float32 numpy, calibration) of a Doubter or a checkpoint path."""
    from meta_spider.wrapper import Doubter

    doubter = source if isinstance(source, Doubter) else Doubter.from_checkpoint(source)
    tensors = {name: tensor.detach().to("cpu").float().numpy().copy() for name, tensor in doubter.state_dict().items()}
    return doubter.config.to_dict(), doubter.fingerprint(), tensors, doubter.calibration


def export_sidecar(doubter_or_checkpoint: DoubterSource, out_path: str | os.PathLike,
                   *, extra_metadata: Mapping[str, Any] | None = None) -> Path:
    """Write the Doubter (object, checkpoint folder or ``.safetensors``) as a sidecar GGUF; return its path.

    ``extra_metadata`` adds ``meta-spider.*`` string/int/float keys (e.g. the
    base GGUF it was exported beside). The file is written next to
    ``out_path`` and renamed into place, so a crash never leaves a partial
    sidecar under the final name.
    """
    config, fingerprint, tensors, calibration = _doubter_parts(doubter_or_checkpoint)
    out = Path(out_path)
    model_id = fingerprint.get("model_id") or "unknown base"
    with atomic_gguf_writer(out, SIDECAR_ARCHITECTURE) as writer:
        writer.add_name(f"meta-spider Doubter for {model_id}")
        writer.add_uint32(KEY_FORMAT_VERSION, sidecar_format_version(config))
        writer.add_string(KEY_CONFIG, json.dumps(config, sort_keys=True))
        writer.add_string(KEY_FINGERPRINT, json.dumps(fingerprint, sort_keys=True))
        if calibration is not None:  # the llama.cpp backend gates as load_pipeline does, without run.json
            writer.add_string(KEY_CALIBRATION, json.dumps(calibration, sort_keys=True))
        for key, value in {**sidecar_fields(config, fingerprint), **dict(extra_metadata or {})}.items():
            if not key.startswith("meta-spider."):
                raise ValueError(f"extra metadata keys must start with 'meta-spider.', got {key!r}")
            if isinstance(value, bool) or not isinstance(value, (str, int, float, list)):
                raise ValueError(f"metadata {key!r} must be a string, int, float or list, got {value!r}")
            if isinstance(value, list):
                writer.add_array(key, value)
            elif isinstance(value, str):
                writer.add_string(key, value)
            elif isinstance(value, int):
                writer.add_int64(key, value)
            else:
                writer.add_float64(key, value)
        scalars = sorted(name for name, array in tensors.items() if array.ndim == 0)
        writer.add_array(KEY_SCALARS, scalars or [""])
        for name, array in tensors.items():
            if len(name.encode()) >= 64:
                raise ValueError(f"tensor name {name!r} is too long for GGUF (64 bytes at most)")
            writer.add_tensor(name, np.ascontiguousarray(np.atleast_1d(array).astype(np.float32)))
    return out


def load_sidecar(path: str | os.PathLike) -> SidecarContents:
    """Read a sidecar without torch (the ``gguf`` package and numpy only).

    Raises :class:`~meta_spider.backends.llamacpp.sidecar_format.SidecarError` naming
    the file and the fix for a missing, corrupt, truncated or foreign file.
    """
    return read_sidecar(path)
