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

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"cannot load session from {source}: {reason}")


class SessionWriteError(AgentError, OSError):
    """A session cannot be written to the file asked for."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"cannot save the session to {target}: {reason}")


class ActionTypeError(AgentError, TypeError):
    """A renderer returned something that is not an Answer, ToolCall or Refuse."""

    def __init__(self, renderer: str, returned: object) -> None:
        self.renderer = renderer
        self.returned = returned
        super().__init__(
            f"renderer {renderer} returned {returned!r}; an ActionRenderer must return "
            f"Answer, ToolCall or Refuse (meta_spider.policies.actions)"
        )


class AgentStepError(AgentError):
    """A policy or renderer raised something that is not a project error
    while deciding step ``step``: the run stops with this one line."""

    def __init__(self, step: int, kind: str, reason: str) -> None:
        self.step = step
        self.kind = kind
        self.reason = reason
        super().__init__(
            f"step {step} failed: {kind}: {reason}. The session so far is kept; "
            "this is a bug in the policy, the renderer or the backend they use"
        )
