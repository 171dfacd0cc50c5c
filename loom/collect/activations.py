"""The activation dataset on disk, its one reader and writer: format
constants, the writers of each file and :class:`ActivationDataset` (reading).

A collection is a folder:

- ``collection.json``: ``format_version``, the base ``model`` fingerprint
  (``model_id``, ``hidden_size``, ``num_layers``), ``target_layers``,
  ``read_positions`` (``["prompt", "draft"]``), ``max_new_tokens``, the
  ``dataset`` description, ``num_examples`` (committed so far), ``shards``
  (file names, in order) and ``complete``; plus ``shard_size`` and
  ``questions_sha256`` so a resumed run can prove it continues the same work.
- ``examples.jsonl``: one JSON object per collected example, in order
  (:data:`EXAMPLE_FIELDS`).
- ``shard-NNNNN.safetensors``: the tensors of a contiguous run of examples
  (:data:`SHARD_TENSORS`; ``index_start`` / ``index_end`` in the metadata).

``collection.json`` is the commit point: a shard counts only once it is
listed there, so a crash between writing a shard and listing it leaves an
orphan the collector drops on resume.

Shards are written by :func:`write_shard` with the checkpoints' writer,
:func:`~meta_spider.wrapper.checkpoint.safetensors_bytes` (the header's keys
sorted): the ``safetensors`` package serialises metadata from a hash map
whose order changes between processes, and a resumed collection must be
byte-identical to an uninterrupted one. Files are read with the
``safetensors`` package.

Importing this module does not import torch (command modules read its
constants). It knows nothing about models or questions: the collector
(:mod:`meta_spider.loom.collect.collector`) decides what goes into the rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from meta_spider.plugins.errors import MetaSpiderError

if TYPE_CHECKING:
    import torch

__all__ = [
    "ACTIVATIONS_DIR",
    "COLLECTION_FILE",
    "EXAMPLES_FILE",
    "EXAMPLE_FIELDS",
    "FORMAT_VERSION",
    "PAD_ID",
    "READ_POSITIONS",
    "SHARD_TENSORS",
    "STATE_TENSORS",
    "ActivationDataset",
    "ActivationFormatError",
    "append_example_records",
    "atomic_write_bytes",
    "atomic_write_text",
    "collection_is_complete",
    "example_lines_by_index",
    "pad_rows",
    "read_collection_json",
    "read_committed",
    "read_example_lines",
    "shard_bytes",
    "shard_name",
    "write_collection_json",
    "write_example_lines",
    "write_shard",
]

PathLike = Union[str, os.PathLike]

FORMAT_VERSION = 1
COLLECTION_FILE = "collection.json"
EXAMPLES_FILE = "examples.jsonl"
ACTIVATIONS_DIR = "activations"
"""Where ``metaloom collect`` puts the collection inside a run directory."""
READ_POSITIONS = ("prompt", "draft")
STATE_TENSORS = {"prompt": "states_prompt", "draft": "states_draft"}
"""Read position -> tensor name of its ``[n, L, d]`` states."""
PAD_ID = -1
"""Padding of ``prompt_ids`` / ``answer_ids`` rows (left-aligned)."""

SHARD_TENSORS = (
    "states_prompt", "states_draft", "pass1_correct", "first_token_max_prob", "answer_mean_logprob", "signals",
    "prompt_ids", "prompt_lengths", "answer_ids", "answer_lengths",
)
EXAMPLE_FIELDS = (
    "index", "id", "split", "question", "ground_truths", "prompt_text", "answer_text", "pass1_correct",
    "answer_token_count",
)
SHARD_PREFIX = "shard-"
SHARD_SUFFIX = ".safetensors"

_SHARD_DTYPES = ("torch.float32", "torch.int64", "torch.uint8")
"""Shard dtypes (by torch's name, so importing this module needs no torch)."""


class ActivationFormatError(MetaSpiderError, fields=("path", "problem", "fix")):
    """A collection folder is missing, incomplete or malformed. ``path`` is
    the offending file or folder."""

    template = "{path}: {problem}. {fix}"

    def __post_init__(self) -> None:
        self.path = Path(self.path)


def shard_name(number: int) -> str:
    """``shard-00012.safetensors`` for shard 12."""
    return f"{SHARD_PREFIX}{number:05d}{SHARD_SUFFIX}"


def _fsync_directory(folder: Path) -> None:
    # A rename is durable only once the directory entry is flushed.
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` through a temporary file, fsync and rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) through a temporary file and a
    rename, so a killed process leaves the old file or the new one."""
    atomic_write_bytes(Path(path), text.encode("utf-8"))


def shard_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """A safetensors file as bytes, deterministic for given inputs
    (:func:`~meta_spider.wrapper.checkpoint.safetensors_bytes`, the writer
    checkpoints use); shards hold float32, uint8 and int64 tensors only."""
    from meta_spider.wrapper.checkpoint import safetensors_bytes

    prepared = {}
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        if str(tensor.dtype) not in _SHARD_DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {tensor.dtype}; shards hold {sorted(_SHARD_DTYPES)}")
        prepared[name] = tensor
    return safetensors_bytes(prepared, {key: str(value) for key, value in metadata.items()})


def write_shard(path: PathLike, tensors: Mapping[str, torch.Tensor], index_start: int, index_end: int) -> None:
    """Write one shard atomically (temporary file, fsync, rename)."""
    atomic_write_bytes(Path(path), shard_bytes(tensors, {"index_start": str(index_start), "index_end": str(index_end)}))


def pad_rows(rows: Sequence[Sequence[int]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [n, width], lengths [n])`` int64, rows left-aligned and padded
    with :data:`PAD_ID`."""
    import torch

    width = max([len(r) for r in rows] + [0]) if width is None else width
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(list(row), dtype=torch.int64)
    return ids, torch.as_tensor([len(r) for r in rows], dtype=torch.int64)


def read_collection_json(folder: PathLike) -> dict[str, Any]:
    """``collection.json`` of ``folder``, checked for the keys readers need."""
    path = Path(folder) / COLLECTION_FILE
    if not path.is_file():
        raise ActivationFormatError(path, "is missing (this folder holds no activation dataset)",
                                    "run `metaloom collect` (or ActivationDatasetCollector) to write one")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        reason = "nests too deeply" if isinstance(error, RecursionError) else str(error)
        raise ActivationFormatError(path, f"is not valid JSON ({reason})", "collect again into a new folder") from None
    required = ("format_version", "model", "target_layers", "num_examples", "shards", "complete")
    missing = [key for key in required if not isinstance(data, dict) or key not in data]
    if missing:
        raise ActivationFormatError(path, f"lacks {missing}", "collect again into a new folder")
    if data["format_version"] != FORMAT_VERSION:
        raise ActivationFormatError(path, f"has format_version {data['format_version']!r:.80}; this meta-spider "
                                    f"reads {FORMAT_VERSION}", "collect again with this version")
    count, shards = data["num_examples"], data["shards"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ActivationFormatError(path, f"has num_examples {count!r:.80}, not a count", "collect again")
    if not isinstance(shards, list) or not all(isinstance(name, str) and _is_plain_name(name) for name in shards):
        raise ActivationFormatError(path, f"has shards {shards!r:.80}, not a list of file names in the folder",
                                    "collect again into a new folder")
    if not isinstance(data["complete"], bool) or not isinstance(data["target_layers"], list):
        raise ActivationFormatError(path, "has a 'complete' that is not true/false or 'target_layers' that is "
                                    "not a list", "collect again into a new folder")
    return data


def _is_plain_name(name: str) -> bool:
    # A shard is a file of the collection folder: never a path that leads out of it.
    return bool(name) and Path(name).name == name and name not in (".", "..")


def collection_is_complete(folder: PathLike) -> bool:
    """True once ``folder`` holds a committed, complete collection; False
    while its ``collection.json`` is missing or cannot be read yet."""
    try:
        return read_collection_json(folder)["complete"] is True
    except (ActivationFormatError, OSError):
        return False


def write_collection_json(folder: PathLike, info: Mapping[str, Any]) -> None:
    """Write ``info`` as ``folder``'s ``collection.json``, atomically: this
    is the commit point of everything written before it."""
    atomic_write_text(Path(folder) / COLLECTION_FILE, json.dumps(info, indent=2, ensure_ascii=False) + "\n")


def append_example_records(folder: PathLike, records: Iterable[Mapping[str, Any]]) -> None:
    """Append one ``examples.jsonl`` line per record (its
    :data:`EXAMPLE_FIELDS`, in that order), fsynced before the commit."""
    lines = [json.dumps({key: record[key] for key in EXAMPLE_FIELDS}, ensure_ascii=False) + "\n"
             for record in records]
    _write_lines(Path(folder) / EXAMPLES_FILE, "".join(lines).encode("utf-8"), "ab")


def write_example_lines(folder: PathLike, lines: Iterable[bytes]) -> None:
    """Write ``examples.jsonl`` from lines already encoded (a merge keeps
    each rank's bytes), fsynced."""
    _write_lines(Path(folder) / EXAMPLES_FILE, b"".join(lines), "wb")


def _write_lines(path: Path, data: bytes, mode: str) -> None:
    with open(path, mode) as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def _example_lines(file: Path, count: int | None) -> Iterator[tuple[dict[str, Any], bytes]]:
    """``(record, line)`` for the first ``count`` (default: all) complete
    lines of an ``examples.jsonl``; a last line without its newline (a write
    cut short) is not complete."""
    done = 0
    with file.open("rb") as stream:
        for line in stream:
            if count is not None and done >= count:
                break
            if not line.endswith(b"\n"):
                break
            try:
                example = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
                raise ActivationFormatError(file, f"line {done + 1} is not a JSON record "
                                            f"({type(error).__name__})", "collect again into a new folder") from None
            if not isinstance(example, dict):
                raise ActivationFormatError(file, f"line {done + 1} is not a JSON object",
                                            "collect again into a new folder")
            done += 1
            yield example, line


def read_example_lines(path: PathLike, count: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """The first ``count`` (default: all) complete lines of an
    ``examples.jsonl`` as dicts, and the byte offset where they end. A last
    line without its newline (a write cut short) is not complete."""
    file = Path(path)
    if not file.is_file():
        return [], 0
    examples: list[dict[str, Any]] = []
    end = 0
    for example, line in _example_lines(file, count):
        examples.append(example)
        end += len(line)
    return examples, end


def example_lines_by_index(path: PathLike) -> dict[int, bytes]:
    """Each complete line of an ``examples.jsonl``, as written, keyed by
    its record's ``index``."""
    file = Path(path)
    lines: dict[int, bytes] = {}
    for number, (example, line) in enumerate(_example_lines(file, None), 1):
        index = example.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            raise ActivationFormatError(file, f"line {number} has index {index!r:.80}, not an int",
                                        "collect again into a new folder")
        lines[index] = line
    return lines


def read_committed(folder: Path, info: dict[str, Any], fix: str) -> tuple[list[dict[str, Any]], int]:
    """The examples ``collection.json`` (``info``) commits and the byte
    offset where they end in ``examples.jsonl``; raises
    :class:`ActivationFormatError` with ``fix`` when a committed line or
    shard is missing."""
    count = int(info["num_examples"])
    examples, end = read_example_lines(folder / EXAMPLES_FILE, count)
    if len(examples) != count:
        raise ActivationFormatError(folder / EXAMPLES_FILE, f"holds {len(examples)} complete lines, "
                                    f"collection.json commits {count}", fix)
    for name in info["shards"]:
        if not (folder / name).is_file():
            raise ActivationFormatError(folder / name, "is listed in collection.json but missing", fix)
    return examples, end


class ActivationDataset:
    """A collected activation dataset (see the module docstring).

    ``examples`` are the ``examples.jsonl`` records; :meth:`tensor`
    concatenates one tensor over the shards (padded id tensors are widened
    to the widest shard with :data:`PAD_ID`). Loading reads the JSON at once
    and the shards on first use.
    """

    def __init__(self, folder: PathLike, info: dict[str, Any], examples: list[dict[str, Any]]) -> None:
        self.folder = Path(folder)
        self.info = info
        self.examples = examples
        self._cache: dict[str, torch.Tensor] = {}
        self.scratch: Any = None
        """Keeps a collector's temporary folder alive as long as this dataset."""

    @classmethod
    def load(cls, path: PathLike, *, allow_incomplete: bool = False) -> ActivationDataset:
        """Open a collection folder. Raises :class:`ActivationFormatError`
        when it is malformed, or incomplete (a collection still running or
        killed) unless ``allow_incomplete`` (then only committed examples)."""
        folder = Path(path)
        info = read_collection_json(folder)
        if not info["complete"] and not allow_incomplete:
            raise ActivationFormatError(folder, f"holds an incomplete collection ({info['num_examples']} examples "
                                        "committed)", "resume it by running the same collect command again")
        examples, _ = read_committed(folder, info, "resume the collection to repair it")
        return cls(folder, info, examples)

    # ------------------------------------------------------------ metadata

    def __len__(self) -> int:
        return len(self.examples)

    def __repr__(self) -> str:
        return f"ActivationDataset({str(self.folder)!r}, n={len(self)}, layers={self.target_layers})"

    @property
    def model(self) -> dict[str, Any]:
        """The base fingerprint (``model_id``, ``hidden_size``, ``num_layers``)."""
        return dict(self.info["model"])

    @property
    def target_layers(self) -> list[int]:
        return list(self.info["target_layers"])

    @property
    def max_new_tokens(self) -> int:
        return int(self.info["max_new_tokens"])

    @property
    def dataset(self) -> dict[str, Any]:
        return dict(self.info["dataset"])

    @property
    def complete(self) -> bool:
        return bool(self.info["complete"])

    def split_indices(self, split: str) -> list[int]:
        """Row indices of the examples of ``split`` (``"val"`` -> ``"validation"``)."""
        split = {"val": "validation", "valid": "validation"}.get(split, split)
        return [i for i, example in enumerate(self.examples) if example["split"] == split]

    @property
    def splits(self) -> list[str]:
        """Split names in order of first appearance."""
        return list(dict.fromkeys(example["split"] for example in self.examples))

    # ------------------------------------------------------------ tensors

    def _shard_tensors(self, name: str) -> list[torch.Tensor]:
        from safetensors import safe_open

        parts = []
        from safetensors import SafetensorError

        for shard in self.info["shards"]:
            try:
                with safe_open(str(self.folder / shard), framework="pt") as handle:
                    if name not in handle.keys():  # noqa: SIM118 - safe_open has keys(), no __contains__
                        raise ActivationFormatError(self.folder / shard, f"has no tensor {name!r}",
                                                    f"shards hold {list(SHARD_TENSORS)}")
                    parts.append(handle.get_tensor(name))
            except (SafetensorError, OSError) as error:
                raise ActivationFormatError(self.folder / shard, f"is not a valid safetensors shard ({error})",
                                            "collect again into a new folder") from None
        return parts

    def tensor(self, name: str) -> torch.Tensor:
        """Tensor ``name`` (one of :data:`SHARD_TENSORS`) over all examples."""
        if name not in SHARD_TENSORS:
            raise KeyError(f"unknown tensor {name!r}; an activation dataset holds {list(SHARD_TENSORS)}")
        if name not in self._cache:
            parts = self._shard_tensors(name)
            if not parts:
                raise ActivationFormatError(self.folder, "holds no shards", "collect at least one example")
            import torch

            if parts[0].dim() == 2 and name.endswith("_ids"):
                width = max(p.shape[1] for p in parts)
                parts = [torch.nn.functional.pad(p, (0, width - p.shape[1]), value=PAD_ID) for p in parts]
            self._cache[name] = torch.cat(parts)[: len(self)]
        return self._cache[name]

    def states(self, read_position: str) -> torch.Tensor:
        """``[n, L, d]`` float32 states at ``read_position`` (``"prompt"``
        or ``"draft"``)."""
        if read_position not in STATE_TENSORS:
            raise ValueError(f"read_position must be one of {READ_POSITIONS}, got {read_position!r}")
        return self.tensor(STATE_TENSORS[read_position])

    @property
    def recorded_signals(self) -> tuple[str, ...]:
        """The pass-1 signals the collection recorded, in their column order
        (empty for a collection made before signals were recorded)."""
        return tuple(self.info.get("signals") or ())

    def signals(self, names: Sequence[str]) -> torch.Tensor:
        """``[n, K]`` float32 pass-1 signals ``names`` (see
        :mod:`meta_spider.wrapper.signals`), columns in that order. Raises
        :class:`ActivationFormatError` naming the signals it lacks (a
        collection from before they were recorded)."""
        from meta_spider.wrapper.signals import check_signal_names, reads_occlusion, reads_reference

        names = check_signal_names(names)
        stored = list(self.recorded_signals)
        missing = [name for name in names if name not in stored]
        if missing:
            option = " --pmi-signals" * reads_reference(missing) + " --occlusion-signals" * reads_occlusion(missing)
            raise ActivationFormatError(self.folder, "was collected before pass-1 signals were recorded"
                                        if not stored else f"records the signals {stored}, not {missing}",
                                        f"collect again (`metaloom collect{option}` into a new run directory)")
        return self.tensor("signals")[:, [stored.index(name) for name in names]]

    def log_reference(self) -> torch.Tensor:
        """``[V]`` float32 log p_ref, the base's mean next-token distribution
        over the training prompts that the PMI signals read (checked against
        the hash ``collection.json`` records; see
        :mod:`meta_spider.loom.collect.reference`)."""
        from meta_spider.loom.collect.reference import read_reference

        return read_reference(self.folder, self.info.get("reference"))

    def prompt_ids(self, index: int) -> list[int]:
        """The prompt token ids of example ``index`` (unpadded)."""
        return self.tensor("prompt_ids")[index, : int(self.tensor("prompt_lengths")[index])].tolist()

    def answer_ids(self, index: int) -> list[int]:
        """The greedy answer's token ids of example ``index`` (unpadded;
        ends with the end-of-turn token when the base stopped by itself)."""
        return self.tensor("answer_ids")[index, : int(self.tensor("answer_lengths")[index])].tolist()

    def save(self, path: PathLike) -> Path:
        """Copy this collection to ``path`` (a new or empty folder)."""
        import shutil

        target = Path(path)
        if target.resolve() == self.folder.resolve():
            return target
        if target.exists() and any(target.iterdir()):
            raise FileExistsError(f"{target} is not empty; save an activation dataset into a new or empty folder")
        target.mkdir(parents=True, exist_ok=True)
        for name in [*self.info["shards"], EXAMPLES_FILE, COLLECTION_FILE]:
            shutil.copyfile(self.folder / name, target / name)
        return target
