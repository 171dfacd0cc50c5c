"""Trainer checkpoints on disk: safetensors + JSON, never pickle.

``<run_dir>/checkpoints/`` holds

- ``epoch-NNNN/``: the Doubter checkpoint (``doubter_config.json`` +
  ``doubter.safetensors``), ``optimizer.safetensors`` (every tensor of the
  optimizer state) and ``trainer_state.json`` (epoch, global step, best
  metric, history, the optimizer's param groups and non-tensor state, the
  scheduler state, the trainer config). A folder is written under a
  temporary name and renamed when complete, so a killed run leaves either a
  whole epoch checkpoint or none;
- ``best/``: the Doubter checkpoint of the best epoch so far.

``accelerate``'s own ``save_state`` pickles RNG state, so it is not used;
the trainer needs no RNG state because it reseeds at every epoch. This
module knows file layouts, not training.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch

CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FORMAT_VERSION = 1
_EPOCH_PATTERN = re.compile(r"^epoch-(\d{4,})$")

_TENSOR_KEY = "__tensor__"
_TUPLE_KEY = "__tuple__"


def epoch_dir_name(epoch: int) -> str:
    """``epoch-0003`` for epoch 3 (1-based)."""
    return f"epoch-{epoch:04d}"


# ------------------------------------------------------------------ optimizer state


def _flatten(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able copy of ``value`` with every tensor moved into ``tensors``
    (under ``path``) and replaced by a reference."""
    if isinstance(value, torch.Tensor):
        # clone: optimizers may share one tensor between parameters (bitsandbytes' qmaps),
        # and safetensors refuses shared storage.
        tensors[path] = value.detach().to("cpu").clone().contiguous()
        return {_TENSOR_KEY: path}
    if isinstance(value, Mapping):
        return {str(key): _flatten(item, f"{path}/{key}", tensors) for key, item in value.items()}
    if isinstance(value, tuple):
        return {_TUPLE_KEY: [_flatten(item, f"{path}/{i}", tensors) for i, item in enumerate(value)]}
    if isinstance(value, list):
        return [_flatten(item, f"{path}/{i}", tensors) for i, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store optimizer state entry {path!r} of type {type(value).__name__} as JSON")


def _unflatten(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {_TENSOR_KEY}:
            return tensors[value[_TENSOR_KEY]]
        if set(value) == {_TUPLE_KEY}:
            return tuple(_unflatten(item, tensors) for item in value[_TUPLE_KEY])
        return {key: _unflatten(item, tensors) for key, item in value.items()}
    if isinstance(value, list):
        return [_unflatten(item, tensors) for item in value]
    return value


def optimizer_to_files(state_dict: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Split ``optimizer.state_dict()`` into a JSON document and tensors."""
    tensors: dict[str, torch.Tensor] = {}
    document = {
        "state": {str(key): _flatten(entry, f"state/{key}", tensors) for key, entry in state_dict["state"].items()},
        "param_groups": _flatten(list(state_dict["param_groups"]), "param_groups", tensors),
    }
    return document, tensors


def optimizer_from_files(document: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The inverse of :func:`optimizer_to_files` (state keys back to ints)."""
    return {
        "state": {int(key): _unflatten(entry, tensors) for key, entry in document["state"].items()},
        "param_groups": _unflatten(document["param_groups"], tensors),
    }


# ------------------------------------------------------------------ folders


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_epoch_checkpoint(
    checkpoints: Path,
    epoch: int,
    doubter: Any,
    optimizer: torch.optim.Optimizer,
    state: Mapping[str, Any],
) -> Path:
    """Write ``checkpoints/epoch-NNNN`` (see the module docstring);
    ``state`` is the trainer's JSON state (scheduler state included)."""
    from safetensors.torch import save_file

    checkpoints.mkdir(parents=True, exist_ok=True)
    final = checkpoints / epoch_dir_name(epoch)
    temporary = checkpoints / f".{final.name}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    doubter.save_checkpoint(temporary)
    document, tensors = optimizer_to_files(optimizer.state_dict())
    save_file(tensors, str(temporary / OPTIMIZER_FILE), metadata={"format": "meta-spider-optimizer"})
    _write_json(temporary / STATE_FILE, {"format_version": STATE_FORMAT_VERSION, **state, "optimizer": document})
    shutil.rmtree(final, ignore_errors=True)
    os.replace(temporary, final)
    return final


def save_best(checkpoints: Path, doubter: Any) -> Path:
    """Replace ``checkpoints/best`` with ``doubter``'s checkpoint."""
    final = checkpoints / BEST_DIR
    temporary = checkpoints / f".{BEST_DIR}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    doubter.save_checkpoint(temporary)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(temporary, final)
    return final


def epoch_checkpoints(checkpoints: Path) -> list[tuple[int, Path]]:
    """Complete epoch checkpoints as ``(epoch, folder)``, oldest first."""
    if not checkpoints.is_dir():
        return []
    found = []
    for folder in checkpoints.iterdir():
        match = _EPOCH_PATTERN.match(folder.name)
        if match and folder.is_dir() and (folder / STATE_FILE).is_file():
            found.append((int(match.group(1)), folder))
    return sorted(found)


def latest_epoch_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete epoch checkpoint, or None."""
    found = epoch_checkpoints(checkpoints)
    return found[-1][1] if found else None


def prune_epoch_checkpoints(checkpoints: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` epoch checkpoints."""
    for _, folder in epoch_checkpoints(checkpoints)[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)


def load_epoch_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """``(trainer state, doubter tensors, optimizer state dict)`` of an epoch
    checkpoint written by :func:`save_epoch_checkpoint`."""
    from safetensors.torch import load_file

    from meta_spider.wrapper.checkpoint import read_checkpoint

    state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    if state.get("format_version") != STATE_FORMAT_VERSION:
        raise ValueError(f"{folder / STATE_FILE}: trainer state format {state.get('format_version')!r}; "
                         f"this meta-spider reads {STATE_FORMAT_VERSION}")
    _, doubter_tensors = read_checkpoint(folder)
    optimizer_state = optimizer_from_files(state.pop("optimizer"), load_file(str(folder / OPTIMIZER_FILE)))
    return state, doubter_tensors, optimizer_state
