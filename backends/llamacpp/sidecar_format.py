"""The Doubter sidecar's on-disk format: a GGUF of architecture ``meta-spider``.

The one owner of the format: its metadata keys, the plain keys written for
people (:func:`sidecar_fields`), the reader (:func:`read_sidecar`, which
checks a file and returns :class:`SidecarContents`) and the check that a
sidecar fits a base GGUF (:func:`check_sidecar_fits`).
:mod:`meta_spider.loom.gguf.sidecar` writes files with these keys; the llama.cpp
backend reads them through here. It knows nothing about llama.cpp or the
Doubter's math (the tensor-shape check at load is
:meth:`~meta_spider.backends.llamacpp.numpy_doubter.NumpyDoubter.check_shapes`);
it imports only numpy and the signal names (and ``gguf`` when a file is read).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from meta_spider.backends.base import BackendError
from meta_spider.wrapper.checkpoint import calibration_problem, scope_gate_problem
from meta_spider.wrapper.signals import reads_reference, reference_problem

__all__ = [
    "KEY_BASE_VOCAB_SIZE", "KEY_CALIBRATION", "KEY_CONFIG", "KEY_FINGERPRINT", "KEY_FORMAT_VERSION", "KEY_SCALARS", "READABLE_KEYS",
    "SIDECAR_ARCHITECTURE", "SIDECAR_FORMAT_VERSION", "SidecarBaseMismatchError", "SidecarContents", "SidecarError",
    "SidecarLayerRangeError", "base_gguf_fingerprint", "check_sidecar_fits", "check_sidecar_structure",
    "read_sidecar", "sidecar_fields", "sidecar_format_version",
]

SIDECAR_ARCHITECTURE = "meta-spider"
SIDECAR_FORMAT_VERSION = 2
"""The newest version this reader knows. Version 2 adds the scope gate
(``scope_layer`` and the ``scope_gate.*`` tensors); a sidecar without one is
still written as version 1, so older readers keep loading it, and one with
a gate is refused by them instead of deployed without its veto."""


def sidecar_format_version(config: Mapping[str, Any]) -> int:
    """The version a sidecar of this Doubter config is written as."""
    return 2 if config.get("scope_layer") is not None else 1


KEY_FORMAT_VERSION = "meta-spider.format_version"
KEY_CONFIG = "meta-spider.doubter_config"
"""JSON of ``DoubterConfig.to_dict()``."""
KEY_FINGERPRINT = "meta-spider.fingerprint"
"""JSON of ``Doubter.fingerprint()`` (model id, hidden size, layer count, layer lists, version)."""
KEY_CALIBRATION = "meta-spider.calibration"
"""JSON of the Doubter's answer-threshold calibration (``Doubter.calibration``:
``threshold``, ``split``, ``rule``, ``score``, ...); absent when uncalibrated."""
KEY_SCALARS = "meta-spider.scalar_tensors"
"""Names of 0-d tensors (gates), stored with shape [1] because GGUF has no 0-d tensors."""
KEY_BASE_VOCAB_SIZE = "meta-spider.base_vocab_size"
"""The base tokenizer's vocabulary size, when the exporter knew the base's folder (checked against the base GGUF)."""
READABLE_KEYS = ("hidden_size", "num_layers", "encoder_type", "read_position", "inject_positions")
"""Config fields also written as plain ``meta-spider.<name>`` keys, so ``gguf-dump`` shows them."""


class SidecarError(BackendError, fields=("path", "reason", "fix")):
    """A Doubter sidecar is missing, unreadable, or does not fit the base."""

    template = "Doubter sidecar {shown!r}: {reason}. Fix: {fix}"

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.shown = str(self.path)


class SidecarBaseMismatchError(
    SidecarError, fields=("path", "base_path", "sidecar_fingerprint", "base_fingerprint", "fields", "detail")
):
    """The sidecar was exported for another base than the GGUF it is paired with."""

    detail = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.fix = ("pair the sidecar with the GGUF of the base its Doubter was trained on "
                    "(`metadeploy export --run-dir RUN` writes both), or train a Doubter for this base")
        self.base_path = Path(self.base_path)
        self.sidecar_fingerprint, self.base_fingerprint = dict(self.sidecar_fingerprint), dict(self.base_fingerprint)
        self.fields = tuple(self.fields)
        diffs = ", ".join(f"{name}: sidecar {self.sidecar_fingerprint.get(name)!r} vs base "
                          f"{self.base_fingerprint.get(name)!r}" for name in self.fields)
        self.reason = (f"was exported for base {self.sidecar_fingerprint.get('model_id')!r} and does not fit the base "
                       f"GGUF {str(self.base_path)!r} ({self.base_fingerprint.get('model_id')!r}): {self.detail}{diffs}")


class SidecarLayerRangeError(SidecarBaseMismatchError):
    """The sidecar reads or injects at layers the base GGUF does not have."""


@dataclass
class SidecarContents:
    """What a sidecar file holds."""

    path: Path
    config: dict[str, Any]
    """The DoubterConfig as a plain dict (``DoubterConfig.from_dict`` rebuilds it)."""
    fingerprint: dict[str, Any]
    """The base fingerprint: ``model_id``, ``hidden_size``, ``num_layers``, layer lists, version."""
    tensors: dict[str, np.ndarray]
    """The Doubter's state dict (float32, original shapes)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Every other ``meta-spider.*`` / ``general.*`` key."""
    format_version: int = SIDECAR_FORMAT_VERSION
    calibration: dict[str, Any] | None = None
    """The answer-threshold calibration ``metaloom eval`` chose (None: uncalibrated)."""

    def num_parameters(self) -> int:
        return int(sum(array.size for array in self.tensors.values()))


