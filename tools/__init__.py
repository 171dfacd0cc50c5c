"""Tools the agent can call: :class:`Tool`, :class:`ToolRegistry`, the
knowledge-base ``lookup`` and the safe ``calculator``.

Importing this package is cheap (no torch, no model code); it knows nothing
about prompts, chat templates or the agent loop.
"""

from meta_spider.tools.calculator import (
    CalculatorDomainError,
    CalculatorError,
    CalculatorLimitError,
    CalculatorSyntaxError,
    calculator,
    evaluate,
)
from meta_spider.tools.errors import (
    DuplicateToolError,
    NothingFound,
    SeveralFound,
    ToolArgumentError,
    ToolDefinitionError,
    ToolError,
    UnknownToolError,
)
from meta_spider.tools.knowledge import (
    LOOKUP_TOOL_NAME,
    DictKnowledgeBase,
    EmptyKnowledgeBase,
    KnowledgeBase,
    TypoIndex,
    make_lookup_tool,
)
from meta_spider.tools.registry import ToolEntry, ToolRegistry
from meta_spider.tools.tool import Tool

__all__ = [
    "CalculatorDomainError",
    "CalculatorError",
    "CalculatorLimitError",
    "CalculatorSyntaxError",
    "DictKnowledgeBase",
    "DuplicateToolError",
    "EmptyKnowledgeBase",
    "KnowledgeBase",
    "LOOKUP_TOOL_NAME",
    "NothingFound",
    "SeveralFound",
    "Tool",
    "ToolArgumentError",
    "ToolDefinitionError",
    "ToolEntry",
    "ToolError",
    "ToolRegistry",
    "TypoIndex",
    "UnknownToolError",
    "calculator",
    "evaluate",
    "make_lookup_tool",
]
