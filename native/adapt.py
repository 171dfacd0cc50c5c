"""Fit chat messages to what a real chat template can render.

Templates differ in what they accept: Gemma 2 has no system role, Phi-3.5
and SmolLM3 ignore ``tools``, LFM2 ignores an assistant turn's
``tool_calls``, DeepSeek R1 concatenates a call's ``arguments`` as a
string, Gemma knows no ``tool`` role. :func:`probe_template` finds out by
rendering a few probe conversations (llama.cpp's chat code does the same);
:func:`fit_messages` then reshapes the caller's messages so that everything
they say reaches the prompt:

* assistant tool-call turns always carry ``content`` (``""``);
* calls the template ignores are written into the turn's content in the
  family's own syntax; tool results it ignores become user turns;
* without a system role the system text is folded into the first user turn;
* tools the template ignores are described in the system text, with an
  example call in the family's syntax.

It knows nothing about jinja: it calls the ``render`` function it is given.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

__all__ = [
    "TemplateCapabilities", "probe_template", "fit_messages", "template_variables", "template_tools", "tool_instructions",
]

#: ``render(messages, tools) -> str`` (raises when the template refuses).
RenderFunction = Callable[[list[dict[str, Any]], "list[dict[str, Any]] | None"], str]

_PROBE_TOOL_NAME = "probe_tool_qx7"
_PROBE_CALL_NAME = "probe_call_qx7"
_PROBE_RESULT = "probe_result_qx7"
_PROBE_SYSTEM = "probe_system_qx7"
_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": _PROBE_TOOL_NAME,
        "description": "A probe.",
        "parameters": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]},
    },
}
#: Roles that templates use for tool results, in the order tried.
TOOL_ROLES = ("tool", "ipython", "environment", "function", "tool_response")


@dataclass(frozen=True)
class TemplateCapabilities:
    """What a chat template renders of the messages it is given."""

    system: bool
    """A system message reaches the prompt."""
    tools: bool
    """Tool definitions passed as ``tools`` reach the prompt, or the template
    reads ``tools`` and shows them its own way (then nothing is added)."""
    tool_calls: bool
    """An assistant turn's ``tool_calls`` reach the prompt."""
    string_arguments: bool
    """The template needs a call's ``arguments`` as a JSON string."""
    tool_role: str | None
    """The role whose message content reaches the prompt as a tool result (None: none does)."""


def _rendered(render: RenderFunction, messages: list[dict[str, Any]], tools: Any) -> str | None:
    try:
        return render(messages, tools)
    except Exception:  # noqa: BLE001 - a refusal is the answer to the probe
        return None


def _renders(render: RenderFunction, messages: list[dict[str, Any]], tools: Any, needle: str) -> bool:
    text = _rendered(render, messages, tools)
    return text is not None and needle in text


def _call_message(arguments: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"type": "function", "id": "pr0beCall", "function": {"name": _PROBE_CALL_NAME, "arguments": arguments}}
        ],
    }


def probe_template(render: RenderFunction, template: str = "") -> TemplateCapabilities:
    """Render probe conversations through ``render`` and report what shows.
    ``template`` is the template's text: one that reads ``tools`` without
    printing their names decides itself what the model sees of them."""
    user = {"role": "user", "content": "hi"}
    with_system = [{"role": "system", "content": _PROBE_SYSTEM}, user]
    # Some tool-use templates (Hermes 3) fail without tools: try with them too.
    system = _renders(render, with_system, None, _PROBE_SYSTEM) or _renders(
        render, with_system, [_PROBE_TOOL], _PROBE_SYSTEM
    )
    tools = _renders(render, [user], [_PROBE_TOOL], _PROBE_TOOL_NAME) or (
        re.search(r"\btools\b", template) is not None and _renders(render, [user], [_PROBE_TOOL], "")
    )
    # Arguments as a dict, else as a JSON string (templates that concatenate
    # them, or print them with `|string`, which would write a Python repr):
    # the first form whose arguments show as JSON wins, else the first that
    # shows the call at all.
    shown: list[bool] = []
    for as_string in (False, True):
        arguments: Any = '{"x": "1"}' if as_string else {"x": "1"}
        result = {"role": "tool", "name": _PROBE_CALL_NAME, "tool_call_id": "pr0beCall", "content": _PROBE_RESULT}
        text = _rendered(render, [user, _call_message(arguments), result], [_PROBE_TOOL])
        if text is not None and _PROBE_CALL_NAME in text and '"x": "1"' in text:
            shown = [as_string]
            break
        if text is not None and _PROBE_CALL_NAME in text and not shown:
            shown.append(as_string)
    tool_calls, string_arguments = bool(shown), bool(shown and shown[0])
    turn = _call_message('{"x": "1"}' if string_arguments else {"x": "1"}) if tool_calls else {
        "role": "assistant", "content": "calling"}
    tool_role = None
    for role in TOOL_ROLES:
        result = {"role": role, "name": _PROBE_CALL_NAME, "tool_call_id": "pr0beCall", "content": _PROBE_RESULT}
        if _renders(render, [user, turn, result], [_PROBE_TOOL], _PROBE_RESULT):
            tool_role = role
            break
    return TemplateCapabilities(system, tools, tool_calls, string_arguments, tool_role)


