"""Parsers that read tool calls out of model output, one per family.

Each parser walks the text left to right and hands every character to a
:class:`~meta_spider.native.results.SpanBuilder` as content, a call, or a
failed call attempt. JSON is only ever decoded with
``json.JSONDecoder.raw_decode`` at a position the family's markup points to
(right after ``<tool_call>``, ``[TOOL_CALLS][``, ``<|python_tag|>``, or, for
Llama 3's bare JSON calls, an opening brace whose decoded object must have a
call's shape); nothing searches for "the first ``{`` and the last ``}``".

When a call attempt breaks, the parser resynchronises at the family's
closing tag when there is one before the next opening marker, otherwise at
the next opening marker, otherwise at the end of the text; everything in
between is the failure's raw text.

These functions know the surface syntax only: nothing about which tools
exist or what their schemas say (the agent checks names and arguments).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Callable

from meta_spider.native.families import ToolCallFamily
from meta_spider.native.results import SpanBuilder

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

HERMES_OPEN = "<tool_call>"
HERMES_CLOSE = "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
MISTRAL_TOOL_CALLS = "[TOOL_CALLS]"
MISTRAL_ARGS = "[ARGS]"
MISTRAL_CALL_ID = "[CALL_ID]"
FUNCTION_OPEN = "<function="
FUNCTION_CLOSE = "</function>"

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\r\n"


# ---------------------------------------------------------------- shared helpers


class _JsonError:
    """Why JSON at a position could not be decoded (a value, not raised)."""

    __slots__ = ("reason", "truncated")

    def __init__(self, reason: str, truncated: bool) -> None:
        self.reason = reason
        self.truncated = truncated


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _decode_at(text: str, pos: int) -> tuple[Any, int] | _JsonError:
    """Decode one JSON value starting exactly at ``pos``."""
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        # An error at the very end means the model stopped mid-value; saying
        # so tells the agent to raise max_new_tokens rather than blame the model.
        # (An unterminated string means no closing quote up to the end.)
        truncated = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        kind = "truncated JSON" if truncated else "invalid JSON"
        where = "offset" if exc.msg.endswith(" at") else "at offset"
        return _JsonError(f"{kind}: {exc.msg} {where} {exc.pos - pos}", truncated)
    except (ValueError, RecursionError) as exc:
        # Integers longer than Python's digit limit raise ValueError; nesting
        # deeper than the C scanner allows raises RecursionError.
        return _JsonError(f"invalid JSON: {type(exc).__name__}: {exc}", False)


def _arguments_from(value: Any, key: str) -> dict[str, Any] | str:
    """The call's arguments as a dict, or the reason they are not one.

    A string holding a JSON object is accepted: OpenAI-style APIs send
    arguments that way and models trained on their transcripts copy it.
    """
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        decoded = _decode_at(value.strip(), 0)
        if not isinstance(decoded, _JsonError):
            inner, end = decoded
            if isinstance(inner, dict) and end == len(value.strip()):
                return inner
        return f"arguments not an object: '{key}' is a string that is not a JSON object"
    return f"arguments not an object: '{key}' is {type(value).__name__}"


def _read_call_object(
    value: Any, argument_keys: tuple[str, ...]
) -> tuple[str, dict[str, Any], str | None] | str:
    """Validate a decoded call object: ``(name, arguments, call_id)`` or a reason."""
    if not isinstance(value, dict):
        return f"call is not a JSON object (got {type(value).__name__})"
    if "name" not in value and isinstance(value.get("function"), dict):
        # The OpenAI message shape {"type": "function", "function": {...}}.
        call_id = value.get("id")
        value = {**value["function"], **({"id": call_id} if call_id is not None else {})}
    if "name" not in value:
        return "missing 'name'"
    name = value["name"]
    if not isinstance(name, str) or not name.strip():
        return f"'name' must be a non-empty string, got {name!r:.60}"
    arguments: dict[str, Any] | str = {}
    for key in argument_keys:
        if key in value:
            arguments = _arguments_from(value[key], key)
            break
    if isinstance(arguments, str):
        return arguments
    raw_id = value.get("id")
    call_id = None if raw_id is None else str(raw_id)
    return name, arguments, call_id


def _emit(builder: SpanBuilder, end: int, checked: tuple[str, dict[str, Any], str | None] | str) -> None:
    if isinstance(checked, str):
        builder.failure(end, checked)
    else:
        name, arguments, call_id = checked
        builder.call(end, name, arguments, call_id)


def _resync(text: str, search_from: int, opener: str, closer: str | None) -> int:
    """End of a broken call: through its closing tag if that comes before the
    next opener, else at the next opener, else the end of the text."""
    next_open = text.find(opener, search_from)
    if closer is not None:
        close = text.find(closer, search_from)
        if close >= 0 and (next_open < 0 or close < next_open):
            return close + len(closer)
    return next_open if next_open >= 0 else len(text)


# ---------------------------------------------------------------- hermes / qwen


def parse_hermes(builder: SpanBuilder) -> None:
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, any number."""
    text = builder.text
    while (start := text.find(HERMES_OPEN, builder.position)) >= 0:
        builder.content(start)
        body = _skip_ws(text, start + len(HERMES_OPEN))
        if text.startswith(HERMES_CLOSE, body):
            builder.failure(body + len(HERMES_CLOSE), "empty <tool_call>")
            continue
        decoded = _decode_at(text, body)
        if isinstance(decoded, _JsonError):
            end = _resync(text, body, HERMES_OPEN, HERMES_CLOSE)
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
            end = _resync(text, after, HERMES_OPEN, HERMES_CLOSE)
            builder.failure(end, "unexpected text after the JSON in <tool_call>")


