"""Tool-call families: the handful of ways chat models write a tool call.

A *family* names one surface syntax for tool calls in model output. Many
models share one (Hermes-3, Qwen2.5 and Qwen3 all write ``<tool_call>``
blocks), so the parser and the call prefix depend on the family, not on the
model. :func:`detect_family` reads the family off the chat template text.

This module knows only marker strings. It does not parse output (see
:mod:`meta_spider.native.parsers`) and does not render templates (see
:mod:`meta_spider.native.prompt`).
"""

from __future__ import annotations

import enum

__all__ = ["ToolCallFamily", "detect_family", "coerce_family"]


class ToolCallFamily(str, enum.Enum):
    """The surface syntax of a tool call in model output."""

    #: Hermes / Qwen2.5 / Qwen3: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``,
    #: several blocks per turn.
    HERMES = "hermes"
    #: Llama 3.x: ``{"name": ..., "parameters": {...}}`` (also ``"arguments"``), optionally
    #: after ``<|python_tag|>``; several calls separated by ``;`` or newlines.
    LLAMA3 = "llama3"
    #: Mistral: ``[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}, ...]``, and the
    #: newer ``[TOOL_CALLS]name[ARGS]{...}`` form.
    MISTRAL = "mistral"
    #: ``<function=name>{json}</function>`` (Llama 3.1 custom-tool style, Functionary).
    FUNCTION_TAG = "function_tag"


# Checked in this order; the first marker found in the template wins. Order
# matters because templates mention more than one syntax: Qwen3-Coder writes
# ``<function=`` *inside* ``<tool_call>``, Functionary has an ``ipython`` role
# *and* ``<function=`` calls. The most specific marker comes first.
_MARKERS: tuple[tuple[str, ToolCallFamily], ...] = (
    ("[TOOL_CALLS]", ToolCallFamily.MISTRAL),
    ("<tool_call>", ToolCallFamily.HERMES),
    ("<function=", ToolCallFamily.FUNCTION_TAG),
    ("<|python_tag|>", ToolCallFamily.LLAMA3),
    ("ipython", ToolCallFamily.LLAMA3),
)


def detect_family(template: str | None) -> ToolCallFamily:
    """Return the tool-call family a chat template teaches its model.

    Looks for the family's markers (``[TOOL_CALLS]``, ``<tool_call>``,
    ``<function=``, ``<|python_tag|>`` / ``ipython``) in the template text.
    A template without any marker, or no template at all, gives
    :attr:`ToolCallFamily.HERMES`: it is the most widely trained syntax, and
    an explicit family passed to the renderer overrides this guess.
    """
    if not template:
        return ToolCallFamily.HERMES
    for marker, family in _MARKERS:
        if marker in template:
            return family
    return ToolCallFamily.HERMES


def coerce_family(family: ToolCallFamily | str) -> ToolCallFamily:
    """Turn a family name (``"hermes"``, ``"LLAMA3"``, ...) into the enum.

    Raises ValueError naming the bad value and the accepted names.
    """
    if isinstance(family, ToolCallFamily):
        return family
    if isinstance(family, str):
        key = family.strip().lower()
        for member in ToolCallFamily:
            if key in (member.value, member.name.lower()):
                return member
    accepted = ", ".join(repr(member.value) for member in ToolCallFamily)
    raise ValueError(f"unknown tool-call family {family!r}; use one of {accepted}")
