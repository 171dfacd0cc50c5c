"""Typed results of parsing model output for tool calls.

A parse splits the output into contiguous *spans*: plain content, reasoning
(``<think>`` text, harmony's ``analysis`` channel), markup that is neither
(the ``<think>`` tags themselves, channel headers), one tool call, or one
failed call attempt. Every character of the input lies in exactly one span,
so nothing the model wrote is ever lost: the content is the concatenation of
the content spans, the reasoning that of the reasoning spans, each call's
``raw`` and each failure's ``raw`` is the text of its span.

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

SpanKind = Literal["content", "reasoning", "markup", "call", "failure"]


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
    #: The model's reasoning (``<think>`` blocks, harmony ``analysis``): never
    #: parsed for calls and not part of ``content``.
    reasoning: str = ""

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
        # needle -> (searched from, found at): a parser that searches for the
        # same marker again and again from increasing positions (a closing
        # tag that never comes) scans the text once, not once per attempt.
        self._finds: dict[str, tuple[int, int]] = {}

    def find(self, needle: str, start: int) -> int:
        """``text.find(needle, start)``, memoised so that repeated searches
        from increasing positions cost linear time in total."""
        cached = self._finds.get(needle)
        if cached is not None:
            searched_from, found = cached
            if searched_from <= start and (found < 0 or found >= start):
                return found
        found = self.text.find(needle, start)
        self._finds[needle] = (start, found)
        return found

    def find_any(self, needles: tuple[str, ...], start: int) -> tuple[int, str]:
        """The earliest of several needles at or after ``start``: ``(index, needle)``,
        ``(-1, "")`` when none occurs."""
        best, which = -1, ""
        for needle in needles:
            found = self.find(needle, start)
            if found >= 0 and (best < 0 or found < best):
                best, which = found, needle
        return best, which

    def _check(self, start: int, end: int) -> None:
        if start != self.position or end < start or end > len(self.text):
            raise AssertionError(
                f"span [{start}, {end}) does not continue at {self.position} "
                f"within a text of {len(self.text)} characters"
            )

    def content(self, end: int) -> None:
        """Mark ``[position, end)`` as plain content."""
        self._plain("content", end)

    def reasoning(self, end: int) -> None:
        """Mark ``[position, end)`` as the model's reasoning."""
        self._plain("reasoning", end)

    def markup(self, end: int) -> None:
        """Mark ``[position, end)`` as markup that is neither content nor a
        call (reasoning tags, channel headers)."""
        self._plain("markup", end)

    def _plain(self, kind: SpanKind, end: int) -> None:
        start = self.position
        self._check(start, end)
        if end == start:
            return
        if self._spans and self._spans[-1].kind == kind:
            start = self._spans.pop().start
        self._spans.append(ParseSpan(kind, start, end))
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
        reasoning = "".join(
            self.text[span.start : span.end] for span in self._spans if span.kind == "reasoning"
        )
        return ParseResult(
            content=content,
            reasoning=reasoning,
            tool_calls=tuple(self._calls),
            failures=tuple(self._failures),
            raw=self.text,
            spans=tuple(self._spans),
        )