def _field_value(fields: Mapping[str, Any], key: str) -> Any:
    item = fields.get(key)
    return None if item is None else item.contents()


def read_sidecar(path: str | os.PathLike[str]) -> SidecarContents:
    """Read and check a sidecar written by ``export_sidecar``. Raises :class:`SidecarError`."""
    path = Path(path)
    reexport = f"export it again (`metadeploy export --run-dir RUN`, or export_sidecar(checkpoint, {str(path)!r}))"
    if not path.is_file():
        raise SidecarError(path, "no such file", "pass the doubter_sidecar.gguf that `metadeploy export` wrote")
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path), "r")
        fields = reader.fields
        architecture = _field_value(fields, "general.architecture")
        raw_tensors = {tensor.name: np.array(tensor.data, dtype=np.float32) for tensor in reader.tensors}
    except Exception as exc:  # noqa: BLE001 - the gguf reader raises many kinds on a damaged file
        raise SidecarError(path, f"is not a readable GGUF file (corrupt or truncated: {type(exc).__name__}: {exc})",
                           reexport) from exc
    if architecture != SIDECAR_ARCHITECTURE:
        raise SidecarError(path, f"has architecture {architecture!r}, not {SIDECAR_ARCHITECTURE!r} (is it a base "
                           "model GGUF?)", "pass the Doubter sidecar as sidecar_path and the base GGUF as model_path")
    version = _field_value(fields, KEY_FORMAT_VERSION)
    if not isinstance(version, (int, np.integer)) or not 1 <= int(version) <= SIDECAR_FORMAT_VERSION:
        raise SidecarError(path, f"has sidecar format version {version!r}; this meta-spider reads 1.."
                           f"{SIDECAR_FORMAT_VERSION}", "upgrade meta-spider, or " + reexport)
    try:
        config = json.loads(_field_value(fields, KEY_CONFIG))
        fingerprint = json.loads(_field_value(fields, KEY_FINGERPRINT))
    except (TypeError, json.JSONDecodeError) as exc:
        raise SidecarError(path, f"has no valid {KEY_CONFIG} / {KEY_FINGERPRINT} JSON ({exc})", reexport) from exc
    calibration = None
    if KEY_CALIBRATION in fields:
        try:
            calibration = json.loads(_field_value(fields, KEY_CALIBRATION))
        except (TypeError, json.JSONDecodeError) as exc:
            raise SidecarError(path, f"has no valid {KEY_CALIBRATION} JSON ({exc})", reexport) from exc
        problem = calibration_problem(calibration)
        if problem is not None:
            raise SidecarError(path, f"{KEY_CALIBRATION} {problem}, got {calibration!r:.80}", reexport)
    scalars = set(_field_value(fields, KEY_SCALARS) or [])
    tensors = {name: (array.reshape(()) if name in scalars else array) for name, array in raw_tensors.items()}
    metadata = {key: _field_value(fields, key) for key in fields
                if key.startswith(("general.", "meta-spider.")) and key not in (KEY_CONFIG, KEY_FINGERPRINT,
                                                                                 KEY_CALIBRATION)}
    contents = SidecarContents(path=path, config=config, fingerprint=fingerprint, tensors=tensors,
                               metadata=metadata, format_version=int(version), calibration=calibration)
    # A partial or mismatched file fails here, not mid-generation.
    check_sidecar_structure(contents)
    from meta_spider.backends.llamacpp.numpy_doubter import NumpyDoubter  # the math imports this module

    NumpyDoubter.check_shapes(contents)
    return contents


