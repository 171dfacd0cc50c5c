"""The OpenAI chat-completions wire format: requests in, replies out.

:func:`parse_chat_request` checks a decoded request body and turns it into a
:class:`ChatRequest` whose messages are in the chat-template form the
backends render (tool-call arguments as objects, tool results named after
their call). Anything malformed raises :class:`ServeRequestError`, which
carries the HTTP status and an OpenAI-style error body naming the field.
:func:`completion_body` and :func:`completion_chunks` write replies.
This module knows nothing about models, policies or HTTP frameworks.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from meta_spider.agentcore.errors import AgentError

__all__ = [
    "ChatRequest",
    "ServeRequestError",
    "ServedReply",
    "completion_body",
    "completion_chunks",
    "error_body",
    "parse_chat_request",
]

_ROLES = {"system", "developer", "user", "assistant", "tool"}


class ServeRequestError(AgentError, ValueError, fields=("status", "message", "param", "code", "kind")):
    """A request the server refuses: an HTTP status and the message naming the
    problem; ``param``, ``code`` and ``kind`` fill OpenAI's error object."""

    param = code = None
    kind = "invalid_request_error"
    template = "{message}"

    def body(self) -> dict[str, Any]:
        return error_body(self.message, kind=self.kind, param=self.param, code=self.code)


