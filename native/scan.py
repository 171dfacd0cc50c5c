"""Shared reading helpers of the tool-call parsers.

JSON is only ever decoded with ``json.JSONDecoder.raw_decode`` at a position
the family's markup points to; a call object is validated into ``(name,
arguments, call_id)`` or a reason; a broken call resynchronises at the next
closing or opening marker through the builder's memoised ``find``, so a
marker that never comes is searched for once, not once per attempt (the
parsers stay linear in the length of the output).

Nothing here knows a particular family's markers.
"""

from __future__ import annotations

import json
from typing import Any

from meta_spider.native.results import SpanBuilder

__all__ = [
    "JsonError",
    "skip_ws",
    "decode_at",
    "arguments_from",
    "read_call_object",
    "emit",
    "resync",
    "parse_call_list",
    "xml_value",
    "CallChecked",
]

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\r\n"

#: A validated call ``(name, arguments, call_id)`` or the reason it is not one.
CallChecked = tuple[str, dict[str, Any], str | None] | str


class JsonError:
    """Why JSON at a position could not be decoded (a value, not raised)."""

    __slots__ = ("reason", "truncated", "position")

    def __init__(self, reason: str, truncated: bool, position: int = -1) -> None:
        self.reason = reason
        self.truncated = truncated
        #: Where the decoder stopped (absolute), -1 when unknown.
        self.position = position


def skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


_FIRST_WINDOW = 4096
_LITERALS = ("null", "true", "false", "NaN", "Infinity", "-Infinity")


def decode_at(text: str, pos: int) -> tuple[Any, int] | JsonError:
    """Decode one JSON value starting exactly at ``pos``.

    The decoder sees a window of the text that grows (x4) only while the
    value may run past it. A whole-text decode would make every failure
    cost O(len(text)) (``JSONDecodeError`` counts the lines before the error
    position), and a parser that fails at many places would be quadratic.
    """
    window = _FIRST_WINDOW
    while True:
        end = min(len(text), pos + window)
        chunk = text[pos:end]
        more = end < len(text)
        try:
            value, stop = _DECODER.raw_decode(chunk, 0)
        except json.JSONDecodeError as exc:
            rest = chunk[exc.pos :].rstrip()
            at_end = (
                not rest
                or exc.msg.startswith("Unterminated string")
                or any(literal.startswith(rest) for literal in _LITERALS)  # "nu" of a cut-off null
            )
            if more and at_end:
                window *= 4
                continue
            # An error at the very end means the model stopped mid-value; saying
            # so tells the agent to raise max_new_tokens rather than blame the model.
            kind = "truncated JSON" if at_end else "invalid JSON"
            where = "offset" if exc.msg.endswith(" at") else "at offset"
            return JsonError(f"{kind}: {exc.msg} {where} {exc.pos}", at_end, pos + exc.pos)
        except (ValueError, RecursionError) as exc:
            # Integers longer than Python's digit limit raise ValueError; nesting
            # deeper than the C scanner allows raises RecursionError.
            return JsonError(f"invalid JSON: {type(exc).__name__}: {exc}", False)
        if more and stop >= len(chunk.rstrip()):
            window *= 4  # a number or literal may go on past the window
            continue
        return value, pos + stop


def arguments_from(value: Any, key: str) -> dict[str, Any] | str:
    """The call's arguments as a dict, or the reason they are not one.

    A string holding a JSON object is accepted: OpenAI-style APIs send
    arguments that way and models trained on their transcripts copy it.
    """
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        decoded = decode_at(value.strip(), 0)
        if not isinstance(decoded, JsonError):
            inner, end = decoded
            if isinstance(inner, dict) and end == len(value.strip()):
                return inner
        return f"arguments not an object: '{key}' is a string that is not a JSON object"
    return f"arguments not an object: '{key}' is {type(value).__name__}"


