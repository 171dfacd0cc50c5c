"""Turn a trained run directory into deployable GGUF files: ``metadeploy export``.

:func:`export_from_run_dir` reads ``run.json``, writes the Doubter sidecar
(``gguf/doubter_sidecar.gguf``) from the run's checkpoint and, when the
run's base is a local transformers folder of an architecture the GGUF
exporter supports, the base GGUF in f16 plus the requested llama.cpp
quantisations (Q8_0 and 4-bit by default). For any other base it says how to
bring your own base GGUF, and checks a given one against the sidecar's
fingerprint (and quantises it too when it is f16/f32). The paths go into
``run.json`` (``gguf`` section, relative to the run directory) together with
``backends.llamacpp`` settings, so ``meta-agent run --run-dir D --backend
llamacpp`` needs nothing else.

This module knows the run-directory layout and which files to make, not how
any of them is written (see :mod:`meta_spider.loom.gguf`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from meta_spider.loom.manifest import RunManifest
from meta_spider.plugins.errors import MetaSpiderError

__all__ = [
    "DEFAULT_QUANTIZATIONS", "DeployError", "GGUF_FOLDER", "export_from_run_dir", "missing_base_message",
    "register_deploy_exporters",
]

logger = logging.getLogger(__name__)

GGUF_FOLDER = "gguf"
"""Sub-folder of the run directory the exported files go to."""
DEFAULT_QUANTIZATIONS = ("Q8_0", "Q4_K_M")
SERVE_PREFERENCE = ("base_q8", "base_f16", "base_q4", "base")
"""Which exported base ``backends.llamacpp.model_path`` points at, first found wins:
Q8_0 keeps decisions within about a percent of f16 at half the size."""


class DeployError(MetaSpiderError, fields=("run_dir", "problem", "fix")):
    """A run directory cannot be exported; names the run, the problem and the fix."""

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)

    def describe(self) -> str:
        return f"cannot export run {str(self.run_dir)!r}: {self.problem}. Fix: {self.fix}"


def _slot(kind: str) -> str:
    """run.json ``gguf`` key of a base quantised as ``kind`` ('Q8_0' -> 'base_q8', 'Q4_K_M' -> 'base_q4')."""
    kind = kind.upper()
    if kind == "Q8_0":
        return "base_q8"
    if kind.startswith("Q4"):
        return "base_q4"
    if kind in ("F16", "BF16", "F32"):
        return "base_f16"
    return f"base_{kind.lower()}"


def _local_model_folder(name: str, run_dir: Path) -> Path | None:
    for candidate in (Path(name).expanduser(), run_dir / name):
        if (candidate / "config.json").is_file():
            return candidate
    return None


def missing_base_message(model_name: str, run_dir: str | os.PathLike[str]) -> str:
    """What to tell a user whose base could not be exported here."""
    return (f"The base {model_name!r} is not a local transformers folder this exporter supports (Qwen2/Llama "
            f"families), so only the Doubter sidecar was written. Bring the base's GGUF (llama.cpp's "
            f"convert_hf_to_gguf.py, or a published GGUF of exactly these weights) and run "
            f"`metadeploy export --run-dir {run_dir} --base-gguf PATH`: it is checked against the sidecar's "
            f"fingerprint and recorded in run.json.")


def _relative(path: Path, run_dir: Path) -> str:
    try:
        return str(path.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return str(path.resolve())


def _file_type_name(path: Path) -> str:
    """'F16', 'Q8_0', ... from a GGUF's ``general.file_type`` ('UNKNOWN' when absent)."""
    import gguf

    fields = gguf.GGUFReader(str(path), "r").fields
    item = fields.get("general.file_type")
    if item is None:
        return "UNKNOWN"
    value = int(item.contents())
    try:
        return gguf.LlamaFileType(value).name.removeprefix("MOSTLY_").replace("ALL_", "")
    except ValueError:
        return "UNKNOWN"


def _base_vocab_size(folder: Path) -> int | None:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config = config.get("text_config", config) if "vocab_size" not in config else config
    value = config.get("vocab_size")
    return int(value) if isinstance(value, int) else None


