"""Parsers that read tool calls out of model output, one per family.

This module holds the Hermes, Mistral and Llama 3 parsers and
:data:`PARSERS`, the table of every family's parser; the tag-delimited
families live in :mod:`meta_spider.native.parsers_tagged`, the JSON-block,
pythonic, recipient and channel families in
:mod:`meta_spider.native.parsers_other`.

Each parser walks the text left to right and hands every character to a
:class:`~meta_spider.native.results.SpanBuilder` as content, a call, or a
failed call attempt. JSON is only ever decoded with
``json.JSONDecoder.raw_decode`` at a position the family's markup points to
(right after ``<tool_call>``, ``[TOOL_CALLS][``, ``<|python_tag|>``, or, for
Llama 3's bare JSON calls, an opening brace whose decoded object must have a
call's shape); nothing searches for "the first ``{`` and the last ``}``".

When a call attempt breaks, the parser resynchronises at the family's
closing tag when there is one before the next opening marker, otherwise at
the next opening marker, otherwise at the end of the text (truncated JSON:
the end of the text); everything in between is the failure's raw text.

These functions know the surface syntax only: nothing about which tools
exist or what their schemas say (the agent checks names and arguments).
"""

from __future__ import annotations

import ast
import re
from typing import Any, Callable

from meta_spider.native.families import ToolCallFamily
from meta_spider.native.parsers_tagged import (
    FUNCTION_CLOSE,
    FUNCTION_OPEN,
    parse_deepseek,
    parse_function_tag,
    parse_glm45,
    parse_kimi_k2,
    parse_minimax_m2,
    parse_qwen3_coder,
    parse_seed_oss,
)
from meta_spider.native.parsers_other import (
    parse_command_r,
    parse_functionary_v32,
    parse_functools,
    parse_granite,
    parse_harmony,
    parse_internlm,
    parse_nemotron,
    parse_pythonic,
    parse_xlam,
)
from meta_spider.native.parsers_other import keyword_arguments
from meta_spider.native.results import SpanBuilder
from meta_spider.native.scan import JsonError as _JsonError
from meta_spider.native.scan import decode_at as _decode_at
from meta_spider.native.scan import emit as _emit
from meta_spider.native.scan import parse_call_list
from meta_spider.native.scan import arguments_from as _arguments_from
from meta_spider.native.scan import read_call_object as _read_call_object
from meta_spider.native.scan import resync as _resync
from meta_spider.native.scan import skip_ws as _skip_ws

__all__ = [
    "PARSERS",
    "parse_hermes",
    "parse_llama3",
    "parse_mistral",
    "parse_function_tag",
    "HERMES_OPEN",
    "HERMES_CLOSE",
    "PYTHON_TAG",
    "MISTRAL_TOOL_CALLS",
    "MISTRAL_ARGS",
    "MISTRAL_CALL_ID",
    "FUNCTION_OPEN",
    "FUNCTION_CLOSE",
]

HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
MISTRAL_TOOL_CALLS, MISTRAL_ARGS, MISTRAL_CALL_ID = "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"

# ---------------------------------------------------------------- hermes / qwen


