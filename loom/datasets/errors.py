"""Typed errors of the dataset loaders.

Each carries the data that names the problem (file, line, field, split) and
a message that says how to fix it. Constructors never log.
"""

from __future__ import annotations

from pathlib import Path

from meta_spider.plugins.errors import MetaSpiderError

__all__ = ["DatasetDependencyError", "DatasetError", "DatasetFormatError", "DatasetNotFoundError", "UnknownSplitError"]


class DatasetError(MetaSpiderError):
    """Base class for dataset loading errors."""


class DatasetNotFoundError(DatasetError, FileNotFoundError, fields=("path", "what", "fix")):
    """A dataset file or folder is not where the options say."""

    template = "{what} not found: {path}. {fix}"

    def __post_init__(self) -> None:
        self.path = Path(self.path)


class DatasetFormatError(DatasetError, ValueError, fields=("path", "problem", "line", "field", "fix", "unit")):
    """A dataset file exists but a record in it is malformed.

    ``line`` is the 1-based line (JSONL, CSV) or record number (JSON,
    parquet), counted in ``unit``s; ``field`` the offending field, when one
    is to blame.
    """

    line = None
    field = None
    fix = ""
    unit = "line"

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def describe(self) -> str:
        where = str(self.path) + (f", {self.unit} {self.line}" if self.line is not None else "")
        what = f"field {self.field!r}: " if self.field else ""
        return f"{where}: {what}{self.problem}" + (f". {self.fix}" if self.fix else "")


class UnknownSplitError(DatasetError, LookupError, fields=("dataset", "split", "available")):
    """A split was asked for that the dataset does not have."""

    def __post_init__(self) -> None:
        self.available = tuple(self.available)

    def describe(self) -> str:
        return (f"dataset {self.dataset!r} has no split {self.split!r}; "
                f"available: {', '.join(self.available) or '(none)'}")


class DatasetDependencyError(DatasetError, ImportError, fields=("package", "purpose", "alternative")):
    """An optional package a dataset source needs is not installed."""

    alternative = ""

    def describe(self) -> str:
        return (f"{self.purpose} needs the {self.package!r} package, which is not installed: pip install {self.package}"
                + (f", or {self.alternative}" if self.alternative else ""))
