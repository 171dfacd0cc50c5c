"""The world build's progress: one line for the current stage and a bar
over training steps with the running loss, on the loom's
:class:`~meta_spider.loom.progress.ProgressDisplay`. Disabled, it does
nothing, so library callers and tests stay quiet.

It knows nothing about what the stages do.
"""

from __future__ import annotations

from types import TracebackType

from meta_spider.loom.progress import ProgressDisplay, ProgressLine


class BuildProgress:
    """Context manager exposing ``stage(name)`` and ``step(step, loss)``."""

    def __init__(self, enabled: bool, total_steps: int | None) -> None:
        self.total_steps = total_steps
        self._display = ProgressDisplay(enabled)
        self._stage = self._train = ProgressLine()

    def __enter__(self) -> "BuildProgress":
        self._display.__enter__()
        self._stage = self._display.line("world")
        if self.total_steps is not None:  # None: nothing is trained (a shipped base)
            self._train = self._display.line("train", self.total_steps)
        return self

    def stage(self, name: str) -> None:
        """Show that the build entered stage ``name``."""
        self._stage.update(description=name)

    def step(self, step: int, loss: float) -> None:
        """Advance the training bar to ``step`` and show ``loss`` (on every
        fifth step and the last)."""
        if step % 5 == 0 or step + 1 == self.total_steps:
            self._train.update(completed=step + 1, description=f"train loss {loss:.3f}")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._display.__exit__(exc_type, exc, tb)
