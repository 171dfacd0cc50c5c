"""The ``direct`` policy: the plain base model, no introspection.

Renders the session with the model's own chat template and the tool
definitions, generates once, and proposes the text. It knows nothing about
tool-call syntax (the renderer parses) or about confidence (it reports none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meta_spider.backends.base import InferenceBackend
from meta_spider.policies.base import LatentDecision, SessionView, ToolCatalog

__all__ = ["DirectPolicy"]


@dataclass
class DirectPolicy:
    """Generate one reply with the base model."""

    max_new_tokens: int = 256
    """Generation budget for one model step."""
    enable_thinking: bool | None = None
    """Passed to the chat template; None leaves the template's default."""
    stop: tuple[str, ...] = ()
    """Extra stop strings for the backend (a StopBackend adds the turn's own)."""

    name = "direct"

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {self.max_new_tokens!r}")
        if isinstance(self.stop, str):
            raise ValueError(f"stop must be a sequence of strings, got the string {self.stop!r}")
        self.stop = tuple(self.stop)

    def decide(self, session: SessionView, backend: InferenceBackend, tools: ToolCatalog) -> LatentDecision:
        schemas = tools.schemas() if tools is not None else []
        prompt = backend.render_prompt(
            list(session.messages),
            tools=schemas or None,
            add_generation_prompt=True,
            enable_thinking=self.enable_thinking,
        )
        completion = backend.generate(prompt, max_new_tokens=self.max_new_tokens, stop=self.stop)
        metadata: dict[str, Any] = {
            "policy": self.name,
            "prompt": prompt,
            "finish_reason": completion.finish_reason,
            "num_tokens": completion.num_tokens,
        }
        return LatentDecision(text=completion.text, metadata=metadata)
