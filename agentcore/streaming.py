"""Streaming and interruption for any backend and any policy.

:class:`StreamingBackend` wraps a backend so that every ``generate`` call,
whichever policy makes it (``direct``, the two-pass ``doubter``, a third
party's), sends its text deltas to one listener, and so that a generation can
be stopped from outside: :meth:`StreamingBackend.interrupt` (thread-safe)
makes the next text delta raise :class:`GenerationInterrupted` inside the
backend's own loop, which unwinds it through its ``finally`` blocks exactly
as Ctrl-C's ``KeyboardInterrupt`` does. Policies need no streaming parameter.

It knows nothing about terminals or rendering.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence

from meta_spider.agentcore.errors import AgentError
from meta_spider.backends.base import Completion, InferenceBackend, Introspection, WrappedBackend

__all__ = ["GenerationInterrupted", "StreamingBackend"]


class GenerationInterrupted(AgentError, fields=("backend", "emitted")):
    """A generation was stopped on request (Ctrl-C or :meth:`StreamingBackend.interrupt`)."""

    emitted = ""
    template = "generation on backend {backend!r} was interrupted after {characters} characters"

    def __post_init__(self) -> None:
        self.characters = len(self.emitted)


class StreamingBackend(WrappedBackend):
    """Forwards to ``inner``; tees every text delta to :attr:`listener`."""

    def __init__(self, inner: InferenceBackend, listener: Callable[[str], None] | None = None) -> None:
        super().__init__(inner)
        self.listener = listener
        """Receives every text delta of every generation (None: nobody)."""
        self._interrupt = threading.Event()
        self._emitted: list[str] = []

    def interrupt(self) -> None:
        """Stop the running (or the next) generation at its next text delta."""
        self._interrupt.set()

    def clear_interrupt(self) -> None:
        """Forget a pending interrupt (call before starting a turn)."""
        self._interrupt.clear()

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        inject: Introspection | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        self._emitted = []
        if self._interrupt.is_set():
            raise GenerationInterrupted(self.name)

        def tee(delta: str) -> None:
            if self._interrupt.is_set():
                raise GenerationInterrupted(self.name, "".join(self._emitted))
            self._emitted.append(delta)
            if on_text is not None:
                on_text(delta)
            if self.listener is not None:
                self.listener(delta)

        return self.inner.generate(prompt, max_new_tokens=max_new_tokens, stop=stop, inject=inject, on_text=tee)

    def read(self, prompt: str, *, question: str | None = None) -> Introspection:
        if self._interrupt.is_set():
            raise GenerationInterrupted(self.name)
        return self.inner.read(prompt, question=question)
