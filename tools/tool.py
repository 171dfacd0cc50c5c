"""The :class:`Tool`: a name, a description, a JSON schema and a callable.

A tool checks its arguments against its schema before it runs, so a model's
malformed call fails with a :class:`ToolArgumentError` naming the bad field
(the agent loop reports that back to the model) instead of a stray
``TypeError`` from deep inside the function. This module knows nothing
about models, prompts or plugins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from meta_spider.tools.errors import ToolDefinitionError
from meta_spider.tools.schema import function_schema, validate_arguments

__all__ = ["Tool", "TOOL_NAME_PATTERN"]

TOOL_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
"""Names every template and parser family accepts (OpenAI's function-name rule)."""


@dataclass(frozen=True)
class Tool:
    """A function the agent may call.

    ``parameters`` is a JSON schema of type ``object`` describing the keyword
    arguments; ``function(**arguments)`` does the work and returns anything
    printable (the loop turns it into the observation text).
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    function: Callable[..., Any] = field(repr=False, compare=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """Free-form facts about the tool (e.g. the knowledge base behind ``lookup``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not TOOL_NAME_PATTERN.match(self.name):
            raise ToolDefinitionError(
                str(self.name),
                f"the name {self.name!r} is not a valid tool name",
                "Use letters, digits, '_', '.', '-' (at most 64, not starting with a digit).",
            )
        if not isinstance(self.description, str) or not self.description.strip():
            raise ToolDefinitionError(
                self.name, f"the description {self.description!r} is empty", "Describe what the tool does in one line."
            )
        if not isinstance(self.parameters, Mapping) or self.parameters.get("type") != "object":
            raise ToolDefinitionError(
                self.name,
                f"parameters must be a JSON schema of type 'object', got {self.parameters!r}",
                'Use {"type": "object", "properties": {...}, "required": [...]}.',
            )
        if not callable(self.function):
            raise ToolDefinitionError(
                self.name, f"function {self.function!r} is not callable", "Pass the function itself."
            )

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> "Tool":
        """Describe a typed function as a tool: the name is the function's,
        the description its docstring's first line, the schema comes from the
        type hints and defaults (``Args:`` lines describe parameters).

        Raises :class:`ToolDefinitionError` for anything it cannot describe.
        """
        tool_name, summary, parameters = function_schema(function, name=name)
        return cls(tool_name, description or summary, parameters, function)

    def to_schema(self) -> dict[str, Any]:
        """The tool in OpenAI/transformers form, as chat templates expect it."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Return the arguments checked against the schema; raises
        :class:`ToolArgumentError` naming the bad field."""
        return validate_arguments(self.name, self.parameters, arguments)

    def invoke(self, arguments: Mapping[str, Any]) -> Any:
        """Validate ``arguments`` (a mapping, as parsed from a model's call)
        and run the function with them."""
        return self.function(**self.validate(dict(arguments) if isinstance(arguments, Mapping) else arguments))

    def __call__(self, **arguments: Any) -> Any:
        return self.invoke(arguments)
