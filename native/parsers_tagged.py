"""Parsers of the tag-delimited families: a call is an opening tag with the
tool's name, the arguments (JSON or one tag per parameter) and a closing
tag, optionally grouped in a section (``<tool_call>...</tool_call>`` around
Qwen3-Coder's ``<function=...>``, DeepSeek's ``<｜tool▁calls▁begin｜>``).

Families: ``<function=name>`` (Functionary v3.1; JSON or ``<parameter=k>``
bodies), Qwen3-Coder, Seed-OSS, GLM 4.5 (``<arg_key>/<arg_value>``),
MiniMax-M2 (``<invoke name=...>``), Kimi K2 and DeepSeek R1/V3.

A section's opening and closing markers belong to the raw text of its first
and last call, so no markup is left in the content. A broken call
resynchronises at its closing tag, else at the next opening tag, else at the
end of the text (see :func:`~meta_spider.native.scan.resync`).
"""

from __future__ import annotations

from typing import Any, Callable

from meta_spider.native.results import SpanBuilder
from meta_spider.native.scan import (
    CallChecked,
    JsonError,
    decode_at,
    emit,
    resync,
    skip_ws,
    xml_value,
)

__all__ = [
    "FUNCTION_OPEN",
    "FUNCTION_CLOSE",
    "parse_function_tag",
    "parse_qwen3_coder",
    "parse_seed_oss",
    "parse_glm45",
    "parse_minimax_m2",
    "parse_kimi_k2",
    "parse_deepseek",
]

FUNCTION_OPEN = "<function="
FUNCTION_CLOSE = "</function>"
PARAMETER_OPEN = "<parameter="
PARAMETER_CLOSE = "</parameter>"
HERMES_OPEN = "<tool_call>"
HERMES_CLOSE = "</tool_call>"
SEED_OPEN = "<seed:tool_call>"
SEED_CLOSE = "</seed:tool_call>"
GLM_KEY_OPEN, GLM_KEY_CLOSE = "<arg_key>", "</arg_key>"
GLM_VALUE_OPEN, GLM_VALUE_CLOSE = "<arg_value>", "</arg_value>"
MINIMAX_OPEN, MINIMAX_CLOSE = "<minimax:tool_call>", "</minimax:tool_call>"
INVOKE_OPEN, INVOKE_CLOSE = "<invoke name=", "</invoke>"
MINIMAX_PARAMETER_OPEN = "<parameter name="
KIMI_SECTION_OPEN, KIMI_SECTION_CLOSE = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
KIMI_CALL_OPEN, KIMI_ARGS, KIMI_CALL_CLOSE = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"
DEEPSEEK_SECTION_OPEN, DEEPSEEK_SECTION_CLOSE = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
DEEPSEEK_CALL_OPEN, DEEPSEEK_SEP, DEEPSEEK_CALL_CLOSE = "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>"

#: Reads one call whose opening tag starts at the position given; returns
#: the end of the call's text and the validated call (or the reason).
CallReader = Callable[[SpanBuilder, int], tuple[int, CallChecked]]


def _parse_sectioned(
    builder: SpanBuilder, call_open: str, read_call: CallReader, section: tuple[str, str] | None = None
) -> None:
    """Calls opened by ``call_open``, alone or grouped inside ``section``."""
    text = builder.text
    needles = (section[0], call_open) if section else (call_open,)
    while True:
        start, which = builder.find_any(needles, builder.position)
        if start < 0:
            return
        builder.content(start)
        call_at = start
        if section is not None and which == section[0]:
            call_at = skip_ws(text, start + len(section[0]))
            if not text.startswith(call_open, call_at):
                if text.startswith(section[1], call_at):
                    builder.failure(call_at + len(section[1]), f"empty {section[0]}")
                else:
                    end = resync(builder, call_at, section[0], section[1])
                    builder.failure(max(end, start + len(section[0])), f"expected {call_open} after {section[0]}")
                continue
        while True:
            end, checked = read_call(builder, call_at)
            end = max(end, call_at + 1)
            after = skip_ws(text, end)
            if section is not None and text.startswith(section[1], after):
                emit(builder, after + len(section[1]), checked)
                break
            emit(builder, end, checked)
            if section is not None and text.startswith(call_open, after) and which == section[0]:
                call_at = after  # the next call of the same section
                continue
            break


def _read_name(text: str, start: int, stop: str) -> tuple[str, int] | None:
    """The name between ``start`` and ``stop`` on one line (None when absent)."""
    end = text.find(stop, start, start + 512)
    if end < 0:
        return None
    name = text[start:end]
    if "\n" in name or "<" in name:
        return None
    return name.strip(), end