def read_call_object(
    value: Any,
    argument_keys: tuple[str, ...],
    name_keys: tuple[str, ...] = ("name",),
    id_keys: tuple[str, ...] = ("id",),
) -> CallChecked:
    """Validate a decoded call object: ``(name, arguments, call_id)`` or a reason."""
    if not isinstance(value, dict):
        return f"call is not a JSON object (got {type(value).__name__})"
    if not any(key in value for key in name_keys) and isinstance(value.get("function"), dict):
        # The OpenAI message shape {"type": "function", "function": {...}}.
        call_id = value.get("id")
        value = {**value["function"], **({"id": call_id} if call_id is not None else {})}
    name_key = next((key for key in name_keys if key in value), None)
    if name_key is None:
        return f"missing '{name_keys[0]}'"
    name = value[name_key]
    if not isinstance(name, str) or not name.strip():
        return f"'{name_key}' must be a non-empty string, got {name!r:.60}"
    arguments: dict[str, Any] | str = {}
    for key in argument_keys:
        if key in value:
            arguments = arguments_from(value[key], key)
            break
    if isinstance(arguments, str):
        return arguments
    raw_id = next((value[key] for key in id_keys if value.get(key) is not None), None)
    call_id = None if raw_id is None else str(raw_id)
    return name, arguments, call_id


def emit(builder: SpanBuilder, end: int, checked: CallChecked) -> None:
    if isinstance(checked, str):
        builder.failure(end, checked)
    else:
        name, arguments, call_id = checked
        builder.call(end, name, arguments, call_id)


def resync(builder: SpanBuilder, search_from: int, opener: str | None, closer: str | None) -> int:
    """End of a broken call: through its closing tag if that comes before the
    next opener, else at the next opener, else the end of the text."""
    text = builder.text
    next_open = builder.find(opener, search_from) if opener else -1
    if closer:
        close = builder.find(closer, search_from)
        if close >= 0 and (next_open < 0 or close < next_open):
            return close + len(closer)
    return next_open if next_open >= 0 else len(text)


def parse_call_list(
    builder: SpanBuilder,
    cursor: int,
    *,
    label: str,
    opener: str | None,
    closer: str | None = None,
    argument_keys: tuple[str, ...] = ("arguments", "parameters"),
    name_keys: tuple[str, ...] = ("name",),
    id_keys: tuple[str, ...] = ("id",),
    fence: bool = False,
) -> None:
    """Read ``{call}, {call}, ...]`` starting just after a list's ``[``.

    The markup before the list belongs to the first call's raw text, each
    ``,`` separator to the call after it, and the closing ``]`` (plus
    ``closer`` and a closing code ``fence`` when present) to the last call,
    so a single call's raw is the whole block.
    """
    text = builder.text
    first = True
    while True:
        item = skip_ws(text, cursor)
        if item < len(text) and text[item] == "]":
            end = _block_end(builder, item + 1, closer, fence)
            builder.failure(end, f"empty {label} list" if first else f"trailing ',' in {label} list")
            return
        decoded = decode_at(text, item)
        if isinstance(decoded, JsonError):
            # Truncated JSON runs to the end of the output: nothing after it is markup.
            end = len(text) if decoded.truncated else resync(builder, item, opener, closer)
            reason = decoded.reason if decoded.truncated else f"{decoded.reason} in {label} list"
            builder.failure(max(end, item + 1 if item < len(text) else len(text)), reason)
            return
        value, json_end = decoded
        after = skip_ws(text, json_end)
        checked = read_call_object(value, argument_keys, name_keys, id_keys)
        if after < len(text) and text[after] == "]":
            emit(builder, _block_end(builder, after + 1, closer, fence), checked)
            return
        if after < len(text) and text[after] == ",":
            emit(builder, json_end, checked)
            cursor = after + 1
            first = False
            continue
        if after >= len(text):
            builder.failure(len(text), f"unterminated {label} list: no closing ']'")
            return
        end = resync(builder, after, opener, closer)
        builder.failure(max(end, after + 1), f"expected ',' or ']' after a call in {label} list")
        return


def _block_end(builder: SpanBuilder, end: int, closer: str | None, fence: bool) -> int:
    """``end`` extended over an optional closing fence and closing marker."""
    text = builder.text
    if fence:
        after = skip_ws(text, end)
        if text.startswith("```", after):
            end = after + 3
    if closer:
        after = skip_ws(text, end)
        if text.startswith(closer, after):
            end = after + len(closer)
    return end


def xml_value(raw: str) -> Any:
    """A parameter value written between XML-ish tags: JSON when it reads as
    a JSON value (numbers, booleans, objects, lists, quoted strings), else
    the text itself. One newline on each side is layout, not value."""
    value = raw[1:] if raw.startswith("\n") else raw
    value = value[:-1] if value.endswith("\n") else value
    stripped = value.strip()
    if stripped and stripped[0] in '{["-0123456789tfn':
        decoded = decode_at(stripped, 0)
        if not isinstance(decoded, JsonError) and decoded[1] == len(stripped):
            return decoded[0]
    return value
