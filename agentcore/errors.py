"""Framework-side errors of the agent loop.

The loop has two error tiers. What the *model* causes (an unknown tool, bad
arguments, a tool that raised, an unparseable call) is not an exception: it
becomes an observation the model reads on its next step (see
:class:`~meta_spider.agentcore.steps.ObservationKind`). Running out of steps
is not an exception either: the run ends with a ``FinalStep`` whose outcome
is ``"max_steps"``. What the *framework* causes propagates as a typed
exception: these classes, backend errors
(:class:`~meta_spider.backends.BackendError`) and plugin errors
(:class:`~meta_spider.plugins.PluginError`). Constructors never log.
"""

from __future__ import annotations

from meta_spider.plugins.errors import MetaSpiderError

__all__ = ["ActionTypeError", "AgentError", "AgentStepError", "SessionFormatError", "SessionWriteError"]


class AgentError(MetaSpiderError):
    """Base class for agent-loop errors."""


class SessionFormatError(AgentError, ValueError):
    """A saved session cannot be read back."""

    source: str
    reason: str

    def describe(self) -> str:
        return f"cannot load session from {self.source}: {self.reason}"


class SessionWriteError(AgentError, OSError):
    """A session cannot be written to the file asked for."""

    target: str
    reason: str

    def describe(self) -> str:
        return f"cannot save the session to {self.target}: {self.reason}"


class ActionTypeError(AgentError, TypeError):
    """A renderer returned something that is not an Answer, ToolCall or Refuse."""

    renderer: str
    returned: object

    def describe(self) -> str:
        return (
            f"renderer {self.renderer} returned {self.returned!r}; an ActionRenderer must return "
            f"Answer, ToolCall or Refuse (meta_spider.policies.actions)"
        )


class AgentStepError(AgentError):
    """A policy or renderer raised something that is not a project error
    while deciding step ``step``: the run stops with this one line."""

    step: int
    kind: str
    reason: str

    def describe(self) -> str:
        return (
            f"step {self.step} failed: {self.kind}: {self.reason}. The session so far is kept; "
            "this is a bug in the policy, the renderer or the backend they use"
        )
