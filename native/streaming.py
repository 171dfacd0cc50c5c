"""Incremental tool-call parsing for streamed model text.

:class:`StreamingToolParser` takes the model's text delta by delta and
returns events as soon as they are certain: content and reasoning text,
whole tool calls and failed call attempts. Text that may still become call
markup is held back: a tail that could begin one of the family's opening
markers (``<tool_ca`` ...), and, for the families whose calls are bare JSON
or lists (Llama 3, xLAM, pythonic), an open bracket that has not closed yet.
So a terminal that prints the content events never shows call markup.

Each step re-parses the output so far (a span boundary inside a call list
or a section is no point to restart from) and emits what lies before the
last span that may still change; :meth:`StreamingToolParser.finish`
returns the rest and keeps the whole output's
:class:`~meta_spider.native.results.ParseResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meta_spider.native.families import ToolCallFamily as F
from meta_spider.native.formatting import reasoning_tags
from meta_spider.native.renderer import NativeToolRenderer
from meta_spider.native.results import ParsedToolCall, ParseResult, ParseSpan, ToolParseFailure

__all__ = ["StreamEvent", "StreamingToolParser"]

EventKind = Literal["content", "reasoning", "call", "failure"]


@dataclass(frozen=True)
class StreamEvent:
    """One certain piece of streamed output."""

    kind: EventKind
    #: The text of a content or reasoning event; a call's or failure's raw text.
    text: str
    call: ParsedToolCall | None = None
    failure: ToolParseFailure | None = None


# Opening markers per family: a text tail that is a prefix of one is held back.
_COMMON = ("<tool_call>", "<function=", "<|python_tag|>", "[TOOL_CALLS]")
_OPENERS: dict[F, tuple[str, ...]] = {
    F.QWEN3_CODER: ("<tool_call>", "<function="),
    F.SEED_OSS: ("<seed:tool_call>", "<function="),
    F.GLM45: ("<tool_call>",),
    F.MINIMAX_M2: ("<minimax:tool_call>", "<invoke name="),
    F.KIMI_K2: ("<|tool_calls_section_begin|>", "<|tool_call_begin|>"),
    F.DEEPSEEK_R1: ("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>"),
    F.DEEPSEEK_V3: ("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>"),
    F.COMMAND_R: ("<|START_ACTION|>", "Action:", "<|START_RESPONSE|>", "<|END_RESPONSE|>"),
    F.INTERNLM: ("<|action_start|><|plugin|>",),
    F.NEMOTRON: ("<TOOLCALL>",),
    F.GRANITE: ("<|tool_call|>",),
    F.FUNCTOOLS: (" functools[",),
    F.PYTHONIC: ("<|tool_call_start|>", "<|python_start|>"),
    F.FUNCTIONARY_V32: (">>>",),
    F.HARMONY: ("<|channel|>", "<|start|>", "<|message|>", "<|end|>", "<|call|>", "<|return|>", " to=functions."),
    F.HERMES: ("<tool_call>",),
    F.LLAMA3: ("<|python_tag|>",),
    F.MISTRAL: ("[TOOL_CALLS]",),
    F.FUNCTION_TAG: ("<function=",),
}
# Closing markers that may follow a finished call: while one is arriving
# the call before it is not final either.
_CLOSERS: dict[F, tuple[str, ...]] = {
    F.QWEN3_CODER: ("</tool_call>",),
    F.SEED_OSS: ("</seed:tool_call>",),
    F.DEEPSEEK_R1: ("<｜tool▁calls▁end｜>",),
    F.DEEPSEEK_V3: ("<｜tool▁calls▁end｜>",),
    F.COMMAND_R: ("<|END_ACTION|>",),
    F.KIMI_K2: ("<|tool_calls_section_end|>",),
    F.MINIMAX_M2: ("</minimax:tool_call>",),
    F.NEMOTRON: ("</TOOLCALL>",),
    F.PYTHONIC: ("<|tool_call_end|>", "<|python_end|>"),
    F.LLAMA3: ("; {", ";{", "; <|python_tag|>"),
    F.HARMONY: ("<|start|>assistant",),
}
# Families whose call may start with a bare bracket: hold back from the
# earliest such bracket that is still open.
_BARE: dict[F, str] = {F.LLAMA3: "{", F.XLAM: "[", F.PYTHONIC: "["}
# Markers that open a call only with what follows them (a recipient's name
# line, Command R+'s fenced list): held back from while that is unsettled.
_PENDING: dict[F, tuple[tuple[str, tuple[str, ...]], ...]] = {
    F.FUNCTIONARY_V32: ((">>>", ()),),
    F.COMMAND_R: (("Action:", ("```json", "[")),),
    F.FUNCTOOLS: ((" functools", ("[",)),),
}


def _pending_hold(text: str, start: int, end: int, pending: tuple[tuple[str, tuple[str, ...]], ...]) -> int:
    """Where a marker whose meaning depends on the text after it starts
    while that text is still unsettled (``end`` when none does)."""
    cut = end
    for marker, continuations in pending:
        at = text.rfind(marker, start, end)
        if at < 0:
            continue
        rest = text[at + len(marker) : end]
        if continuations:
            unsettled = any(option.startswith(rest.strip()) for option in continuations)
        else:  # a name line not yet ended, or the arguments not yet begun
            unsettled = "\n" not in rest or not rest.split("\n", 1)[1].strip()
        if unsettled:
            cut = min(cut, at)
    return cut


def _prefix_hold(text: str, start: int, end: int, markers: tuple[str, ...]) -> int:
    """Length of the longest tail of ``text[start:end]`` that is a proper
    prefix of one of ``markers``."""
    longest = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, end - start), longest, -1):
            if text.startswith(marker[:size], end - size):
                longest = size
                break
    return longest


def _first_open_bracket(text: str, start: int, end: int, openers: str) -> int:
    """The earliest bracket in ``openers`` within ``[start, end)`` that is not
    closed by ``end`` (JSON strings honoured inside brackets), or -1."""
    stack: list[int] = []
    quote = False
    pos = start
    while pos < end:
        char = text[pos]
        if quote:
            if char == "\\":
                pos += 1
            elif char == '"':
                quote = False
        elif char == '"' and stack:
            quote = True
        elif char in "[{(":
            stack.append(pos)
        elif char in "]})" and stack:
            stack.pop()
        pos += 1
    return next((index for index in stack if text[index] in openers), -1)


class StreamingToolParser:
    """Feed streamed text; get content, reasoning, calls and failures as soon
    as they are certain. ``prefill`` is text the prompt already ends with
    (a prefilled call prefix): it is parsed, never emitted."""

    def __init__(self, renderer: NativeToolRenderer, prefill: str = "") -> None:
        self.renderer = renderer
        family = renderer.family
        self._markers = _OPENERS.get(family, _COMMON) + _CLOSERS.get(family, ()) + reasoning_tags(family)
        self._bare = _BARE.get(family, "")
        self._pending = _PENDING.get(family, ())
        self.buffer = prefill
        self._emitted = len(prefill)  # text before this offset was emitted (or is prefill)
        self.result: ParseResult | None = None
        self._reported: set[int] = set()  # where the calls and failures emitted so far start

    def feed(self, delta: str) -> list[StreamEvent]:
        """Add ``delta``; return the events it made certain."""
        self.buffer += delta
        return self._advance(final=False)

    def finish(self) -> list[StreamEvent]:
        """The generation ended: return the remaining events; :attr:`result`
        holds the parse of the whole output."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> list[StreamEvent]:
        base = 0
        text = self.buffer
        parsed = self.renderer.parse(text)
        if final:
            self.result = parsed  # the whole output's parse: nothing follows
        spans = parsed.spans
        settled = len(spans)
        if not final:
            # The last span may still grow or turn into a call, and so may
            # whitespace-only content after it (a section's closing marker
            # can follow).
            settled = max(len(spans) - 1, 0)
            while settled > 0 and spans[settled].kind == "content" and not text[
                spans[settled].start : self._safe_end(text, base, spans[settled])
            ].strip():
                settled -= 1
            if self._bare:
                # A bare call has no closing marker: a truncated one can end
                # at a bracket inside one of its strings and parse as a
                # failure followed by content, until the rest arrives.
                settled = next((i for i, span in enumerate(spans[:settled]) if span.kind == "failure"), settled)
        events: list[StreamEvent] = []
        for span in spans[:settled]:
            events.extend(self._span_events(text, base, span, span.end, parsed))
        if 0 <= settled < len(spans) and spans[settled].kind in ("content", "reasoning"):
            span = spans[settled]
            events.extend(self._span_events(text, base, span, self._safe_end(text, base, span), parsed))
        return [event for event in events if event.text or event.kind in ("call", "failure")]

    def _safe_end(self, text: str, base: int, span: ParseSpan) -> int:
        start = max(span.start, self._emitted - base)
        end = span.end
        if self.renderer.family is F.FUNCTIONARY_V32 and base + span.start == 0 and "\n" not in text[:end]:
            return 0  # the first line may still be a recipient name
        end = min(end - _prefix_hold(text, start, end, self._markers), _pending_hold(text, span.start, end, self._pending))
        if self._bare and span.kind == "content":
            bracket = _first_open_bracket(text, span.start, end, self._bare)
            if bracket >= 0:
                # Llama 3's "; " before a chained call belongs to that call.
                while bracket > span.start and text[bracket - 1] in " \t;":
                    bracket -= 1
                end = min(end, bracket)
        return end

    def _span_events(
        self, text: str, base: int, span: ParseSpan, end: int, parsed: ParseResult
    ) -> list[StreamEvent]:
        if span.kind in ("call", "failure"):
            if base + span.start in self._reported:
                return []  # emitted already (a closing marker may have joined it since)
            self._reported.add(base + span.start)
            self._emitted = max(self._emitted, base + span.end)
            raw = text[span.start : span.end]
            if span.kind == "call":
                return [StreamEvent("call", raw, call=parsed.tool_calls[span.index])]
            return [StreamEvent("failure", raw, failure=parsed.failures[span.index])]
        if span.kind == "markup":
            self._emitted = max(self._emitted, base + span.end)
            return []
        start = max(span.start, self._emitted - base)
        if end <= start:
            return []
        self._emitted = base + end
        return [StreamEvent(span.kind, text[start:end])]
