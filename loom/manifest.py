"""``run.json``: the manifest of one run directory, shared by ``metaloom
collect`` (which writes it), ``train``, ``eval``, ``meta-agent`` and
``metadeploy`` (which read it and add their results).

:class:`RunManifest` records the base model, the layer choice, the read and
injection positions, the encoder type, the dataset, the prompt format, the
checkpoint, the calibrated thresholds, exported GGUF files, per-backend
settings, the framework version and timestamps. Loading validates every
field and raises :class:`ManifestError` naming the file, the field (dotted
path), the problem and the fix. Fields this version does not know (written
by a newer one) are kept, saved back and warned about. ``format_version``
marks the layout; older layouts are upgraded explicitly on load with a log
line per change (the file itself is rewritten only by :meth:`save`).

This is the manifest level of the file; reading and (atomic) writing it is
:mod:`meta_spider.agentcore.runfile`'s, which every reader shares. Paths are
stored as written; relative ones are relative to the run directory
(:meth:`RunManifest.resolve`). A path outside the run directory that a
command recorded through :meth:`RunManifest.update_file` is listed in
``external_paths``; any other one is used with a warning (the agent reads the
same list). This module never imports torch.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from meta_spider.agentcore.runfile import (
    RUN_FILE,
    RunFile,
    RunFileError,
    is_path_setting,
    path_is_inside,
    read_run_file,
    resolve_run_path,
    write_run_file,
)
from meta_spider.wrapper.config import framework_version  # torch-free, as the constants
from meta_spider.wrapper.constants import (  # torch-free: the wrapper's allowed values
    DTYPES,
    ENCODER_TYPES,
    INJECT_POSITIONS,
    LAYER_PRESETS,
    QUANTIZATIONS,
    READ_POSITIONS,
)

__all__ = [
    "DatasetSection", "FORMAT_VERSION", "GGUFSection", "LayersSection", "MANIFEST_FILE", "ManifestError",
    "ModelSection", "PromptSection", "RunManifest",
]

logger = logging.getLogger(__name__)

MANIFEST_FILE = RUN_FILE
FORMAT_VERSION = 1
"""Layout version written by this code; bump it and add an upgrade step to
:data:`_UPGRADES` when the layout changes."""


PathLike = Union[str, os.PathLike]


ManifestError = RunFileError
"""The loom's name for a :class:`~meta_spider.agentcore.runfile.RunFileError`:
one error for every problem with run.json, at any level. ``field`` is the
dotted path of the offending field (None for the file as a whole)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------ validators
# Each takes (value, dotted path) and returns the normalised value or raises
# _Invalid(expected) which the parser turns into a ManifestError.


class _Invalid(Exception):
    def __init__(self, expected: str) -> None:
        self.expected = expected
        super().__init__(expected)


Validator = Callable[[Any], Any]


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("a non-empty string")
    return value


def _optional(validator: Validator) -> Validator:
    def check(value: Any) -> Any:
        return None if value is None else validator(value)

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("true or false")
    return value


def _choice(options: tuple[Any, ...]) -> Validator:
    def check(value: Any) -> Any:
        if value not in options:
            raise _Invalid("one of " + ", ".join("null" if o is None else repr(o) for o in options))
        return value

    return check


def _layers(value: Any) -> Any:
    if value in LAYER_PRESETS:
        return value
    if isinstance(value, list) and value and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value):
        return value
    raise _Invalid("'all', 'late' or a non-empty list of layer indices (ints >= 0)")


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid("a JSON object")
    return value


def _string_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise _Invalid("a list of non-empty strings")
    return value


def _sizes(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value.values()
    ):
        raise _Invalid("an object of split name -> example count (int >= 0)")
    return value


def _timestamp(value: Any) -> str:
    try:
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise _Invalid("an ISO-8601 timestamp such as '2026-01-31T12:00:00+00:00'") from None
    if not isinstance(value, str):
        raise _Invalid("an ISO-8601 timestamp string")
    return value


