"""Limits on one tool call: a deadline, a cap on the result's text, and a
bound on how deeply nested a value may be before it is rendered.

A tool is foreign code fed with a model's arguments, so its call runs in a
worker thread the caller stops waiting for at the deadline
(:class:`ToolTimeoutError`), and its result becomes text there too: a value
whose ``str()`` hangs or raises, or that nests thousands of levels deep,
costs the same deadline and never a ``RecursionError`` in the caller.
Python cannot stop a thread: a timed-out call keeps its (daemon) thread until
it returns, so a tool that can spin in C code must bound itself, as the
calculator does. This module knows nothing about models or the agent loop.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Mapping

from meta_spider.tools.errors import ToolError

__all__ = [
    "DEFAULT_MAX_RESULT_CHARS",
    "DEFAULT_TIME_LIMIT",
    "MAX_NESTING",
    "ToolTimeoutError",
    "call_with_limits",
    "nesting_depth",
    "observation_text",
    "safe_str",
    "truncate_text",
    "valid_arguments",
    "valid_text",
]

DEFAULT_TIME_LIMIT = 5.0
"""Seconds one tool call may take, rendering its result included."""
DEFAULT_MAX_RESULT_CHARS = 8000
"""Characters of one tool result the model sees; the rest is cut with a note."""
MAX_NESTING = 32
"""Deepest nesting of lists and objects in a call's arguments or a result
that is rendered as JSON; chat templates and ``json`` recurse per level."""


class ToolTimeoutError(ToolError, TimeoutError, fields=("tool", "seconds")):
    """A tool call did not finish within its time limit."""

    template = (
        "tool {tool!r} did not finish within {seconds:g} s and was abandoned; "
        "call it with a smaller input"
    )


def safe_str(value: Any, *, limit: int = 2000) -> str:
    """``str(value)`` cut to ``limit`` characters; a value whose ``str()``
    raises (or recurses too deep) is named by its type instead."""
    try:
        text = str(value)
    except BaseException as exc:  # noqa: BLE001 - foreign __str__: anything, even SystemExit
        if isinstance(exc, KeyboardInterrupt):
            raise
        return f"<{type(value).__name__} whose text cannot be shown: {type(exc).__name__}>"
    text = valid_text(text)
    return text if len(text) <= limit else text[:limit] + "..."


def valid_text(text: str) -> str:
    """``text`` with every lone surrogate (``"\\ud800"`` in a model's JSON)
    replaced by U+FFFD: such a string cannot be printed or saved as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def nesting_depth(value: Any, limit: int = MAX_NESTING) -> int:
    """How deeply lists, tuples and dicts nest in ``value`` (a scalar is 0),
    counted without recursion and no further than ``limit + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children = list(item.values())
        elif isinstance(item, (list, tuple)):
            children = list(item)
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def truncate_text(text: str, max_chars: int) -> str:
    """``text`` cut to about ``max_chars`` characters with a note the model
    reads, saying how much was left out."""
    if len(text) <= max_chars:
        return text
    note = f"\n[... tool result truncated: showing {max_chars:,} of {len(text):,} characters]"
    return text[:max_chars] + note


def observation_text(result: Any, max_chars: int = DEFAULT_MAX_RESULT_CHARS) -> str:
    """A tool's return value as the text the model reads: strings as they
    are, other values as JSON when they nest at most :data:`MAX_NESTING`
    levels, else their (guarded) ``str()``; cut to ``max_chars``."""
    if isinstance(result, str):
        text = result
    elif nesting_depth(result) > MAX_NESTING:
        text = f"<a {type(result).__name__} nested deeper than {MAX_NESTING} levels, not shown>"
    else:
        try:
            text = json.dumps(result, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            text = safe_str(result, limit=max_chars + 1)
    return truncate_text(valid_text(text), max_chars)


def valid_arguments(value: Any) -> Any:
    """A parsed call's arguments with :func:`valid_text` applied to every
    string and key (the arguments nest at most :data:`MAX_NESTING` levels)."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {valid_arguments(key): valid_arguments(item) for key, item in value.items()}
    if isinstance(value, list):
        return [valid_arguments(item) for item in value]
    return value


def call_with_limits(
    name: str,
    function: Callable[..., Any],
    arguments: Mapping[str, Any],
    *,
    time_limit: float = DEFAULT_TIME_LIMIT,
    max_chars: int = DEFAULT_MAX_RESULT_CHARS,
) -> str:
    """Run ``function(**arguments)`` and render its result with
    :func:`observation_text`, both within ``time_limit`` seconds.

    Returns the observation text; re-raises what the tool raised (as any
    ``Exception``, with ``SystemExit`` turned into a :class:`ToolError`), and
    raises :class:`ToolTimeoutError` at the deadline.
    """
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["text"] = observation_text(function(**arguments), max_chars)
        except BaseException as exc:  # noqa: BLE001 - carried back to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"tool-{name}", daemon=True)
    worker.start()
    worker.join(time_limit)
    if worker.is_alive():
        raise ToolTimeoutError(name, time_limit)
    error = outcome.get("error")
    if isinstance(error, Exception):
        raise error
    if error is not None:  # SystemExit, KeyboardInterrupt raised *by the tool*, not by the user
        raise ToolError(f"tool {name!r} raised {type(error).__name__}") from error
    return outcome["text"]