def _json_arguments(
    builder: SpanBuilder, body: int, close: str, opener: str, label: str
) -> tuple[int, CallChecked] | tuple[int, dict[str, Any]]:
    """JSON arguments at ``body`` followed by ``close``."""
    text = builder.text
    decoded = decode_at(text, body)
    if isinstance(decoded, JsonError):
        end = resync(builder, body, opener, close)
        closed = text.endswith(close, 0, end)
        return end, decoded.reason if closed else f"unterminated {label} ({decoded.reason})"
    value, json_end = decoded
    after = skip_ws(text, json_end)
    if text.startswith(close, after):
        end = after + len(close)
        if isinstance(value, dict):
            return end, value
        return end, f"arguments not an object (got {type(value).__name__})"
    if after >= len(text):
        return len(text), f"unterminated {label}: no {close} after the JSON"
    return resync(builder, after, opener, close), f"unexpected text after the JSON in {label}"


def _checked_call(
    end: int, name: str, arguments: dict[str, Any] | str, call_id: str | None, missing_name: str
) -> tuple[int, CallChecked]:
    """The call ending at ``end``, or its first problem: arguments that did not
    parse (their reason), then an empty name (``missing_name``)."""
    if isinstance(arguments, str):
        return end, arguments
    if not name:
        return end, missing_name
    return end, (name, arguments, call_id)


def _xml_parameters(
    builder: SpanBuilder, cursor: int, param_open: str, name_end: str, param_close: str, close: str, opener: str,
    label: str,
) -> tuple[int, dict[str, Any] | str]:
    """``<parameter=k>v</parameter>``-style pairs up to ``close``."""
    text = builder.text
    arguments: dict[str, Any] = {}
    while True:
        cursor = skip_ws(text, cursor)
        if text.startswith(close, cursor):
            return cursor + len(close), arguments
        if not text.startswith(param_open, cursor):
            end = resync(builder, cursor, opener, close)
            reason = f"unterminated {label}" if cursor >= len(text) else f"expected {param_open} or {close} in {label}"
            return end, reason
        named = _read_name(text, cursor + len(param_open), name_end)
        if named is None or not named[0].strip('"'):
            return resync(builder, cursor, opener, close), f"parameter without a name in {label}"
        key, key_end = named[0].strip('"'), named[1] + len(name_end)
        value_end = builder.find(param_close, key_end)
        next_open = builder.find(param_open, key_end)
        call_close = builder.find(close, key_end)
        if value_end < 0 or (0 <= call_close < value_end):
            # No </parameter> before the call ends: the value runs to the close tag.
            if call_close < 0:
                return len(text), f"unterminated {label}: parameter {key!r} has no {param_close}"
            value_end, after_value = call_close, call_close
        elif 0 <= next_open < value_end:
            return resync(builder, next_open, opener, close), f"parameter {key!r} has no {param_close} in {label}"
        else:
            after_value = value_end + len(param_close)
        arguments[key] = xml_value(text[key_end:value_end])
        cursor = after_value


# ---------------------------------------------------------------- <function=name>


def _read_function_tag(builder: SpanBuilder, start: int) -> tuple[int, CallChecked]:
    text = builder.text
    name_start = start + len(FUNCTION_OPEN)
    named = _read_name(text, name_start, ">")
    if named is None:
        return resync(builder, name_start, FUNCTION_OPEN, FUNCTION_CLOSE), "unterminated <function= tag: no '>' after the name"
    name, name_end = named
    if not name:
        return resync(builder, name_end, FUNCTION_OPEN, FUNCTION_CLOSE), "missing 'name' in <function=>"
    body = skip_ws(text, name_end + 1)
    label = f"<function={name}>"
    if text.startswith(FUNCTION_CLOSE, body):
        return body + len(FUNCTION_CLOSE), (name, {}, None)
    if text.startswith(PARAMETER_OPEN, body):
        end, arguments = _xml_parameters(
            builder, body, PARAMETER_OPEN, ">", PARAMETER_CLOSE, FUNCTION_CLOSE, FUNCTION_OPEN, label
        )
    else:
        end, arguments = _json_arguments(builder, body, FUNCTION_CLOSE, FUNCTION_OPEN, label)
    if isinstance(arguments, str):
        return end, arguments
    return end, (name, arguments, None)


