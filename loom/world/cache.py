"""Building and caching world artefacts.

``build_world(preset, seed)`` generates the world, installs the base shipped
for it (or trains the tokenizer and the base when none is shipped, or when
asked to), evaluates it and writes everything to a folder keyed by generator
version, preset and seed under the user cache directory (or ``out``). A
complete folder is reused instead of rebuilt, after checking its model files
against the hashes recorded when it was built. Files are JSON, JSONL and
safetensors only. This module knows the pipeline's order, not its internals.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from meta_spider.plugins.errors import MetaSpiderError

from .generator import ALL_SPLITS, GENERATOR_VERSION, SHIFT_SPLITS, QAItem, World, generate_world
from .knowledge import KnowledgeBase
from .presets import Preset, get_preset
from .shipped import TRAINING_RECORD, ShippedBase, file_hashes, short

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

CACHE_ENV_VAR = "META_SPIDER_WORLD_CACHE"
"""Overrides the cache root (tests point it at a temporary folder)."""
MANIFEST = "world.json"
MODEL_DIR = "model"


class WorldBuildError(MetaSpiderError, RuntimeError, fields=("path", "problem")):
    """A world folder exists but is incomplete or from another build."""

    template = ("world folder {path}: {problem}; delete it (the next use builds it again) or build elsewhere "
                "(`metaloom world build --out DIR`, or META_SPIDER_WORLD_CACHE=DIR)")


def cache_root() -> Path:
    """Root of cached worlds: ``$META_SPIDER_WORLD_CACHE`` or the user cache
    directory of meta-spider."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("meta-spider")) / "world"