def error_body(message: str, *, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _bad(message: str, param: str | None = None, code: str | None = None) -> ServeRequestError:
    return ServeRequestError(400, message, param=param, code=code)


@dataclass
class ChatRequest:
    """One ``POST /v1/chat/completions``, checked."""

    model: str
    messages: list[dict[str, Any]]
    """Chat-template form: tool-call arguments are objects, tool results carry the call's name."""
    tools: list[dict[str, Any]] = field(default_factory=list)
    """The client's tool definitions (OpenAI form); the server never runs them."""
    stream: bool = False
    max_tokens: int | None = None
    temperature: float = 0.0
    stop: tuple[str, ...] = ()


def _text_content(content: Any, where: str) -> str:
    """A message's content as text: a string, or a list of ``{"type": "text"}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = []
        for index, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise _bad(f"{where}.content[{index}] is a {kind!r} part; this server reads text parts only",
                           f"{where}.content")
            pieces.append(part["text"])
        return "".join(pieces)
    raise _bad(f"{where}.content must be a string or a list of text parts, got {type(content).__name__}",
               f"{where}.content")


def _tool_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(calls, list) or not calls:
        raise _bad(f"{where}.tool_calls must be a non-empty list", f"{where}.tool_calls")
    converted = []
    for index, call in enumerate(calls):
        here = f"{where}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str) or not function["name"]:
            raise _bad(f"{here} must be {{'type': 'function', 'function': {{'name': ..., 'arguments': ...}}}}", here)
        arguments = function.get("arguments", "{}")
        if isinstance(arguments, str):  # OpenAI sends the arguments as a JSON string; templates want an object
            try:
                arguments = json.loads(arguments or "{}")
            except json.JSONDecodeError as exc:
                raise _bad(f"{here}.function.arguments is not valid JSON ({exc.msg})", f"{here}.function.arguments")
        if not isinstance(arguments, Mapping):
            raise _bad(f"{here}.function.arguments must encode a JSON object", f"{here}.function.arguments")
        call_id = call.get("id")
        entry: dict[str, Any] = {"type": "function",
                                 "function": {"name": function["name"], "arguments": dict(arguments)}}
        if isinstance(call_id, str) and call_id:
            entry["id"] = call_id
        converted.append(entry)
    return converted


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise _bad("'messages' must be a non-empty list of chat messages", "messages")
    names_by_call: dict[str, str] = {}
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise _bad(f"{where} must be an object with a 'role'", where)
        role = message.get("role")
        if role not in _ROLES:
            raise _bad(f"{where}.role is {role!r}; expected one of {sorted(_ROLES)}", f"{where}.role")
        content = _text_content(message.get("content"), where)
        if role == "developer":  # OpenAI's newer name for the system turn
            role = "system"
        if role == "assistant" and message.get("tool_calls"):
            calls = _tool_calls(message["tool_calls"], where)
            for call in calls:
                if "id" in call:
                    names_by_call[call["id"]] = call["function"]["name"]
            converted: dict[str, Any] = {"role": "assistant", "tool_calls": calls}
            if content:
                converted["content"] = content
            messages.append(converted)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _bad(f"{where} is a tool result without a 'tool_call_id'", f"{where}.tool_call_id")
            name = message.get("name") or names_by_call.get(call_id)
            if not isinstance(name, str) or not name:
                raise _bad(f"{where} answers tool call {call_id!r}, which no earlier assistant message made",
                           f"{where}.tool_call_id")
            messages.append({"role": "tool", "name": name, "content": content, "tool_call_id": call_id})
        else:
            messages.append({"role": role, "content": content})
    return messages


def _tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _bad("'tools' must be a list of {'type': 'function', 'function': {...}} objects", "tools")
    tools = []
    for index, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if (not isinstance(tool, Mapping) or tool.get("type", "function") != "function"
                or not isinstance(function, Mapping) or not isinstance(function.get("name"), str)
                or not function["name"]):
            raise _bad(f"tools[{index}] must be {{'type': 'function', 'function': {{'name': ..., ...}}}}",
                       f"tools[{index}]")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, Mapping):
            raise _bad(f"tools[{index}].function.parameters must be a JSON schema object",
                       f"tools[{index}].function.parameters")
        tools.append({"type": "function", "function": {"name": function["name"],
                                                       "description": str(function.get("description") or ""),
                                                       "parameters": dict(parameters)}})
    return tools


def parse_chat_request(body: Any) -> ChatRequest:
    """Check a decoded request body; raises :class:`ServeRequestError` (400) naming the bad field."""
    if not isinstance(body, Mapping):
        raise _bad(f"the request body must be a JSON object, got {type(body).__name__}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required: the name GET /v1/models lists", "model")
    n = body.get("n", 1)
    if n != 1:
        raise _bad(f"'n' must be 1 (one choice per request), got {n!r}", "n")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise _bad(f"'max_tokens' must be a positive integer, got {max_tokens!r}", "max_tokens")
    temperature = body.get("temperature", 0.0)
    if temperature is None:
        temperature = 0.0
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature)
            or not 0.0 <= temperature <= 2.0):
        raise _bad(f"'temperature' must be a number in [0, 2], got {temperature!r}", "temperature")
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(item, str) for item in stop) and len(stop) <= 4:
        stops = tuple(stop)
    else:
        raise _bad(f"'stop' must be a string or a list of at most 4 strings, got {stop!r:.80}", "stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad(f"'stream' must be true or false, got {stream!r}", "stream")
    return ChatRequest(model=model, messages=_messages(body.get("messages")), tools=_tools(body.get("tools")),
                       stream=stream, max_tokens=max_tokens, temperature=float(temperature),
                       stop=tuple(item for item in stops if item))


@dataclass
class ServedReply:
    """What the agent decided for one request, ready to be written out."""

    outcome: str
    """``"answer"``, ``"refuse"``, ``"tool_calls"`` or ``"max_steps"``."""
    content: str | None
    tool_calls: list[dict[str, Any]]
    """OpenAI form: ``{"id", "type": "function", "function": {"name", "arguments": JSON text}}``."""
    finish_reason: str
    meta_spider: dict[str, Any]
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _ids() -> tuple[str, int]:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())


def _usage(reply: ServedReply) -> dict[str, int]:
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens}


def completion_body(model: str, reply: ServedReply) -> dict[str, Any]:
    """The ``chat.completion`` object, with the ``meta_spider`` extension."""
    completion_id, created = _ids()
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason, "logprobs": None}],
        "usage": _usage(reply),
        "meta_spider": reply.meta_spider,
    }


def completion_chunks(model: str, reply: ServedReply, piece_chars: int = 16) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streamed reply: the role, the content in pieces
    (or the tool calls), then a last chunk with the finish reason, the usage and ``meta_spider``."""
    completion_id, created = _ids()

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}

    yield chunk({"role": "assistant", "content": ""})
    text = reply.content or ""
    for start in range(0, len(text), piece_chars):
        yield chunk({"content": text[start:start + piece_chars]})
    if reply.tool_calls:
        yield chunk({"tool_calls": [{"index": index, **call} for index, call in enumerate(reply.tool_calls)]})
    last = chunk({}, reply.finish_reason)
    last["usage"] = _usage(reply)
    last["meta_spider"] = reply.meta_spider
    yield last