def parse_function_tag(builder: SpanBuilder) -> None:
    """``<function=name>{json arguments}</function>`` (or ``<parameter=k>v</parameter>``
    bodies), any number."""
    _parse_sectioned(builder, FUNCTION_OPEN, _read_function_tag)


def parse_qwen3_coder(builder: SpanBuilder) -> None:
    """``<tool_call><function=name><parameter=k>v</parameter></function></tool_call>``;
    a ``<function=`` without its ``<tool_call>`` is read too."""
    _parse_sectioned(builder, FUNCTION_OPEN, _read_function_tag, (HERMES_OPEN, HERMES_CLOSE))


def parse_seed_oss(builder: SpanBuilder) -> None:
    """``<seed:tool_call><function=name><parameter=k>v</parameter></function></seed:tool_call>``."""
    _parse_sectioned(builder, FUNCTION_OPEN, _read_function_tag, (SEED_OPEN, SEED_CLOSE))


# ---------------------------------------------------------------- GLM 4.5


def _read_glm(builder: SpanBuilder, start: int) -> tuple[int, CallChecked]:
    text = builder.text
    name_start = start + len(HERMES_OPEN)
    stops = [pos for stop in ("\n", GLM_KEY_OPEN, HERMES_CLOSE) if (pos := text.find(stop, name_start, name_start + 512)) >= 0]
    if not stops:
        return resync(builder, name_start, HERMES_OPEN, HERMES_CLOSE), "unterminated <tool_call>: no name line"
    name_end = min(stops)
    name = text[name_start:name_end].strip()
    if not name or "<" in name or "{" in name:
        return resync(builder, name_start, HERMES_OPEN, HERMES_CLOSE), "missing tool name after <tool_call>"
    cursor = name_end
    arguments: dict[str, Any] = {}
    while True:
        cursor = skip_ws(text, cursor)
        if text.startswith(HERMES_CLOSE, cursor):
            return cursor + len(HERMES_CLOSE), (name, arguments, None)
        if not text.startswith(GLM_KEY_OPEN, cursor):
            reason = "unterminated <tool_call>" if cursor >= len(text) else "expected <arg_key> or </tool_call>"
            return resync(builder, cursor, HERMES_OPEN, HERMES_CLOSE), reason
        key_end = text.find(GLM_KEY_CLOSE, cursor, cursor + 1024)
        value_at = skip_ws(text, key_end + len(GLM_KEY_CLOSE)) if key_end >= 0 else -1
        if key_end < 0 or not text.startswith(GLM_VALUE_OPEN, value_at):
            return resync(builder, cursor, HERMES_OPEN, HERMES_CLOSE), "<arg_key> without its <arg_value>"
        value_end = builder.find(GLM_VALUE_CLOSE, value_at)
        call_close = builder.find(HERMES_CLOSE, value_at)
        if value_end < 0 or 0 <= call_close < value_end:
            return resync(builder, value_at, HERMES_OPEN, HERMES_CLOSE), "unterminated <arg_value>"
        key = text[cursor + len(GLM_KEY_OPEN) : key_end].strip()
        arguments[key] = xml_value(text[value_at + len(GLM_VALUE_OPEN) : value_end])
        cursor = value_end + len(GLM_VALUE_CLOSE)


def parse_glm45(builder: SpanBuilder) -> None:
    """``<tool_call>name\\n<arg_key>k</arg_key>\\n<arg_value>v</arg_value>\\n</tool_call>``."""
    _parse_sectioned(builder, HERMES_OPEN, _read_glm)


# ---------------------------------------------------------------- MiniMax-M2


def _read_invoke(builder: SpanBuilder, start: int) -> tuple[int, CallChecked]:
    text = builder.text
    named = _read_name(text, start + len(INVOKE_OPEN), ">")
    if named is None or not named[0].strip('"'):
        return resync(builder, start + 1, INVOKE_OPEN, INVOKE_CLOSE), "unterminated <invoke name=...>"
    name = named[0].strip('"')
    end, arguments = _xml_parameters(
        builder, named[1] + 1, MINIMAX_PARAMETER_OPEN, ">", PARAMETER_CLOSE, INVOKE_CLOSE, INVOKE_OPEN,
        f'<invoke name="{name}">',
    )
    if isinstance(arguments, str):
        return end, arguments
    return end, (name, arguments, None)


def parse_minimax_m2(builder: SpanBuilder) -> None:
    """``<minimax:tool_call><invoke name="f"><parameter name="k">v</parameter></invoke></minimax:tool_call>``."""
    _parse_sectioned(builder, INVOKE_OPEN, _read_invoke, (MINIMAX_OPEN, MINIMAX_CLOSE))


