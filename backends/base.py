"""The inference-backend contract every backend satisfies.

A backend turns a chat into a prompt string (with the model's own template)
and a prompt into text. Backends that can introspect (the two-pass Doubter
path) also *read* a prompt into an :class:`Introspection` (pass 1) and
*generate* with it injected (pass 2). This module knows nothing about torch,
llama.cpp or how injection works; it only fixes the shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from meta_spider.plugins.errors import MetaSpiderError

Message = Mapping[str, Any]
"""A chat message in the transformers format: ``{"role": ..., "content": ...}``;
assistant tool calls as ``{"role": "assistant", "tool_calls": [{"type":
"function", "function": {"name": ..., "arguments": {...}}}]}``; tool results as
``{"role": "tool", "name": ..., "content": ...}``."""

ToolSchema = Mapping[str, Any]
"""A tool definition in the OpenAI/transformers form:
``{"type": "function", "function": {"name", "description", "parameters"}}``."""


class BackendError(MetaSpiderError):
    """A backend could not do what was asked (framework-side failure)."""


class BackendCapabilityError(BackendError, fields=("backend", "capability", "fix")):
    """The backend lacks a capability, e.g. ``read`` without a Doubter attached."""

    template = "backend {backend!r} cannot {capability}: {fix}"


@dataclass
class Completion:
    """Text a backend generated for one prompt."""

    text: str
    finish_reason: str = "stop"
    """``"eos"`` (end-of-turn token), ``"stop"`` (a stop string, cut off),
    ``"length"`` (max_new_tokens reached) or ``"interrupted"``."""
    num_tokens: int = 0


@dataclass
class Introspection:
    """What pass 1 read: the Doubter's view of the model's own state."""

    p_correct: float
    """Calibrated probability that the base's answer to this prompt is right."""
    cognitive_tokens: Any = None
    """Backend-native array ``[num_tokens, hidden]`` (torch or numpy)."""
    extras: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    """The Doubter's own answer-threshold calibration (from its checkpoint
    or GGUF sidecar; ``metaloom eval`` writes it), None when it has none."""


@runtime_checkable
class InferenceBackend(Protocol):
    """What the agent loop and the policies need from a model."""

    name: str

    @property
    def chat_template(self) -> str | None:
        """The model's raw chat template (jinja), used to pick the native
        tool-call family; ``None`` if the model has none."""

    def render_prompt(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSchema] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool | None = None,
    ) -> str:
        """Render ``messages`` (and tool definitions) with the model's own
        chat template."""

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        inject: Introspection | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        """Greedy generation from ``prompt``. With ``inject`` (pass 2) the
        cognitive tokens are injected; backends without injection raise
        :class:`BackendCapabilityError`. ``on_text`` receives text deltas as
        they are produced (streaming)."""

    def read(self, prompt: str, *, question: str | None = None) -> Introspection:
        """Pass 1: read the model's state at ``prompt`` and return the
        Doubter's introspection. ``question``: the user's words in the prompt
        (the last user message), which a Doubter reading
        ``occluded_name_logprob`` needs. Raises :class:`BackendCapabilityError`
        when no Doubter is attached."""


class WrappedBackend:
    """Base of backends that wrap another one (:class:`~meta_spider.backends.StopBackend`,
    the agent's streaming wrapper): every call is forwarded to :attr:`inner`,
    and so are backend-specific extras (tokenizer, pipeline, ...). Subclasses
    override only what they change."""

    def __init__(self, inner: InferenceBackend) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def chat_template(self) -> str | None:
        return self.inner.chat_template

    def render_prompt(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSchema] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool | None = None,
    ) -> str:
        return self.inner.render_prompt(
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
        return self.inner.generate(prompt, max_new_tokens=max_new_tokens, stop=stop, inject=inject, on_text=on_text)

    def read(self, prompt: str, *, question: str | None = None) -> Introspection:
        return self.inner.read(prompt, question=question)

    def __getattr__(self, attribute: str) -> Any:
        if attribute == "inner":  # not set yet: no recursion through __getattr__
            raise AttributeError(attribute)
        return getattr(self.inner, attribute)


def use_tool_family(backend: InferenceBackend, family: str | None) -> bool:
    """Make the prompts of ``backend`` (through any :class:`WrappedBackend`)
    show the model the tool-call family ``family``: the syntax of the example
    call in the instructions written for a template that cannot show tools.
    The agent calls it with the family its parser reads, so the model is
    taught the syntax that will be parsed. False when the backend under the
    wrappers has no ``tool_family`` (it renders prompts its own way)."""
    layer: Any = backend
    while isinstance(layer, WrappedBackend):
        layer = layer.inner
    if not hasattr(layer, "tool_family"):
        return False
    layer.tool_family = family
    return True
