"""Typed step records: what one run of the agent loop yields.

A run yields, in order, one :class:`ModelStep` per model decision, one
:class:`ToolStep` per tool call or unreadable call attempt, and exactly one
:class:`FinalStep` last. The REPL, the comparison harness and the tests all
consume these records; nothing else about a run is hidden in the loop.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Union

from meta_spider.policies.actions import Action, Answer, Refuse, ToolInvocation
from meta_spider.policies.base import LatentDecision

if TYPE_CHECKING:
    from meta_spider.agentcore.session import Session

__all__ = ["FinalStep", "ModelStep", "ObservationKind", "Outcome", "Step", "ToolStep"]


class ObservationKind(str, enum.Enum):
    """What happened to one tool call. All but ``RESULT`` are the model's
    mistakes, reported back to it instead of raised."""

    RESULT = "result"
    UNKNOWN_TOOL = "unknown_tool"
    BAD_ARGUMENTS = "bad_arguments"
    TOOL_RAISED = "tool_raised"
    UNPARSEABLE = "unparseable"


Outcome = Literal["answer", "refuse", "max_steps"]


@dataclass(frozen=True)
class ModelStep:
    """The policy decided and the renderer turned it into ``action``."""

    index: int
    """1-based number of this model step in the run."""
    decision: LatentDecision
    action: Action


@dataclass(frozen=True)
class ToolStep:
    """One tool call ran (or could not), and ``observation`` went to the model."""

    index: int
    """The model step whose action asked for this call."""
    call: ToolInvocation | None
    """None for a call attempt that could not be parsed."""
    observation: str
    kind: ObservationKind
    error: str | None = None
    """The exception text for failed calls."""

    @property
    def ok(self) -> bool:
        return self.kind is ObservationKind.RESULT


@dataclass(frozen=True)
class FinalStep:
    """The run is over. ``outcome`` is ``"answer"``, ``"refuse"`` or
    ``"max_steps"`` (the budget ran out before an answer; ``action`` is None)."""

    outcome: Outcome
    action: Answer | Refuse | None
    model_steps: int
    session: "Session | None" = field(default=None, repr=False, compare=False)
    """The session the run extended (also the one it created from a question)."""

    @property
    def text(self) -> str | None:
        """The answer or refusal text; None when the steps ran out."""
        return None if self.action is None else self.action.text


Step = Union[ModelStep, ToolStep, FinalStep]
