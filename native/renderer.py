"""`NativeToolRenderer`: a family's tool-call syntax, both directions.

It parses model output into content plus tool calls (never raising, never
dropping text), gives the prefix that opens a call (the agent prefills the
assistant turn with it), and writes calls the way the family's chat
template writes them in transcripts.

It does not render prompts (:mod:`meta_spider.native.prompt` does) and does
not know which tools exist.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from meta_spider.native.families import ToolCallFamily, coerce_family, detect_family
from meta_spider.native.formatting import family_call_end, family_call_prefix, format_family_calls, reasoning_tags
from meta_spider.native.parsers import PARSERS
from meta_spider.native.results import ParsedToolCall, ParseResult, SpanBuilder

__all__ = ["NativeToolRenderer", "leading_reasoning_end", "mark_leading_reasoning"]

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def leading_reasoning_end(text: str, tags: tuple[str, str] = (THINK_OPEN, THINK_CLOSE)) -> int:
    """End of the reasoning block the output starts with (0 when none)."""
    opening, closing = tags
    close = text.find(closing)
    if text.lstrip().startswith(opening):
        return close + len(closing) if close >= 0 else len(text)
    if close >= 0 and opening not in text[:close]:
        # The template prefilled the opening tag into the prompt, so the
        # output holds only the rest of the reasoning and its closing tag.
        return close + len(closing)
    return 0


def mark_leading_reasoning(builder: SpanBuilder, family: ToolCallFamily) -> None:
    """Mark the output's leading reasoning block in ``family``'s tags: the
    tags as markup, the text between as reasoning (harmony marks its own
    ``analysis`` channel while parsing)."""
    if family is ToolCallFamily.HARMONY:
        return
    tags = reasoning_tags(family)
    text = builder.text
    end = leading_reasoning_end(text, tags)
    if end == 0:
        return
    opening, closing = tags
    start = text.find(opening)
    close = text.find(closing)
    if 0 <= start < end and text[:start].strip() == "":
        builder.content(start)
        builder.markup(start + len(opening))
    if 0 <= close < end:
        builder.reasoning(close)
        builder.markup(close + len(closing))
    else:
        builder.reasoning(end)


class NativeToolRenderer:
    """Parse and write tool calls in one family's native syntax.

    ``family`` overrides detection; otherwise the family is detected from
    ``template`` (see :func:`~meta_spider.native.families.detect_family`).
    """

    def __init__(self, family: ToolCallFamily | str | None = None, *, template: str | None = None) -> None:
        self.family: ToolCallFamily = (
            coerce_family(family) if family is not None else detect_family(template)
        )
        self.template = template

    def __repr__(self) -> str:
        return f"NativeToolRenderer(family={self.family.value!r})"

    # ------------------------------------------------------------ parsing

    def parse(self, text: str) -> ParseResult:
        """Split ``text`` into content, tool calls and failed call attempts.

        Never raises for a ``str``. Every character of ``text`` lies in
        exactly one of ``result.spans``: content, a call's ``raw`` or a
        failure's ``raw``.

        A leading reasoning block (``<think>...</think>`` at the start, or
        text up to a first ``</think>`` when the template prefilled
        ``<think>``; Seed-OSS and Command R use their own tags, harmony its
        ``analysis`` channel) is ``result.reasoning``, not content, and never
        a call: reasoning models draft calls while thinking, and a draft is
        not a call. An unclosed leading ``<think>`` means the model is still
        thinking, so nothing after it is a call.
        """
        if not isinstance(text, str):
            raise TypeError(f"parse() takes the model output as str, got {type(text).__name__}")
        builder = SpanBuilder(text)
        try:
            mark_leading_reasoning(builder, self.family)
            PARSERS[self.family](builder)
        except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
            # A parser bug must not take the agent loop down: whatever was not
            # yet accounted for becomes one failure, so the text still survives.
            if builder.position < len(text):
                builder.failure(len(text), f"internal parser error: {type(exc).__name__}: {exc}")
        return builder.finish()

    # ------------------------------------------------------------ writing

    def call_prefix(self) -> str:
        """The text that opens one call in this family; prefilled into the
        assistant turn so the model completes a call in its own syntax."""
        return family_call_prefix(self.family, self.template)

    def call_end(self) -> str | None:
        """The marker that closes a call in this family (a stop string for a
        prefilled call), None when the call ends with the turn."""
        return family_call_end(self.family, self.template)

    def format_call(
        self, name: str, arguments: Mapping[str, Any], *, call_id: str | None = None
    ) -> str:
        """One call written the way this family's model (and its chat
        template) writes it. ``call_id`` is used by Mistral only."""
        return self.format_calls([(name, arguments, call_id)])

    def format_calls(
        self, calls: Iterable[ParsedToolCall | tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], str | None]]
    ) -> str:
        """Several calls of one assistant turn, joined the family's way.

        Each call is a :class:`ParsedToolCall` or a ``(name, arguments)`` /
        ``(name, arguments, call_id)`` tuple. Raises ValueError for an empty
        list or a call whose name is empty.
        """
        normalised: list[tuple[str, dict[str, Any], str | None]] = []
        for call in calls:
            if isinstance(call, ParsedToolCall):
                name, arguments, call_id = call.name, call.arguments, call.call_id
            else:
                name, arguments = call[0], call[1]
                call_id = call[2] if len(call) > 2 else None  # type: ignore[misc]
            if not isinstance(name, str) or not name:
                raise ValueError(f"a tool call needs a non-empty name, got {name!r}")
            normalised.append((name, dict(arguments), call_id))
        if not normalised:
            raise ValueError("format_calls() needs at least one call, got none")

        return format_family_calls(self.family, normalised, self.template)
