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

    def __init__(self, tool: str, problem: str, fix: str) -> None:
        self.tool = tool
        self.problem = problem
        self.fix = fix
        super().__init__(f"cannot define tool {tool!r}: {problem}. {fix}")


class ToolArgumentError(ToolError, ValueError):
    """A call's arguments do not satisfy the tool's JSON schema.

    ``field`` is the path of the offending value (``"query"``,
    ``"numbers[2]"``) or ``None`` for a problem with the arguments as a whole.
    """

    def __init__(self, tool: str, field: str | None, reason: str) -> None:
        self.tool = tool
        self.field = field
        self.reason = reason
        where = f"argument {field!r}" if field else "arguments"
        super().__init__(f"tool {tool!r}: {where}: {reason}")


class DuplicateToolError(ToolError):
    """Two sources registered tools with one name."""

    def __init__(self, name: str, first_source: str, second_source: str) -> None:
        self.name = name
        self.first_source = first_source
        self.second_source = second_source
        super().__init__(
            f"tool {name!r} is registered twice: by {first_source!r} and by "
            f"{second_source!r}. Rename one of them or leave one plugin out "
            f"(META_SPIDER_PLUGINS)."
        )


class UnknownToolError(ToolError, LookupError):
    """A tool name that is not in the registry."""

    def __init__(self, name: str, available: tuple[str, ...]) -> None:
        self.name = name
        self.available = available
        choices = ", ".join(available) or "(none)"
        super().__init__(f"unknown tool {name!r}; available tools: {choices}")
