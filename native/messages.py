"""Transformers-form messages for tool calls and tool results.

Chat templates read assistant tool calls and tool results in one shape
(``{"role": "assistant", "tool_calls": [{"type": "function", "function":
{...}, "id": ...}]}`` and ``{"role": "tool", ...}``); these helpers build it,
including the 9-character alphanumeric ids Mistral templates demand. They
know nothing about any particular template beyond that shape.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable, Mapping
from typing import Any

from meta_spider.native.results import ParsedToolCall

__all__ = ["make_call_id", "assistant_tool_calls_message", "tool_result_message"]

_ID_ALPHABET = string.ascii_letters + string.digits
CALL_ID_LENGTH = 9


def make_call_id() -> str:
    """A fresh tool-call id: 9 alphanumeric characters, the only form
    Mistral's templates accept and harmless to every other template."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(CALL_ID_LENGTH))


def assistant_tool_calls_message(
    calls: Iterable[ParsedToolCall | tuple[str, Mapping[str, Any]]], content: str | None = None
) -> dict[str, Any]:
    """An assistant message carrying tool calls; calls without an id get one
    from :func:`make_call_id`. Raises ValueError for an empty list."""
    entries = []
    for call in calls:
        if isinstance(call, ParsedToolCall):
            name, arguments, call_id = call.name, call.arguments, call.call_id
        else:
            name, arguments, call_id = call[0], call[1], None
        entries.append(
            {
                "type": "function",
                "id": call_id or make_call_id(),
                "function": {"name": name, "arguments": dict(arguments)},
            }
        )
    if not entries:
        raise ValueError("an assistant tool-call message needs at least one call, got none")
    # Always a content string: several templates (Qwen3, Granite, DeepSeek
    # R1, Phi-3.5) read message.content on a tool-call turn and fail without it.
    return {"role": "assistant", "content": content or "", "tool_calls": entries}


def tool_result_message(name: str, content: str, call_id: str | None = None) -> dict[str, Any]:
    """A ``tool`` message answering the call ``call_id`` (when known)."""
    message: dict[str, Any] = {"role": "tool", "name": name, "content": content}
    if call_id is not None:
        message["tool_call_id"] = call_id
    return message
