"""What every benchmark here does with its output: print each line as it
comes and, with ``--output FILE``, keep them in FILE (the results files in
``benchmarks/results/``). Imported by the scripts as ``from report import
Report`` (they run as ``python benchmarks/NAME.py``, with this folder first
on the path)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


class Report:
    """Lines printed as they are said, and written out at the end."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def write(self, path: Optional[Path]) -> None:
        """Write every line said so far to ``path`` (nothing for None)."""
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")