# ---------------------------------------------------------------- Kimi K2


def _read_kimi(builder: SpanBuilder, start: int) -> tuple[int, CallChecked]:
    text = builder.text
    id_start = start + len(KIMI_CALL_OPEN)
    named = _read_name(text, id_start, KIMI_ARGS)
    if named is None or not named[0]:
        return resync(builder, id_start, KIMI_CALL_OPEN, KIMI_CALL_CLOSE), "expected functions.name:index before the arguments"
    call_id = named[0]
    # "functions.get_weather:0": the name sits between the namespace and the index.
    name = call_id.rsplit(":", 1)[0] if ":" in call_id else call_id
    name = name.removeprefix("functions.")
    label = f"<|tool_call_begin|>{call_id}"
    end, arguments = _json_arguments(
        builder, skip_ws(text, named[1] + len(KIMI_ARGS)), KIMI_CALL_CLOSE, KIMI_CALL_OPEN, label
    )
    return _checked_call(end, name, arguments, call_id, "missing tool name in the call id")


def parse_kimi_k2(builder: SpanBuilder) -> None:
    """``<|tool_calls_section_begin|><|tool_call_begin|>functions.name:0<|tool_call_argument_begin|>{json}
    <|tool_call_end|>...<|tool_calls_section_end|>``."""
    _parse_sectioned(builder, KIMI_CALL_OPEN, _read_kimi, (KIMI_SECTION_OPEN, KIMI_SECTION_CLOSE))


# ---------------------------------------------------------------- DeepSeek


def _read_deepseek(builder: SpanBuilder, start: int) -> tuple[int, CallChecked]:
    text = builder.text
    head = start + len(DEEPSEEK_CALL_OPEN)
    named = _read_name(text, head, DEEPSEEK_SEP)
    if named is None:
        return resync(builder, head, DEEPSEEK_CALL_OPEN, DEEPSEEK_CALL_CLOSE), "expected <｜tool▁sep｜> after the call's head"
    first, sep = named
    body = sep + len(DEEPSEEK_SEP)
    if first == "function":
        # R1: function<｜tool▁sep｜>name\n```json\n{...}\n```<｜tool▁call▁end｜>
        line_end = text.find("\n", body, body + 512)
        if line_end < 0:
            return resync(builder, body, DEEPSEEK_CALL_OPEN, DEEPSEEK_CALL_CLOSE), "expected the tool name on its own line"
        name = text[body:line_end].strip()
        cursor = skip_ws(text, line_end)
        if text.startswith("```", cursor):
            fence_end = text.find("\n", cursor, cursor + 64)
            cursor = skip_ws(text, fence_end if fence_end >= 0 else cursor + 3)
        decoded = decode_at(text, cursor)
        if isinstance(decoded, JsonError):
            return resync(builder, cursor, DEEPSEEK_CALL_OPEN, DEEPSEEK_CALL_CLOSE), decoded.reason
        value, json_end = decoded
        after = skip_ws(text, json_end)
        if text.startswith("```", after):
            after = skip_ws(text, after + 3)
        if not text.startswith(DEEPSEEK_CALL_CLOSE, after):
            reason = "unterminated call: no <｜tool▁call▁end｜>" if after >= len(text) else "unexpected text after the JSON"
            return resync(builder, after, DEEPSEEK_CALL_OPEN, DEEPSEEK_CALL_CLOSE), reason
        end = after + len(DEEPSEEK_CALL_CLOSE)
        if not name:
            return end, "missing tool name"
        if not isinstance(value, dict):
            return end, f"arguments not an object (got {type(value).__name__})"
        return end, (name, value, None)
    # V3.1: name<｜tool▁sep｜>{json}<｜tool▁call▁end｜>
    end, arguments = _json_arguments(
        builder, skip_ws(text, body), DEEPSEEK_CALL_CLOSE, DEEPSEEK_CALL_OPEN, f"call {first}"
    )
    return _checked_call(end, first, arguments, None, "missing tool name")


def parse_deepseek(builder: SpanBuilder) -> None:
    """DeepSeek R1 (``function<｜tool▁sep｜>name`` + fenced JSON) and V3.1
    (``name<｜tool▁sep｜>{json}``) calls, inside ``<｜tool▁calls▁begin｜>``."""
    _parse_sectioned(builder, DEEPSEEK_CALL_OPEN, _read_deepseek, (DEEPSEEK_SECTION_OPEN, DEEPSEEK_SECTION_CLOSE))
