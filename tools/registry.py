"""The :class:`ToolRegistry`: the tools an agent may call, each remembered
with the source (plugin) that gave it.

A name registered twice is an error naming both sources, never a silent
override. The registry also installs the knowledge base behind the built-in
``lookup`` tool. It knows nothing about prompts or how calls are parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from meta_spider.plugins import PluginRegistrationError, collect
from meta_spider.tools.errors import DuplicateToolError, UnknownToolError
from meta_spider.tools.knowledge import LOOKUP_TOOL_NAME, KnowledgeBase, make_lookup_tool
from meta_spider.tools.tool import Tool

if TYPE_CHECKING:
    import pluggy

__all__ = ["ToolEntry", "ToolRegistry"]


@dataclass(frozen=True)
class ToolEntry:
    """A registered tool and where it came from (a plugin name)."""

    tool: Tool
    source: str


class ToolRegistry:
    """Tools by name, in registration order."""

    def __init__(self, tools: Iterable[Tool] = (), *, source: str = "(direct)") -> None:
        self._entries: dict[str, ToolEntry] = {}
        for tool in tools:
            self.register(tool, source=source)

    @classmethod
    def from_plugins(
        cls, pm: "pluggy.PluginManager", *, knowledge_base: KnowledgeBase | None = None
    ) -> "ToolRegistry":
        """Collect every plugin's ``register_tools``; with ``knowledge_base``
        the ``lookup`` tool answers from it (see :meth:`install_knowledge_base`).

        Raises :class:`DuplicateToolError` naming both plugins, and
        :class:`~meta_spider.plugins.PluginRegistrationError` when a plugin
        registers something that is not a :class:`Tool`.
        """
        registry = cls()
        for registration in collect(pm, "register_tools"):
            if len(registration.args) != 1 or not isinstance(registration.args[0], Tool):
                raise PluginRegistrationError(
                    registration.plugin,
                    "register_tools",
                    f"expected register(tool: meta_spider.tools.Tool), got {registration.args!r}",
                )
            registry.register(registration.args[0], source=registration.plugin)
        if knowledge_base is not None:
            registry.install_knowledge_base(knowledge_base)
        return registry

    def register(self, tool: Tool, *, source: str = "(direct)") -> None:
        """Add ``tool``; a name already present raises :class:`DuplicateToolError`."""
        if not isinstance(tool, Tool):
            raise TypeError(f"register() takes a Tool, got {tool!r}; build one with Tool.from_function")
        if tool.name in self._entries:
            raise DuplicateToolError(tool.name, self._entries[tool.name].source, source)
        self._entries[tool.name] = ToolEntry(tool, source)

    def install_knowledge_base(self, knowledge_base: KnowledgeBase,
                               schema: Mapping[str, Any] | None = None) -> Tool:
        """Make ``lookup`` answer from ``knowledge_base`` and return the new tool.

        Replaces the registered ``lookup`` (keeping its source: it is the same
        tool over different facts) or adds one with source
        ``knowledge_base:<name>`` when none is registered. ``schema`` is
        passed to :func:`make_lookup_tool`.
        """
        tool = make_lookup_tool(knowledge_base, schema)
        existing = self._entries.get(LOOKUP_TOOL_NAME)
        source = existing.source if existing else f"knowledge_base:{knowledge_base.name}"
        self._entries[LOOKUP_TOOL_NAME] = ToolEntry(tool, source)
        return tool

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or None."""
        entry = self._entries.get(name)
        return entry.tool if entry else None

    def __getitem__(self, name: str) -> Tool:
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownToolError(name, self.names())
        return entry.tool

    def source(self, name: str) -> str:
        """The plugin (or other source) that registered ``name``."""
        if name not in self._entries:
            raise UnknownToolError(name, self.names())
        return self._entries[name].source

    def entries(self) -> list[ToolEntry]:
        """Every tool with its source, in registration order."""
        return list(self._entries.values())

    def names(self) -> tuple[str, ...]:
        """Tool names in registration order."""
        return tuple(self._entries)

    def schemas(self) -> list[dict[str, Any]]:
        """Every tool in OpenAI form, for the chat template's ``tools=``."""
        return [entry.tool.to_schema() for entry in self._entries.values()]

    def subset(self, names: Iterable[str]) -> "ToolRegistry":
        """A registry holding only ``names`` (sources kept); unknown names raise."""
        chosen = ToolRegistry()
        for name in names:
            self[name]  # raises UnknownToolError with the choices
            chosen._entries[name] = self._entries[name]
        return chosen

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Tool]:
        return iter([entry.tool for entry in self._entries.values()])

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ToolRegistry({list(self._entries)!r})"
