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

from meta_spider.agentcore.errors import SessionFormatError, SessionWriteError
from meta_spider.agentcore.grounding import respelled
from meta_spider.native import ParsedToolCall, assistant_tool_calls_message, tool_result_message
from meta_spider.policies.actions import ToolInvocation
from meta_spider.tools.limits import MAX_NESTING, nesting_depth, safe_str

__all__ = ["CONTEXTS", "SESSION_FORMAT", "SESSION_VERSION", "QuestionView", "Session", "ToolResultRecord"]

SESSION_FORMAT = "meta-spider-session"
SESSION_VERSION = 1
_CALL_ID = re.compile(r"^[A-Za-z0-9]{9}$")
_ROLES = {"system", "user", "assistant", "tool"}
CONTEXTS = ("all", "question")
"""What the model reads of a session: ``all`` of it, or only the current
``question`` (:class:`QuestionView`), for a base trained on one question
per chat."""


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
    choices: list[str] = field(default_factory=list)
    """For a miss whose query names several entries, not one
    (:class:`~meta_spider.tools.SeveralFound`), their names: what the user
    can be asked to choose between. Empty otherwise, and in a session saved
    before the field existed."""

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
        """Rebuild a session; raises :class:`SessionFormatError` naming the
        problem and the field (every field is checked against the format)."""
        if not isinstance(data, dict):
            raise SessionFormatError(source, f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != SESSION_FORMAT:
            raise SessionFormatError(
                source, f"format is {data.get('format')!r:.80}, expected {SESSION_FORMAT!r}"
            )
        if data.get("version") != SESSION_VERSION:
            raise SessionFormatError(
                source,
                f"version {data.get('version')!r:.80} is not supported "
                f"(this build reads {SESSION_VERSION})",
            )
        if nesting_depth(data, MAX_NESTING + 4) > MAX_NESTING + 4:  # a session is a few levels plus tool arguments
            raise SessionFormatError(source, f"the JSON nests deeper than {MAX_NESTING + 4} levels")
        messages = data.get("messages")
        if not isinstance(messages, list):
            raise SessionFormatError(source, "'messages' must be a list")
        for index, message in enumerate(messages):
            problem = _message_problem(message)
            if problem:
                raise SessionFormatError(source, f"messages[{index}]: {problem}")
        results = data.get("tool_results", [])
        if not isinstance(results, list):
            raise SessionFormatError(source, "'tool_results' must be a list")
        records = []
        for index, record in enumerate(results):
            problem = _record_problem(record)
            if problem:
                raise SessionFormatError(source, f"tool_results[{index}]: {problem}")
            records.append(ToolResultRecord(**record))
        metadata = data.get("metadata", {})
        if not isinstance(metadata, dict):
            raise SessionFormatError(source, f"'metadata' must be an object, got {type(metadata).__name__}")
        counter = data.get("call_counter", 0)
        if not isinstance(counter, int) or isinstance(counter, bool) or counter < 0:
            raise SessionFormatError(
                source, f"call_counter must be a non-negative int, got {counter!r:.80}"
            )
        return cls(messages, records, dict(metadata), counter)

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, *, source: str = "JSON text") -> "Session":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SessionFormatError(source, f"invalid JSON ({exc})") from exc
        except RecursionError:
            raise SessionFormatError(source, "the JSON nests too deeply to read") from None
        return cls.from_dict(data, source=source)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the session as JSON (UTF-8) and return the path; raises
        :class:`SessionFormatError` when the file cannot be written."""
        target = Path(path)
        try:
            target.write_text(self.to_json() + "\n", encoding="utf-8")
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path, text that is not UTF-8
            reason = getattr(exc, "strerror", None) or safe_str(exc, limit=300)
            raise SessionWriteError(str(target), reason) from exc
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Session":
        """Read a saved session; raises :class:`SessionFormatError` naming
        the file and what is wrong with it."""
        target = Path(path)
        try:
            raw = target.read_bytes()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or safe_str(exc, limit=300)
            raise SessionFormatError(str(target), f"the file cannot be read ({reason})") from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SessionFormatError(
                str(target), f"not UTF-8 text (byte {exc.start}); a session file is the JSON /save writes"
            ) from None
        return cls.from_json(text, source=str(target))


def _message_problem(message: Any) -> str | None:
    """What is wrong with one saved chat message, or None."""
    if not isinstance(message, dict):
        return f"expected an object, got {type(message).__name__}"
    role = message.get("role")
    if role not in _ROLES:
        return f"role {role!r:.40} is not one of {sorted(_ROLES)}"
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        return f"content must be a string, got {type(content).__name__}"
    calls = message.get("tool_calls")
    if calls is None:
        return None if content is not None else "a message without tool_calls needs a string content"
    if role != "assistant" or not isinstance(calls, list) or not calls:
        return "tool_calls must be a non-empty list on an assistant message"
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return f"tool_calls[{index}] needs a function with a string name"
        if not isinstance(function.get("arguments"), (dict, str)):
            return f"tool_calls[{index}].function.arguments must be an object"
    return None


_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "step": (int,), "name": (str,), "arguments": (dict,), "call_id": (str, type(None)), "content": (str,),
    "kind": (str,),
}
_OPTIONAL_RECORD_FIELDS = ("choices",)
"""Record fields a session saved before they existed lacks."""
MAX_CHOICES = 100
"""The most names a saved record's ``choices`` may hold."""


