"""The Doubter checkpoint contract: safetensors weights + JSON config.

A checkpoint is a folder with ``doubter_config.json`` (DoubterConfig, the
base fingerprint, the format version) and ``doubter.safetensors`` (wrapper
tensors only), or a single ``.safetensors`` file carrying the same JSON in
its metadata. Never pickle, never ``torch.load``. This module is the one
reader and writer of that layout and knows nothing about how the tensors are
used. Importing it does not import torch (the document alone,
:func:`read_checkpoint_document`, is read without it); the tensors load as
torch tensors when asked for.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from meta_spider.wrapper.after_lookup import ENTRY_KEY as AFTER_LOOKUP_KEY
from meta_spider.wrapper.after_lookup import AfterLookupGate
from meta_spider.wrapper.config import DoubterConfig
from meta_spider.wrapper.constants import (
    CHECKPOINT_CONFIG_FILE,
    CHECKPOINT_FORMAT_VERSION,
    CHECKPOINT_WEIGHTS_FILE,
    METADATA_CONFIG_KEY,
    METADATA_FORMAT_KEY,
    METADATA_FORMAT_VALUE,
)
from meta_spider.wrapper.errors import CheckpointError

if TYPE_CHECKING:
    import torch

    from meta_spider.wrapper.doubter import Doubter

logger = logging.getLogger(__name__)


def checkpoint_document(doubter: "Doubter") -> dict[str, Any]:
    """The JSON document saved beside the weights (``calibration`` only when
    the Doubter has one)."""
    document = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "config": doubter.config.to_dict(),
        "fingerprint": doubter.fingerprint(),
    }
    if doubter.calibration is not None:
        document["calibration"] = dict(doubter.calibration)
    return document


def scope_gate_problem(tensors: Mapping[str, Any], num_features: int) -> str | None:
    """What makes the ``scope_gate.*`` tensors unusable for a gate reading
    ``num_features`` values (one layer's state and the signals), or None:
    exact shapes, finite values, positive scales, and a threshold that is
    finite or minus infinity (never fitted: the gate never vetoes)."""
    shapes = {"mean": (num_features,), "scale": (num_features,), "weight": (num_features,), "bias": (),
              "threshold": ()}
    import numpy as np

    values = {name: np.asarray(tensors[f"scope_gate.{name}"], dtype=np.float64) for name in shapes}
    wrong = [f"scope_gate.{name} {list(values[name].shape)} (expected {list(shape)})"
             for name, shape in shapes.items() if values[name].shape != shape]
    if wrong:
        return f"has scope gate tensors of the wrong shape: {', '.join(wrong[:3])}"
    if not all(bool(np.isfinite(values[name]).all()) for name in ("mean", "scale", "weight", "bias")):
        return "has non-finite scope gate weights"
    if not bool((values["scale"] > 0).all()):
        return "has a scope gate scale that is not positive"
    threshold = float(values["threshold"])
    if not (np.isfinite(threshold) or threshold == float("-inf")):
        return f"has a scope gate threshold of {threshold} (it must be finite, or minus infinity when never fitted)"
    return None


def usable_threshold(value: Any) -> bool:
    """Whether ``value`` is a calibrated threshold: a number (not a bool, not
    NaN), or None for "answer nothing". Every reader of a calibration entry
    (the checkpoint's, the sidecar's, the doubter policy's) holds it to this."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value))


def calibration_problem(entry: Any) -> str | None:
    """What makes ``entry`` unusable as a calibration entry (an object with
    a :func:`usable_threshold` ``threshold``), or None. The checkpoint's and
    the sidecar's readers and the answer gate share it."""
    if not isinstance(entry, Mapping) or "threshold" not in entry:
        return "must be an object with a 'threshold'"
    value = entry["threshold"]
    if not usable_threshold(value):
        return f"has threshold {value!r:.40}, which must be a number or null"
    if entry.get(AFTER_LOOKUP_KEY) is not None:
        try:
            AfterLookupGate.from_entry(entry[AFTER_LOOKUP_KEY])
        except ValueError as error:
            return f"has an unusable gate after a lookup ({error})"
    return None


def safetensors_bytes(tensors: Mapping[str, "torch.Tensor"], metadata: Mapping[str, str]) -> bytes:
    """``safetensors.torch.save``, with the header's keys in sorted order:
    safetensors writes its metadata in the order of a hash map seeded per
    process, so the same tensors saved twice could differ in bytes. The
    header is the same JSON either way; sorted, equal inputs give equal
    files (the tensors' layout is safetensors' own, fixed by dtype and
    name). Checkpoints and activation shards are both written with it."""
    from safetensors.torch import save

    data = save(dict(tensors), metadata=dict(metadata) or None)
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + size]), sort_keys=True, separators=(",", ":"),
                        ensure_ascii=False).encode("utf-8")
    if len(header) <= size:  # the same JSON, re-ordered; padded with spaces as safetensors pads it
        data = data[:8] + header + b" " * (size - len(header)) + data[8 + size:]
    return data


