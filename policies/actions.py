"""Actions: what the agent does next, as decided by a policy and rendered
by an :class:`~meta_spider.policies.ActionRenderer`.

``Answer`` and ``Refuse`` end a question; ``ToolCall`` asks the loop to run
tools (and carries the call attempts that could not be parsed, which the loop
reports back to the model). The actions live here, below the agent loop,
because renderers build them and policies must not import
:mod:`meta_spider.agentcore`; the loop re-exports them.

:data:`REFUSAL_SENTENCE` is the project's refusal text (it lives with the
answer gate in :mod:`meta_spider.wrapper.refusal`): renderers recognise it,
datasets train towards it; :func:`is_refusal` takes another sentence too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from meta_spider.wrapper.refusal import REFUSAL_SENTENCE, is_refusal  # torch-free

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


@dataclass(frozen=True)
class Answer:
    """Reply to the user with ``text``; ends the question. ``source`` says
    who wrote it: ``"model"``, or ``"tool"`` when the text is the result of
    a tool whose result is the answer (the loop's ``direct_tools``)."""

    text: str
    source: str = "model"


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
    healed: bool = False
    """The renderer closed ``calls`` where the model broke them off
    (:func:`~meta_spider.native.heal.heal_call`); the agent loop holds their
    arguments to the question, as it does a grounded tool's."""

    def __post_init__(self) -> None:
        if not self.calls and not self.failures:
            raise ValueError("a ToolCall needs at least one call or one unparsed call attempt, got neither")


Action = Union[Answer, Refuse, ToolCall]
"""Everything a renderer may return."""
