"""What the REPL shows of a streamed generation: the model's answer text,
never its tool-call markup.

:class:`ParsedStreamingBackend` is a :class:`StreamingBackend` whose
listener receives the events of a
:class:`~meta_spider.native.streaming.StreamingToolParser` run over each
generation (content and reasoning as soon as they are certain; calls are
left to the trace, which prints them parsed). The parser follows the tool-
call family the agent's renderer uses: its explicit family, or the one the
backend's chat template teaches. A generation whose prompt ends with the
family's call prefix (the renderer's prefilled lookup call) is parsed with
that prefix in front.

It knows nothing about terminals: the REPL decides how events look.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from meta_spider.agentcore.streaming import StreamingBackend
from meta_spider.backends.base import Completion, InferenceBackend, Introspection
from meta_spider.native import NativeToolRenderer
from meta_spider.native.streaming import StreamEvent, StreamingToolParser

__all__ = ["ParsedStreamingBackend"]


class ParsedStreamingBackend(StreamingBackend):
    """A streaming backend that hands ``on_event`` parsed events, not raw text."""

    def __init__(
        self,
        inner: InferenceBackend,
        on_event: Callable[[StreamEvent], None],
        family: Callable[[], str | None] = lambda: None,
    ) -> None:
        super().__init__(inner, listener=self._feed)
        self.on_event = on_event
        self._family = family
        self._parser: StreamingToolParser | None = None
        self._renderers: dict[tuple[Any, Any], NativeToolRenderer] = {}

    def _renderer(self) -> NativeToolRenderer:
        key = (self._family(), self.chat_template)
        if key not in self._renderers:  # detection reads the whole template: once per template
            self._renderers[key] = NativeToolRenderer(key[0], template=key[1])
        return self._renderers[key]

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        inject: Introspection | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        renderer = self._renderer()
        prefix = renderer.call_prefix()
        self._parser = StreamingToolParser(renderer, prefill=prefix if prefix and prompt.endswith(prefix) else "")
        try:
            return super().generate(prompt, max_new_tokens=max_new_tokens, stop=stop, inject=inject, on_text=on_text)
        finally:
            parser, self._parser = self._parser, None
            for event in parser.finish():  # what was held back, now certain (or cut off)
                self.on_event(event)

    def _feed(self, delta: str) -> None:
        if self._parser is not None:
            for event in self._parser.feed(delta):
                self.on_event(event)
