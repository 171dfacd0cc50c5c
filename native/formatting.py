"""Write tool calls the way each family's model writes them.

For every family: the text of one or several calls (what a chat template
renders for past calls, and what a model trained on it emits), the prefix
that opens a call (the agent prefills the assistant turn with it) and the
marker that closes a call (a stop string), when the family has one. A few
families have variants that the chat template tells apart (Mistral's
``[ARGS]`` form, LFM2's ``<|tool_call_start|>``, Command R+'s ``Action:``).

Nothing here parses; :mod:`meta_spider.native.parsers` reads these back.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from meta_spider.native.families import ToolCallFamily as F

__all__ = ["format_family_calls", "family_call_prefix", "family_call_end", "reasoning_tags", "tojson"]

#: (name, arguments, call_id) of one call.
Call = tuple[str, dict[str, Any], "str | None"]


def tojson(value: Any) -> str:
    """The templates' ``tojson`` spelling (transformers' variant: ", "/": "
    separators, non-ASCII kept)."""
    return json.dumps(value, ensure_ascii=False)


def _xml_text(value: Any) -> str:
    # XML-parameter families write strings bare and everything else as JSON.
    return value if isinstance(value, str) else tojson(value)


def _python_literal(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_python_literal(k)}: {_python_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_python_literal(item) for item in value) + "]"
    if isinstance(value, str):
        return tojson(value)  # a JSON string is a valid Python string literal
    return repr(value)  # int, float, True/False/None


Formatter = Callable[[list[Call], str], str]
"""Writes a turn's calls, given the chat template (for families with variants)."""


def _each(separator: str, write: Callable[[str, dict[str, Any]], str]) -> Formatter:
    """A formatter that writes every call with ``write(name, arguments)`` and
    joins them with ``separator``."""
    return lambda calls, template: separator.join(write(name, args) for name, args, _ in calls)


def _named_list(calls: list[Call], *, name_key: str = "name", args_key: str = "arguments") -> str:
    return ", ".join(f'{{"{name_key}": {tojson(name)}, "{args_key}": {tojson(args)}}}' for name, args, _ in calls)


_hermes = _each("\n", lambda n, a: f'<tool_call>\n{{"name": {tojson(n)}, "arguments": {tojson(a)}}}\n</tool_call>')


def _function_body(name: str, args: dict[str, Any], newline_values: bool) -> str:
    sep = "\n" if newline_values else ""
    params = "".join(f"<parameter={k}>{sep}{_xml_text(v)}{sep}</parameter>\n" for k, v in args.items())
    return f"<function={name}>\n{params}</function>"


_qwen3_coder = _each("\n", lambda n, a: f"<tool_call>\n{_function_body(n, a, True)}\n</tool_call>")
_seed = _each("\n", lambda n, a: f"<seed:tool_call>\n{_function_body(n, a, False)}\n</seed:tool_call>")


# Llama 3.1's template writes custom-tool calls as bare JSON; several calls
# in one turn are separated by "; ".
_llama3 = _each("; ", lambda n, a: f'{{"name": {tojson(n)}, "parameters": {tojson(a)}}}')


def _pythonic(calls: list[Call], template: str) -> str:
    body = "[" + ", ".join(
        f"{n}(" + ", ".join(f"{k}={_python_literal(v)}" for k, v in a.items()) + ")" for n, a, _ in calls
    ) + "]"
    if "<|tool_call_start|>" in template or "<|tool_list_start|>" in template:
        return f"<|tool_call_start|>{body}<|tool_call_end|>"
    if "<|python_start|>" in template:
        return f"<|python_start|>{body}<|python_end|>"
    return body


def _mistral(calls: list[Call], template: str) -> str:
    if "[ARGS]" in template:
        # v11+ tokenizers: [TOOL_CALLS]name[ARGS]{...}, one marker per call.
        return "".join(f"[TOOL_CALLS]{n}[ARGS]{tojson(a)}" for n, a, _ in calls)
    items = []
    for name, args, call_id in calls:
        item = f'{{"name": {tojson(name)}, "arguments": {tojson(args)}'
        item += f', "id": {tojson(call_id)}}}' if call_id is not None else "}"
        items.append(item)
    return f"[TOOL_CALLS][{', '.join(items)}]"


