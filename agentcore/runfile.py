"""``run.json`` on disk: the one module that reads and writes the file.

A run directory's ``run.json`` is read at three levels, all from the one
:class:`RunFile` that :func:`read_run_file` returns:

file (here)
    UTF-8 JSON holding an object; ``external_paths``, when present, is a
    list of path strings. Anything else is a :class:`RunFileError` naming
    the file, the problem and the fix. Every reader starts here.
agent (:func:`meta_spider.agentcore.rundir.read_run_settings`)
    Every field optional; only the fields the agent uses are checked. A
    run.json with only ``backends`` is a complete agent run.
manifest (:class:`meta_spider.loom.manifest.RunManifest`)
    ``model.name`` and ``dataset.name`` required, every known field
    validated, older layouts upgraded, unknown fields kept.

Paths in the file are strings, relative ones relative to the run directory
(:func:`resolve_run_path`). One leading outside it is used with a warning
unless the project's own commands recorded it in ``external_paths``.
:func:`write_run_file` replaces the file atomically. This module knows the
file, not what its fields mean.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping

from meta_spider.agentcore.errors import AgentError

__all__ = [
    "EXTERNAL_PATHS_FIELD",
    "RUN_FILE",
    "RunFile",
    "RunFileError",
    "is_path_setting",
    "path_is_inside",
    "read_run_file",
    "resolve_run_path",
    "write_run_file",
]

RUN_FILE = "run.json"
EXTERNAL_PATHS_FIELD = "external_paths"
"""run.json's list of the paths outside the run directory that the
project's own commands wrote (no warning for those)."""

logger = logging.getLogger(__name__)


class RunFileError(AgentError, ValueError, fields=("path", "field", "problem", "fix")):
    """``run.json`` (or a file it names) is missing or malformed. ``field``
    is the dotted path of the offending field (None for the file as a whole)."""

    template = "{where}: {problem}. {fix}"

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.where = f"{self.path}: field {self.field!r}" if self.field else str(self.path)


def is_path_setting(key: str) -> bool:
    """True for the setting names that hold a file path."""
    return key == "checkpoint" or key.endswith("_path")


def path_is_inside(run_dir: Path, recorded: str) -> bool:
    """True when ``recorded`` (relative to ``run_dir`` unless absolute)
    leads to a place inside ``run_dir``, symlinks and ``..`` followed."""
    path = Path(recorded).expanduser()
    resolved = path if path.is_absolute() else run_dir / path
    try:
        resolved.resolve().relative_to(run_dir.resolve())
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False
    return True


def resolve_run_path(run_dir: Path, recorded: str, *, field_name: str, source: str,
                     trusted: Collection[str] = ()) -> Path:
    """``recorded`` (a path as run.json holds it) as a real path: relative
    ones are relative to ``run_dir``. One that leads outside the run
    directory is returned as well, with a warning naming the field, unless it
    is one of ``trusted`` (the paths the project itself recorded)."""
    path = Path(recorded).expanduser()
    resolved = path if path.is_absolute() else run_dir / path
    if recorded not in trusted and not path_is_inside(run_dir, recorded):
        logger.warning(
            "%s: %s points outside the run directory (%s); it was not written by meta-spider's own commands. "
            "Check that the run directory is one you trust, or move the file into it.", source, field_name, resolved,
        )
    return resolved


@dataclass(frozen=True)
class RunFile:
    """``run.json`` as read: the decoded object and where it came from."""

    path: Path
    """``<run_dir>/run.json``, as the run directory was given."""
    data: dict[str, Any]
    """The decoded top-level object (fields unchecked beyond the file level)."""

    @property
    def external_paths(self) -> list[str]:
        """The outside paths the project's own commands recorded."""
        return list(self.data.get(EXTERNAL_PATHS_FIELD, []))


def read_run_file(run_dir: str | os.PathLike[str]) -> RunFile:
    """Read ``<run_dir>/run.json`` to the file level (see the module
    docstring); raises :class:`RunFileError` naming the problem and the fix."""
    path = Path(run_dir).expanduser() / RUN_FILE
    command = f"`metaloom collect --run-dir {run_dir} --model-name MODEL --dataset NAME`"
    collect = f"run {command}"
    if not path.is_file():
        what = "run directory does not exist" if not path.parent.is_dir() else "run.json is missing"
        raise RunFileError(path, None, what, f"Run {command} first, or pass the run directory that "
                           "collect wrote.")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise RunFileError(path, None, f"cannot be read ({exc.strerror})", "Check its permissions.") from None
    except UnicodeDecodeError as exc:
        raise RunFileError(path, None, f"is not UTF-8 text (byte {exc.start})",
                           f"Restore it or {collect} again.") from None
    except json.JSONDecodeError as exc:
        raise RunFileError(path, None, f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
                           f"Fix the JSON syntax there, or {collect} again.") from None
    except RecursionError:
        raise RunFileError(path, None, "nests too deeply", f"Restore it or {collect} again.") from None
    if not isinstance(data, dict):
        raise RunFileError(path, None, f"expected a JSON object, got {type(data).__name__}",
                           f"Restore it or {collect} again.")
    trusted = data.get(EXTERNAL_PATHS_FIELD, [])
    if not isinstance(trusted, list) or not all(isinstance(item, str) for item in trusted):
        raise RunFileError(path, EXTERNAL_PATHS_FIELD, f"expected a list of path strings, got {trusted!r:.80}",
                           f"Remove the field, or {collect} again.")
    return RunFile(path, data)


def write_run_file(run_dir: str | os.PathLike[str], document: Mapping[str, Any]) -> Path:
    """Write ``document`` as ``<run_dir>/run.json`` atomically (a temporary
    file in the run directory, then a rename; the folder is created), so a
    killed process never leaves half a file. Returns the path."""
    path = Path(run_dir) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(dict(document), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{RUN_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