def _calibration(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid("an object of scorer name -> {'threshold': number or null, ...}")
    for name, entry in value.items():
        threshold = entry.get("threshold", "missing") if isinstance(entry, dict) else "missing"
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
            raise _Invalid(f"an object per scorer with a numeric 'threshold' (entry {name!r} has none)")
    return value


def _backends(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise _Invalid("an object of backend name -> settings object")
    return value


def _spec(validator: Validator, required: bool = False, **kwargs: Any) -> Any:
    return field(metadata={"validator": validator, "required": required}, **kwargs)


# ------------------------------------------------------------------ sections


class _Section:
    """Shared to_dict for sections; unknown fields live in ``extra``."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            if item.name == "extra":
                continue
            data[item.name] = value.to_dict() if isinstance(value, _Section) else value
        data.update(getattr(self, "extra"))
        return data


@dataclass
class ModelSection(_Section):
    """The frozen base."""

    name: str = _spec(_string, required=True)
    revision: Optional[str] = _spec(_optional(_string), default=None)
    dtype: str = _spec(_choice(DTYPES), default="auto")
    quantization: Optional[str] = _spec(_choice(QUANTIZATIONS), default=None)
    device: str = _spec(_string, default="cpu")
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LayersSection(_Section):
    """Layers pass 1 reads and pass 2 injects after (specs or indices)."""

    target_layers: Any = _spec(_layers, default="late")
    cross_attn_layers: Any = _spec(_optional(_layers), default=None)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetSection(_Section):
    """The dataset: registered name, factory options, splits and sizes."""

    name: str = _spec(_string, required=True)
    options: dict[str, Any] = _spec(_object, default_factory=dict)
    splits: list[str] = _spec(_string_list, default_factory=list)
    sizes: dict[str, int] = _spec(_sizes, default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dataset(cls, dataset: Any) -> "DatasetSection":
        """From a dataset's ``describe()`` (see the ``QADataset`` protocol)."""
        description = dataset.describe()
        return cls(name=description["name"], options=dict(description["options"]),
                   splits=list(description["splits"]), sizes=dict(description["sizes"]))


@dataclass
class PromptSection(_Section):
    """How questions were put to the base."""

    use_chat_template: bool = _spec(_boolean, default=True)
    mcq_direct: bool = _spec(_boolean, default=False)
    system_prompt: Optional[str] = _spec(_optional(_string), default=None)
    template_kwargs: dict[str, Any] = _spec(_object, default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class GGUFSection(_Section):
    """Files written by ``metadeploy export``."""

    base_f16: Optional[str] = _spec(_optional(_string), default=None)
    base_q8: Optional[str] = _spec(_optional(_string), default=None)
    base_q4: Optional[str] = _spec(_optional(_string), default=None)
    sidecar: Optional[str] = _spec(_optional(_string), default=None)
    extra: dict[str, Any] = field(default_factory=dict)


_SECTIONS: dict[str, type] = {"model": ModelSection, "layers": LayersSection, "dataset": DatasetSection,
                              "prompt": PromptSection, "gguf": GGUFSection}


@dataclass
class RunManifest(_Section):
    """The contents of ``run.json`` (see the module docstring)."""

    model: ModelSection = _spec(None, required=True)
    dataset: DatasetSection = _spec(None, required=True)
    format_version: int = _spec(None, default=FORMAT_VERSION)
    layers: LayersSection = _spec(None, default_factory=LayersSection)
    read_position: str = _spec(_choice(READ_POSITIONS), default="prompt")
    inject_positions: str = _spec(_choice(INJECT_POSITIONS), default="generation")
    encoder_type: str = _spec(_choice(ENCODER_TYPES), default="selective")
    prompt: PromptSection = _spec(None, default_factory=PromptSection)
    checkpoint: Optional[str] = _spec(_optional(_string), default=None)
    calibration: dict[str, Any] = _spec(_calibration, default_factory=dict)
    gguf: GGUFSection = _spec(None, default_factory=GGUFSection)
    backends: dict[str, Any] = _spec(_backends, default_factory=dict)
    external_paths: list[str] = _spec(_string_list, default_factory=list)
    framework_version: str = _spec(_string, default_factory=framework_version)
    created_at: str = _spec(_timestamp, default_factory=_now)
    updated_at: str = _spec(_timestamp, default_factory=_now)
    extra: dict[str, Any] = field(default_factory=dict)

    # -------------------------------------------------------------- configs

    @classmethod
    def from_pipeline_config(cls, config: Any, dataset: DatasetSection, encoder_type: str = "selective",
                             prompt: Optional[PromptSection] = None) -> "RunManifest":
        """A new manifest from a ``MetaSpiderConfig`` (read by attribute, so
        this module needs no torch) and the dataset section."""
        def layers(spec: Any) -> Any:
            return list(spec) if isinstance(spec, (tuple, list)) else spec

        return cls.from_dict({
            "format_version": FORMAT_VERSION, "dataset": dataset.to_dict(), "encoder_type": encoder_type,
            "model": {"name": config.model_name, "revision": config.revision, "dtype": config.dtype,
                      "quantization": config.quantization, "device": config.device},
            "layers": {"target_layers": layers(config.target_layers),
                       "cross_attn_layers": layers(config.cross_attn_layers)},
            "read_position": config.read_position, "inject_positions": config.inject_positions,
            "prompt": (prompt or PromptSection()).to_dict(),
        }, source="from_pipeline_config()")

    def pipeline_settings(self) -> dict[str, Any]:
        """Keyword arguments for ``MetaSpiderConfig`` that rebuild the
        pipeline this run used."""
        return {"model_name": self.model.name, "revision": self.model.revision, "dtype": self.model.dtype,
                "quantization": self.model.quantization, "device": self.model.device,
                "target_layers": self.layers.target_layers, "cross_attn_layers": self.layers.cross_attn_layers,
                "read_position": self.read_position, "inject_positions": self.inject_positions}

    # -------------------------------------------------------------- files

    @staticmethod
    def path_in(run_dir: PathLike) -> Path:
        """``<run_dir>/run.json``."""
        return Path(run_dir) / MANIFEST_FILE

    @classmethod
    def load(cls, run_dir: PathLike) -> "RunManifest":
        """Read and validate ``<run_dir>/run.json``; raises :class:`ManifestError`."""
        return cls.from_run_file(read_run_file(run_dir))

    @classmethod
    def from_run_file(cls, run_file: RunFile) -> "RunManifest":
        """Validate a run.json already read (its manifest level)."""
        return cls.from_dict(run_file.data, source=run_file.path)

    def save(self, run_dir: PathLike) -> Path:
        """Write ``<run_dir>/run.json`` atomically (creating the folder),
        stamping ``updated_at`` and this framework's version."""
        self.updated_at = _now()
        self.framework_version = framework_version()
        return write_run_file(run_dir, self.to_dict())

    @classmethod
    def update_file(cls, run_dir: PathLike, **changes: Any) -> "RunManifest":
        """Load ``run.json``, apply :meth:`update`, save it back; returns it.
        Paths among ``changes`` that lead outside the run directory are
        recorded in ``external_paths``: a command wrote them on purpose."""
        manifest = cls.load(run_dir)
        outside = [recorded for recorded in _path_values(changes) if not path_is_inside(Path(run_dir), recorded)]
        manifest.update(**changes)
        manifest.external_paths = sorted(set(manifest.external_paths) | set(outside))
        manifest.save(run_dir)
        return manifest

    def resolve(self, run_dir: PathLike, recorded: Optional[str], field: str = "a path") -> Optional[Path]:
        """A recorded path as a real one: relative paths are relative to
        the run directory; one leading outside it is warned about unless a
        command recorded it (``external_paths``)."""
        if recorded is None:
            return None
        return resolve_run_path(Path(run_dir), recorded, field_name=field, source=str(self.path_in(run_dir)),
                                trusted=self.external_paths)

    # -------------------------------------------------------------- changes

    def update(self, **changes: Any) -> "RunManifest":
        """Change top-level fields, validated like a loaded file. A mapping
        given for a section (``model``, ``layers``, ``dataset``, ``prompt``,
        ``gguf``) or for ``calibration`` / ``backends`` is merged into it;
        anything else replaces the field. Stamps ``updated_at``; returns
        self. Raises :class:`ManifestError` (source ``update()``)."""
        known = {item.name for item in fields(self)} - {"extra", "format_version"}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"RunManifest has no fields {unknown}; known: {sorted(known)}")
        data = self.to_dict()
        for name, value in changes.items():
            if isinstance(value, _Section):
                value = value.to_dict()
            elif isinstance(value, os.PathLike):
                value = str(value)
            if isinstance(value, Mapping) and isinstance(data.get(name), dict):
                data[name] = {**data[name], **value}
            else:
                data[name] = value
        updated = type(self).from_dict(data, source="update()", warn_unknown=False)
        for item in fields(self):
            setattr(self, item.name, getattr(updated, item.name))
        self.updated_at = _now()
        return self

    # -------------------------------------------------------------- parsing

    @classmethod
    def from_dict(cls, data: Any, source: PathLike = "run.json", warn_unknown: bool = True) -> "RunManifest":
        """Validate a decoded manifest, upgrading older layouts; raises
        :class:`ManifestError` naming ``source`` and the field."""
        if not isinstance(data, dict):
            raise ManifestError(source, None, f"expected a JSON object, got {type(data).__name__}",
                                "restore the file or re-run `metaloom collect`")
        version = data.get("format_version", 0)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ManifestError(source, "format_version", f"must be an int >= 0, got {version!r}",
                                f"set it to {FORMAT_VERSION}, the layout this meta-spider writes")
        if version > FORMAT_VERSION:
            raise ManifestError(source, "format_version",
                                f"is {version}, newer than the {FORMAT_VERSION} this meta-spider reads",
                                "upgrade meta-spider (pip install -U meta-spider) to read this run")
        data = dict(data)
        while version < FORMAT_VERSION:
            data, changes = _UPGRADES[version](data)
            for change in changes:
                logger.info("%s: upgrading format %d -> %d: %s", source, version, version + 1, change)
            version += 1
            data["format_version"] = version
        return _parse_section(cls, data, "", Path(source), warn_unknown)


def _parse_section(cls: type, data: Any, prefix: str, source: Path, warn_unknown: bool) -> Any:
    if not isinstance(data, dict):
        raise ManifestError(source, prefix.rstrip("."), f"must be a JSON object, got {data!r}",
                            f"edit {MANIFEST_FILE} so that {prefix.rstrip('.')} is an object, or re-run `metaloom collect`")
    values: dict[str, Any] = {}
    for item in fields(cls):
        if item.name == "extra":
            continue
        dotted = prefix + item.name
        if item.name not in data:
            if item.metadata.get("required"):
                raise ManifestError(source, dotted, "is missing",
                                    f"add it to {MANIFEST_FILE}, or re-run `metaloom collect` to write a complete one")
            continue
        value = data[item.name]
        if item.name in _SECTIONS and issubclass(cls, RunManifest):
            values[item.name] = _parse_section(_SECTIONS[item.name], value, dotted + ".", source, warn_unknown)
            continue
        validator = item.metadata.get("validator")
        if validator is None:  # format_version, checked before upgrading
            values[item.name] = value
            continue
        try:
            values[item.name] = validator(value)
        except _Invalid as invalid:
            raise ManifestError(source, dotted, f"must be {invalid.expected}, got {value!r}",
                                f"edit {MANIFEST_FILE} to fix it, or re-run the command that wrote it") from None
    known = {item.name for item in fields(cls)}
    extra = {k: v for k, v in data.items() if k not in known or k == "extra"}
    if extra and warn_unknown:
        logger.warning("%s: keeping fields this meta-spider does not know (written by a newer version?): %s",
                       source, ", ".join(prefix + k for k in sorted(extra)))
    return cls(**values, extra=extra)


# ------------------------------------------------------------------ upgrades

_V0_MOVES = {
    "model_name": ("model", "name"), "revision": ("model", "revision"), "dtype": ("model", "dtype"),
    "quantization": ("model", "quantization"), "device": ("model", "device"),
    "target_layers": ("layers", "target_layers"), "cross_attn_layers": ("layers", "cross_attn_layers"),
    "dataset_options": ("dataset", "options"), "use_chat_template": ("prompt", "use_chat_template"),
    "mcq_direct": ("prompt", "mcq_direct"), "system_prompt": ("prompt", "system_prompt"),
}


def _upgrade_0_to_1(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Format 0 (no ``format_version``): the flat layout of the first runs,
    a ``MetaSpiderConfig`` dump plus ``dataset`` (a name) and
    ``checkpoint_path``. Format 1 groups fields into sections."""
    upgraded = dict(data)
    changes = []
    if isinstance(upgraded.get("dataset"), str):
        upgraded["dataset"] = {"name": upgraded["dataset"]}
        changes.append("moved 'dataset' (a name) to 'dataset.name'")
    if "checkpoint_path" in upgraded:
        upgraded["checkpoint"] = upgraded.pop("checkpoint_path")
        changes.append("renamed 'checkpoint_path' to 'checkpoint'")
    for old, (section, name) in _V0_MOVES.items():
        if old in upgraded:
            target = upgraded.setdefault(section, {})
            if isinstance(target, dict):
                target[name] = upgraded.pop(old)
                changes.append(f"moved {old!r} to '{section}.{name}'")
    return upgraded, changes


_UPGRADES: dict[int, Callable[[dict[str, Any]], tuple[dict[str, Any], list[str]]]] = {0: _upgrade_0_to_1}
"""format_version -> step to the next version, returning (data, changes)."""


def _path_values(value: Any, key: str = "", in_gguf: bool = False) -> list[str]:
    """The path strings in a change set: ``checkpoint``, ``*_path`` keys,
    and every file the ``gguf`` section names."""
    if isinstance(value, Mapping):
        found: list[str] = []
        for name, item in value.items():
            found += _path_values(item, str(name), in_gguf or name == "gguf")
        return found
    if isinstance(value, str) and value and (in_gguf or is_path_setting(key)):
        return [value]
    return []
