"""Typed results of parsing model output for tool calls.

A parse splits the output into contiguous *spans*: plain content, one tool
call, or one failed call attempt. Every character of the input lies in
exactly one span, so nothing the model wrote is ever lost: the content is the
concatenation of the content spans, each call's ``raw`` and each failure's
``raw`` is the text of its span.

This module knows nothing about any tool-call syntax; the parsers in
:mod:`meta_spider.native.parsers` fill a :class:`SpanBuilder`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ParsedToolCall",
    "ToolParseFailure",
    "ParseSpan",
    "ParseResult",
    "SpanBuilder",
]

SpanKind = Literal["content", "call", "failure"]


@dataclass(frozen=True)
class ParsedToolCall:
    """One well-formed tool call read from model output."""

    name: str
    arguments: dict[str, Any]
    call_id: str | None = None
    #: The exact source text of this call, markup included.
    raw: str = ""

    def to_message_call(self) -> dict[str, Any]:
        """This call in the transformers/OpenAI message form, for an
        assistant message's ``tool_calls`` list."""
        entry: dict[str, Any] = {
            "type": "function",
            "function": {"name": self.name, "arguments": dict(self.arguments)},
        }
        if self.call_id is not None:
            entry["id"] = self.call_id
        return entry


@dataclass(frozen=True)
class ToolParseFailure:
    """A call attempt that could not be read: the model's fault, reported
    back to it as an observation rather than raised."""

    #: What went wrong, e.g. ``"unterminated <tool_call>"``, ``"invalid JSON: ..."``.
    reason: str
    #: The exact source text that failed.
    raw: str


@dataclass(frozen=True)
class ParseSpan:
    """A half-open character range ``[start, end)`` of the parsed text.

    ``index`` points into ``ParseResult.tool_calls`` for a ``"call"`` span and
    into ``ParseResult.failures`` for a ``"failure"`` span; it is -1 for
    content.
    """

    kind: SpanKind
    start: int
    end: int
    index: int = -1


@dataclass(frozen=True)
class ParseResult:
    """Model output split into content, tool calls and failed call attempts."""

    #: Text outside tool calls: the content spans joined, with only the call
    #: markup removed (whitespace kept; callers ``.strip()`` as they need).
    content: str
    tool_calls: tuple[ParsedToolCall, ...]
    failures: tuple[ToolParseFailure, ...]
    #: The whole input, unchanged.
    raw: str
    #: Contiguous spans covering ``raw`` from 0 to ``len(raw)``, in order.
    spans: tuple[ParseSpan, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when no call attempt failed."""
        return not self.failures

    @property
    def has_calls(self) -> bool:
        """True when at least one tool call was read."""
        return bool(self.tool_calls)

    def span_text(self, span: ParseSpan) -> str:
        """The source text of one span."""
        return self.raw[span.start : span.end]


class SpanBuilder:
    """Accumulates spans over one input string and freezes them into a
    :class:`ParseResult`. Adjacent content spans merge; empty spans vanish.

    Parsers add spans left to right; a gap or overlap is a parser bug and
    raises AssertionError (the renderer turns that into a failure span so
    the public ``parse`` still never raises).
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0
        self._spans: list[ParseSpan] = []
        self._calls: list[ParsedToolCall] = []
        self._failures: list[ToolParseFailure] = []

    def _check(self, start: int, end: int) -> None:
        if start != self.position or end < start or end > len(self.text):
            raise AssertionError(
                f"span [{start}, {end}) does not continue at {self.position} "
                f"within a text of {len(self.text)} characters"
            )

    def content(self, end: int) -> None:
        """Mark ``[position, end)`` as plain content."""
        start = self.position
        self._check(start, end)
        if end == start:
            return
        if self._spans and self._spans[-1].kind == "content":
            previous = self._spans.pop()
            start = previous.start
        self._spans.append(ParseSpan("content", start, end))
        self.position = end

    def call(
        self, end: int, name: str, arguments: dict[str, Any], call_id: str | None = None
    ) -> None:
        """Mark ``[position, end)`` as one tool call."""
        start = self.position
        self._check(start, end)
        raw = self.text[start:end]
        self._spans.append(ParseSpan("call", start, end, len(self._calls)))
        self._calls.append(ParsedToolCall(name, arguments, call_id, raw))
        self.position = end

    def failure(self, end: int, reason: str) -> None:
        """Mark ``[position, end)`` as one failed call attempt."""
        start = self.position
        self._check(start, end)
        if end == start:
            # A failure always owns some text; an empty one would say nothing.
            raise AssertionError(f"empty failure span at {start}: {reason}")
        raw = self.text[start:end]
        self._spans.append(ParseSpan("failure", start, end, len(self._failures)))
        self._failures.append(ToolParseFailure(reason, raw))
        self.position = end

    def finish(self) -> ParseResult:
        """Mark the rest as content and return the frozen result."""
        self.content(len(self.text))
        content = "".join(
            self.text[span.start : span.end] for span in self._spans if span.kind == "content"
        )
        return ParseResult(
            content=content,
            tool_calls=tuple(self._calls),
            failures=tuple(self._failures),
            raw=self.text,
            spans=tuple(self._spans),
        )
