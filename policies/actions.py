"""Actions: what the agent does next, as decided by a policy and rendered
by an :class:`~meta_spider.policies.ActionRenderer`.

``Answer`` and ``Refuse`` end a question; ``ToolCall`` asks the loop to run
tools (and carries the call attempts that could not be parsed, which the loop
reports back to the model). The actions live here, below the agent loop,
because renderers build them and policies must not import
:mod:`meta_spider.agentcore`; the loop re-exports them.

:data:`REFUSAL_SENTENCE` is the one refusal text of the project: renderers
recognise it, datasets train towards it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

__all__ = [
    "Action",
    "Answer",
    "REFUSAL_SENTENCE",
    "Refuse",
    "ToolCall",
    "ToolInvocation",
    "UnparsedCall",
    "is_refusal",
]

REFUSAL_SENTENCE = "I don't know."


def _normalise(text: str) -> str:
    # Models write typographic apostrophes and vary case; the sentence is the same.
    return " ".join(text.replace("\u2019", "'").casefold().split())


def is_refusal(text: str) -> bool:
    """True when ``text`` is, or starts with, :data:`REFUSAL_SENTENCE`
    (ignoring case, whitespace and the apostrophe's style)."""
    return _normalise(text).startswith(_normalise(REFUSAL_SENTENCE))


@dataclass(frozen=True)
class Answer:
    """Reply to the user with ``text``; ends the question."""

    text: str


@dataclass(frozen=True)
class Refuse:
    """Decline to answer; ends the question. ``reason`` says why (the model
    said so, or a confidence gate fired)."""

    text: str = REFUSAL_SENTENCE
    reason: str = "model"


@dataclass(frozen=True)
class ToolInvocation:
    """One tool call the model asked for. ``call_id`` is the model's own id
    when its format has one; the loop assigns one otherwise."""

    name: str
    arguments: dict[str, Any]
    call_id: str | None = None
    raw: str = ""


@dataclass(frozen=True)
class UnparsedCall:
    """A tool-call attempt that could not be read; ``raw`` is the model's text."""

    reason: str
    raw: str


@dataclass(frozen=True)
class ToolCall:
    """Run ``calls`` and report their results (and every ``failures`` entry)
    back to the model, then let it decide again. ``content`` is the text the
    model wrote outside the calls."""

    calls: tuple[ToolInvocation, ...] = ()
    content: str = ""
    failures: tuple[UnparsedCall, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.calls and not self.failures:
            raise ValueError("a ToolCall needs at least one call or one unparsed call attempt, got neither")


Action = Union[Answer, Refuse, ToolCall]
"""Everything a renderer may return."""
