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


class SessionFormatError(AgentError, ValueError, fields=("source", "reason")):
    """A saved session cannot be read back."""

    template = "cannot load session from {source}: {reason}"


class SessionWriteError(AgentError, OSError, fields=("target", "reason")):
    """A session cannot be written to the file asked for."""

    template = "cannot save the session to {target}: {reason}"


class ActionTypeError(AgentError, TypeError, fields=("renderer", "returned")):
    """A renderer returned something that is not an Answer, ToolCall or Refuse."""

    template = (
        "renderer {renderer} returned {returned!r}; an ActionRenderer must return "
        "Answer, ToolCall or Refuse (meta_spider.policies.actions)"
    )


class AgentStepError(AgentError, fields=("step", "kind", "reason")):
    """A policy or renderer raised something that is not a project error
    while deciding step ``step``: the run stops with this one line."""

    template = (
        "step {step} failed: {kind}: {reason}. The session so far is kept; "
        "this is a bug in the policy, the renderer or the backend they use"
    )
