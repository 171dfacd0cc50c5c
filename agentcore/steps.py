"""Typed step records: what one run of the agent loop yields.

A run yields, in order, one :class:`ModelStep` per model decision, one
:class:`ToolStep` per tool call or unreadable call attempt, and exactly one
:class:`FinalStep` last. The REPL, the comparison harness and the tests all
consume these records; nothing else about a run is hidden in the loop.

Every record has a stable ``to_dict()`` (plain JSON types, a ``"type"`` key
of ``"model"``, ``"tool"`` or ``"final"``) for ``meta-agent run --json`` and
saved traces. Backend-native arrays (cognitive tokens) are never written:
only the numbers a reader can use.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union

from meta_spider.policies.actions import Action, Answer, Refuse, ToolCall, ToolInvocation
from meta_spider.policies.base import LatentDecision
from meta_spider.tools.limits import MAX_NESTING, safe_str

if TYPE_CHECKING:
    from meta_spider.agentcore.session import Session

__all__ = [
    "FinalStep",
    "ModelStep",
    "ObservationKind",
    "Outcome",
    "Step",
    "ToolStep",
    "action_to_dict",
    "decision_to_dict",
    "json_safe",
]


class ObservationKind(str, enum.Enum):
    """What happened to one tool call. ``NOT_FOUND``: the tool ran and holds
    nothing for the call (:class:`~meta_spider.tools.NothingFound`); the
    others but ``RESULT`` are the model's mistakes, reported back to it
    instead of raised."""

    RESULT = "result"
    NOT_FOUND = "not_found"
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "model",
            "index": self.index,
            "decision": decision_to_dict(self.decision),
            "action": action_to_dict(self.action),
        }


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
    written: dict[str, Any] | None = None
    """The arguments as the model wrote them, when grounding them in the
    user's words changed them (:mod:`meta_spider.agentcore.grounding`);
    ``call`` holds the ones that ran."""
    written_tool: str | None = None
    """The tool the model called, when grounding ran another in its place (a
    lookup of a made-up name for a question that states arithmetic runs the
    calculator)."""
    choices: tuple[str, ...] = ()
    """For a miss whose query names several entries, not one
    (:class:`~meta_spider.tools.SeveralFound`), their names."""

    @property
    def ok(self) -> bool:
        return self.kind is ObservationKind.RESULT

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "tool",
            "index": self.index,
            "call": None if self.call is None else _call_to_dict(self.call),
            "observation": self.observation,
            "kind": self.kind.value,
            "ok": self.ok,
            "error": self.error,
            "written": None if self.written is None else json_safe(self.written),
            "written_tool": self.written_tool,
            "choices": list(self.choices),
        }


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

    def to_dict(self) -> dict[str, Any]:
        """The outcome, the final action and the step count (not the session:
        save that with :meth:`Session.save`)."""
        return {
            "type": "final",
            "outcome": self.outcome,
            "text": self.text,
            "model_steps": self.model_steps,
            "action": None if self.action is None else action_to_dict(self.action),
        }


Step = Union[ModelStep, ToolStep, FinalStep]


def json_safe(value: Any, _depth: int = 0) -> Any:
    """``value`` with only JSON types: mappings and sequences are walked,
    non-finite floats become None, anything else (arrays, objects) becomes
    its ``repr`` cut to 200 characters, and nesting past
    :data:`~meta_spider.tools.limits.MAX_NESTING` levels becomes a note, so a
    trace never fails to serialise."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dict, list, tuple)) and _depth >= MAX_NESTING:
        return f"<nested deeper than {MAX_NESTING} levels>"
    if isinstance(value, dict):
        return {safe_str(key, limit=200): json_safe(item, _depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item, _depth + 1) for item in value]
    return safe_str(_safe_repr(value), limit=200)


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # a foreign object's __repr__
        return f"<{type(value).__name__}>"


def _call_to_dict(call: ToolInvocation) -> dict[str, Any]:
    return {"name": call.name, "arguments": json_safe(call.arguments), "call_id": call.call_id}


def action_to_dict(action: Action) -> dict[str, Any]:
    """One action as plain JSON types, with a ``"type"`` of ``"answer"``,
    ``"refuse"`` or ``"tool_call"``."""
    if isinstance(action, Answer):
        return {"type": "answer", "text": action.text, "source": action.source}
    if isinstance(action, Refuse):
        return {"type": "refuse", "text": action.text, "reason": action.reason}
    if isinstance(action, ToolCall):
        return {
            "type": "tool_call",
            "calls": [_call_to_dict(call) for call in action.calls],
            "content": action.content,
            "failures": [{"reason": failure.reason, "raw": failure.raw} for failure in action.failures],
        }
    raise TypeError(f"not an action: {action!r:.80}")


def decision_to_dict(decision: LatentDecision) -> dict[str, Any]:
    """A latent decision without its backend-native arrays: the text, the
    confidence numbers and the policy's metadata (JSON-safe)."""
    introspection = None
    if decision.introspection is not None:
        introspection = {
            "p_correct": json_safe(decision.introspection.p_correct),
            "extras": sorted(decision.introspection.extras),  # names only: values may be arrays
        }
    return {
        "text": decision.text,
        "p_correct": decision.p_correct,
        "confident": decision.confident,
        "introspection": introspection,
        "metadata": json_safe(decision.metadata),
    }