def base_gguf_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``model_id``, ``hidden_size``, ``num_layers``, ``architecture``, ``vocab_size`` of a base GGUF's metadata.

    Raises :class:`~meta_spider.backends.llamacpp.errors.GGUFModelError` for a
    missing or unreadable file (tensors are not loaded).
    """
    from meta_spider.backends.llamacpp.errors import GGUFModelError

    path = Path(path)
    if not path.is_file():
        raise GGUFModelError(path, "no such file", "pass the path of the base model's GGUF "
                             "(`metadeploy export --run-dir RUN` writes one for a local transformers base)")
    from gguf import GGUFReader

    try:
        fields = GGUFReader(str(path), "r").fields
    except Exception as exc:  # noqa: BLE001 - the gguf reader raises many kinds on a damaged file
        raise GGUFModelError(path, f"is not a readable GGUF file (corrupt or truncated: {type(exc).__name__}: {exc})",
                             "export or download it again") from exc
    architecture = _field_value(fields, "general.architecture")
    if architecture == SIDECAR_ARCHITECTURE:
        raise GGUFModelError(path, "is a Doubter sidecar, not a base model",
                             "pass the base GGUF as model_path and the sidecar as sidecar_path")
    hidden = _field_value(fields, f"{architecture}.embedding_length")
    layers = _field_value(fields, f"{architecture}.block_count")
    if hidden is None or layers is None:
        raise GGUFModelError(path, f"has no {architecture}.embedding_length / .block_count metadata",
                             "use a GGUF written by llama.cpp's converter or `metadeploy export`")
    tokens = fields.get("tokenizer.ggml.tokens")
    return {"model_id": str(_field_value(fields, "general.name") or path.stem), "hidden_size": int(hidden),
            "num_layers": int(layers), "architecture": str(architecture),
            "vocab_size": len(tokens.data) if tokens is not None else None}


def check_sidecar_fits(contents: SidecarContents, base_path: str | os.PathLike[str],
                       base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Raise a :class:`SidecarBaseMismatchError` (or :class:`SidecarLayerRangeError`) when the sidecar's
    Doubter does not fit the base GGUF at ``base_path``; return the base fingerprint.

    Shape fields must match; a differing model id alone is accepted (the
    same weights travel under a hub id, a folder name or a GGUF name).
    ``base`` (a fingerprint already read, e.g. from llama.cpp) skips the file read.
    """
    base = dict(base) if base is not None else base_gguf_fingerprint(base_path)
    sidecar = {**contents.fingerprint, "hidden_size": int(contents.config["hidden_size"]),
               "num_layers": int(contents.config["num_layers"])}
    layers = sorted({*map(int, contents.config["target_layers"]),
                     *map(int, contents.config.get("cross_attn_layers") or [])})
    beyond = [layer for layer in layers if layer >= int(base["num_layers"])]
    if beyond:
        raise SidecarLayerRangeError(contents.path, base_path, sidecar, base, ["num_layers"],
                                     detail=f"it reads/injects at layers {beyond}, beyond the base's "
                                     f"{base['num_layers']} decoder layers (0..{int(base['num_layers']) - 1}); ")
    wrong = [name for name in ("hidden_size", "num_layers") if sidecar.get(name) != base.get(name)]
    reference = contents.tensors.get("log_reference")  # the PMI signals index it by the base's token ids
    vocab_sizes = (contents.metadata.get(KEY_BASE_VOCAB_SIZE), None if reference is None else reference.size)
    other_vocab = [int(size) for size in vocab_sizes
                   if size is not None and base.get("vocab_size") is not None and int(size) != base["vocab_size"]]
    if other_vocab:
        sidecar["vocab_size"] = other_vocab[0]
        wrong.append("vocab_size")
    if wrong:
        raise SidecarBaseMismatchError(contents.path, base_path, sidecar, base, wrong)
    return base


