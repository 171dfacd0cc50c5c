"""Trained bases shipped with the package.

Training a world's base takes minutes to a quarter of an hour on two cores,
and the same training run gives other bits on another kind of CPU (the last
bits in which AVX-512 and AVX2 kernels differ grow into another model). So
the repository carries the bases the demo and the tests run on, one folder
per cache key under ``shipped-bases/``: the ``save_pretrained`` files of the
base and its tokenizer, and ``base.json`` with every file's sha256, the
hashes of the data it was trained on, the kernels that trained it and the
command that rebuilds it.

A build installs a shipped base instead of training one when the key
matches; every file is checked against its recorded hash on the way in.
``metaloom world build --train`` trains the base here and says whether it
came out bit-identical to the shipped one; ``--ship`` writes a trained base
into this folder (for maintainers, after changing the generator or a
preset). This module knows files and hashes, not training.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meta_spider.plugins.errors import MetaSpiderError

BASES_ENV_VAR = "META_SPIDER_WORLD_BASES"
"""Overrides the folder of shipped bases (tests point it at a temporary one)."""
SHIPPED_MANIFEST = "base.json"
TRAINING_RECORD: dict[str, type | tuple[type, ...]] = {
    "corpus_tokens": int, "parameters": int, "loss_first": (int, float), "loss_last": (int, float)}
"""What ``world.json`` says of the training run (and of which JSON type),
carried by ``base.json`` to the worlds that install the base."""
MANIFEST_FIELDS: dict[str, type | tuple[type, ...]] = {
    "files": dict, "data_sha256": dict, "kernels": dict, **TRAINING_RECORD}
"""What an install reads from ``base.json``, and of which JSON type."""


class ShippedBaseError(MetaSpiderError, RuntimeError, fields=("path", "problem")):
    """A shipped base is damaged or does not belong to the world it is keyed by."""

    template = ("shipped base {path}: {problem}; restore the folder from the repository "
                "(git checkout -- {path}) or train the base here with `metaloom world build --train`")


class ShipError(MetaSpiderError, RuntimeError, fields=("path", "problem")):
    """A trained base could not be written as a shipped one."""

    template = ("cannot ship a base to {path}: {problem}; ship from a clone with an editable install "
                "(pip install -e .) or point META_SPIDER_WORLD_BASES at a writable folder")


def bases_root() -> Path:
    """Folder of shipped bases: ``$META_SPIDER_WORLD_BASES`` or ``shipped-bases/``
    next to this module."""
    override = os.environ.get(BASES_ENV_VAR)
    return Path(override) if override else Path(__file__).parent / "shipped-bases"


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file directly in ``folder``, by name."""
    return {child.name: hashlib.sha256(child.read_bytes()).hexdigest()
            for child in sorted(folder.iterdir()) if child.is_file()}


def short(digest: str) -> str:
    """The first 8 hex digits of a sha256, as the summaries show them."""
    return digest[:8]


@dataclass(frozen=True)
class ShippedBase:
    """One folder of ``shipped-bases/``: a trained base for one world key."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def find(cls, key: str) -> "ShippedBase | None":
        """The shipped base for world ``key``, or None when none is shipped."""
        path = bases_root() / key
        manifest_path = path / SHIPPED_MANIFEST
        if not manifest_path.exists():
            return None
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ShippedBaseError(path, f"{SHIPPED_MANIFEST} does not read as JSON ({error})") from None
        if not isinstance(manifest, dict) or manifest.get("key") != key:
            raise ShippedBaseError(path, f"{SHIPPED_MANIFEST} is not the manifest of world {key!r}")
        missing = [name for name, kind in MANIFEST_FIELDS.items() if not isinstance(manifest.get(name), kind)]
        if not missing and "model.safetensors" not in manifest["files"]:
            missing = ["files['model.safetensors']"]
        if missing:
            raise ShippedBaseError(path, f"{SHIPPED_MANIFEST} lacks {', '.join(missing)}")
        return cls(path, manifest)

    @property
    def model_sha256(self) -> str:
        """The weights' hash (what the summaries show)."""
        return self.manifest["files"]["model.safetensors"]

    @property
    def kernels(self) -> dict[str, str]:
        """The CPU kernels that trained it (see ``cache.build_kernels``)."""
        return self.manifest["kernels"]

    def check_data(self, data_sha256: dict[str, str]) -> None:
        """Raise unless the world generated here is the one the base was
        trained on (a generator changed without shipping its base anew)."""
        differing = sorted(name for name, digest in self.manifest["data_sha256"].items()
                           if data_sha256.get(name) != digest)
        if differing:
            raise ShippedBaseError(self.path, f"it was trained on other data than this version generates "
                                              f"({', '.join(differing)} differ)")

    def install(self, model_dir: Path) -> None:
        """Copy the base's files into ``model_dir``, checking each against
        its recorded sha256."""
        model_dir.mkdir(parents=True, exist_ok=True)
        for name, digest in sorted(self.manifest["files"].items()):
            source = self.path / name
            if Path(name).name != name or not source.is_file():
                raise ShippedBaseError(self.path, f"file {name!r} is missing")
            data = source.read_bytes()
            found = hashlib.sha256(data).hexdigest()
            if found != digest:
                raise ShippedBaseError(self.path, f"{name} has sha256 {short(found)}…, "
                                                  f"{SHIPPED_MANIFEST} records {short(digest)}…")
            (model_dir / name).write_bytes(data)


def ship(key: str, model_dir: Path, manifest: dict[str, Any], command: str, root: Path | None = None) -> Path:
    """Write the trained base in ``model_dir`` (of the world whose
    ``world.json`` is ``manifest``) as the shipped base of ``key``; returns
    its folder."""
    target = (root or bases_root()) / key
    try:
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for child in sorted(model_dir.iterdir()):
            if child.is_file():
                shutil.copyfile(child, target / child.name)
    except OSError as error:
        raise ShipError(target, error.strerror or str(error)) from None
    record = {
        "key": key, "files": file_hashes(target), "data_sha256": manifest["data_sha256"],
        "kernels": manifest["kernels"], "rebuild": command,
        **{name: manifest[name] for name in TRAINING_RECORD},
        "train_s": manifest["timings"]["train_s"],
    }
    (target / SHIPPED_MANIFEST).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target
