"""The ``default`` action renderer: native tool calls, refusals, answers.

The model's text is parsed with the tool-call family of its own chat
template (:class:`~meta_spider.native.NativeToolRenderer`). Any call or
failed call attempt makes a ``ToolCall``; text that is (or starts with) the
refusal sentence makes a ``Refuse``; anything else is an ``Answer``. An
optional ``threshold`` turns an answer whose ``p_correct`` is below it into a
refusal, so an introspective policy can reuse this renderer; the lookup
fallback of an uncertain model belongs to that policy, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meta_spider.backends.base import InferenceBackend
from meta_spider.policies.actions import (
    REFUSAL_SENTENCE,
    Action,
    Answer,
    Refuse,
    ToolCall,
    ToolInvocation,
    UnparsedCall,
    is_refusal,
)
from meta_spider.policies.base import LatentDecision, SessionView, ToolCatalog

__all__ = ["DefaultRenderer"]


@dataclass
class DefaultRenderer:
    """Parse native tool calls; recognise the refusal; optionally gate on confidence."""

    family: str | None = None
    """Tool-call family override (``"hermes"``, ``"llama3"``, ...); None
    detects it from the backend's chat template."""
    threshold: float | None = None
    """Refuse answers whose ``p_correct`` is below this; None disables the gate."""
    _parsers: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    name = "default"

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1] or be None, got {self.threshold!r}")

    def _parser(self, backend: InferenceBackend) -> Any:
        from meta_spider.native import NativeToolRenderer

        template = backend.chat_template
        key = (self.family, template)
        if key not in self._parsers:  # detection reads the whole template; do it once
            self._parsers[key] = NativeToolRenderer(family=self.family, template=template)
        return self._parsers[key]

    def render(
        self, decision: LatentDecision, session: SessionView, backend: InferenceBackend, tools: ToolCatalog
    ) -> Action:
        result = self._parser(backend).parse(decision.text)
        if result.tool_calls or result.failures:
            return ToolCall(
                calls=tuple(
                    ToolInvocation(call.name, dict(call.arguments), call.call_id, call.raw)
                    for call in result.tool_calls
                ),
                content=result.content.strip(),
                failures=tuple(UnparsedCall(failure.reason, failure.raw) for failure in result.failures),
            )
        text = result.content.strip()
        if is_refusal(text):
            return Refuse(text=text, reason="model")
        if self.threshold is not None and decision.p_correct is not None and decision.p_correct < self.threshold:
            return Refuse(
                text=REFUSAL_SENTENCE,
                reason=f"p_correct {decision.p_correct:.3f} below threshold {self.threshold:.3f}",
            )
        return Answer(text=text)
