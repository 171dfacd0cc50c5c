"""Native chat-template tool calling.

Prompts come from the model's own chat template (:class:`NativeToolPrompt`,
through a transformers tokenizer or the raw template text of a GGUF);
model output is parsed back per tool-call family (:class:`NativeToolRenderer`,
twenty families) into content, reasoning and tool calls, with malformed
calls reported as typed failures that keep the raw text, whole or as it
streams (:class:`StreamingToolParser`).

This package is pure Python plus jinja2: it never imports torch or
transformers at import time, and it knows nothing about which tools exist.
"""

from meta_spider.native.errors import ChatTemplateError, MissingChatTemplateError, NativeToolError
from meta_spider.native.families import ToolCallFamily, coerce_family, detect_family
from meta_spider.native.messages import assistant_tool_calls_message, make_call_id, tool_result_message
from meta_spider.native.prompt import NativeToolPrompt, compile_chat_template, thinking_switches
from meta_spider.native.renderer import NativeToolRenderer
from meta_spider.native.results import ParsedToolCall, ParseResult, ParseSpan, ToolParseFailure
from meta_spider.native.streaming import StreamEvent, StreamingToolParser

__all__ = [
    "ChatTemplateError",
    "MissingChatTemplateError",
    "NativeToolError",
    "NativeToolPrompt",
    "NativeToolRenderer",
    "ParseResult",
    "ParseSpan",
    "ParsedToolCall",
    "StreamEvent",
    "StreamingToolParser",
    "ToolCallFamily",
    "ToolParseFailure",
    "assistant_tool_calls_message",
    "coerce_family",
    "compile_chat_template",
    "detect_family",
    "make_call_id",
    "thinking_switches",
    "tool_result_message",
]
