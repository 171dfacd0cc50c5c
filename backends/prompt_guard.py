"""Text that came from a user or a tool can never become a control token.

A chat template writes its own turn markup (``<|im_start|>``, ``<|im_end|>``)
as special tokens; a tool result or a user message that *contains* that text
must reach the model as plain characters, or it forges a turn. Both backends
therefore render with :meth:`SpecialTextGuard.guard_messages` (every special
token's text inside message content is swapped for a private-use marker)
and tokenize with :meth:`SpecialTextGuard.encode`: the template's markup with
special-token parsing on, each marked piece with it off. A prompt without
markers tokenizes exactly as before, in one piece.

The same module budgets a prompt against the model's context
(:meth:`SpecialTextGuard.fit`): the oldest tool results are cut first, and a
prompt that still does not fit is a
:class:`~meta_spider.backends.llamacpp.errors.ContextFullError` on both
backends, whose ``render_prompt`` is :class:`GuardedPrompts`'. This module
knows nothing about torch or llama.cpp: each backend hands it its
tokenizer's two modes.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Callable, Mapping, Sequence

from meta_spider.backends.base import Message, ToolSchema
from meta_spider.backends.llamacpp.errors import ContextFullError
from meta_spider.native.errors import ChatTemplateError
from meta_spider.wrapper.signals import generation_tails, question_words, reads_occlusion

__all__ = ["gguf_control_tokens", "GENERATION_RESERVE", "GuardedPrompts", "MARK_CLOSE", "MARK_OPEN", "SpecialTextGuard",
           "TRUNCATION_NOTE", "prompt_limit"]

MARK_OPEN = "\ue000"
MARK_CLOSE = "\ue001"
"""Private-use characters around the index of a special token's text found
in content; no tokenizer gives them a meaning."""
TRUNCATION_NOTE = "\n[... cut to fit the model's context]"
GENERATION_RESERVE = 64
"""Context positions a rendered prompt leaves free for the reply (a
sixteenth of a smaller context). Small on purpose: a prompt that fitted
before budgeting must still fit, and generation stops at the context's end."""


