"""The reference distribution of an activation dataset: ``reference.safetensors``.

A collection that records the PMI signals
(:data:`~meta_spider.wrapper.signals.PMI_SIGNALS`) keeps ``log p_ref``, the
base's mean next-token distribution over the training prompts, as one float32
tensor ``log_reference [V]`` beside its shards, and ``collection.json``
records ``reference`` = ``{"split", "prompts", "sha256"}`` (the hash of the
tensor's little-endian float32 bytes; ``"given"`` and 0 prompts when the
collection was given a Doubter's own ``p_ref``, ``metaloom collect
--pmi-reference``), so a resumed collection proves it computes its signals
with the same ``p_ref``. Part of the activation dataset
format (:mod:`meta_spider.loom.collect.activations` reads it through here);
it knows nothing about models: the collector computes the distribution.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Union

import numpy as np

from meta_spider.loom.collect.activations import ActivationFormatError, atomic_write_bytes, shard_bytes

if TYPE_CHECKING:
    import os

    import torch

__all__ = ["REFERENCE_FILE", "REFERENCE_TENSOR", "read_reference", "reference_record", "write_reference"]

REFERENCE_FILE = "reference.safetensors"
REFERENCE_TENSOR = "log_reference"

PathLike = Union[str, "os.PathLike[str]"]


def _sha256(log_reference: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(log_reference, dtype="<f4").tobytes()).hexdigest()


def reference_record(log_reference: np.ndarray, split: str, prompts: int) -> dict[str, Any]:
    """The ``reference`` entry of ``collection.json`` for ``log_reference``
    (float32), computed over ``prompts`` prompts of ``split``."""
    return {"split": split, "prompts": int(prompts), "sha256": _sha256(log_reference)}


def write_reference(folder: PathLike, log_reference: np.ndarray) -> None:
    """Write ``log_reference`` (``[V]`` float32) as the folder's reference file, atomically."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(log_reference, dtype=np.float32))
    atomic_write_bytes(Path(folder) / REFERENCE_FILE, shard_bytes({REFERENCE_TENSOR: tensor}, {}))


def read_reference(folder: PathLike, record: Mapping[str, Any] | None) -> torch.Tensor:
    """The folder's ``log_reference`` (``[V]`` float32), checked against
    ``record`` (``collection.json``'s ``reference``); every problem is an
    :class:`ActivationFormatError` naming the file and the fix."""
    from safetensors import SafetensorError, safe_open

    path = Path(folder) / REFERENCE_FILE
    recollect = "collect again with the PMI signals (`metaloom collect --pmi-signals`) into a new run directory"
    if not isinstance(record, Mapping) or not isinstance(record.get("sha256"), str):
        raise ActivationFormatError(Path(folder), "was collected without the PMI signals, so it holds no reference "
                                    "distribution", recollect)
    try:
        with safe_open(str(path), framework="pt") as handle:
            if REFERENCE_TENSOR not in handle.keys():  # noqa: SIM118 - safe_open has keys(), no __contains__
                raise ActivationFormatError(path, f"has no tensor {REFERENCE_TENSOR!r}", recollect)
            tensor = handle.get_tensor(REFERENCE_TENSOR)
    except (SafetensorError, OSError) as error:
        raise ActivationFormatError(path, f"is missing or not a valid safetensors file ({error})", recollect) from None
    import torch

    if tensor.dim() != 1 or tensor.dtype != torch.float32 or _sha256(tensor.numpy()) != record["sha256"]:
        raise ActivationFormatError(path, "does not hold the reference distribution collection.json records (shape "
                                    f"{list(tensor.shape)}, {tensor.dtype}, or another hash)", recollect)
    return tensor
