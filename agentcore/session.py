"""The :class:`Session`: one conversation's messages and tool results, with
a JSON save/load round-trip.

Messages are kept in the transformers chat format the chat templates read
(assistant ``tool_calls``, ``tool`` results with ``tool_call_id``). Tool-call
ids are assigned here when the model's format has none: 9 alphanumeric
characters (``call00001``), deterministic, and the only shape Mistral's
template accepts. The session knows nothing about models or policies.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from meta_spider.agentcore.errors import SessionFormatError
from meta_spider.native import ParsedToolCall, assistant_tool_calls_message, tool_result_message
from meta_spider.policies.actions import ToolInvocation

__all__ = ["SESSION_FORMAT", "SESSION_VERSION", "Session", "ToolResultRecord"]

SESSION_FORMAT = "meta-spider-session"
SESSION_VERSION = 1
_CALL_ID = re.compile(r"^[A-Za-z0-9]{9}$")
_ROLES = {"system", "user", "assistant", "tool"}


@dataclass
class ToolResultRecord:
    """What one tool call returned (or why it failed), as the model saw it."""

    step: int
    """The model step (1-based) whose action asked for the call."""
    name: str
    arguments: dict[str, Any]
    call_id: str | None
    content: str
    """The observation text given to the model."""
    kind: str
    """An :class:`~meta_spider.agentcore.steps.ObservationKind` value."""

    @property
    def ok(self) -> bool:
        return self.kind == "result"


@dataclass
class Session:
    """A conversation: chat messages, tool results and free-form metadata."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    tool_results: list[ToolResultRecord] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    call_counter: int = 0
    """Tool-call ids handed out so far (ids continue after a reload)."""

    @classmethod
    def from_question(cls, question: str, *, system: str | None = None) -> "Session":
        """A new session holding an optional system prompt and ``question``."""
        session = cls()
        if system:
            session.add_message("system", system)
        session.add_message("user", question)
        return session

    # ------------------------------------------------------------ building

    def add_message(self, role: str, content: str) -> dict[str, Any]:
        """Append a plain ``role`` message and return it."""
        if role not in _ROLES:
            raise ValueError(f"role must be one of {sorted(_ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"message content must be a string, got {content!r:.80}")
        message = {"role": role, "content": content}
        self.messages.append(message)
        return message

    def add_user(self, text: str) -> None:
        """Append a user turn (a new question, or an observation with no call to answer)."""
        self.add_message("user", text)

    def add_assistant(self, text: str) -> None:
        """Append a plain assistant turn."""
        self.add_message("assistant", text)

    def new_call_id(self) -> str:
        """The next session-assigned tool-call id."""
        self.call_counter += 1
        return f"call{self.call_counter:05d}"

    def add_tool_calls(self, calls: Iterable[ToolInvocation], content: str = "") -> list[ToolInvocation]:
        """Append an assistant turn carrying ``calls`` and return them with
        their ids settled (the model's own id when it is template-safe)."""
        settled = [
            ToolInvocation(
                call.name,
                dict(call.arguments),
                call.call_id if call.call_id and _CALL_ID.match(call.call_id) else self.new_call_id(),
                call.raw,
            )
            for call in calls
        ]
        message = assistant_tool_calls_message(
            [ParsedToolCall(call.name, call.arguments, call.call_id) for call in settled], content or None
        )
        self.messages.append(message)
        return settled

    def add_tool_result(self, record: ToolResultRecord) -> None:
        """Append the ``tool`` message answering one call and keep the record."""
        self.messages.append(tool_result_message(record.name, record.content, record.call_id))
        self.tool_results.append(record)

    # ------------------------------------------------------------ reading

    @property
    def last_assistant_text(self) -> str | None:
        """Content of the last assistant message, if any."""
        for message in reversed(self.messages):
            if message.get("role") == "assistant":
                return message.get("content")
        return None

    # ------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SESSION_FORMAT,
            "version": SESSION_VERSION,
            "messages": self.messages,
            "tool_results": [asdict(record) for record in self.tool_results],
            "metadata": self.metadata,
            "call_counter": self.call_counter,
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "a dict") -> "Session":
        """Rebuild a session; raises :class:`SessionFormatError` naming the problem."""
        if not isinstance(data, dict):
            raise SessionFormatError(source, f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != SESSION_FORMAT:
            raise SessionFormatError(source, f"format is {data.get('format')!r}, expected {SESSION_FORMAT!r}")
        if data.get("version") != SESSION_VERSION:
            raise SessionFormatError(
                source, f"version {data.get('version')!r} is not supported (this build reads {SESSION_VERSION})"
            )
        messages = data.get("messages")
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and m.get("role") in _ROLES for m in messages
        ):
            raise SessionFormatError(source, f"'messages' must be a list of objects with a role in {sorted(_ROLES)}")
        try:
            records = [ToolResultRecord(**record) for record in data.get("tool_results", [])]
        except TypeError as exc:
            raise SessionFormatError(source, f"bad tool_results entry ({exc})") from exc
        counter = data.get("call_counter", 0)
        if not isinstance(counter, int) or counter < 0:
            raise SessionFormatError(source, f"call_counter must be a non-negative int, got {counter!r}")
        return cls(messages, records, dict(data.get("metadata", {})), counter)

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, *, source: str = "JSON text") -> "Session":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SessionFormatError(source, f"invalid JSON ({exc})") from exc
        return cls.from_dict(data, source=source)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the session as JSON (UTF-8) and return the path."""
        target = Path(path)
        target.write_text(self.to_json() + "\n", encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Session":
        target = Path(path)
        return cls.from_json(target.read_text(encoding="utf-8"), source=str(target))
