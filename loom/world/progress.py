"""Rich progress display of a world build: one line for the current stage
and a bar over training steps with the running loss. Disabled, it does
nothing, so library callers and tests stay quiet.

It knows nothing about what the stages do.
"""

from __future__ import annotations

from types import TracebackType


class BuildProgress:
    """Context manager exposing ``stage(name)`` and ``step(step, loss)``."""

    def __init__(self, enabled: bool, total_steps: int) -> None:
        self.enabled = enabled
        self.total_steps = total_steps
        self._progress = None
        self._stage_task = None
        self._train_task = None

    def __enter__(self) -> "BuildProgress":
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(), TimeRemainingColumn(),
            )
            self._progress.start()
            self._stage_task = self._progress.add_task("world", total=None)
            self._train_task = self._progress.add_task("train", total=self.total_steps)
        return self

    def stage(self, name: str) -> None:
        """Show that the build entered stage ``name``."""
        if self._progress is not None:
            self._progress.update(self._stage_task, description=name)

    def step(self, step: int, loss: float) -> None:
        """Advance the training bar to ``step`` and show ``loss``."""
        if self._progress is not None and (step % 5 == 0 or step + 1 == self.total_steps):
            self._progress.update(self._train_task, completed=step + 1, description=f"train loss {loss:.3f}")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