def parse_hermes(builder: SpanBuilder) -> None:
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, any number."""
    text = builder.text
    while (start := builder.find(HERMES_OPEN, builder.position)) >= 0:
        builder.content(start)
        body = _skip_ws(text, start + len(HERMES_OPEN))
        if text.startswith(HERMES_CLOSE, body):
            builder.failure(body + len(HERMES_CLOSE), "empty <tool_call>")
            continue
        decoded = _decode_at(text, body)
        if isinstance(decoded, _JsonError):
            end = _resync(builder, body, HERMES_OPEN, HERMES_CLOSE)
            closed = text.endswith(HERMES_CLOSE, 0, end)
            reason = decoded.reason if closed else f"unterminated <tool_call> ({decoded.reason})"
            builder.failure(end, reason)
            continue
        value, json_end = decoded
        after = _skip_ws(text, json_end)
        if text.startswith(HERMES_CLOSE, after):
            checked = _read_call_object(value, ("arguments", "parameters"))
            _emit(builder, after + len(HERMES_CLOSE), checked)
        elif after >= len(text):
            builder.failure(len(text), "unterminated <tool_call>: no </tool_call> after the JSON")
        else:
            end = _resync(builder, after, HERMES_OPEN, HERMES_CLOSE)
            builder.failure(end, "unexpected text after the JSON in <tool_call>")


# ---------------------------------------------------------------- mistral


def parse_mistral(builder: SpanBuilder) -> None:
    """``[TOOL_CALLS][{...}, {...}]`` and ``[TOOL_CALLS]name[CALL_ID]id[ARGS]{...}``.

    In the list form the opening ``[TOOL_CALLS][`` belongs to the first call's
    raw text, each ``, `` separator to the call after it and the closing
    ``]`` to the last call, so a single call's raw is the whole block.
    """
    text = builder.text
    while (start := builder.find(MISTRAL_TOOL_CALLS, builder.position)) >= 0:
        builder.content(start)
        body = _skip_ws(text, start + len(MISTRAL_TOOL_CALLS))
        if body >= len(text):
            builder.failure(len(text), "empty [TOOL_CALLS]")
        elif text[body] == "[":
            _parse_mistral_list(builder, body + 1)
        else:
            _parse_mistral_named(builder, body)


def _parse_mistral_list(builder: SpanBuilder, cursor: int) -> None:
    parse_call_list(builder, cursor, label="[TOOL_CALLS]", opener=MISTRAL_TOOL_CALLS)


_MISTRAL_NAME = re.compile(r"[^\s\[\]{}]+")


def _parse_mistral_named(builder: SpanBuilder, head: int) -> None:
    """The v11+ tokenizer form: ``[TOOL_CALLS]name[ARGS]{...}``, optionally
    with ``[CALL_ID]id`` between the name and ``[ARGS]``."""
    text = builder.text
    name_match = _MISTRAL_NAME.match(text, head)
    cursor = name_match.end() if name_match else head
    call_id: str | None = None
    if text.startswith(MISTRAL_CALL_ID, cursor):
        id_match = _MISTRAL_NAME.match(text, cursor + len(MISTRAL_CALL_ID))
        if id_match:
            call_id = id_match.group()
            cursor = id_match.end()
    if name_match is None or not text.startswith(MISTRAL_ARGS, cursor):
        end = _resync(builder, head, MISTRAL_TOOL_CALLS, None)
        if cursor >= len(text):
            reason = "truncated [TOOL_CALLS]: no [ARGS] after the name"
        else:
            reason = "expected '[' or 'name[ARGS]' after [TOOL_CALLS]"
        builder.failure(end, reason)
        return
    body = _skip_ws(text, cursor + len(MISTRAL_ARGS))
    decoded = _decode_at(text, body)
    if isinstance(decoded, _JsonError):
        end = _resync(builder, body, MISTRAL_TOOL_CALLS, None)
        builder.failure(end, decoded.reason)
        return
    value, json_end = decoded
    checked = _arguments_from(value, "[ARGS]")
    if isinstance(checked, str):
        builder.failure(json_end, checked)
    else:
        builder.call(json_end, name_match.group(), checked, call_id)


# ---------------------------------------------------------------- llama 3.x

# Where a Llama 3 call may start: after <|python_tag|>, or at any '{'
# (models often write a sentence and then the call on the same line). A '{'
# only becomes a call when the JSON decoded there has a call's shape.
_LLAMA_CANDIDATE = re.compile(r"<\|python_tag\|>|\{")
# A broken JSON call ends where the next one can begin: a '{' at column 0
# (pretty-printed inner objects are indented) or the next <|python_tag|>.
# Only a '{' that starts like a call counts as a failed call when its JSON
# is broken; any other broken '{' is ordinary content.
_LLAMA_CALL_START = re.compile(r'\{\s*"(?:name|parameters|arguments|function)"')
_LLAMA_STOPS = ("\n", "<|eom_id|>", "<|eot_id|>")


def _llama_resync(builder: SpanBuilder, search_from: int) -> int:
    line_brace = builder.find("\n{", max(search_from - 1, 0))
    tag = builder.find(PYTHON_TAG, search_from)
    ends = [pos for pos in (line_brace + 1 if line_brace >= 0 else -1, tag) if pos >= 0]
    return min(ends) if ends else len(builder.text)


def parse_llama3(builder: SpanBuilder) -> None:
    """``{"name": ..., "parameters": {...}}`` calls, optionally after
    ``<|python_tag|>``, separated by ``;`` or newlines; also the built-in
    ``<|python_tag|>tool.call(key="value")`` form.

    A JSON object counts as a call when it carries ``parameters`` /
    ``arguments`` (or the OpenAI ``function`` shape); any other JSON is the
    model's answer and stays content, and a broken ``{`` counts as a failed
    call only when it starts like one (``{"name"``, ``{"parameters"``, ...).
    After ``<|python_tag|>`` whatever follows is a call attempt.
    """
    text = builder.text
    chained_at: int | None = None
    while True:
        if chained_at is not None:
            # "; " between two calls is markup: it opens the next call's raw.
            start, brace, forced = builder.position, chained_at, False
            if text.startswith(PYTHON_TAG, chained_at):
                brace, forced = _skip_ws(text, chained_at + len(PYTHON_TAG)), True
            chained_at = None
        else:
            match = _LLAMA_CANDIDATE.search(text, builder.position)
            if match is None:
                return
            if match.group() == PYTHON_TAG:
                start, brace, forced = match.start(), _skip_ws(text, match.end()), True
            else:
                start, brace, forced = match.start(), match.start(), False
        end = _llama_attempt(builder, start, brace, forced)
        if end is None:
            continue
        separator = _skip_ws(text, end)
        if separator < len(text) and text[separator] == ";":
            following = _skip_ws(text, separator + 1)
            if text.startswith("{", following) or text.startswith(PYTHON_TAG, following):
                chained_at = following


def _llama_attempt(builder: SpanBuilder, start: int, brace: int, forced: bool) -> int | None:
    """Read one call attempt whose markup starts at ``start`` and whose body
    starts at ``brace``. Returns the end of the emitted call or failure, or
    None when the text there is not a call (it is then content)."""
    text = builder.text
    if brace >= len(text):
        builder.content(start)
        builder.failure(len(text), "empty call after <|python_tag|>")
        return len(text)
    if text[brace] != "{":
        # Only reachable after <|python_tag|>: Llama's built-in tool syntax.
        builder.content(start)
        return _llama_python_call(builder, brace)
    decoded = _decode_at(text, brace)
    if isinstance(decoded, _JsonError):
        if not forced and not _LLAMA_CALL_START.match(text, brace):
            # Not a call: skip what the decoder read (a valid JSON prefix) in
            # one step, so deeply nested broken JSON costs linear time, not a
            # decode per '{'; nesting too deep to decode skips to the next line.
            skip = decoded.position if decoded.position > brace else brace + 1
            if decoded.position < 0 and "RecursionError" in decoded.reason:
                skip = max(_llama_resync(builder, brace + 1), brace + 1)
            builder.content(skip)
            return None
        builder.content(start)
        builder.failure(max(_llama_resync(builder, brace + 1), brace + 1), decoded.reason)
        return builder.position
    value, json_end = decoded
    is_attempt = forced or (
        isinstance(value, dict)
        and ("parameters" in value or "arguments" in value or isinstance(value.get("function"), dict))
    )
    if not is_attempt:
        builder.content(json_end)
        return None
    builder.content(start)
    _emit(builder, json_end, _read_call_object(value, ("parameters", "arguments")))
    return json_end


def _llama_python_call(builder: SpanBuilder, body: int) -> int:
    """``brave_search.call(query="...")`` after ``<|python_tag|>``: parsed
    with ``ast`` (never evaluated) up to the end of the line or turn."""
    text = builder.text
    stops = [pos for stop in _LLAMA_STOPS if (pos := builder.find(stop, body)) >= 0]
    end = min(stops) if stops else len(text)
    checked = _python_call(text[body:end])
    if isinstance(checked, str):
        builder.failure(max(end, builder.position + 1), checked)
        return builder.position
    name, arguments = checked
    builder.call(end, name, arguments)
    return end


def _python_call(source: str) -> tuple[str, dict[str, Any]] | str:
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return f"unrecognised call after <|python_tag|>: {type(exc).__name__}"
    call = tree.body
    if not isinstance(call, ast.Call):
        return "unrecognised call after <|python_tag|>: not a call expression"
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "call" and isinstance(func.value, ast.Name):
        name = func.value.id
    elif isinstance(func, ast.Name):
        name = func.id
    else:
        return "unrecognised call after <|python_tag|>: expected tool.call(...)"
    arguments = keyword_arguments(call, name, "built-in calls take key=value only")
    return arguments if isinstance(arguments, str) else (name, arguments)


PARSERS: dict[ToolCallFamily, Callable[[SpanBuilder], None]] = {
    ToolCallFamily.HERMES: parse_hermes,
    ToolCallFamily.QWEN3_CODER: parse_qwen3_coder,
    ToolCallFamily.LLAMA3: parse_llama3,
    ToolCallFamily.PYTHONIC: parse_pythonic,
    ToolCallFamily.MISTRAL: parse_mistral,
    ToolCallFamily.FUNCTION_TAG: parse_function_tag,
    ToolCallFamily.FUNCTIONARY_V32: parse_functionary_v32,
    ToolCallFamily.FUNCTOOLS: parse_functools,
    ToolCallFamily.GRANITE: parse_granite,
    ToolCallFamily.DEEPSEEK_R1: parse_deepseek,
    ToolCallFamily.DEEPSEEK_V3: parse_deepseek,
    ToolCallFamily.COMMAND_R: parse_command_r,
    ToolCallFamily.INTERNLM: parse_internlm,
    ToolCallFamily.XLAM: parse_xlam,
    ToolCallFamily.HARMONY: parse_harmony,
    ToolCallFamily.KIMI_K2: parse_kimi_k2,
    ToolCallFamily.GLM45: parse_glm45,
    ToolCallFamily.MINIMAX_M2: parse_minimax_m2,
    ToolCallFamily.NEMOTRON: parse_nemotron,
    ToolCallFamily.SEED_OSS: parse_seed_oss,
}