def template_variables(template: str, tools: Sequence[Mapping[str, Any]] | None, now: Any) -> dict[str, Any]:
    """Variables a template reads without defaulting them: FireFunction's
    ``functions`` and ``datetime``, SmolLM3's ``xml_tools`` /
    ``python_tools``. Only those the template names and never tests with
    ``is defined`` are supplied, so other templates render as before."""
    functions = [tool.get("function", tool) for tool in tools or ()]
    candidates = {
        "functions": json.dumps(functions, ensure_ascii=False, indent=4) if functions else "",
        "datetime": now.strftime("%Y-%m-%d"),
        "date_string": now.strftime("%d %b %Y"),
        "xml_tools": list(tools or ()),
        "python_tools": [],
        "custom_tools": list(tools or ()),
        "builtin_tools": [],
        "tools_in_user_message": False,
    }
    return {
        name: value
        for name, value in candidates.items()
        if name in template and f"{name} is defined" not in template and f"{name} is not defined" not in template
    }


def template_tools(template: str, tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """``tools`` in the shape the template reads: OpenAI function definitions,
    except for Cohere's Command R+ template, which reads ``name``,
    ``description`` and ``parameter_definitions`` (one entry per parameter
    with its ``description``, ``type`` and ``required``)."""
    if not tools or "parameter_definitions" not in template:
        return tools
    shaped = []
    for tool in tools:
        function = tool.get("function", tool)
        parameters = function.get("parameters") or {}
        required = set(parameters.get("required") or ())
        shaped.append({
            "name": function.get("name", ""),
            "description": function.get("description", ""),
            "parameter_definitions": {
                key: {"description": spec.get("description", ""), "type": spec.get("type", "str"),
                      "required": key in required}
                for key, spec in (parameters.get("properties") or {}).items()
            },
        })
    return shaped


def tool_instructions(tools: Sequence[Mapping[str, Any]], example_call: str) -> str:
    """System text describing ``tools`` for a template that ignores them."""
    lines = "\n".join(json.dumps(tool.get("function", tool), ensure_ascii=False) for tool in tools)
    return (
        "You can call these tools (JSON schemas):\n"
        f"{lines}\n"
        "To call a tool, write the call exactly in this form, with the tool's name and JSON arguments:\n"
        f"{example_call}"
    )


def _merge_consecutive(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join adjacent plain user turns (templates demand alternation)."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        previous = merged[-1] if merged else None
        if (previous is not None and message.get("role") == previous.get("role") == "user"
                and isinstance(previous.get("content"), str) and isinstance(message.get("content"), str)):
            merged[-1] = {**previous, "content": previous["content"] + "\n\n" + message["content"]}
        else:
            merged.append(message)
    return merged


def fit_messages(
    messages: list[dict[str, Any]],
    capabilities: TemplateCapabilities,
    *,
    tools: Sequence[Mapping[str, Any]] | None,
    format_calls: Callable[[list[tuple[str, dict[str, Any], str | None]]], str],
) -> list[dict[str, Any]]:
    """``messages`` reshaped so that everything reaches this template's prompt."""
    fitted: list[dict[str, Any]] = []
    changed_roles = False
    for message in messages:
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls"):
            message = {**message, "content": message.get("content") or ""}
            if not capabilities.tool_calls:
                calls = [_call_tuple(entry) for entry in message["tool_calls"]]
                text = format_calls(calls)
                content = message["content"]
                message = {key: value for key, value in message.items() if key != "tool_calls"}
                message["content"] = f"{content}\n{text}" if content else text
            elif capabilities.string_arguments:
                message["tool_calls"] = [_string_arguments(entry) for entry in message["tool_calls"]]
        elif role in TOOL_ROLES and role != capabilities.tool_role:
            if capabilities.tool_role is not None:
                message = {**message, "role": capabilities.tool_role}
            else:
                name = message.get("name") or "tool"
                message = {"role": "user", "content": f"[{name} result]\n{message.get('content', '')}"}
                changed_roles = True
        fitted.append(message)
    if tools and not capabilities.tools:
        example = format_calls([(_tool_name(tools[0]), _example_arguments(tools[0]), None)])
        fitted = _add_system_text(fitted, tool_instructions(tools, example))
    if not capabilities.system and fitted and fitted[0].get("role") == "system":
        system, rest = fitted[0], fitted[1:]
        first_user = next((i for i, m in enumerate(rest) if m.get("role") == "user"), None)
        if first_user is None:
            rest.insert(0, {"role": "user", "content": str(system.get("content", ""))})
        else:
            user = rest[first_user]
            rest[first_user] = {**user, "content": f"{system.get('content', '')}\n\n{user.get('content', '')}"}
        fitted = rest
    return _merge_consecutive(fitted) if changed_roles else fitted


def _add_system_text(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _call_tuple(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    function = entry.get("function", entry)
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            arguments = {"arguments": arguments}
    return str(function.get("name", "")), dict(arguments) if isinstance(arguments, dict) else {}, entry.get("id")


def _string_arguments(entry: Mapping[str, Any]) -> dict[str, Any]:
    function = dict(entry.get("function", {}))
    if not isinstance(function.get("arguments"), str):
        function["arguments"] = json.dumps(function.get("arguments", {}), ensure_ascii=False)
    return {**entry, "function": function}


def _tool_name(tool: Mapping[str, Any]) -> str:
    return str(tool.get("function", tool).get("name", "tool"))


def _example_arguments(tool: Mapping[str, Any]) -> dict[str, Any]:
    properties = tool.get("function", tool).get("parameters", {}).get("properties", {})
    return {key: "..." for key in list(properties)[:2]}
