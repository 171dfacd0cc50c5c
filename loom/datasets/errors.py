"""Typed errors of the dataset loaders.

Each carries the data that names the problem (file, line, field, split) and
a message that says how to fix it. Constructors never log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from meta_spider.plugins.errors import MetaSpiderError

__all__ = [
    "DatasetDependencyError",
    "DatasetError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "UnknownSplitError",
]


class DatasetError(MetaSpiderError):
    """Base class for dataset loading errors."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset file or folder is not where the options say."""

    def __init__(self, path: str | Path, what: str, fix: str) -> None:
        self.path = Path(path)
        self.what = what
        self.fix = fix
        super().__init__(f"{what} not found: {self.path}. {fix}")


class DatasetFormatError(DatasetError, ValueError):
    """A dataset file exists but a record in it is malformed.

    ``line`` is the 1-based line (JSONL, CSV) or record number (JSON,
    parquet); ``field`` the offending field, when one is to blame.
    """

    def __init__(
        self,
        path: str | Path,
        problem: str,
        *,
        line: Optional[int] = None,
        field: Optional[str] = None,
        fix: str = "",
        unit: str = "line",
    ) -> None:
        self.path = Path(path)
        self.problem = problem
        self.line = line
        self.field = field
        self.fix = fix
        where = str(self.path) + (f", {unit} {line}" if line is not None else "")
        what = f"field {field!r}: " if field else ""
        super().__init__(f"{where}: {what}{problem}" + (f". {fix}" if fix else ""))


class UnknownSplitError(DatasetError, LookupError):
    """A split was asked for that the dataset does not have."""

    def __init__(self, dataset: str, split: str, available: Sequence[str]) -> None:
        self.dataset = dataset
        self.split = split
        self.available = tuple(available)
        super().__init__(
            f"dataset {dataset!r} has no split {split!r}; available: {', '.join(self.available) or '(none)'}"
        )


class DatasetDependencyError(DatasetError, ImportError):
    """An optional package a dataset source needs is not installed."""

    def __init__(self, package: str, purpose: str, alternative: str = "") -> None:
        self.package = package
        self.purpose = purpose
        super().__init__(
            f"{purpose} needs the {package!r} package, which is not installed: pip install {package}"
            + (f", or {alternative}" if alternative else "")
        )
