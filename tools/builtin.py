"""Built-in tools plugin: the safe ``calculator`` and the ``lookup`` tool.

Registered through the same ``register_tools`` hook a third-party plugin
uses. ``lookup`` starts over an empty knowledge base; install a real one with
``ToolRegistry.from_plugins(pm, knowledge_base=...)`` (the embedded world
supplies one). This module knows nothing about the agent loop.
"""

from __future__ import annotations

from typing import Callable

from meta_spider.plugins import hookimpl
from meta_spider.tools.calculator import calculator
from meta_spider.tools.knowledge import EmptyKnowledgeBase, make_lookup_tool
from meta_spider.tools.tool import Tool

CALCULATOR_TOOL = Tool.from_function(calculator)


@hookimpl
def register_tools(register: Callable[[Tool], None]) -> None:
    """Register ``calculator`` and ``lookup``."""
    register(CALCULATOR_TOOL)
    register(make_lookup_tool(EmptyKnowledgeBase()))