def save_safetensors(tensors: Mapping[str, "torch.Tensor"], path: str | Path, metadata: Mapping[str, str]) -> None:
    """Write :func:`safetensors_bytes` to ``path``."""
    Path(path).write_bytes(safetensors_bytes(tensors, metadata))


def write_calibration(path: str | Path, calibration: dict[str, Any] | None) -> Path:
    """Record ``calibration`` (an answer-threshold entry, see
    :attr:`Doubter.calibration`; None removes it) in the checkpoint at
    ``path``, in the JSON and in the weights file's metadata alike; the
    weights are unchanged."""
    path = Path(path)
    document, tensors = read_checkpoint(path)
    document = {k: v for k, v in document.items() if k != "calibration"}
    if calibration is not None:
        document["calibration"] = json.loads(json.dumps(dict(calibration)))
    text = json.dumps(document, indent=2, sort_keys=True)
    metadata = {METADATA_FORMAT_KEY: METADATA_FORMAT_VALUE, METADATA_CONFIG_KEY: text}
    weights = path if path.suffix == ".safetensors" else path / CHECKPOINT_WEIGHTS_FILE
    save_safetensors(tensors, weights, metadata)
    if path.is_dir():
        (path / CHECKPOINT_CONFIG_FILE).write_text(text + "\n", encoding="utf-8")
    return path


def save_doubter(doubter: "Doubter", path: str | Path) -> Path:
    """Write ``doubter`` to ``path`` (folder, or single file if it ends in
    ``.safetensors``)."""
    path = Path(path)
    document = json.dumps(checkpoint_document(doubter), indent=2, sort_keys=True)
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in doubter.state_dict().items()}
    metadata = {METADATA_FORMAT_KEY: METADATA_FORMAT_VALUE, METADATA_CONFIG_KEY: document}
    if path.suffix == ".safetensors":
        path.parent.mkdir(parents=True, exist_ok=True)
        save_safetensors(tensors, path, metadata)
        return path
    path.mkdir(parents=True, exist_ok=True)
    (path / CHECKPOINT_CONFIG_FILE).write_text(document + "\n", encoding="utf-8")
    save_safetensors(tensors, path / CHECKPOINT_WEIGHTS_FILE, metadata)
    return path


def _upgrade(document: dict[str, Any], where: str) -> dict[str, Any]:
    """Bring an older document to the current format, logging each change.
    Format 1 is the first; a newer format than this code knows is an error."""
    version = document.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(where, f"no integer format_version in its config (got {version!r})")
    if version > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            where, f"format_version {version} is newer than this meta-spider reads ({CHECKPOINT_FORMAT_VERSION}); upgrade meta-spider"
        )
    if version < 1:
        raise CheckpointError(where, f"unknown format_version {version}")
    return document


