"""Parsers of the JSON-block, pythonic, recipient and channel families.

* JSON blocks after a marker: Granite ``<|tool_call|>[...]``, FireFunction /
  Phi-4-mini `` functools[...]``, Nemotron ``<TOOLCALL>[...]</TOOLCALL>``,
  InternLM2 ``<|action_start|><|plugin|>{...}<|action_end|>``, Command R7B
  ``<|START_ACTION|>[...]<|END_ACTION|>`` and Command R+ ``Action: ```json``,
  xLAM's bare JSON list;
* pythonic lists ``[f(a=1), g(b="x")]`` (parsed with ``ast``, never evaluated);
* Functionary v3.2 recipients ``>>>name\\n{json}``;
* GPT-OSS harmony channels (``analysis`` is reasoning, ``to=functions.x`` a call).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from meta_spider.native.results import SpanBuilder
from meta_spider.native.scan import (
    JsonError,
    decode_at,
    emit,
    parse_call_list,
    read_call_object,
    resync,
    skip_ws,
)

__all__ = [
    "parse_granite",
    "parse_functools",
    "parse_nemotron",
    "parse_internlm",
    "parse_command_r",
    "parse_xlam",
    "parse_pythonic",
    "parse_functionary_v32",
    "parse_harmony",
    "GRANITE_OPEN",
    "FUNCTOOLS_OPEN",
    "NEMOTRON_OPEN",
    "NEMOTRON_CLOSE",
    "INTERNLM_OPEN",
    "INTERNLM_CLOSE",
    "COMMAND_R_OPEN",
    "COMMAND_R_CLOSE",
    "LFM_OPEN",
    "LFM_CLOSE",
    "LLAMA4_OPEN",
    "LLAMA4_CLOSE",
]

GRANITE_OPEN = "<|tool_call|>"
FUNCTOOLS_OPEN = "functools"
NEMOTRON_OPEN, NEMOTRON_CLOSE = "<TOOLCALL>", "</TOOLCALL>"
INTERNLM_OPEN, INTERNLM_CLOSE = "<|action_start|><|plugin|>", "<|action_end|>"
COMMAND_R_OPEN, COMMAND_R_CLOSE = "<|START_ACTION|>", "<|END_ACTION|>"
COMMAND_R_PLUS_OPEN = "Action:"
COMMAND_R_RESPONSE = ("<|START_RESPONSE|>", "<|END_RESPONSE|>")
LFM_OPEN, LFM_CLOSE = "<|tool_call_start|>", "<|tool_call_end|>"
LLAMA4_OPEN, LLAMA4_CLOSE = "<|python_start|>", "<|python_end|>"


def _json_block(
    builder: SpanBuilder,
    opener: str,
    closer: str | None,
    *,
    start: int,
    body: int,
    argument_keys: tuple[str, ...] = ("arguments", "parameters"),
    name_keys: tuple[str, ...] = ("name",),
    id_keys: tuple[str, ...] = ("id",),
    fence: bool = False,
) -> None:
    """One block whose JSON (a call object or a list of them) starts at ``body``."""
    text = builder.text
    builder.content(start)
    if fence and text.startswith("```", body):
        line_end = text.find("\n", body, body + 64)
        body = skip_ws(text, line_end if line_end >= 0 else body + 3)
    if body >= len(text):
        builder.failure(len(text), f"empty {opener}")
        return
    if closer and text.startswith(closer, body):
        builder.failure(body + len(closer), f"empty {opener}")
        return
    if text[body] == "[":
        parse_call_list(
            builder, body + 1, label=opener, opener=opener, closer=closer, argument_keys=argument_keys,
            name_keys=name_keys, id_keys=id_keys, fence=fence,
        )
        return
    decoded = decode_at(text, body)
    if isinstance(decoded, JsonError):
        end = len(text) if decoded.truncated else resync(builder, body, opener, closer)
        builder.failure(max(end, start + len(opener)), decoded.reason)
        return
    value, json_end = decoded
    end = json_end
    after = skip_ws(text, json_end)
    if fence and text.startswith("```", after):
        end = after + 3
        after = skip_ws(text, end)
    if closer:
        if text.startswith(closer, after):
            end = after + len(closer)
        elif after >= len(text):
            builder.failure(len(text), f"unterminated {opener}: no {closer} after the JSON")
            return
        else:
            builder.failure(max(resync(builder, after, opener, closer), after + 1), f"unexpected text after the JSON in {opener}")
            return
    emit(builder, end, read_call_object(value, argument_keys, name_keys, id_keys))


def _marked_blocks(builder: SpanBuilder, opener: str, closer: str | None, **keys: Any) -> None:
    text = builder.text
    while (start := builder.find(opener, builder.position)) >= 0:
        _json_block(builder, opener, closer, start=start, body=skip_ws(text, start + len(opener)), **keys)


def parse_granite(builder: SpanBuilder) -> None:
    """``<|tool_call|>[{"name": ..., "arguments": {...}}, ...]``."""
    _marked_blocks(builder, GRANITE_OPEN, None)


def parse_functools(builder: SpanBuilder) -> None:
    """`` functools[{"name": ..., "arguments": {...}}, ...]`` (FireFunction v2, Phi-4-mini)."""
    text = builder.text
    while (start := builder.find(FUNCTOOLS_OPEN, builder.position)) >= 0:
        body = start + len(FUNCTOOLS_OPEN)
        if not text.startswith("[", body):
            builder.content(body)  # the word in prose, not the marker
            continue
        # The space the model writes before the marker belongs to the call.
        if start > builder.position and text[start - 1] == " ":
            start -= 1
        _json_block(builder, FUNCTOOLS_OPEN, None, start=start, body=body)


def parse_nemotron(builder: SpanBuilder) -> None:
    """``<TOOLCALL>[{"name": ..., "arguments": {...}}]</TOOLCALL>``."""
    _marked_blocks(builder, NEMOTRON_OPEN, NEMOTRON_CLOSE)


def parse_internlm(builder: SpanBuilder) -> None:
    """``<|action_start|><|plugin|>\\n{"name": ..., "parameters": {...}}<|action_end|>``."""
    _marked_blocks(builder, INTERNLM_OPEN, INTERNLM_CLOSE, argument_keys=("parameters", "arguments"))


_COHERE_KEYS: dict[str, Any] = {
    "argument_keys": ("parameters", "arguments"),
    "name_keys": ("tool_name", "name"),
    "id_keys": ("tool_call_id", "id"),
}


def parse_command_r(builder: SpanBuilder) -> None:
    """Command R7B / Command-A ``<|START_ACTION|>[{"tool_call_id": "0", "tool_name": ..., "parameters":
    {...}}]<|END_ACTION|>`` and Command R+ ``Action: ```json\\n[...]\\n````."""
    text = builder.text
    while True:
        start, which = builder.find_any((COMMAND_R_OPEN, COMMAND_R_PLUS_OPEN, *COMMAND_R_RESPONSE), builder.position)
        if start < 0:
            return
        body = skip_ws(text, start + len(which))
        if which in COMMAND_R_RESPONSE:
            # The answer's own delimiters: markup, not content.
            builder.content(start)
            builder.markup(start + len(which))
        elif which == COMMAND_R_OPEN:
            _json_block(builder, COMMAND_R_OPEN, COMMAND_R_CLOSE, start=start, body=body, **_COHERE_KEYS)
        elif text.startswith("```", body) or text.startswith("[", body):
            _json_block(builder, COMMAND_R_PLUS_OPEN, None, start=start, body=body, fence=True, **_COHERE_KEYS)
        else:
            builder.content(start + len(which))  # "Action:" in prose


def parse_xlam(builder: SpanBuilder) -> None:
    """xLAM: a JSON list of calls (optionally in a ```json fence) at the start
    of the output or of a line; any other text is content."""
    text = builder.text
    line = builder.position
    while line < len(text):
        body = probe = skip_ws(text, line)
        if text.startswith("```", body):
            line_end = text.find("\n", body, body + 64)
            probe = skip_ws(text, line_end) if line_end >= 0 else len(text)
        if probe < len(text) and text[probe] == "[" and text.startswith("{", skip_ws(text, probe + 1)):
            _json_block(builder, "[", None, start=body, body=body, fence=True)
        newline = builder.find("\n", max(builder.position, line))
        if newline < 0:
            return
        line = newline + 1


# ---------------------------------------------------------------- pythonic

_PYTHONIC_START = re.compile(r"\[\s*[A-Za-z_][\w.]*\s*\(")
_QUOTES = "\"'"


def _matching_bracket(text: str, start: int, limit: int) -> tuple[int, list[int]]:
    """Index just past the ``]`` matching ``text[start] == "["`` (-1 when it
    does not close before ``limit``) and the positions of the list's own
    commas, honouring Python string literals."""
    depth, pos, quote = 0, start, ""
    commas: list[int] = []
    while pos < limit:
        char = text[pos]
        if quote:
            if char == "\\":
                pos += 2
                continue
            if char == quote:
                quote = ""
        elif char in _QUOTES:
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return (pos + 1 if char == "]" else -1), commas
        elif char == "," and depth == 1:
            commas.append(pos)
        pos += 1
    return -1, commas


def _literal(node: ast.AST) -> Any:
    # literal_eval only builds constants; the JSON round trip rejects sets,
    # bytes and complex numbers a tool cannot receive.
    return json.loads(json.dumps(ast.literal_eval(node)))


def keyword_arguments(call: ast.Call, name: str, positional_fix: str) -> dict[str, Any] | str:
    """The ``key=value`` arguments of the call to ``name`` as JSON values, or
    the reason they are not (``positional_fix`` ends the message for a
    positional argument)."""
    if call.args:
        return f"positional arguments in {name}(...): {positional_fix}"
    arguments: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            return f"'**' arguments in {name}(...)"
        try:
            arguments[keyword.arg] = _literal(keyword.value)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as exc:
            return f"argument {keyword.arg!r} of {name}(...) is not a literal: {type(exc).__name__}"
    return arguments


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def pythonic_calls(source: str) -> list[tuple[str, dict[str, Any]]] | str:
    """``[f(a=1), g(b="x")]`` as ``[(name, arguments), ...]``, or the reason it is not."""
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return f"invalid pythonic call list: {type(exc).__name__}"
    if not isinstance(tree.body, ast.List) or not tree.body.elts:
        return "expected a non-empty list of calls"
    calls = []
    for element in tree.body.elts:
        if not isinstance(element, ast.Call) or (name := _dotted(element.func)) is None:
            return "list element is not a call like name(key=value)"
        arguments = keyword_arguments(element, name, "write key=value")
        if isinstance(arguments, str):
            return arguments
        calls.append((name, arguments))
    return calls


def _pythonic_block(builder: SpanBuilder, start: int, body: int, closer: str | None, limit: int) -> None:
    text = builder.text
    builder.content(start)
    end, commas = _matching_bracket(text, body, limit)
    if end < 0:
        stop = limit if closer is None or limit == len(text) else limit + len(closer)
        builder.failure(max(stop, body + 1), "unterminated pythonic call list: no closing ']'")
        return
    checked = pythonic_calls(text[body:end])
    block_end = end
    if closer:
        after = skip_ws(text, end)
        if text.startswith(closer, after):
            block_end = after + len(closer)
    if isinstance(checked, str):
        builder.failure(block_end, checked)
        return
    # As in a JSON list: the opening markup belongs to the first call, each
    # ',' to the call after it, the closing ']' (and marker) to the last.
    boundaries = commas[: len(checked) - 1] + [block_end]
    for (name, arguments), boundary in zip(checked, boundaries):
        builder.call(boundary, name, arguments)


def parse_pythonic(builder: SpanBuilder) -> None:
    """``[f(a=1), g(b="x")]``: bare at the start of a line, or inside
    ``<|tool_call_start|>...<|tool_call_end|>`` (LFM2) / ``<|python_start|>...<|python_end|>`` (Llama 4)."""
    text = builder.text
    while True:
        start, which = builder.find_any((LFM_OPEN, LLAMA4_OPEN), builder.position)
        bare = _PYTHONIC_START.search(text, builder.position, start if start >= 0 else len(text))
        while bare is not None and bare.start() > 0 and text[bare.start() - 1] not in "\n":
            # A bare list counts only at the start of a line (prose has brackets too).
            bare = _PYTHONIC_START.search(text, bare.start() + 1, start if start >= 0 else len(text))
        if bare is not None:
            _pythonic_block(builder, bare.start(), bare.start(), None, len(text))
            continue
        if start < 0:
            return
        closer = LFM_CLOSE if which == LFM_OPEN else LLAMA4_CLOSE
        body = skip_ws(text, start + len(which))
        close_at = builder.find(closer, body)
        limit = close_at if close_at >= 0 else len(text)
        if body >= limit or text[body] != "[":
            end = close_at + len(closer) if close_at >= 0 else len(text)
            builder.content(start)
            builder.failure(max(end, start + len(which)), f"expected a [call(...)] list after {which}")
            continue
        _pythonic_block(builder, start, body, closer, limit)


# ---------------------------------------------------------------- functionary v3.2

_RECIPIENT = ">>>"
_NAME_LINE = re.compile(r"([A-Za-z_][\w.\-]*)[ \t]*\n")


def parse_functionary_v32(builder: SpanBuilder) -> None:
    """``>>>name\\n{json}`` per call; ``>>>all\\n`` opens plain text. The
    prompt ends with ``>>>``, so the output itself may start with a recipient."""
    text = builder.text
    pos, first = builder.position, True
    while True:
        if first and not text.startswith(_RECIPIENT, pos):
            marker = head = pos
        else:
            marker = builder.find(_RECIPIENT, pos)
            if marker < 0:
                return
            head = marker + len(_RECIPIENT)
        line = _NAME_LINE.match(text, head)
        if line is not None and line.group(1) == "all":
            builder.content(marker)
            builder.markup(line.end())
        elif line is not None and text.startswith("{", skip_ws(text, line.end())):
            builder.content(marker)
            body = skip_ws(text, line.end())
            decoded = decode_at(text, body)
            if isinstance(decoded, JsonError):
                builder.failure(max(resync(builder, body, _RECIPIENT, None), body + 1), decoded.reason)
            elif not isinstance(decoded[0], dict):
                builder.failure(decoded[1], "arguments not an object")
            else:
                builder.call(decoded[1], line.group(1), decoded[0])
        pos, first = max(builder.position, marker + 1), False


# ---------------------------------------------------------------- harmony

_CHANNEL, _MESSAGE, _START = "<|channel|>", "<|message|>", "<|start|>"
_ENDS = ("<|end|>", "<|call|>", "<|return|>")
_RECIPIENT_RE = re.compile(r"to=functions\.([^\s<]+)")


def parse_harmony(builder: SpanBuilder) -> None:
    """GPT-OSS harmony: ``<|channel|>analysis<|message|>...<|end|>`` is reasoning,
    ``<|channel|>final<|message|>...`` content, and a header with
    ``to=functions.name`` opens a call whose ``<|message|>`` is the JSON arguments."""
    text = builder.text
    while True:
        header, which = builder.find_any((_START, _CHANNEL, " to=functions.", "to=functions."), builder.position)
        if header < 0:
            return
        builder.content(header)
        message = builder.find(_MESSAGE, header)
        if message < 0:
            builder.markup(len(text))
            return
        head = text[header:message]
        body = message + len(_MESSAGE)
        end_at, end_marker = builder.find_any(_ENDS, body)
        stop = end_at if end_at >= 0 else len(text)
        # The next message may start without an end marker (a cut generation).
        nxt = builder.find(_START, body)
        if 0 <= nxt < stop:
            stop, end_marker, end_at = nxt, "", nxt
        after = stop + len(end_marker) if end_at >= 0 else stop
        recipient = _RECIPIENT_RE.search(head)
        if recipient is not None:
            decoded = decode_at(text, skip_ws(text, body))
            if isinstance(decoded, JsonError):
                builder.failure(max(after, body), decoded.reason)
                continue
            value, json_end = decoded
            if skip_ws(text, json_end) != stop:
                builder.failure(max(after, body), "unexpected text after the JSON arguments")
            elif not isinstance(value, dict):
                builder.failure(max(after, body), "arguments not an object")
            else:
                builder.call(max(after, body), recipient.group(1), value)
            continue
        builder.markup(body)
        if "analysis" in head:
            builder.reasoning(stop)
        else:
            builder.content(stop)
        builder.markup(after)