def prompt_limit(context_length: int) -> int:
    """The most tokens a rendered prompt may take in a context of ``context_length``."""
    return context_length - max(1, min(GENERATION_RESERVE, context_length // 16))

logger = logging.getLogger(__name__)

Encoder = Callable[[str], list[int]]
_MARKED = re.compile(f"{MARK_OPEN}(\\d+){MARK_CLOSE}")
_MAX_DEPTH = 40  # tool-call arguments are bounded far below this by the agent loop; a client's need not be


class SpecialTextGuard:
    """The special-token texts of one tokenizer and how to keep content
    from producing them."""

    def __init__(self, special_tokens: Sequence[str]) -> None:
        # Longest first, so "<|im_start|>" wins over a shorter prefix token.
        self.special_tokens = sorted({token for token in special_tokens if token}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, self.special_tokens))) if self.special_tokens else None
        self._index = {token: number for number, token in enumerate(self.special_tokens)}

    # ------------------------------------------------------------ rendering

    def guard_text(self, text: str) -> str:
        """``text`` with every special token's text replaced by its marker."""
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda match: f"{MARK_OPEN}{self._index[match.group(0)]}{MARK_CLOSE}", text)

    def guard_messages(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Copies of ``messages`` whose content (and tool-call arguments) can
        no longer spell a special token; roles and structure are kept."""
        return [self._guard_value(dict(message), 0) for message in messages]

    def _guard_value(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.guard_text(value)
        if depth > _MAX_DEPTH and isinstance(value, (Mapping, list, tuple)):
            # Deeper than the guard walks: its JSON text, guarded like any
            # string, never the raw structure (the template would write it out unguarded).
            try:
                return self.guard_text(json.dumps(value, ensure_ascii=False, default=str))
            except (RecursionError, ValueError):
                return f"<a {type(value).__name__} nested deeper than {_MAX_DEPTH} levels, not shown>"
        if isinstance(value, Mapping):
            return {key: (item if key in ("role", "tool_call_id", "id", "type") else self._guard_value(item, depth + 1))
                    for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._guard_value(item, depth + 1) for item in value]
        return value

    # ------------------------------------------------------------ tokenizing

    def encode(self, text: str, markup: Encoder, plain: Encoder) -> list[int]:
        """Token ids of a rendered prompt: ``markup`` (special tokens parsed)
        for the template's text, ``plain`` (parsing off) for each marked
        piece of content."""
        if MARK_OPEN not in text:
            return markup(text)
        ids: list[int] = []
        position = 0
        for match in _MARKED.finditer(text):
            number = int(match.group(1))
            if number >= len(self.special_tokens):
                continue  # a marker the guard did not write: leave it as text
            if match.start() > position:
                ids += markup(text[position:match.start()])
            ids += plain(self.special_tokens[number])
            position = match.end()
        if position < len(text):
            ids += markup(text[position:])
        return ids

    # ------------------------------------------------------------ budget

    def fit(self, messages: Sequence[Mapping[str, Any]], render: Callable[[list[dict[str, Any]]], str],
            count: Callable[[str], int], limit: int) -> str:
        """Render ``messages`` within ``limit`` tokens: when the prompt is too
        long, tool results are cut, the oldest first, each down to a short
        head with :data:`TRUNCATION_NOTE`; raises
        :class:`~meta_spider.backends.llamacpp.errors.ContextFullError` when
        even that does not fit."""
        current = [dict(message) for message in messages]
        text = render(current)
        needed = count(text)
        if needed <= limit:
            return text
        tool_turns = [index for index, message in enumerate(current)
                      if message.get("role") == "tool" and isinstance(message.get("content"), str)]
        for index in tool_turns:
            content = current[index]["content"]
            for keep in (len(content) // 4, 200, 0):
                if keep >= len(content):
                    continue
                current[index] = {**current[index], "content": content[:keep] + TRUNCATION_NOTE}
                text = render(current)
                needed = count(text)
                if needed <= limit:
                    return text
        raise ContextFullError(needed, limit)


_PLACEHOLDER_TOOL: ToolSchema = {"type": "function", "function": {
    "name": "lookup", "description": "Look a fact up.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}
"""The tool a tool-use template is shown when only its generation tail is wanted."""


class GuardedPrompts:
    """``render_prompt`` for a backend that renders with its model's own
    template: content is guarded, and the prompt is fitted to the context
    when its length is known. The backend supplies the guard, the renderer
    (built on first use), its token count and the context length."""

    _prompt_renderer: Any = None
    tool_family: str | None = None
    """The tool-call family the prompts show the model (the agent's parser's,
    :func:`~meta_spider.backends.base.use_tool_family`); None: the template's own."""

    @property
    def guard(self) -> SpecialTextGuard:
        raise NotImplementedError

    def _new_prompt_renderer(self) -> Any:
        """The model's :class:`~meta_spider.native.NativeToolPrompt`."""
        raise NotImplementedError

    def _encode_ids(self, text: str) -> list[int]:
        raise NotImplementedError

    def _prompt_context_length(self) -> int | None:
        raise NotImplementedError

    _generation_tails: tuple[str, ...] | None = None

    def question_words(self, prompt: str, question: str | None, signals: Sequence[str]) -> list[tuple[int, ...]] | None:
        """The prompt positions of each word of ``question`` in the rendered
        ``prompt`` when ``signals`` (the Doubter's) read
        ``occluded_name_logprob``; None when they do not. The question is
        looked for before the text the template writes after a last user
        turn (its end of turn and the assistant's header), and a question the
        prompt does not hold is read as no words (a warning; the signal then
        reads 0) rather than failing the agent's step."""
        if not reads_occlusion(signals):
            return None
        if question is None:
            raise ValueError("this Doubter reads occluded_name_logprob, which needs the user's question: call "
                             "read(prompt, question=<the last user message's text>)")
        try:
            return question_words(self._encode_ids, prompt, self.guard.guard_text(question),
                                  tails=self.generation_tails())
        except ValueError as error:
            logger.warning("%s; the occlusion signal reads no words", error)
            return []

    def generation_tails(self) -> tuple[str, ...]:
        """What the template writes after the content of a conversation's
        last user turn (end of turn, generation header), with
        ``enable_thinking`` unset, off and on
        (:func:`~meta_spider.wrapper.signals.generation_tails`), rendered
        without tools, else with one placeholder tool (a tool-use template
        that renders only with tools); none when neither renders. Found once,
        as the renderer is built once."""
        if self._generation_tails is None:
            self._generation_tails = ()
            for tools in (None, [_PLACEHOLDER_TOOL]):
                def render(messages: list[dict[str, str]], thinking: bool | None) -> str:
                    return self.render_prompt(messages, tools=tools, enable_thinking=thinking)

                try:
                    self._generation_tails = generation_tails(render)
                    break
                except ChatTemplateError as error:
                    logger.debug("generation tail not rendered with tools=%s (%s)", tools, error)
        return self._generation_tails

    def render_prompt(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolSchema] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool | None = None,
    ) -> str:
        if self._prompt_renderer is None:
            self._prompt_renderer = self._new_prompt_renderer()
        renderer = self._prompt_renderer
        renderer.tool_family = self.tool_family

        def render(guarded: list[dict[str, Any]]) -> str:
            return renderer.render(
                guarded, tools=tools, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
            )

        guard = self.guard
        guarded = guard.guard_messages(messages)
        length = self._prompt_context_length()
        if length is None:
            return render(guarded)
        return guard.fit(guarded, render, lambda text: len(self._encode_ids(text)), prompt_limit(length))


_GGUF_CONTROL = 3
"""``tokenizer.ggml.token_type`` of a control token (llama.cpp's LLAMA_TOKEN_TYPE_CONTROL)."""


def gguf_control_tokens(path: Any) -> list[str]:
    """The texts of a GGUF's control tokens (the ones llama.cpp parses as
    special), read from its tokenizer metadata; empty when it has none."""
    from gguf import GGUFReader

    fields = GGUFReader(str(path), "r").fields
    tokens, types = fields.get("tokenizer.ggml.tokens"), fields.get("tokenizer.ggml.token_type")
    if tokens is None or types is None:
        return []
    kinds = types.contents()
    return [str(tokens.contents(index)) for index, kind in enumerate(kinds) if int(kind) == _GGUF_CONTROL]