def cache_key(preset: Preset, seed: int) -> str:
    """Folder name for ``preset`` and ``seed``; a changed preset definition
    changes the key through its hash."""
    digest = hashlib.sha256(json.dumps(preset.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return f"v{GENERATOR_VERSION}-{preset.name}-{digest}-seed{seed}"


@dataclass
class WorldArtifacts:
    """A built world on disk plus lazy access to its parts."""

    path: Path
    preset: Preset
    seed: int
    manifest: dict[str, Any]

    @property
    def model_dir(self) -> Path:
        """The ``save_pretrained`` folder (model + tokenizer)."""
        return self.path / MODEL_DIR

    @property
    def metrics(self) -> dict[str, Any]:
        """Evaluation results recorded at build time."""
        return self.manifest["metrics"]

    def world(self) -> World:
        """Regenerate the world (deterministic, cheap) for its people and QA."""
        return generate_world(self.preset.world, self.seed)

    def knowledge_base(self) -> KnowledgeBase:
        """The full-truth knowledge base behind the lookup tool."""
        return KnowledgeBase.from_people(self.world().people)

    def qa(self, split: str) -> list[QAItem]:
        """QA items of ``split`` (train, validation, test or a shifted test split)."""
        if split not in ALL_SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {ALL_SPLITS}")
        return self.world().qa[split]

    def load_model(self) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"]:
        """The trained base and its tokenizer through the Auto classes."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return AutoModelForCausalLM.from_pretrained(self.model_dir), AutoTokenizer.from_pretrained(self.model_dir)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Write ``records`` as UTF-8 JSONL with sorted keys (byte-stable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")


def export_data(world: World, out: Path) -> dict[str, str]:
    """Write the corpus, the QA splits and the people as JSONL under ``out``;
    returns file name -> sha256."""
    write_jsonl(out / "corpus.jsonl", world.documents)
    for split in ALL_SPLITS:
        write_jsonl(out / f"qa_{split}.jsonl", [item.to_dict() for item in world.qa[split]])
    write_jsonl(out / "people.jsonl", [vars(p) for p in world.people])
    names = ["corpus.jsonl", "people.jsonl"] + [f"qa_{s}.jsonl" for s in ALL_SPLITS]
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in names}


def build_world(preset: str | Preset = "small", seed: int = 0, out: str | Path | None = None,
                progress: bool = True, force: bool = False, train: bool = False) -> WorldArtifacts:
    """Build (or reuse) the world of ``preset`` and ``seed``.

    Writes data JSONL, the tokenizer and the base (``model/``), and
    ``world.json`` with timings and metrics. The base is the one shipped
    for this world (:mod:`.shipped`) when there is one, else it is trained
    here; ``train`` trains it here in any case. A folder holding a complete
    ``world.json`` for the same key is reused unless ``force`` (or unless
    ``train`` and its base was not trained here).
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    key = cache_key(preset, seed)
    path = Path(out) if out is not None else cache_root() / key
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two processes asking for the same world (parallel test runs) build it
    # once: the second waits for the first and then reuses its folder.
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_or_reuse(preset, seed, key, path, progress, force, train)


def base_source(manifest: dict[str, Any]) -> str:
    """Where a built world's base came from: "shipped" or "trained" (worlds
    built before bases were shipped trained theirs)."""
    return manifest.get("base", {}).get("source", "trained")


def describe_base(manifest: dict[str, Any]) -> str:
    """Where a built world's base came from and how it compares with the
    shipped one, in one line."""
    weights = manifest["model_sha256"]["model.safetensors"]
    shipped = manifest["base"]["shipped_sha256"]
    if base_source(manifest) == "shipped":
        return f"shipped (sha256 {short(weights)}…)"
    if shipped is None:
        return f"trained here (sha256 {short(weights)}…; none is shipped for this world)"
    if shipped == weights:
        return f"trained here, bit-identical to the shipped base (sha256 {short(weights)}…)"
    return (f"trained here (sha256 {short(weights)}…), not the shipped base ({short(shipped)}…): "
            "another kind of CPU or another torch trains other bits; `metaloom world build --force` "
            "installs the shipped one")


def _build_or_reuse(preset: Preset, seed: int, key: str, path: Path, progress: bool, force: bool,
                    train: bool) -> WorldArtifacts:
    manifest_path = path / MANIFEST
    if manifest_path.exists() and not force:
        manifest = _read_manifest(path)
        if manifest.get("key") != key:
            raise WorldBuildError(path, f"holds world {manifest.get('key')!r}, not {key!r}")
        if not train or base_source(manifest) == "trained":
            if "model_sha256" in manifest:
                _check_model(path, manifest)
            elif not (path / MODEL_DIR / "model.safetensors").is_file():
                raise WorldBuildError(path, f"{MODEL_DIR}/model.safetensors is missing")
            else:  # built (and trained) before the hashes were recorded: record them now
                manifest = _record_base(manifest_path, manifest, "trained", ShippedBase.find(key))
            return WorldArtifacts(path=path, preset=preset, seed=seed, manifest=manifest)
    shipped = ShippedBase.find(key)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    from .progress import BuildProgress

    install = shipped is not None and not train
    with BuildProgress(enabled=progress, total_steps=None if install else preset.train.steps) as bar:
        if install:
            manifest = _install(preset, seed, path, shipped, bar.stage)
        else:
            manifest = _build(preset, seed, path, bar.stage, bar.step)
    manifest["key"] = key
    manifest = _record_base(manifest_path, manifest, "shipped" if install else "trained", shipped)
    return WorldArtifacts(path=path, preset=preset, seed=seed, manifest=manifest)


def _read_manifest(path: Path) -> dict[str, Any]:
    """The ``world.json`` of ``path``, checked for what a reuse reads of it
    (the hash and provenance records are checked when present)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WorldBuildError(path, f"{MANIFEST} does not read as JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise WorldBuildError(path, f"{MANIFEST} is not a JSON object")
    hashes, base = manifest.get("model_sha256", {}), manifest.get("base", {})
    if not (isinstance(hashes, dict) and all(isinstance(v, str) for v in hashes.values())
            and isinstance(base, dict) and base.get("source", "trained") in ("shipped", "trained")
            and isinstance(base.get("shipped_sha256"), (str, type(None)))):
        raise WorldBuildError(path, f"{MANIFEST} has a malformed model_sha256 or base record")
    return manifest


def _record_base(manifest_path: Path, manifest: dict[str, Any], source: str,
                 shipped: ShippedBase | None) -> dict[str, Any]:
    """Write ``manifest`` with the model files' hashes and where the base
    came from; returns it as a later reuse reads it back (tuples become
    lists, so both agree)."""
    manifest["model_sha256"] = file_hashes(manifest_path.parent / MODEL_DIR)
    manifest["base"] = {"source": source, "shipped_sha256": None if shipped is None else shipped.model_sha256}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return json.loads(manifest_path.read_text())


def _check_model(path: Path, manifest: dict[str, Any]) -> None:
    """Raise unless the model files still have the hashes recorded when the
    folder was built."""
    recorded = manifest["model_sha256"]
    found = file_hashes(path / MODEL_DIR) if (path / MODEL_DIR).is_dir() else {}
    for name, digest in sorted(recorded.items()):
        if found.get(name) != digest:
            problem = ("is missing" if name not in found else
                       f"has sha256 {short(found[name])}…, not the {short(digest)}… recorded when it was built")
            raise WorldBuildError(path, f"{MODEL_DIR}/{name} {problem}")


def _evaluate(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", world: World,
              preset: Preset) -> dict[str, Any]:
    """The base's metrics on the world's splits, on the preset's thread count."""
    import torch

    from .evaluate import evaluate_world

    threads = torch.get_num_threads()
    torch.set_num_threads(preset.train.threads)
    try:
        return evaluate_world(model, tokenizer, world.qa["validation"], world.qa["test"],
                              shifts={split: world.qa[split] for split in SHIFT_SPLITS},
                              frames=preset.world.frames)
    finally:
        torch.set_num_threads(threads)


def _install(preset: Preset, seed: int, path: Path, shipped: ShippedBase,
             stage: Callable[[str], None]) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    timings: dict[str, float] = {}
    started = time.perf_counter()
    stage("generating world")
    world = generate_world(preset.world, seed)
    hashes = export_data(world, path)
    shipped.check_data(hashes)
    timings["generate_s"] = time.perf_counter() - started
    stage(f"installing the shipped base (sha256 {short(shipped.model_sha256)}…)")
    shipped.install(path / MODEL_DIR)
    model = AutoModelForCausalLM.from_pretrained(path / MODEL_DIR)
    tokenizer = AutoTokenizer.from_pretrained(path / MODEL_DIR)
    stage("evaluating")
    mark = time.perf_counter()
    metrics = _evaluate(model, tokenizer, world, preset)
    timings["evaluate_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    recorded = {name: shipped.manifest[name] for name in TRAINING_RECORD}
    return {
        "generator_version": GENERATOR_VERSION, "seed": seed, "preset": preset.to_dict(),
        "data_sha256": hashes, **recorded, "timings": timings, "metrics": metrics, "kernels": shipped.kernels,
    }


def _build(preset: Preset, seed: int, path: Path, stage: Callable[[str], None],
           on_step: Callable[[int, float], None]) -> dict[str, Any]:
    from .model import build_model, checkpoint_model
    from .tokenizer import train_tokenizer
    from .train import train_model

    timings: dict[str, float] = {}
    started = time.perf_counter()
    stage("generating world")
    world = generate_world(preset.world, seed)
    hashes = export_data(world, path)
    timings["generate_s"] = time.perf_counter() - started
    stage("training tokenizer")
    mark = time.perf_counter()
    texts = [doc["text"] for doc in world.documents]
    tokenizer = train_tokenizer(texts, preset.model.vocab_size)
    docs = tokenizer(texts, add_special_tokens=False)["input_ids"]
    timings["tokenizer_s"] = time.perf_counter() - mark
    stage("training base")
    mark = time.perf_counter()
    model = build_model(preset.model, tokenizer, seed)
    losses = train_model(model, docs, preset.train, seed, on_step=on_step)
    timings["train_s"] = time.perf_counter() - mark
    model = checkpoint_model(model, preset.model)  # the same function, in the form that is saved and evaluated
    model.save_pretrained(path / MODEL_DIR)
    tokenizer.save_pretrained(path / MODEL_DIR)
    stage("evaluating")
    mark = time.perf_counter()
    metrics = _evaluate(model, tokenizer, world, preset)
    timings["evaluate_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    return {
        "generator_version": GENERATOR_VERSION, "seed": seed, "preset": preset.to_dict(),
        "data_sha256": hashes, "corpus_tokens": int(sum(len(d) for d in docs)),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "loss_first": losses[0], "loss_last": float(sum(losses[-20:]) / len(losses[-20:])),
        "timings": timings, "metrics": metrics, "kernels": build_kernels(),
    }


KERNEL_SETTINGS: tuple[str, ...] = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")
"""Environment variables that choose torch's CPU kernels."""


def build_kernels() -> dict[str, str]:
    """Which CPU kernels trained the base: torch's capability (AVX2,
    AVX512, ...) and any of :data:`KERNEL_SETTINGS` set. The base is the same
    bits only where these are the same: training is chaotic, and the last
    bits in which AVX-512 and AVX2 kernels differ grow into another model."""
    import torch

    return {"torch_capability": torch.backends.cpu.get_cpu_capability(),
            **{name: os.environ[name] for name in KERNEL_SETTINGS if name in os.environ}}