# ---------------------------------------------------------------- <function=name>


def parse_function_tag(builder: SpanBuilder) -> None:
    """``<function=name>{json arguments}</function>``, any number."""
    text = builder.text
    while (start := text.find(FUNCTION_OPEN, builder.position)) >= 0:
        builder.content(start)
        name_start = start + len(FUNCTION_OPEN)
        name_end = text.find(">", name_start)
        name = text[name_start:name_end] if name_end >= 0 else ""
        if name_end < 0 or "\n" in name or "<" in name:
            end = _resync(text, name_start, FUNCTION_OPEN, FUNCTION_CLOSE)
            builder.failure(end, "unterminated <function= tag: no '>' after the name")
            continue
        if not name.strip():
            end = _resync(text, name_end, FUNCTION_OPEN, FUNCTION_CLOSE)
            builder.failure(end, "missing 'name' in <function=>")
            continue
        body = _skip_ws(text, name_end + 1)
        if text.startswith(FUNCTION_CLOSE, body):
            builder.call(body + len(FUNCTION_CLOSE), name, {})
            continue
        decoded = _decode_at(text, body)
        if isinstance(decoded, _JsonError):
            end = _resync(text, body, FUNCTION_OPEN, FUNCTION_CLOSE)
            closed = text.endswith(FUNCTION_CLOSE, 0, end)
            reason = decoded.reason if closed else f"unterminated <function={name}> ({decoded.reason})"
            builder.failure(end, reason)
            continue
        value, json_end = decoded
        after = _skip_ws(text, json_end)
        if text.startswith(FUNCTION_CLOSE, after):
            end = after + len(FUNCTION_CLOSE)
            if isinstance(value, dict):
                builder.call(end, name, value)
            else:
                builder.failure(end, f"arguments not an object (got {type(value).__name__})")
        elif after >= len(text):
            builder.failure(len(text), f"unterminated <function={name}>: no </function> after the JSON")
        else:
            end = _resync(text, after, FUNCTION_OPEN, FUNCTION_CLOSE)
            builder.failure(end, f"unexpected text after the JSON in <function={name}>")


# ---------------------------------------------------------------- mistral


