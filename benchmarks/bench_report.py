"""How a benchmark here hands over its table: printed, and written to
``--output`` (its folder made) when one is given. The scripts run as
``python benchmarks/NAME.py``, which puts this folder on the import path."""

from __future__ import annotations

from pathlib import Path


def emit(lines: list[str], output: Path | None) -> int:
    """Print ``lines`` as the report, write them to ``output`` too; the exit status."""
    text = "\n".join(lines) + "\n"
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    print(text, end="")
    return 0
