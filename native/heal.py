"""Closing a JSON tool call that the model broke off.

A small model that was asked for a call (the call's opening prefilled)
often starts it well and breaks off inside it: it writes a newline or the
next turn's marker inside the argument string (``{"expression": "9 * 9\\n
</tool_response>``), writes a second key where the object should close
(``{"query": "Br": "description": ...``), or runs out of tokens. The JSON
up to the break is a call the model meant. :func:`heal_call` closes it: it
keeps the longest prefix of the JSON that can be completed (a string cut
at its break is closed there; a key without its value, a half-written
number or literal, a comma with nothing after it are dropped), closes
every open object and list, and appends the family's close marker.

Only JSON bodies are healed (the families whose call body is JSON). What
the healed text holds is what the model wrote up to its break; whether
that is a call worth running is for the caller to judge (the agent loop
holds a healed call's arguments to the question).
"""

from __future__ import annotations

import re

__all__ = ["close_json", "heal_call"]

MAX_HEAL_CHARS = 8000
"""The longest call text healed; a longer one is left broken."""

_SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")
_WHITESPACE = " \t\r\n"
_ESCAPE = re.compile(r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})')


def close_json(text: str) -> str | None:
    """The longest prefix of ``text``'s JSON value that can be completed,
    completed; None when ``text`` does not start (after whitespace) with an
    object or a list, or when nothing of it can be kept. A complete value
    comes back as it is, without what follows it."""
    start = len(text) - len(text.lstrip(_WHITESPACE))
    if start >= len(text) or text[start] not in "{[":
        return None
    # Each open container: [its opener, what it expects next, whether it is still empty];
    # an object expects "key", "colon", "value" or "comma", a list "value" or "comma".
    stack: list[list] = []
    safe: tuple[int, str] | None = None  # where the text can be cut, and what closes it there
    position = start

    def closers() -> str:
        return "".join("}" if opener == "{" else "]" for opener, _expects, _empty in reversed(stack))

    def value_done() -> None:
        if stack:
            stack[-1][1:] = ["comma", False]

    while position < len(text) and (stack or safe is None):
        char = text[position]
        expects = stack[-1][1] if stack else "value"
        if char in _WHITESPACE:
            position += 1
        elif char == '"' and expects == "key":
            end, _ = _read_string(text, position)
            if end is None:
                break  # a key cut off: dropped
            stack[-1][1:] = ["colon", False]
            position = end
        elif char == '"' and expects == "value":
            end, broken = _read_string(text, position)
            value_done()
            if end is None:  # a value cut off: closed where it broke
                safe = (broken, '"' + closers())
                break
            position = end
            safe = (position, closers())
        elif char in "{[" and expects == "value":
            stack.append([char, "key" if char == "{" else "value", True])
            position += 1
            safe = (position, closers())
        elif stack and char == ("}" if stack[-1][0] == "{" else "]") and (expects == "comma" or stack[-1][2]):
            stack.pop()
            position += 1
            value_done()
            safe = (position, closers())
        elif char == ":" and expects == "colon":
            stack[-1][1] = "value"
            position += 1
        elif char == "," and expects == "comma":
            stack[-1][1] = "key" if stack[-1][0] == "{" else "value"
            position += 1
        else:
            match = _SCALAR.match(text, position) if expects == "value" else None
            if match is None or match.end() >= len(text):  # anything else, or a number that may be cut short
                break
            position = match.end()
            value_done()
            safe = (position, closers())
    if safe is None:
        return None
    cut, closing = safe
    return text[start:cut] + closing


def _read_string(text: str, position: int) -> tuple[int | None, int]:
    """The string opening at ``position``: the index after its closing
    quote (None when it is cut off) and where it breaks off (its first raw
    control character or broken escape, or the end of ``text``)."""
    index = position + 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return index + 1, index
        if ord(char) < 0x20:
            return None, index
        if char == "\\":
            escape = _ESCAPE.match(text, index)
            if escape is None:
                return None, index
            index = escape.end()
            continue
        index += 1
    return None, len(text)


def heal_call(written: str, prefix: str, end: str | None) -> str | None:
    """``written`` (a call that opens with ``prefix``) with the JSON body the
    model broke off closed (:func:`close_json`) and the family's ``end``
    marker after it; None when there is no JSON body after ``prefix`` or
    nothing of it can be kept.

    The body starts at the first ``{`` after ``prefix``'s own text, or at
    a ``[`` right before it (a list of calls: ``[TOOL_CALLS][{...``), and
    ends at ``end`` where the model wrote it (inside a string, it is where
    the model broke off)."""
    if len(written) > MAX_HEAL_CHARS or not written.startswith(prefix):
        return None
    if end and end in written[len(prefix):]:
        written = written[:written.index(end, len(prefix))]
    brace = written.find("{", len(prefix.rstrip("{[")))
    if brace < 0:
        return None
    before = written[:brace].rstrip(_WHITESPACE)
    start = len(before) - 1 if before.endswith("[") else brace
    closed = close_json(written[start:])
    return None if closed is None else written[:start] + closed + (end or "")