def parse_mistral(builder: SpanBuilder) -> None:
    """``[TOOL_CALLS][{...}, {...}]`` and ``[TOOL_CALLS]name[CALL_ID]id[ARGS]{...}``.

    In the list form the opening ``[TOOL_CALLS][`` belongs to the first call's
    raw text, each ``, `` separator to the call after it and the closing
    ``]`` to the last call, so a single call's raw is the whole block.
    """
    text = builder.text
    while (start := text.find(MISTRAL_TOOL_CALLS, builder.position)) >= 0:
        builder.content(start)
        body = _skip_ws(text, start + len(MISTRAL_TOOL_CALLS))
        if body >= len(text):
            builder.failure(len(text), "empty [TOOL_CALLS]")
        elif text[body] == "[":
            _parse_mistral_list(builder, body + 1)
        else:
            _parse_mistral_named(builder, body)


def _parse_mistral_list(builder: SpanBuilder, cursor: int) -> None:
    text = builder.text
    first = True
    while True:
        item = _skip_ws(text, cursor)
        if item < len(text) and text[item] == "]":
            builder.failure(item + 1, "empty [TOOL_CALLS] list" if first else "trailing ',' in [TOOL_CALLS] list")
            return
        decoded = _decode_at(text, item)
        if isinstance(decoded, _JsonError):
            end = _resync(text, item, MISTRAL_TOOL_CALLS, None)
            reason = decoded.reason if decoded.truncated else f"{decoded.reason} in [TOOL_CALLS] list"
            builder.failure(end, reason)
            return
        value, json_end = decoded
        after = _skip_ws(text, json_end)
        checked = _read_call_object(value, ("arguments", "parameters"))
        if after < len(text) and text[after] == "]":
            _emit(builder, after + 1, checked)
            return
        if after < len(text) and text[after] == ",":
            _emit(builder, json_end, checked)
            cursor = after + 1
            first = False
            continue
        if after >= len(text):
            builder.failure(len(text), "unterminated [TOOL_CALLS] list: no closing ']'")
            return
        end = _resync(text, after, MISTRAL_TOOL_CALLS, None)
        builder.failure(end, "expected ',' or ']' after a call in [TOOL_CALLS] list")
        return


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
        end = _resync(text, head, MISTRAL_TOOL_CALLS, None)
        if cursor >= len(text):
            reason = "truncated [TOOL_CALLS]: no [ARGS] after the name"
        else:
            reason = "expected '[' or 'name[ARGS]' after [TOOL_CALLS]"
        builder.failure(end, reason)
        return
    body = _skip_ws(text, cursor + len(MISTRAL_ARGS))
    decoded = _decode_at(text, body)
    if isinstance(decoded, _JsonError):
        end = _resync(text, body, MISTRAL_TOOL_CALLS, None)
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
_LLAMA_RESYNC = re.compile(r"(?<=\n)\{|<\|python_tag\|>")
# Only a '{' that starts like a call counts as a failed call when its JSON
# is broken; any other broken '{' is ordinary content.
_LLAMA_CALL_START = re.compile(r'\{\s*"(?:name|parameters|arguments|function)"')
_LLAMA_STOPS = ("\n", "<|eom_id|>", "<|eot_id|>")


def _llama_resync(text: str, search_from: int) -> int:
    match = _LLAMA_RESYNC.search(text, search_from)
    return match.start() if match else len(text)


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
            builder.content(brace + 1)
            return None
        builder.content(start)
        builder.failure(max(_llama_resync(text, brace + 1), brace + 1), decoded.reason)
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
    stops = [pos for stop in _LLAMA_STOPS if (pos := text.find(stop, body)) >= 0]
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
    if call.args:
        return f"positional arguments in {name}(...): built-in calls take key=value only"
    arguments: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            return f"'**' arguments in {name}(...)"
        try:
            # literal_eval on the node only builds constants; JSON round trip
            # rejects sets, bytes and complex numbers a tool cannot receive.
            arguments[keyword.arg] = json.loads(json.dumps(ast.literal_eval(keyword.value)))
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as exc:
            return f"argument {keyword.arg!r} of {name}(...) is not a literal: {type(exc).__name__}"
    return name, arguments


PARSERS: dict[ToolCallFamily, Callable[[SpanBuilder], None]] = {
    ToolCallFamily.HERMES: parse_hermes,
    ToolCallFamily.LLAMA3: parse_llama3,
    ToolCallFamily.MISTRAL: parse_mistral,
    ToolCallFamily.FUNCTION_TAG: parse_function_tag,
}
