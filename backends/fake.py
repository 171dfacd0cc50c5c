"""A scriptable backend for tests and the scripted demo.

:class:`FakeBackend` returns queued outputs in order and records every prompt
it was given, so a test can script a model (``enqueue``) and inspect what the
agent showed it (``history``). Prompts are rendered with a real chat template
through :class:`~meta_spider.native.NativeToolPrompt` (by default
:data:`FAKE_CHAT_TEMPLATE`, a small ChatML template with Hermes-style
``<tool_call>`` markers), so the tool-calling path is the real one.

Like a raw model it ignores stop strings: wrap it in
:class:`~meta_spider.backends.stop.StopBackend` to cut a completion at the end
of its turn. It knows nothing about models or tokens.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from meta_spider.backends.base import (
    BackendCapabilityError,
    BackendError,
    Completion,
    Introspection,
    Message,
    ToolSchema,
)

__all__ = ["FAKE_CHAT_TEMPLATE", "FakeBackend", "FakeBackendExhausted", "FakeCall"]

FAKE_CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages and messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}"
    "{{- 'You may call tools. Their signatures are inside <tools></tools>:\\n<tools>\\n' }}"
    "{%- for tool in tools %}{{- tool | tojson }}{{- '\\n' }}{%- endfor %}"
    "{{- '</tools>\\nTo call one, reply with <tool_call>\\n"
    "{\"name\": <name>, \"arguments\": <json object>}\\n</tool_call>'"
    " + '<|im_end|>\\n' }}"
    "{%- elif messages and messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' and loop.first %}"
    "{%- elif message.role == 'tool' %}"
    "{{- '<|im_start|>tool\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' and message.tool_calls %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if message.content %}{{- message.content + '\\n' }}{%- endif %}"
    "{%- for call in message.tool_calls %}"
    "{{- '<tool_call>\\n{\"name\": \"' + call.function.name + '\", \"arguments\": ' }}"
    "{{- call.function.arguments | tojson }}{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""A ChatML template with Hermes/Qwen ``<tool_call>`` markers, written for
this backend (tool results in a ``tool`` turn inside ``<tool_response>``)."""


class FakeBackendExhausted(BackendError, fields=("calls_made", "prompt")):
    """``generate`` was called with no scripted output left."""

    template = ("FakeBackend has no scripted output left for generate call #{call_number}; "
                "enqueue() one more (last prompt ends with {prompt_tail!r})")

    def __post_init__(self) -> None:
        self.call_number, self.prompt_tail = self.calls_made + 1, self.prompt[-120:]


@dataclass(frozen=True)
class FakeCall:
    """One ``generate`` call as the fake saw it."""

    prompt: str
    max_new_tokens: int
    stop: tuple[str, ...]
    inject: Introspection | None


@dataclass
class FakeBackend:
    """Returns scripted completions; records the prompts it receives."""

    outputs: Sequence[str | Completion | Introspection] = ()
    """Initial script, as if passed to :meth:`enqueue`."""
    chat_template: str | None = FAKE_CHAT_TEMPLATE
    name: str = "fake"
    tool_family: str | None = None
    """The tool-call family the prompts show (None: the template's own)."""
    stream_chunk: int = 4
    """``on_text`` receives the text in pieces of this many characters."""
    history: list[str] = field(default_factory=list, init=False)
    """Every prompt ``generate`` received, in order."""
    calls: list[FakeCall] = field(default_factory=list, init=False)
    """Every ``generate`` call with its arguments."""
    reads: list[str] = field(default_factory=list, init=False)
    """Every prompt ``read`` received."""
    read_questions: list[str | None] = field(default_factory=list, init=False)
    """The ``question`` of every ``read``, in order."""

    def __post_init__(self) -> None:
        if self.stream_chunk < 1:
            raise ValueError(f"stream_chunk must be >= 1, got {self.stream_chunk!r}")
        self._completions: deque[Completion] = deque()
        self._introspections: deque[Introspection] = deque()
        self._prompt_builder: Any = None
        self._prompt_template: str | None = None
        self.enqueue(*self.outputs)

    def enqueue(self, *items: str | Completion | Introspection) -> "FakeBackend":
        """Queue outputs: strings and :class:`Completion` objects for
        ``generate``, :class:`Introspection` objects for ``read``."""
        for item in items:
            if isinstance(item, str):
                self._completions.append(Completion(item, finish_reason="eos", num_tokens=len(item.split())))
            elif isinstance(item, Completion):
                self._completions.append(item)
            elif isinstance(item, Introspection):
                self._introspections.append(item)
            else:
                raise TypeError(f"enqueue() takes str, Completion or Introspection, got {item!r}")
        return self

    @property
    def pending(self) -> int:
        """Scripted completions not yet returned."""
        return len(self._completions)

    def render_prompt(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSchema] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool | None = None,
    ) -> str:
        from meta_spider.native import NativeToolPrompt

        if self.chat_template is None:
            raise BackendCapabilityError(self.name, "render a prompt", "set chat_template to a jinja chat template")
        if self._prompt_template != self.chat_template:  # compile once per template
            self._prompt_builder = NativeToolPrompt.from_template(self.chat_template, eos_token="<|im_end|>")
            self._prompt_template = self.chat_template
        self._prompt_builder.tool_family = self.tool_family
        return self._prompt_builder.render(
            messages, tools=tools, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
        )

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        inject: Introspection | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        if not self._completions:
            raise FakeBackendExhausted(len(self.calls), prompt)
        self.history.append(prompt)
        self.calls.append(FakeCall(prompt, max_new_tokens, tuple(stop), inject))
        completion = self._completions.popleft()
        if on_text is not None:
            for start in range(0, len(completion.text), self.stream_chunk):
                on_text(completion.text[start : start + self.stream_chunk])
        return completion

    def read(self, prompt: str, *, question: str | None = None) -> Introspection:
        if not self._introspections:
            raise BackendCapabilityError(self.name, "read", "enqueue an Introspection before read()")
        self.reads.append(prompt)
        self.read_questions.append(question)
        return self._introspections.popleft()
