"""Progress display for long loom work (collection, evaluation, the world
build): rich bars with a count, a rate and an ETA, on the caller's console.

A disabled display does nothing at all (it never starts a live display),
so library callers, quiet commands and tests stay silent. One display can hold
several lines (the world build shows its stage above the training bar);
:func:`progress_bar` is the common one-bar case.

This module knows nothing about what is being counted.
"""

from __future__ import annotations

from contextlib import contextmanager
from types import TracebackType
from typing import Any, Iterator, Optional

__all__ = ["ProgressDisplay", "ProgressLine", "progress_bar"]


class ProgressLine:
    """One line of a :class:`ProgressDisplay`: advance it or change its
    count and description. A line of a disabled display ignores every call."""

    def __init__(self, bar: Any = None, task: Any = None) -> None:
        self._bar, self._task = bar, task

    def advance(self, count: int = 1) -> None:
        """Count ``count`` more units done."""
        if self._bar is not None:
            self._bar.advance(self._task, count)

    def update(self, *, completed: Optional[int] = None, description: Optional[str] = None) -> None:
        """Set the number done and/or the description."""
        if self._bar is not None:
            changes = {key: value for key, value in (("completed", completed), ("description", description))
                       if value is not None}
            self._bar.update(self._task, **changes)


def _columns() -> tuple[Any, ...]:
    from rich.progress import (BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Units per second, for a line that names its unit."""

        def render(self, task: Any) -> Text:
            unit = task.fields.get("unit")
            if not unit:
                return Text("")
            return Text(f"{task.speed:.2f} {unit}" if task.speed else f"-- {unit}", style="progress.data.speed")

    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(), TimeElapsedColumn(),
            TimeRemainingColumn())


class ProgressDisplay:
    """A context manager holding rich progress lines on ``console`` (rich's
    own console when None); ``transient`` clears them at the end. Disabled,
    it shows nothing and its lines do nothing."""

    def __init__(self, enabled: bool = True, *, console: Any = None, transient: bool = False) -> None:
        self.enabled, self.console, self.transient = enabled, console, transient
        self._bar: Any = None

    def __enter__(self) -> "ProgressDisplay":
        if self.enabled:
            from rich.progress import Progress

            self._bar = Progress(*_columns(), console=self.console, transient=self.transient)
            self._bar.start()
        return self

    def line(self, description: str, total: Optional[int] = None, *, completed: int = 0,
             unit: Optional[str] = None) -> ProgressLine:
        """A new line counting to ``total`` (None: no count, a stage line)
        from ``completed``; ``unit`` (e.g. ``"q/s"``) shows the rate."""
        if self._bar is None:
            return ProgressLine()
        return ProgressLine(self._bar, self._bar.add_task(description, total=total, completed=completed, unit=unit))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True, console: Any = None, completed: int = 0,
                 unit: Optional[str] = "q/s", transient: bool = False) -> Iterator[ProgressLine]:
    """One bar from ``completed`` to ``total`` with its rate and ETA, shown
    while the ``with`` block runs (nothing when not ``enabled``)."""
    with ProgressDisplay(enabled, console=console, transient=transient) as display:
        yield display.line(description, total, completed=completed, unit=unit)
