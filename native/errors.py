"""Typed errors of native prompt building.

These are framework errors (a template that cannot render these messages,
a tokenizer without a template): they propagate to the caller. Problems in
*model output* are never raised; they are
:class:`~meta_spider.native.results.ToolParseFailure` values.
"""

from __future__ import annotations

from meta_spider.plugins.errors import MetaSpiderError

__all__ = ["NativeToolError", "ChatTemplateError", "MissingChatTemplateError"]


class NativeToolError(MetaSpiderError):
    """Base class of the errors raised by :mod:`meta_spider.native`."""


class ChatTemplateError(NativeToolError, fields=("message", "template_source", "cause")):
    """The chat template refused or failed to render the given messages.

    ``message`` is the template's own complaint (from ``raise_exception`` or a
    jinja error); ``template_source`` is a short name of where the template
    came from. The usual fix is to shape the messages the way the template
    demands (Mistral wants 9-character alphanumeric tool-call ids, Llama 3.1
    one tool call per assistant turn, strict user/assistant alternation).
    """

    cause = ""

    def describe(self) -> str:
        detail = f" ({self.cause})" if self.cause else ""
        return (
            f"chat template from {self.template_source} could not render the messages: {self.message}{detail}; "
            "reshape the messages the way this template demands or pass a different template"
        )


class MissingChatTemplateError(NativeToolError, fields=("tokenizer_name",)):
    """A tokenizer has no chat template, so there is no native prompt to build."""

    template = (
        "tokenizer {tokenizer_name!r} has no chat_template; set tokenizer.chat_template or use "
        "NativeToolPrompt.from_template with the template text (e.g. a GGUF's tokenizer.chat_template)"
    )