_function_tag = _each("", lambda n, a: f"<function={n}>{tojson(a)}</function>")
_functionary_v32 = _each("", lambda n, a: f">>>{n}\n{tojson(a)}")


def _functools(calls: list[Call], template: str) -> str:
    return f" functools[{_named_list(calls)}]"


def _granite(calls: list[Call], template: str) -> str:
    return f"<|tool_call|>[{_named_list(calls)}]"


def _deepseek_r1(calls: list[Call], template: str) -> str:
    body = "\n".join(
        f"<｜tool▁call▁begin｜>function<｜tool▁sep｜>{n}\n```json\n{tojson(a)}\n```<｜tool▁call▁end｜>" for n, a, _ in calls
    )
    return f"<｜tool▁calls▁begin｜>{body}<｜tool▁calls▁end｜>"


def _deepseek_v3(calls: list[Call], template: str) -> str:
    body = "".join(f"<｜tool▁call▁begin｜>{n}<｜tool▁sep｜>{tojson(a)}<｜tool▁call▁end｜>" for n, a, _ in calls)
    return f"<｜tool▁calls▁begin｜>{body}<｜tool▁calls▁end｜>"


def _command_r(calls: list[Call], template: str) -> str:
    if "<|START_ACTION|>" not in template and "<|CHATBOT_TOKEN|>" in template:
        items = ",\n".join(f'    {{"tool_name": {tojson(n)}, "parameters": {tojson(a)}}}' for n, a, _ in calls)
        return f"Action: ```json\n[\n{items}\n]\n```"
    items = ",\n".join(
        f'    {{"tool_call_id": {tojson(str(i))}, "tool_name": {tojson(n)}, "parameters": {tojson(a)}}}'
        for i, (n, a, _) in enumerate(calls)
    )
    return f"<|START_ACTION|>[\n{items}\n]<|END_ACTION|>"


_internlm = _each(
    "\n", lambda n, a: f'<|action_start|><|plugin|>\n{{"name": {tojson(n)}, "parameters": {tojson(a)}}}<|action_end|>'
)


def _xlam(calls: list[Call], template: str) -> str:
    return f"[{_named_list(calls)}]"


_harmony = _each(
    "<|start|>assistant",
    lambda n, a: f"<|channel|>commentary to=functions.{n} <|constrain|>json<|message|>{tojson(a)}<|call|>",
)


def _kimi(calls: list[Call], template: str) -> str:
    body = "".join(
        f"<|tool_call_begin|>functions.{n}:{i}<|tool_call_argument_begin|>{tojson(a)}<|tool_call_end|>"
        for i, (n, a, _) in enumerate(calls)
    )
    return f"<|tool_calls_section_begin|>{body}<|tool_calls_section_end|>"


def _glm(calls: list[Call], template: str) -> str:
    return "\n".join(
        f"<tool_call>{n}\n"
        + "".join(f"<arg_key>{k}</arg_key>\n<arg_value>{_xml_text(v)}</arg_value>\n" for k, v in a.items())
        + "</tool_call>"
        for n, a, _ in calls
    )


def _minimax(calls: list[Call], template: str) -> str:
    invokes = "".join(
        f'<invoke name="{n}">\n'
        + "".join(f'<parameter name="{k}">{_xml_text(v)}</parameter>\n' for k, v in a.items())
        + "</invoke>\n"
        for n, a, _ in calls
    )
    return f"<minimax:tool_call>\n{invokes}</minimax:tool_call>"


def _nemotron(calls: list[Call], template: str) -> str:
    return f"<TOOLCALL>[{_named_list(calls)}]</TOOLCALL>"


