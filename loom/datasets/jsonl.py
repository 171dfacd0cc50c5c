"""User question-answer data in JSONL, and the export that shows the format.

One JSON object per line::

    {"id": "q1", "question": "Who wrote Dune?", "answer": "Frank Herbert",
     "aliases": ["Herbert"]}

``question`` and ``answer`` are required (a number as answer is read as its
text); ``aliases`` (list of strings), ``id`` (string or number; default
``<file stem>-<line>``), ``choices`` (list of strings, making the question
multiple choice; ``answer`` is then a letter, a 0-based index or the text of
a choice) and ``meta`` (object) are optional; any other key is kept in the
example's ``meta``. Blank lines are skipped.

Where the splits come from: ``train=`` / ``validation=`` / ``test=`` name
one file each; ``path=`` a folder (one split per ``<split>.jsonl``) or a
single file, which gives the split ``all`` plus ``train`` / ``validation`` /
``test`` drawn from it by a hash of each id (``split_fractions``), so a
question keeps its split when lines are added. This module knows nothing
about models.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from meta_spider.loom.datasets.base import QAExample, QADataset, SplitDataset, as_bool, canonical_split
from meta_spider.loom.datasets.errors import DatasetFormatError, DatasetNotFoundError
from meta_spider.loom.datasets.mcq import answer_letter

__all__ = ["FORMAT_HINT", "JsonlDataset", "export_jsonl", "read_jsonl"]

FORMAT_HINT = (
    'each line must be a JSON object like {"question": "...", "answer": "...", "aliases": ["..."], "id": "..."} '
    "(question and answer required)"
)

DEFAULT_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
_HASH_SPLITS = ("train", "validation", "test")

PathLike = Union[str, os.PathLike]


def _text_field(record: Mapping[str, Any], key: str, path: Path, line: int) -> str:
    if key not in record:
        raise DatasetFormatError(path, "missing", line=line, field=key, fix=FORMAT_HINT)
    value = record[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DatasetFormatError(path, f"must be a non-empty string, got {value!r}", line=line, field=key,
                                 fix=FORMAT_HINT)
    return value


def _string_list(record: Mapping[str, Any], key: str, path: Path, line: int) -> Optional[tuple[str, ...]]:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DatasetFormatError(path, f"must be a list of strings, got {value!r}", line=line, field=key,
                                 fix=FORMAT_HINT)
    return tuple(value)


def parse_record(record: Any, path: Path, line: int, default_id: str) -> QAExample:
    """One JSONL record as a :class:`QAExample`; raises
    :class:`DatasetFormatError` naming the file, line and field."""
    if not isinstance(record, dict):
        raise DatasetFormatError(path, f"expected a JSON object, got {type(record).__name__}", line=line,
                                 fix=FORMAT_HINT)
    question = _text_field(record, "question", path, line)
    aliases = _string_list(record, "aliases", path, line) or ()
    choices = _string_list(record, "choices", path, line)
    if choices is not None and len(choices) < 2:
        raise DatasetFormatError(path, f"needs at least two choices, got {list(choices)!r}", line=line,
                                 field="choices")
    if "answer" not in record:
        raise DatasetFormatError(path, "missing", line=line, field="answer", fix=FORMAT_HINT)
    if choices is not None:
        try:
            answer = answer_letter(record["answer"], choices)
        except ValueError as error:
            raise DatasetFormatError(path, str(error), line=line, field="answer") from None
    else:
        answer = _text_field(record, "answer", path, line)
    raw_id = record.get("id", default_id)
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
        raise DatasetFormatError(path, f"must be a non-empty string or a number, got {raw_id!r}", line=line,
                                 field="id")
    meta = record.get("meta", {})
    if not isinstance(meta, dict):
        raise DatasetFormatError(path, f"must be a JSON object, got {meta!r}", line=line, field="meta")
    known = {"id", "question", "answer", "aliases", "choices", "meta"}
    meta = {**meta, **{k: v for k, v in record.items() if k not in known}}
    return QAExample(id=str(raw_id), question=question, answer=answer, aliases=aliases, choices=choices, meta=meta)


def read_jsonl(path: PathLike) -> list[QAExample]:
    """Every example in one JSONL file. Raises :class:`DatasetNotFoundError`
    for a missing file and :class:`DatasetFormatError` (file, line, field)
    for bad JSON, a missing or mistyped field, a repeated id or no examples."""
    file = Path(path)
    if not file.is_file():
        raise DatasetNotFoundError(file, "JSONL file", "Pass the path of an existing .jsonl file (one JSON object per line).")
    examples: list[QAExample] = []
    seen: dict[str, int] = {}
    with file.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetFormatError(file, f"not valid JSON ({error.msg} at column {error.colno})",
                                         line=line_number, fix=FORMAT_HINT) from None
            example = parse_record(record, file, line_number, f"{file.stem}-{line_number}")
            if example.id in seen:
                raise DatasetFormatError(file, f"id {example.id!r} repeats the one on line {seen[example.id]}",
                                         line=line_number, field="id", fix="Give every question its own id.")
            seen[example.id] = line_number
            examples.append(example)
    if not examples:
        raise DatasetFormatError(file, "holds no examples", fix=FORMAT_HINT)
    return examples


def _hash_fraction(example_id: str) -> float:
    digest = hashlib.sha256(example_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _parse_fractions(value: Any) -> tuple[float, float, float]:
    if isinstance(value, str):
        try:
            value = tuple(float(part) for part in value.split(","))
        except ValueError:
            raise ValueError(f"split_fractions must be three numbers like '0.6,0.2,0.2', got {value!r}") from None
    fractions = tuple(value)
    if len(fractions) != 3 or any(not isinstance(f, (int, float)) or f < 0 for f in fractions) or not (
        abs(sum(fractions) - 1.0) < 1e-9
    ):
        raise ValueError(f"split_fractions must be three non-negative numbers summing to 1, got {value!r}")
    return tuple(float(f) for f in fractions)  # type: ignore[return-value]


def hash_splits(examples: Sequence[QAExample], fractions: Sequence[float]) -> dict[str, list[QAExample]]:
    """Assign each example to train / validation / test by a hash of its id."""
    bounds = (fractions[0], fractions[0] + fractions[1])
    splits: dict[str, list[QAExample]] = {name: [] for name in _HASH_SPLITS}
    for example in examples:
        position = _hash_fraction(example.id)
        name = "train" if position < bounds[0] else "validation" if position < bounds[1] else "test"
        splits[name].append(example)
    return splits


class JsonlDataset(SplitDataset):
    """Questions from JSONL files (see the module docstring for the layout)."""

    def __init__(
        self,
        split_files: Mapping[str, PathLike],
        *,
        name: str = "jsonl",
        split_fractions: Optional[Sequence[float]] = None,
        system_prompt: Optional[str] = None,
        mcq_direct: bool = False,
        options: Optional[Mapping[str, Any]] = None,
    ) -> None:
        if not split_files:
            raise ValueError("JsonlDataset needs at least one split file, got none")
        splits: dict[str, list[QAExample]] = {}
        for split_name, file in split_files.items():
            splits[canonical_split(split_name)] = read_jsonl(file)
        if split_fractions is not None:
            if list(splits) != ["all"]:
                raise ValueError(f"split_fractions applies to a single file only, got splits {sorted(splits)}")
            splits.update(hash_splits(splits["all"], _parse_fractions(split_fractions)))
        super().__init__(name, splits, options=options, system_prompt=system_prompt, mcq_direct=mcq_direct)

    @classmethod
    def from_options(
        cls,
        path: Optional[PathLike] = None,
        train: Optional[PathLike] = None,
        validation: Optional[PathLike] = None,
        test: Optional[PathLike] = None,
        split_fractions: Any = DEFAULT_SPLIT_FRACTIONS,
        system_prompt: Optional[str] = None,
        mcq_direct: Any = False,
        name: str = "jsonl",
    ) -> "JsonlDataset":
        """The ``register_datasets`` factory: ``path=`` (file or folder) or
        ``train=`` / ``validation=`` / ``test=`` files. ``mcq_direct`` (a
        bool or "true"/"false") applies to records with ``choices``."""
        mcq_direct = as_bool(mcq_direct, "mcq_direct")
        options: dict[str, Any] = {
            k: (str(v) if isinstance(v, os.PathLike) else v)
            for k, v in dict(path=path, train=train, validation=validation, test=test,
                             system_prompt=system_prompt, mcq_direct=mcq_direct).items()
            if v not in (None, False)
        }
        explicit = {k: v for k, v in (("train", train), ("validation", validation), ("test", test)) if v is not None}
        if path is not None and explicit:
            raise ValueError(f"give path= or split files ({', '.join(explicit)}=), not both; got path={path!r}")
        fractions = None
        if explicit:
            files: dict[str, PathLike] = explicit
        elif path is None:
            raise ValueError("the jsonl dataset needs path= (a .jsonl file or a folder of <split>.jsonl) "
                             "or train=/validation=/test= files")
        elif Path(path).is_dir():
            files = {p.stem: p for p in sorted(Path(path).glob("*.jsonl"))}
            if not files:
                raise DatasetNotFoundError(path, "JSONL files in folder", "Put one <split>.jsonl per split there "
                                           "(train.jsonl, validation.jsonl, test.jsonl).")
        else:
            files = {"all": path}
            fractions = _parse_fractions(split_fractions)
            options["split_fractions"] = list(fractions)
        return cls(files, name=name, split_fractions=fractions, system_prompt=system_prompt, mcq_direct=mcq_direct,
                   options=options)


def export_jsonl(dataset: QADataset, split: str, path: PathLike) -> int:
    """Write one split of any dataset as JSONL in the format
    :class:`JsonlDataset` reads (so users see what their data must look
    like). Returns the number of examples written; the file is replaced
    atomically."""
    examples: Iterable[QAExample] = dataset.split(split)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    count = 0
    try:
        with temporary.open("w", encoding="utf-8") as handle:
            for example in examples:
                handle.write(json.dumps(example.to_dict(), ensure_ascii=False) + "\n")
                count += 1
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return count
