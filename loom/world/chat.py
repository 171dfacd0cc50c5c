"""Chat markup of the embedded world: the jinja chat template, its special
tokens, the ``lookup`` tool schema and a renderer that produces exactly the
text ``tokenizer.apply_chat_template`` produces.

The markup follows the Hermes/Qwen convention (``<|im_start|>role`` turns,
``<tool_call>{json}</tool_call>`` in assistant turns, tool results as
``<tool_response>`` blocks inside a user turn) so the project's native
``hermes`` parser reads the trained base's calls like a hub model's.

This module knows nothing about the world's facts or about tokenisation; the
generator renders its chats through :func:`render_chat` so the training text
and the prompts built at inference time can never drift apart.
"""

from __future__ import annotations

import json
import random
from typing import Any, Sequence

import jinja2

from meta_spider.tools.calculator import calculator

from .frames import arithmetic_question

BOS_TOKEN = "<|endoftext|>"
"""Document separator; also the bos, eos and pad token of the base."""
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_RESPONSE_OPEN = "<tool_response>"
TOOL_RESPONSE_CLOSE = "</tool_response>"

CONTROL_TOKENS: tuple[str, ...] = (BOS_TOKEN, IM_START, IM_END)
"""Special tokens that decoding with ``skip_special_tokens`` removes."""
MARKUP_TOKENS: tuple[str, ...] = (
    TOOL_CALL_OPEN,
    TOOL_CALL_CLOSE,
    TOOL_RESPONSE_OPEN,
    TOOL_RESPONSE_CLOSE,
)
"""Single tokens that stay visible in decoded text (the parser needs them)."""

LOOKUP_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look up a person in the knowledge base.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "full name"}
            },
            "required": ["query"],
        },
    },
}
"""The tool offered in tool-use transcripts; backed by ``KnowledgeBase``."""

CALCULATOR_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression such as '(17 + 4) * 2 / 3'.",
        "parameters": {
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "Numbers, + - * / // % ** and parentheses; functions sqrt, abs, round, min, "
                                   "max, log, exp, sin, cos, tan, floor, ceil; constants pi, e.",
                }
            },
            "required": ["expression"],
        },
    },
}
"""The built-in calculator's schema as the agent offers it, frozen here so the
world's bytes do not follow edits to the tool (a test compares the two)."""

# Written for this project in the Hermes/Qwen layout. It opens with the bos
# token because every training document does (packed documents are separated
# by it), so a prompt starts in the state the base was trained in. No default
# system turn is
# added when none is given: the small base is trained on bare user turns and a
# boiler-plate system prompt would only cost context.
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}"
    "{{- '# Tools\\nYou may call these functions. Signatures:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '\\n</tools>\\nCall one as <tool_call>{\"name\": ..., \"arguments\": {...}}</tool_call>.<|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' and loop.first %}"
    "{%- elif message.role == 'user' or message.role == 'system' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant' }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for call in (message.tool_calls or []) %}"
    "{%- if call.function is defined %}{%- set call = call.function %}{%- endif %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' + call.name + '\", \"arguments\": ' }}"
    "{%- if call.arguments is string %}{{- call.arguments }}{%- else %}{{- call.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def _tojson(value: Any) -> str:
    # Same serialisation transformers' chat renderer uses (ensure_ascii off,
    # default separators, key order kept), so rendered text matches it exactly.
    return json.dumps(value, ensure_ascii=False)


_ENV = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
_ENV.filters["tojson"] = _tojson
_TEMPLATE = _ENV.from_string(CHAT_TEMPLATE)


def render_chat(
    messages: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any]] | None = None,
    add_generation_prompt: bool = False,
) -> str:
    """Render ``messages`` with :data:`CHAT_TEMPLATE`, as ``apply_chat_template``
    would with ``tokenize=False``."""
    if not messages:
        raise ValueError("render_chat needs at least one message, got []")
    return _TEMPLATE.render(
        messages=list(messages), tools=list(tools) if tools else None,
        add_generation_prompt=add_generation_prompt, bos_token=BOS_TOKEN,
    )


def calculator_transcript(rng: random.Random) -> list[dict[str, Any]]:
    """The messages of one calculator episode: an arithmetic question, the
    call, the built-in calculator's result and "The answer is N."."""
    messages = calculator_exchange(*arithmetic_question(rng))
    return messages + [{"role": "assistant", "content": f"The answer is {messages[-1]['content']}."}]


def calculator_exchange(question: str, expression: str) -> list[dict[str, Any]]:
    """``question``, the assistant's call of ``expression`` and the built-in
    calculator's result: a calculator episode up to its answer."""
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "", "tool_calls": [calculator_call(expression)]},
        {"role": "tool", "name": "calculator", "content": calculator(expression)},
    ]


def calculator_call(expression: str) -> dict[str, Any]:
    """An assistant tool call of ``calculator`` in the OpenAI message shape."""
    return {"type": "function", "function": {"name": "calculator", "arguments": {"expression": expression}}}


def lookup_call(query: str) -> dict[str, Any]:
    """An assistant tool call of ``lookup`` in the OpenAI message shape."""
    return {"type": "function", "function": {"name": "lookup", "arguments": {"query": query}}}