_FORMATTERS: dict[F, Formatter] = {
    F.HERMES: _hermes,
    F.QWEN3_CODER: _qwen3_coder,
    F.LLAMA3: _llama3,
    F.PYTHONIC: _pythonic,
    F.MISTRAL: _mistral,
    F.FUNCTION_TAG: _function_tag,
    F.FUNCTIONARY_V32: _functionary_v32,
    F.FUNCTOOLS: _functools,
    F.GRANITE: _granite,
    F.DEEPSEEK_R1: _deepseek_r1,
    F.DEEPSEEK_V3: _deepseek_v3,
    F.COMMAND_R: _command_r,
    F.INTERNLM: _internlm,
    F.XLAM: _xlam,
    F.HARMONY: _harmony,
    F.KIMI_K2: _kimi,
    F.GLM45: _glm,
    F.MINIMAX_M2: _minimax,
    F.NEMOTRON: _nemotron,
    F.SEED_OSS: _seed,
}


def format_family_calls(family: F, calls: list[Call], template: str | None = None) -> str:
    """The text of ``calls`` (one assistant turn) in ``family``'s syntax."""
    return _FORMATTERS[family](calls, template or "")


_PREFIXES: dict[F, str] = {
    F.HERMES: "<tool_call>\n",
    F.QWEN3_CODER: "<tool_call>\n<function=",
    F.LLAMA3: "<|python_tag|>",
    F.PYTHONIC: "[",
    F.MISTRAL: "[TOOL_CALLS]",
    F.FUNCTION_TAG: "<function=",
    # The template's generation prompt already ends with ">>>": the model's
    # first word is the recipient, so nothing more can be prefilled.
    F.FUNCTIONARY_V32: "",
    F.FUNCTOOLS: " functools[",
    F.GRANITE: "<|tool_call|>[",
    F.DEEPSEEK_R1: "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>",
    F.DEEPSEEK_V3: "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>",
    F.COMMAND_R: "<|START_ACTION|>",
    F.INTERNLM: "<|action_start|><|plugin|>\n",
    F.XLAM: "[",
    F.HARMONY: "<|channel|>commentary to=functions.",
    F.KIMI_K2: "<|tool_calls_section_begin|><|tool_call_begin|>functions.",
    F.GLM45: "<tool_call>",
    F.MINIMAX_M2: '<minimax:tool_call>\n<invoke name="',
    F.NEMOTRON: "<TOOLCALL>[",
    F.SEED_OSS: "<seed:tool_call>\n<function=",
}


def family_call_prefix(family: F, template: str | None = None) -> str:
    """The text that opens one call in ``family`` (template variants honoured)."""
    template = template or ""
    if family is F.PYTHONIC:
        if "<|tool_call_start|>" in template or "<|tool_list_start|>" in template:
            return "<|tool_call_start|>["
        if "<|python_start|>" in template:
            return "<|python_start|>["
    if family is F.COMMAND_R and "<|START_ACTION|>" not in template and "<|CHATBOT_TOKEN|>" in template:
        return "Action: ```json\n"
    return _PREFIXES[family]


_ENDS: dict[F, str] = {
    F.HERMES: "</tool_call>",
    F.QWEN3_CODER: "</tool_call>",
    F.FUNCTION_TAG: "</function>",
    F.DEEPSEEK_R1: "<｜tool▁calls▁end｜>",
    F.DEEPSEEK_V3: "<｜tool▁calls▁end｜>",
    F.COMMAND_R: "<|END_ACTION|>",
    F.INTERNLM: "<|action_end|>",
    F.HARMONY: "<|call|>",
    F.KIMI_K2: "<|tool_calls_section_end|>",
    F.GLM45: "</tool_call>",
    F.MINIMAX_M2: "</minimax:tool_call>",
    F.NEMOTRON: "</TOOLCALL>",
    F.SEED_OSS: "</seed:tool_call>",
}


def family_call_end(family: F, template: str | None = None) -> str | None:
    """The marker that closes a call (a stop string), None when the call
    ends with the turn (Llama 3, Mistral, the JSON lists)."""
    if family is F.PYTHONIC and ("<|tool_call_start|>" in (template or "") or "<|tool_list_start|>" in (template or "")):
        return "<|tool_call_end|>"
    return _ENDS.get(family)


def reasoning_tags(family: F) -> tuple[str, str]:
    """The tags around the model's reasoning in ``family``'s output."""
    if family is F.SEED_OSS:
        return "<seed:think>", "</seed:think>"
    if family is F.COMMAND_R:
        return "<|START_THINKING|>", "<|END_THINKING|>"
    return "<think>", "</think>"
