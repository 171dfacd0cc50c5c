"""Readers that turn local files into lists of plain records (dicts): JSON
arrays, JSONL, parquet (through pyarrow, when installed) and Hugging Face
``datasets`` copies already on disk (``save_to_disk`` folders or the
``datasets`` cache), never downloading anything.

These readers know nothing about what the records mean; the dataset modules
(:mod:`.mmlu`) validate them.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Optional

from meta_spider.loom.datasets.errors import DatasetDependencyError, DatasetFormatError, DatasetNotFoundError

__all__ = ["is_saved_hf_dataset", "load_hf_cached", "load_hf_saved", "read_records"]

_HF_OFFLINE_VARIABLES = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a ``.json`` (array, or an object with a ``data``
    array), ``.jsonl`` or ``.parquet`` file."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix == ".jsonl":
        records = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as error:
                        raise DatasetFormatError(path, f"not valid JSON ({error.msg})", line=number) from None
        return records
    if suffix == ".json":
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise DatasetFormatError(path, f"not valid JSON ({error.msg})", line=error.lineno) from None
        if isinstance(document, dict) and isinstance(document.get("data"), list):
            document = document["data"]
        if not isinstance(document, list):
            raise DatasetFormatError(path, "must hold a JSON array of records (or an object with a 'data' array)")
        return document
    raise DatasetFormatError(path, f"unsupported file type {suffix!r}; use .json, .jsonl or .parquet")


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise DatasetDependencyError(
            "pyarrow", f"reading the parquet file {path}", "convert the data to JSON/JSONL"
        ) from None
    return parquet.read_table(path).to_pylist()


def is_saved_hf_dataset(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``Dataset.save_to_disk`` or
    ``DatasetDict.save_to_disk``."""
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def _import_datasets(purpose: str) -> Any:
    try:
        with _offline_environment():
            import datasets
    except ImportError:
        raise DatasetDependencyError(
            "datasets", purpose, "point path= at CSV/JSON/parquet files instead"
        ) from None
    return datasets


@contextlib.contextmanager
def _offline_environment() -> Iterator[None]:
    # The packages read these variables when first imported; set them only
    # for the duration so a later model download elsewhere in the process
    # is not switched off too.
    saved = {name: os.environ.get(name) for name in _HF_OFFLINE_VARIABLES}
    os.environ.update({name: "1" for name in _HF_OFFLINE_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _offline(datasets: Any) -> Iterator[None]:
    """Offline switches on for one load: the environment and the module
    constants ``datasets`` and ``huggingface_hub`` read them into at import
    (which may have happened before, with the switches off)."""
    modules = [getattr(datasets, "config", None)]
    with contextlib.suppress(ImportError):
        import huggingface_hub.constants

        modules.append(huggingface_hub.constants)
    saved = []
    for module in modules:
        for name in _HF_OFFLINE_VARIABLES:
            if module is not None and hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, True)
    try:
        with _offline_environment():
            yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def _as_split_records(loaded: Any, default_split: str) -> dict[str, list[dict[str, Any]]]:
    # A DatasetDict (a dict subclass) maps split names to Datasets; a lone
    # Dataset is one split.
    if isinstance(loaded, dict):
        return {str(name): [dict(row) for row in rows] for name, rows in loaded.items()}
    return {default_split: [dict(row) for row in loaded]}


def load_hf_saved(path: Path, default_split: str = "test") -> dict[str, list[dict[str, Any]]]:
    """Split name -> records of a ``save_to_disk`` folder (``datasets``'
    ``load_from_disk``; no network)."""
    datasets = _import_datasets(f"reading the saved Hugging Face dataset at {path}")
    with _offline(datasets):
        return _as_split_records(datasets.load_from_disk(str(path)), default_split)


def load_hf_cached(name: str, config: Optional[str], cache_dir: Optional[str] = None) -> dict[str, list[dict[str, Any]]]:
    """Split name -> records of a hub dataset already in the ``datasets``
    cache, loaded with the offline switches on: a copy that is not cached
    raises :class:`DatasetNotFoundError` instead of downloading."""
    datasets = _import_datasets(f"reading the cached Hugging Face dataset {name!r}")
    with _offline(datasets):
        try:
            loaded = datasets.load_dataset(name, config, cache_dir=cache_dir)
        except (ConnectionError, FileNotFoundError, ValueError) as error:
            where = cache_dir or "the default Hugging Face cache"
            raise DatasetNotFoundError(
                where, f"cached copy of {name!r} (config {config!r})",
                f"It is not in the cache and nothing is downloaded here ({type(error).__name__}: {error}). "
                f"Download it once elsewhere with datasets.load_dataset, or point path= at local files.",
            ) from None
    return _as_split_records(loaded, "test")