def _parse_document(text: str | bytes, where: str) -> dict[str, Any]:
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        document = json.loads(text)
    except UnicodeDecodeError as exc:
        raise CheckpointError(where, f"the config is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(where, f"invalid JSON ({exc})") from None
    except RecursionError:
        raise CheckpointError(where, "the config JSON nests too deeply") from None
    if not isinstance(document, dict):
        raise CheckpointError(where, f"the config must be a JSON object, got {type(document).__name__}")
    return document


def _load_tensors(weights_file: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(weights_file))
    except (SafetensorError, OSError, ValueError) as exc:  # a truncated or garbage file
        raise CheckpointError(
            str(weights_file), f"the weights are not a valid safetensors file ({exc}); save the Doubter again"
        ) from None


def read_checkpoint_document(path: str | Path) -> tuple[dict[str, Any], Path]:
    """``(document, weights file)`` of a checkpoint folder or file, the
    document upgraded to the current format, without loading a tensor or
    torch; every problem with the files is a :class:`CheckpointError`."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.is_dir():
        config_file, weights_file = path / CHECKPOINT_CONFIG_FILE, path / CHECKPOINT_WEIGHTS_FILE
        for needed in (config_file, weights_file):
            if not needed.is_file():
                raise CheckpointError(str(path), f"missing {needed.name}")
        try:
            raw = config_file.read_bytes()
        except OSError as exc:
            raise CheckpointError(str(config_file), f"cannot be read ({exc.strerror})") from None
        document = _parse_document(raw, str(config_file))
    elif path.is_file() and path.suffix == ".safetensors":
        weights_file = path
        try:  # numpy: the metadata is the same for every framework, and numpy needs no torch
            with safe_open(str(path), framework="numpy") as handle:
                metadata = handle.metadata() or {}
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(str(path), f"not a valid safetensors file ({exc}); save the Doubter again") from None
        if METADATA_CONFIG_KEY not in metadata:
            raise CheckpointError(str(path), f"no {METADATA_CONFIG_KEY!r} entry in the safetensors metadata")
        document = _parse_document(metadata[METADATA_CONFIG_KEY], str(path))
    else:
        raise CheckpointError(str(path), "neither a checkpoint folder nor a .safetensors file")
    return _upgrade(document, str(path)), weights_file


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(document, tensors)`` of a checkpoint folder or file; every problem
    with the files is a :class:`CheckpointError` naming the file."""
    document, weights_file = read_checkpoint_document(path)
    return document, _load_tensors(weights_file)


def load_doubter(path: str | Path, *, device: str | torch.device = "cpu") -> "Doubter":
    """Rebuild a Doubter from a checkpoint; every tensor must match."""
    from meta_spider.wrapper.doubter import Doubter

    document, tensors = read_checkpoint(path)
    try:
        config = DoubterConfig.from_dict(document["config"])
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(str(path), f"bad config ({exc})") from exc
    fingerprint = document.get("fingerprint", {})
    model_id = fingerprint.get("model_id", "") if isinstance(fingerprint, dict) else ""
    doubter = Doubter(config, model_id=model_id if isinstance(model_id, str) else "")
    if doubter.log_reference is not None and "log_reference" in tensors:
        # Its length is the base's vocabulary, which the config does not
        # name: taken from the file (attach checks it against the base).
        try:
            doubter.set_log_reference(tensors["log_reference"])
        except ValueError as exc:
            raise CheckpointError(str(path), f"bad log_reference tensor ({exc}); save the Doubter again") from None
    expected = set(doubter.state_dict())
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise CheckpointError(str(path), f"tensor names differ from the config (missing {missing[:5]}, unexpected {extra[:5]})")
    state = doubter.state_dict()
    wrong = [f"{name} {tuple(tensors[name].shape)} vs {tuple(state[name].shape)}"
             for name in sorted(state) if tensors[name].shape != state[name].shape]
    if wrong:
        raise CheckpointError(str(path), f"tensor shapes differ from the config (saved vs expected: {wrong[:3]})")
    if doubter.scope_gate is not None:
        problem = scope_gate_problem({name: tensors[name].numpy() for name in tensors if name.startswith("scope_gate.")},
                                     config.hidden_size + len(config.signals))
        if problem is not None:
            raise CheckpointError(str(path), f"{problem}; save the Doubter again")
    doubter.load_state_dict(tensors, strict=True)
    calibration = document.get("calibration")
    problem = None if calibration is None else calibration_problem(calibration)
    if problem is not None:
        raise CheckpointError(str(path), f"'calibration' {problem}, got {calibration!r:.80}")
    doubter.calibration = calibration
    return doubter.to(device)