def check_sidecar_structure(contents: SidecarContents) -> None:
    """Raise :class:`SidecarError` when the config's required fields or the
    tensors it names are missing, or it names layers its base lacks."""
    config = contents.config
    if not isinstance(config, dict) or not isinstance(contents.fingerprint, dict):
        raise SidecarError(contents.path, "its Doubter config and fingerprint must be JSON objects",
                           "export it again from the checkpoint")
    missing_fields = [name for name in ("hidden_size", "num_layers", "target_layers", "encoder_type")
                      if name not in config]
    if missing_fields:
        raise SidecarError(contents.path, f"its Doubter config lacks {missing_fields}",
                           "export it again from the checkpoint")
    layers = _int_list(config["target_layers"]) + _int_list(config.get("cross_attn_layers") or [])
    sizes = _int_list([config["hidden_size"], config["num_layers"], config.get("ca_num_heads", 1)])
    if None in layers or None in sizes or min(sizes) < 1:
        raise SidecarError(contents.path, "its Doubter config's sizes and layer lists must be positive whole numbers "
                           f"(hidden_size {config['hidden_size']!r:.40}, num_layers {config['num_layers']!r:.40}, "
                           f"target_layers {config['target_layers']!r:.80})", "export it again from the checkpoint")
    bad = [layer for layer in layers if not 0 <= layer < config["num_layers"]]
    if bad:
        raise SidecarError(contents.path, f"names layers {bad} outside its base's {config['num_layers']} layers",
                           "export it again from an unmodified checkpoint")
    cross = config.get("cross_attn_layers") or config["target_layers"]
    needed = [f"cross_attn.{layer}.{part}" for layer in cross
              for part in ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "gate.raw",
                           "query_norm.weight", "token_norm.weight")]
    needed.append("encoder.head.weight" if config["encoder_type"] != "selective" else "encoder.probe_mix.weight")
    if config.get("signals"):
        needed += [f"signal_mix.{part}" for part in ("mean", "scale", "linear.weight", "linear.bias")]
        if reads_reference(config["signals"]):
            needed.append("log_reference")
    scope = config.get("scope_layer")
    if scope is not None:
        if _int_list([scope]) == [None] or scope not in config["target_layers"]:
            raise SidecarError(contents.path, f"its scope_layer {scope!r:.40} is not one of its target layers "
                               f"{config['target_layers']!r:.80}", "export it again from the checkpoint")
        needed += [f"scope_gate.{part}" for part in ("mean", "scale", "weight", "bias", "threshold")]
    absent = [name for name in needed if name not in contents.tensors]
    if absent:
        raise SidecarError(contents.path, f"lacks tensors {absent[:4]} its config needs (truncated or "
                           "hand-edited?)", "export it again from the checkpoint")
    if scope is not None:
        problem = scope_gate_problem(contents.tensors, int(config["hidden_size"]) + len(config.get("signals") or ()))
        if problem is not None:
            raise SidecarError(contents.path, problem, "export it again from an unmodified checkpoint")
    if "log_reference" in needed:
        problem = reference_problem(np.asarray(contents.tensors["log_reference"]))
        if problem is not None:
            raise SidecarError(contents.path, problem, "export it again from the checkpoint")


def _int_list(value: Any) -> list[int | None]:
    """``value``'s items, each an int or None where it is not one (a list expected)."""
    if not isinstance(value, list):
        return [None]
    return [item if isinstance(item, int) and not isinstance(item, bool) else None for item in value]


def sidecar_fields(config: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The plain (non-JSON) ``meta-spider.*`` keys written for people and tools."""
    cross = config.get("cross_attn_layers") or config["target_layers"]
    values: dict[str, Any] = {f"meta-spider.{name}": config[name] for name in READABLE_KEYS if name in config}
    values["meta-spider.target_layers"] = [int(i) for i in config["target_layers"]]
    values["meta-spider.cross_attn_layers"] = [int(i) for i in cross]
    values["meta-spider.base_model_id"] = str(fingerprint.get("model_id") or "")
    return values
