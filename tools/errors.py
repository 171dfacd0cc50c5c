"""Typed errors of the tools package.

Two audiences: a *tool author* gets :class:`ToolDefinitionError` when a
function cannot be described as a tool; the *agent loop* gets
:class:`ToolArgumentError` when a model called a tool with arguments its
schema rejects (the loop turns that into an observation). Registry errors
name both plugins involved. Constructors never log or print.
"""

from __future__ import annotations

from meta_spider.plugins.errors import MetaSpiderError

__all__ = ["DuplicateToolError", "NothingFound", "SeveralFound", "ToolArgumentError", "ToolDefinitionError",
           "ToolError", "UnknownToolError"]


class ToolError(MetaSpiderError):
    """Base class for every tools-package error."""


class ToolDefinitionError(ToolError, TypeError, fields=("tool", "problem", "fix")):
    """A function or schema cannot be turned into a tool."""

    template = "cannot define tool {tool!r}: {problem}. {fix}"


class ToolArgumentError(ToolError, ValueError, fields=("tool", "field", "reason")):
    """A call's arguments do not satisfy the tool's JSON schema.

    ``field`` is the path of the offending value (``"query"``,
    ``"numbers[2]"``) or ``None`` for a problem with the arguments as a whole.
    """

    def describe(self) -> str:
        where = f"argument {self.field!r}" if self.field else "arguments"
        return f"tool {self.tool!r}: {where}: {self.reason}"


class NothingFound(ToolError, LookupError, fields=("query",)):
    """A tool ran and holds nothing for ``query`` (the lookup's miss). Not
    the model's mistake: the agent loop gives the model the message as the
    observation and records the call as ``not_found`` (not ``ok``: no result
    came back), so a policy can refuse instead of letting the model answer
    from an empty result. Called directly, the lookup tool raises it."""

    template = "No entry found for {query!r}."


class SeveralFound(NothingFound, fields=("query", "matches")):
    """A lookup's miss because ``query`` names several entries, not one:
    ``matches`` are their names, and the message lists them so that the
    user (and the model) can ask again naming one. A miss like any other
    to the agent loop."""

    SHOWN = 5
    """Most names the message lists."""

    def __post_init__(self) -> None:
        self.matches = tuple(str(match) for match in self.matches)

    def describe(self) -> str:
        shown = "; ".join(self.matches[:self.SHOWN])
        more = f"; and {len(self.matches) - self.SHOWN} more" if len(self.matches) > self.SHOWN else ""
        return (f"{self.query!r} names {len(self.matches)} entries, not one: {shown}{more}. "
                "Ask again naming one of them.")


class DuplicateToolError(ToolError, fields=("name", "first_source", "second_source")):
    """Two sources registered tools with one name."""

    template = (
        "tool {name!r} is registered twice: by {first_source!r} and by "
        "{second_source!r}. Rename one of them or leave one plugin out "
        "(META_SPIDER_PLUGINS)."
    )


class UnknownToolError(ToolError, LookupError, fields=("name", "available")):
    """A tool name that is not in the registry."""

    def describe(self) -> str:
        choices = ", ".join(self.available) or "(none)"
        return f"unknown tool {self.name!r}; available tools: {choices}"
