"""The policy contracts: :class:`Policy` decides, :class:`ActionRenderer`
turns the decision into an :class:`~meta_spider.policies.actions.Action`.

A policy proposes text (and, for introspective policies, a probability that
the base is right); the renderer owns the mapping to actions: parsing native
tool calls, recognising a refusal, gating on confidence. Splitting the two
lets one renderer serve the plain base and the Doubter alike.

The session and tool set are described structurally (:class:`SessionView`,
:class:`ToolCatalog`) because policies sit below the agent loop and the tools
package in the dependency order and must not import them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, runtime_checkable

from meta_spider.backends.base import InferenceBackend, Introspection

if TYPE_CHECKING:
    from meta_spider.policies.actions import Action

__all__ = ["ActionRenderer", "LatentDecision", "Policy", "SessionView", "ToolCatalog"]


class SessionView(Protocol):
    """What a policy reads from a session: the chat so far."""

    @property
    def messages(self) -> Sequence[Mapping[str, Any]]: ...


class ToolCatalog(Protocol):
    """What a policy reads from the tool set: names and OpenAI-form schemas."""

    def schemas(self) -> list[dict[str, Any]]: ...

    def __contains__(self, name: object) -> bool: ...


@dataclass
class LatentDecision:
    """What a policy proposes before it becomes an action."""

    text: str
    """The model's proposed output (may contain native tool calls)."""
    p_correct: float | None = None
    """Calibrated probability that the base is right; None for policies that
    do not introspect."""
    confident: bool | None = None
    """The policy's own verdict, when it has one; None otherwise."""
    introspection: Introspection | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    """Policy-specific facts for traces: prompt, finish_reason, token counts."""

    def __post_init__(self) -> None:
        if self.p_correct is not None and not 0.0 <= self.p_correct <= 1.0:
            raise ValueError(f"p_correct must lie in [0, 1], got {self.p_correct!r}")


@runtime_checkable
class Policy(Protocol):
    """Decides what the model proposes next for a session."""

    def decide(self, session: SessionView, backend: InferenceBackend, tools: ToolCatalog) -> LatentDecision:
        """Render the prompt, run the model (once or twice) and return the
        proposal. Backend failures propagate as exceptions."""


@runtime_checkable
class ActionRenderer(Protocol):
    """Turns a latent decision into an action."""

    def render(
        self, decision: LatentDecision, session: SessionView, backend: InferenceBackend, tools: ToolCatalog
    ) -> "Action":
        """Map ``decision`` to ``Answer``, ``ToolCall`` or ``Refuse``. Never
        raises for bad model output: unparseable calls become
        ``ToolCall.failures``."""
