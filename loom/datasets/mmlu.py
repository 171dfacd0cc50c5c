"""MMLU from a local copy, in any of its standard layouts; nothing is
downloaded.

* **Original CSV** (the ``data/`` folder of the release): folders ``test``,
  ``val``, ``dev`` (and ``auxiliary_train``) holding ``<subject>_test.csv``,
  ``<subject>_val.csv``, ``<subject>_dev.csv``; no header; columns question,
  A, B, C, D, answer letter.
* **Hugging Face files** (``cais/mmlu`` style): ``.parquet`` / ``.json`` /
  ``.jsonl`` files whose name starts with the split (``test-00000-of-00001``,
  ``validation.jsonl``, ``dev.json``...), with records ``question``,
  ``choices`` (list), ``answer`` (0-based index, or letter) and optionally
  ``subject``; otherwise the subject is the parent folder's name. When an
  ``all/`` folder is present only it is read (the per-subject folders repeat
  it). Parquet needs pyarrow.
* **A ``datasets`` copy on disk**: a ``save_to_disk`` folder (``path=``) or a
  hub dataset already in the ``datasets`` cache (``hf_name=``, offline only).

Examples are multiple choice: ``answer`` is the reference letter, ``meta``
holds ``subject`` and ``source``. Prompts and scoring come from
:class:`~.base.SplitDataset` (lettered choices; ``mcq_direct`` asks for the
letter only and switches reasoning off). This module knows nothing about
models.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from meta_spider.loom.datasets.base import QAExample, SplitDataset, as_bool, canonical_split
from meta_spider.loom.datasets.errors import DatasetFormatError, DatasetNotFoundError
from meta_spider.loom.datasets.mcq import CHOICE_LETTERS, answer_letter
from meta_spider.loom.datasets.sources import is_saved_hf_dataset, load_hf_cached, load_hf_saved, read_records

__all__ = ["CSV_SPLIT_FOLDERS", "MMLUDataset"]

CSV_SPLIT_FOLDERS: dict[str, str] = {"test": "test", "val": "validation", "dev": "dev",
                                     "auxiliary_train": "auxiliary_train"}
"""Folder of the original release -> split name."""

_FILE_SPLIT_PREFIXES = (("auxiliary_train", "auxiliary_train"), ("validation", "validation"), ("val", "validation"),
                        ("test", "test"), ("dev", "dev"), ("train", "train"))
_RECORD_SUFFIXES = (".parquet", ".json", ".jsonl")
_CSV_HINT = "MMLU CSV rows are: question, A, B, C, D, answer letter (no header)"
_RECORD_HINT = "MMLU records need 'question', 'choices' (list of strings) and 'answer' (0-based index or letter)"

PathLike = Union[str, os.PathLike]


def _csv_examples(file: Path, subject: str, split: str) -> list[QAExample]:
    examples = []
    with file.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        for index, row in enumerate(reader):
            if index == 0 and [c.strip().lower() for c in row[:1] + row[5:6]] == ["question", "answer"]:
                continue  # some re-exports add a header row
            if len(row) != 6:
                raise DatasetFormatError(file, f"expected 6 columns, got {len(row)}", line=reader.line_num,
                                         fix=_CSV_HINT)
            question, *choices, answer = row
            if not question.strip():
                raise DatasetFormatError(file, "is empty", line=reader.line_num, field="question", fix=_CSV_HINT)
            letter = answer.strip().upper()
            if letter not in CHOICE_LETTERS[:4] or len(letter) != 1:
                raise DatasetFormatError(file, f"must be one of A, B, C, D, got {answer!r}", line=reader.line_num,
                                         field="answer", fix=_CSV_HINT)
            examples.append(QAExample(
                id=f"{subject}/{split}/{len(examples)}", question=question, answer=letter,
                choices=tuple(choices), meta={"subject": subject, "source": file.name},
            ))
    return examples


def _example_from_record(record: Any, file: Path, number: int, subject: str, split: str, index: int) -> QAExample:
    if not isinstance(record, Mapping):
        raise DatasetFormatError(file, f"expected an object, got {type(record).__name__}", line=number,
                                 unit="record", fix=_RECORD_HINT)
    for key in ("question", "choices", "answer"):
        if key not in record:
            raise DatasetFormatError(file, "missing", line=number, field=key, unit="record", fix=_RECORD_HINT)
    question, choices = record["question"], record["choices"]
    if not isinstance(question, str) or not question.strip():
        raise DatasetFormatError(file, f"must be a non-empty string, got {question!r}", line=number,
                                 field="question", unit="record")
    if not isinstance(choices, (list, tuple)) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise DatasetFormatError(file, f"must be a list of at least two strings, got {choices!r}", line=number,
                                 field="choices", unit="record", fix=_RECORD_HINT)
    try:
        letter = answer_letter(record["answer"], choices)
    except ValueError as error:
        raise DatasetFormatError(file, str(error), line=number, field="answer", unit="record") from None
    subject = str(record.get("subject") or subject)
    return QAExample(id=f"{subject or 'mmlu'}/{split}/{index}", question=question, answer=letter,
                     choices=tuple(choices), meta={"subject": subject, "source": file.name})


def _file_split(file: Path) -> Optional[str]:
    stem = file.name.split(".")[0].lower()
    for prefix, split in _FILE_SPLIT_PREFIXES:
        if stem == prefix or stem.startswith(prefix + "-") or stem.startswith(prefix + "_"):
            return split
    return None


def _csv_layout(root: Path) -> Optional[dict[str, list[QAExample]]]:
    folders = {split: root / folder for folder, split in CSV_SPLIT_FOLDERS.items() if (root / folder).is_dir()}
    files = {split: sorted(folder.glob("*.csv")) for split, folder in folders.items()}
    if not any(files.values()):
        return None
    splits: dict[str, list[QAExample]] = {}
    for split, csv_files in files.items():
        folder_name = folders[split].name
        for file in csv_files:
            subject = file.stem[: -len(folder_name) - 1] if file.stem.endswith("_" + folder_name) else file.stem
            splits.setdefault(split, []).extend(_csv_examples(file, subject, split))
    return splits


def _record_layout(root: Path) -> Optional[dict[str, list[QAExample]]]:
    base = root / "all" if (root / "all").is_dir() else root
    files = sorted(p for p in base.rglob("*") if p.suffix.lower() in _RECORD_SUFFIXES and p.is_file())
    files = [f for f in files if _file_split(f) is not None]
    if not files:
        return None
    splits: dict[str, list[QAExample]] = {}
    for file in files:
        split = _file_split(file) or "test"
        folder_subject = "" if file.parent in (root, base) else file.parent.name
        examples = splits.setdefault(split, [])
        for number, record in enumerate(read_records(file), start=1):
            examples.append(_example_from_record(record, file, number, folder_subject, split, len(examples)))
    return splits


def _from_hf_splits(records: Mapping[str, list[dict[str, Any]]], origin: Path) -> dict[str, list[QAExample]]:
    splits: dict[str, list[QAExample]] = {}
    for split, rows in records.items():
        name = canonical_split(split)
        splits[name] = [_example_from_record(row, origin, number, "", name, number - 1)
                        for number, row in enumerate(rows, start=1)]
    return splits


def _filter_subjects(splits: dict[str, list[QAExample]], subjects: Optional[Sequence[str]]) -> dict[str, list[QAExample]]:
    if not subjects:
        return splits
    wanted = set(subjects)
    found = {example.meta.get("subject") for examples in splits.values() for example in examples}
    missing = sorted(wanted - found)
    if missing:
        raise ValueError(f"subjects {missing} are not in this MMLU copy; it has {sorted(s for s in found if s)}")
    return {split: [e for e in examples if e.meta.get("subject") in wanted] for split, examples in splits.items()}


class MMLUDataset(SplitDataset):
    """MMLU questions from a local copy (see the module docstring)."""

    def __init__(
        self,
        splits: Mapping[str, Sequence[QAExample]],
        *,
        name: str = "mmlu",
        mcq_direct: bool = False,
        system_prompt: Optional[str] = None,
        options: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(name, splits, options=options, system_prompt=system_prompt, mcq_direct=mcq_direct)

    @classmethod
    def load(cls, path: PathLike, **kwargs: Any) -> "MMLUDataset":
        """Read a local folder in any supported layout (see :meth:`from_options`)."""
        return cls.from_options(path=path, **kwargs)

    @classmethod
    def from_options(
        cls,
        path: Optional[PathLike] = None,
        subjects: Union[str, Sequence[str], None] = None,
        mcq_direct: Any = False,
        system_prompt: Optional[str] = None,
        hf_name: Optional[str] = None,
        hf_config: Optional[str] = "all",
        cache_dir: Optional[PathLike] = None,
        name: str = "mmlu",
    ) -> "MMLUDataset":
        """The ``register_datasets`` factory. ``path=`` a local copy (CSV,
        JSON/JSONL/parquet or a ``save_to_disk`` folder); or ``hf_name=``
        (with ``hf_config``, ``cache_dir``) for a copy in the ``datasets``
        cache. ``subjects`` keeps only those subjects (list or
        comma-separated). ``mcq_direct`` accepts a bool or "true"/"false"."""
        if isinstance(subjects, str):
            subjects = [s.strip() for s in subjects.split(",") if s.strip()]
        direct = as_bool(mcq_direct, "mcq_direct")
        options: dict[str, Any] = {"mcq_direct": direct}
        if subjects:
            options["subjects"] = list(subjects)
        if system_prompt:
            options["system_prompt"] = system_prompt
        if (path is None) == (hf_name is None):
            raise ValueError(
                f"the mmlu dataset needs exactly one of path= (a local copy) or hf_name= (a cached hub copy), "
                f"got path={path!r}, hf_name={hf_name!r}"
            )
        if hf_name is not None:
            options.update(hf_name=hf_name, hf_config=hf_config)
            if cache_dir is not None:
                options["cache_dir"] = str(cache_dir)
            records = load_hf_cached(hf_name, hf_config, None if cache_dir is None else str(cache_dir))
            splits = _from_hf_splits(records, Path(cache_dir or hf_name))
        else:
            root = Path(path)
            options["path"] = str(root)
            splits = _read_local(root)
        return cls(_filter_subjects(splits, subjects), name=name, mcq_direct=direct, system_prompt=system_prompt,
                   options=options)


def _read_local(root: Path) -> dict[str, list[QAExample]]:
    if not root.exists():
        raise DatasetNotFoundError(root, "MMLU folder", "Point path= at a local MMLU copy (the release's data/ "
                                   "folder, Hugging Face parquet/JSON files, or a save_to_disk folder).")
    if root.is_dir() and is_saved_hf_dataset(root):
        return _from_hf_splits(load_hf_saved(root), root)
    candidates: Iterable[Path] = (root, root / "data") if root.is_dir() else ()
    for folder in candidates:
        if folder.is_dir():
            for layout in (_csv_layout, _record_layout):
                splits = layout(folder)
                if splits:
                    return splits
    raise DatasetNotFoundError(
        root, "MMLU data in a known layout",
        "Expected test/ val/ dev/ folders of <subject>_<split>.csv files, or .parquet/.json/.jsonl files named by "
        "split (test..., validation..., dev...), or a datasets save_to_disk folder.",
    )
