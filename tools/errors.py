"""Typed errors of the tools package.

Two audiences: a *tool author* gets :class:`ToolDefinitionError` when a
function cannot be described as a tool; the *agent loop* gets
:class:`ToolArgumentError` when a model called a tool with arguments its
schema rejects (the loop turns that into an observation). Registry errors
name both plugins involved. Constructors never log or print.
"""

from __future__ import annotations

from meta_spider.plugins.errors import MetaSpiderError

__all__ = [
    "DuplicateToolError",
    "ToolArgumentError",
    "ToolDefinitionError",
    "ToolError",
    "UnknownToolError",
]


class ToolError(MetaSpiderError):
    """Base class for every tools-package error."""


class ToolDefinitionError(ToolError, TypeError):
    """A function or schema cannot be turned into a tool."""

    tool: str
    problem: str
    fix: str

    def describe(self) -> str:
        return f"cannot define tool {self.tool!r}: {self.problem}. {self.fix}"


class ToolArgumentError(ToolError, ValueError):
    """A call's arguments do not satisfy the tool's JSON schema.

    ``field`` is the path of the offending value (``"query"``,
    ``"numbers[2]"``) or ``None`` for a problem with the arguments as a whole.
    """

    tool: str
    field: str | None
    reason: str

    def describe(self) -> str:
        where = f"argument {self.field!r}" if self.field else "arguments"
        return f"tool {self.tool!r}: {where}: {self.reason}"


class DuplicateToolError(ToolError):
    """Two sources registered tools with one name."""

    name: str
    first_source: str
    second_source: str

    def describe(self) -> str:
        return (
            f"tool {self.name!r} is registered twice: by {self.first_source!r} and by "
            f"{self.second_source!r}. Rename one of them or leave one plugin out "
            f"(META_SPIDER_PLUGINS)."
        )


class UnknownToolError(ToolError, LookupError):
    """A tool name that is not in the registry."""

    name: str
    available: tuple[str, ...]

    def describe(self) -> str:
        choices = ", ".join(self.available) or "(none)"
        return f"unknown tool {self.name!r}; available tools: {choices}"