def export_from_run_dir(
    run_dir: str | os.PathLike[str],
    quantize: Sequence[str] = DEFAULT_QUANTIZATIONS,
    *,
    base_gguf: str | os.PathLike[str] | None = None,
    quantize_threads: int = 1,
) -> dict[str, Path]:
    """Export the run's Doubter (and base) to GGUF; return ``{"sidecar": ..., "base_f16": ..., ...}``.

    Keys: ``sidecar``, ``base_f16``, ``base_q8``, ``base_q4`` (and
    ``base_<kind>`` for other quantisations, ``base`` for a given GGUF that
    is already quantised). Without a base (a hub id, an unsupported
    architecture, no ``base_gguf``) only the sidecar is written and
    :func:`missing_base_message` is logged. Raises :class:`DeployError`,
    :class:`~meta_spider.loom.manifest.ManifestError`, or a
    :class:`~meta_spider.backends.llamacpp.sidecar_format.SidecarBaseMismatchError`
    when ``base_gguf`` belongs to another base.
    """
    from meta_spider.backends.llamacpp.sidecar_format import KEY_BASE_VOCAB_SIZE, check_sidecar_fits
    from meta_spider.loom.gguf import GGUFExportError, export_base_gguf, quantize_gguf
    from meta_spider.loom.gguf.sidecar import SIDECAR_FILE, export_sidecar, load_sidecar

    run_dir = Path(run_dir)
    manifest = RunManifest.load(run_dir)
    checkpoint = manifest.resolve(run_dir, manifest.checkpoint, "checkpoint")
    if checkpoint is None:
        raise DeployError(run_dir, "run.json records no checkpoint",
                          f"train the Doubter first: `metaloom train --run-dir {run_dir}`")
    if not checkpoint.exists():
        raise DeployError(run_dir, f"the checkpoint {str(checkpoint)!r} recorded in run.json does not exist",
                          f"train again (`metaloom train --run-dir {run_dir}`) or fix run.json's 'checkpoint'")
    out_dir = run_dir / GGUF_FOLDER
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = _local_model_folder(manifest.model.name, run_dir)
    extra: dict[str, Any] = {}
    if folder is not None:
        vocab = _base_vocab_size(folder)
        if vocab is not None:
            extra[KEY_BASE_VOCAB_SIZE] = vocab
    paths: dict[str, Path] = {"sidecar": export_sidecar(checkpoint, out_dir / SIDECAR_FILE, extra_metadata=extra)}
    sidecar = load_sidecar(paths["sidecar"])

    full_precision: Path | None = None
    if base_gguf is not None:
        given = Path(base_gguf)
        check_sidecar_fits(sidecar, given)  # typed errors for a missing, corrupt or foreign base
        kind = _file_type_name(given)
        slot = _slot(kind)
        paths[slot if slot in ("base_f16", "base_q8", "base_q4") else "base"] = given
        if kind in ("F16", "BF16", "F32"):
            full_precision = given
    elif folder is not None:
        try:
            full_precision = export_base_gguf(folder, out_dir / "base-f16.gguf", dtype="f16")
        except GGUFExportError as exc:
            logger.warning("the base at %s cannot be exported here: %s", folder, exc)
        else:
            paths["base_f16"] = full_precision
            check_sidecar_fits(sidecar, full_precision)
    if full_precision is not None:
        for kind in quantize:
            destination = out_dir / f"base-{kind.lower()}.gguf"
            paths[_slot(kind)] = quantize_gguf(full_precision, destination, kind, nthread=quantize_threads)
    if not any(key.startswith("base") for key in paths):
        logger.warning("%s", missing_base_message(manifest.model.name, run_dir))

    recorded = {key: _relative(path, run_dir) for key, path in paths.items()}
    changes: dict[str, Any] = {"gguf": recorded}
    serve = next((recorded[key] for key in SERVE_PREFERENCE if key in recorded), None)
    if serve is not None:
        settings = {"model_path": serve, "sidecar_path": recorded["sidecar"]}
        backends: dict[str, Any] = {}
        if not manifest.backends:
            # The first backend listed becomes the agent's default: keep the run's transformers default.
            backends["transformers"] = {}
        backends["llamacpp"] = {**manifest.backends.get("llamacpp", {}), **settings}
        changes["backends"] = backends
    RunManifest.update_file(run_dir, **changes)
    return paths


def register_deploy_exporters(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """For the ``register_exporters`` hook: ``gguf`` = :func:`export_from_run_dir`."""
    register("gguf", export_from_run_dir)
