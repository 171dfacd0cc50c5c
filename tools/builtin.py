"""Built-in tools plugin: the safe ``calculator`` and the ``lookup`` tool.

Registered through the same ``register_tools`` hook a third-party plugin
uses. ``lookup`` starts over an empty knowledge base; install a real one with
``ToolRegistry.from_plugins(pm, knowledge_base=...)`` (the embedded world
supplies one). This module knows nothing about the agent loop.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from meta_spider.plugins import hookimpl
from meta_spider.tools.calculator import calculator
from meta_spider.tools.knowledge import EmptyKnowledgeBase, make_lookup_tool
from meta_spider.tools.tool import Tool

__all__ = ["ARITHMETIC_KEY", "CALCULATOR_TOOL", "is_calculator", "register_tools"]

ARITHMETIC_KEY = "arithmetic"
"""Where a tool that evaluates an arithmetic expression says so in its metadata (``True``)."""

CALCULATOR_TOOL = dataclasses.replace(Tool.from_function(calculator), metadata={ARITHMETIC_KEY: True})


def is_calculator(tool: Tool) -> bool:
    """Whether ``tool`` evaluates arithmetic (its metadata says so, as the built-in ``calculator``'s does)."""
    return tool.metadata.get(ARITHMETIC_KEY) is True


@hookimpl
def register_tools(register: Callable[[Tool], None]) -> None:
    """Register ``calculator`` and ``lookup``."""
    register(CALCULATOR_TOOL)
    register(make_lookup_tool(EmptyKnowledgeBase()))
