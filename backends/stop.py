"""``StopBackend``: cut a completion at the end of the model's turn.

A base model that is not told where its turn ends goes on to write the
user's next message, the tool's reply, and so on. :class:`StopBackend` wraps
any backend, passes the turn's stop strings down (so a capable backend stops
early) and also cuts the returned text at the first stop string itself (so a
backend that ignores them is still safe), setting ``finish_reason="stop"``.
Streaming output is held back while it could still be the start of a stop
string, so a listener never sees half a marker.

It knows nothing about tokens; only about text.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

from meta_spider.backends.base import Completion, InferenceBackend, Introspection, WrappedBackend

__all__ = ["DEFAULT_TURN_STOPS", "DecodedText", "StopBackend", "cut_at_stop"]

DEFAULT_TURN_STOPS: tuple[str, ...] = (
    "<|im_end|>",  # ChatML (Qwen, Hermes)
    "<|im_start|>",
    "<|eot_id|>",  # Llama 3
    "<|eom_id|>",
    "<|start_header_id|>",
    "</s>",  # Mistral / Llama 2
    "[INST]",
    "\nuser:",  # plain-text transcripts
    "\nUser:",
)
"""Markers that end an assistant turn in the common chat formats."""


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, str | None]:
    """Return ``(text before the earliest stop string, that stop string)``,
    or ``(text, None)`` when none occurs."""
    earliest: tuple[int, str] | None = None
    for marker in stop:
        if not marker:
            continue
        index = text.find(marker)
        if index != -1 and (earliest is None or index < earliest[0]):
            earliest = (index, marker)
    if earliest is None:
        return text, None
    return text[: earliest[0]], earliest[1]


def held_back(text: str, stop: Sequence[str]) -> int:
    """Length of the longest tail of ``text`` that could be the start of a
    stop string: a streaming caller must not emit it yet."""
    longest = 0
    for marker in stop:
        for size in range(min(len(marker) - 1, len(text)), longest, -1):
            if text.endswith(marker[:size]):
                longest = size
                break
    return longest


class DecodedText:
    """What a backend's decode loop has produced so far, cut at the first
    stop string; ``on_text`` receives each part that can no longer begin a
    stop string, once it holds no half-decoded character."""

    def __init__(self, stop: Sequence[str], on_text: Callable[[str], None] | None) -> None:
        self.markers = [marker for marker in stop if marker]
        self.on_text = on_text
        self.text = ""
        self.emitted = 0

    def update(self, text: str) -> bool:
        """Take the whole text decoded so far; True when it reached a stop
        string (:attr:`text` then ends before it)."""
        kept, marker = cut_at_stop(text, self.markers)
        if marker is not None:
            self.text = kept
            return True
        self.text = text
        if self.on_text is not None and not text.endswith("\ufffd"):
            ready = len(text) - held_back(text, self.markers)
            if ready > self.emitted:
                self.on_text(text[self.emitted : ready])
                self.emitted = ready
        return False

    def finish(self) -> str:
        """Stream what is still held back and return the final text."""
        if self.on_text is not None and len(self.text) > self.emitted:
            self.on_text(self.text[self.emitted :])
        return self.text


class _StopStream:
    """Forwards streamed text, holding back a tail that may begin a stop string."""

    def __init__(self, stop: Sequence[str], sink: Callable[[str], None]) -> None:
        self.stop = [marker for marker in stop if marker]
        self.sink = sink
        self.buffer = ""
        self.stopped = False

    def __call__(self, delta: str) -> None:
        if self.stopped:
            return
        self.buffer += delta
        kept, marker = cut_at_stop(self.buffer, self.stop)
        if marker is not None:
            self.stopped = True
            if kept:
                self.sink(kept)
            self.buffer = ""
            return
        hold = held_back(self.buffer, self.stop)
        ready = self.buffer[: len(self.buffer) - hold]
        self.buffer = self.buffer[len(ready) :]
        if ready:
            self.sink(ready)

    def flush(self) -> None:
        if not self.stopped and self.buffer:
            self.sink(self.buffer)
        self.buffer = ""


class StopBackend(WrappedBackend):
    """Wraps ``inner`` so every completion ends at the turn's stop strings."""

    def __init__(self, inner: InferenceBackend, stop: Sequence[str] | None = None) -> None:
        if isinstance(stop, str):
            raise ValueError(f"stop must be a sequence of strings, got the string {stop!r}")
        super().__init__(inner)
        self.stop: tuple[str, ...] = tuple(DEFAULT_TURN_STOPS if stop is None else stop)
        if not all(isinstance(marker, str) and marker for marker in self.stop):
            raise ValueError(f"stop strings must be non-empty strings, got {self.stop!r}")

    @property
    def name(self) -> str:
        return f"stop({self.inner.name})"

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        inject: Introspection | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        markers = tuple(dict.fromkeys((*self.stop, *stop)))  # ordered, unique
        stream = _StopStream(markers, on_text) if on_text is not None else None
        completion = self.inner.generate(
            prompt, max_new_tokens=max_new_tokens, stop=markers, inject=inject, on_text=stream
        )
        if stream is not None:
            stream.flush()
        text, marker = cut_at_stop(completion.text, markers)
        if marker is None:
            return completion
        return replace(completion, text=text, finish_reason="stop")