def _record_problem(record: Any) -> str | None:
    """What is wrong with one saved tool-result record, or None."""
    if not isinstance(record, dict):
        return f"expected an object, got {type(record).__name__}"
    if not set(_RECORD_TYPES) <= set(record) <= set(_RECORD_TYPES) | set(_OPTIONAL_RECORD_FIELDS):
        return (f"expected the fields {sorted(_RECORD_TYPES)} (and optionally {list(_OPTIONAL_RECORD_FIELDS)}), "
                f"got {sorted(map(str, record))}")
    for name, types in _RECORD_TYPES.items():
        if not isinstance(record[name], types) or isinstance(record[name], bool):
            return f"{name} must be {' or '.join(t.__name__ for t in types)}, got {type(record[name]).__name__}"
    choices = record.get("choices", [])
    if not isinstance(choices, list) or len(choices) > MAX_CHOICES or not all(isinstance(c, str) for c in choices):
        return f"choices must be a list of at most {MAX_CHOICES} names, got {choices!r:.80}"
    return None


@dataclass(frozen=True)
class QuestionView:
    """A session as a base that answers one question at a time reads it:
    the system messages, then the user turn at ``start`` and everything after
    it (its tool calls, their results, notes about unreadable calls; from 0:
    the whole session). The session itself keeps every turn; the view follows
    what is appended to it.

    Once a call of a tool in ``respelled_by`` has found a record, the view's
    question and call arguments write a name the user misspelt, or typed in
    lower case, as the record spells it, and a question typed all in
    capitals reads in lower case around it
    (:func:`~meta_spider.agentcore.grounding.respelled`): a small base that
    read "Zerpieth Kilridge" answers from the record about her, and less
    often when asked about "Zerpieth Kilrideg", "zerpieth kilridge" or
    "ZERPIETH KILRIDGE". The session keeps what the user wrote."""

    session: Session
    start: int
    respelled_by: tuple[str, ...] = ()

    @classmethod
    def of(cls, session: Session, respelled_by: tuple[str, ...] = ()) -> "QuestionView":
        """The view from the session's last user turn (its current question)."""
        starts = [index for index, message in enumerate(session.messages) if message.get("role") == "user"]
        return cls(session, starts[-1] if starts else 0, tuple(respelled_by))

    @property
    def messages(self) -> list[dict[str, Any]]:
        earlier = self.session.messages[:self.start]
        messages = [message for message in earlier if message.get("role") == "system"] + self.session.messages[self.start:]
        records = self._records(messages)
        return [_respelled(message, records) for message in messages] if records else messages

    @property
    def tool_results(self) -> list[ToolResultRecord]:
        return self.session.tool_results

    def _records(self, messages: list[dict[str, Any]]) -> tuple[str, ...]:
        """What the calls of :attr:`respelled_by` found among ``messages``' tool results."""
        if not self.respelled_by:
            return ()
        shown = {message.get("content") for message in messages if message.get("role") == "tool"}
        return tuple(record.content for record in self.session.tool_results
                     if record.ok and record.name in self.respelled_by and record.content in shown)


def _respelled(message: dict[str, Any], records: tuple[str, ...]) -> dict[str, Any]:
    """A user turn, or an assistant turn's call arguments, with the names the
    ``records`` spell otherwise written as they spell them; others as they are."""
    def respell(text: str) -> str:
        for record in records:
            text = respelled(text, record)
        return text

    if message.get("role") == "user" and isinstance(message.get("content"), str):
        return {**message, "content": respell(message["content"])}
    if message.get("role") == "assistant" and message.get("tool_calls"):
        calls = []
        for call in message["tool_calls"]:
            function = dict(call.get("function", {}))
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                function["arguments"] = respell(arguments)
            elif isinstance(arguments, dict):
                function["arguments"] = {key: respell(value) if isinstance(value, str) else value
                                         for key, value in arguments.items()}
            calls.append({**call, "function": function})
        return {**message, "tool_calls": calls}
    return message
