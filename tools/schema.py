"""JSON schemas for tools: built from typed Python functions, and checked
against the arguments a model supplies.

:func:`function_schema` describes a function whose parameters are annotated
with ``str``, ``int``, ``float``, ``bool``, ``list[X]``, ``Literal[...]`` or
``Optional[X]`` (``X | None``), with defaults, taking descriptions from a
Google-style docstring (first line; ``Args:`` section). Anything else is
refused with :class:`ToolDefinitionError` rather than described vaguely: a
schema the model cannot read leads to calls the tool cannot take.

:func:`validate_arguments` checks a call's arguments against the subset of
JSON Schema tools use here (``type``, ``enum``, ``items``, ``properties``,
``required``, ``additionalProperties``). It knows nothing about the model or
the agent loop.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from typing import Any, Callable, Literal, Mapping, Union

from meta_spider.tools.errors import ToolArgumentError, ToolDefinitionError

__all__ = ["function_schema", "parse_docstring", "validate_arguments"]

_SCALARS: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_SUPPORTED = "str, int, float, bool, list[X], Literal[...], Optional[X]"


# ---------------------------------------------------------------- building


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Return (first line, {parameter: description}) of a Google-style
    docstring. Parameter lines look like ``name: text`` or ``name (type):
    text`` under ``Args:``; more-indented lines continue the description."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary = lines[0].strip() if lines else ""
    params: dict[str, str] = {}
    entry = re.compile(r"^(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
    in_args = False
    entry_indent: int | None = None
    current: str | None = None
    for line in lines[1:]:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args, entry_indent, current = True, None, None
            continue
        if not in_args or not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            in_args = False  # the next section (Returns:, Raises:, ...) began
            continue
        if entry_indent is None:
            entry_indent = indent
        match = entry.match(stripped)
        if match and indent == entry_indent:
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif current is not None and indent > entry_indent:
            params[current] = f"{params[current]} {stripped}".strip()
    return summary, params


def _type_schema(tool: str, param: str, annotation: Any) -> dict[str, Any]:
    """JSON schema of one annotation, or ToolDefinitionError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    if annotation is list or origin is list:
        if len(args) != 1:
            raise ToolDefinitionError(
                tool, f"parameter {param!r} is a bare list", "Annotate the item type: list[str]."
            )
        return {"type": "array", "items": _type_schema(tool, param, args[0])}
    if origin is Literal:
        kinds = {type(value) for value in args}
        if len(kinds) != 1 or next(iter(kinds)) not in _SCALARS:
            raise ToolDefinitionError(
                tool,
                f"parameter {param!r} is Literal{list(args)!r} with mixed or non-scalar values",
                "Use values of one type: str, int, float or bool.",
            )
        return {"type": _SCALARS[next(iter(kinds))], "enum": list(args)}
    if origin in (Union, types.UnionType):
        members = [arg for arg in args if arg is not type(None)]
        if len(members) == 1 and len(args) == 2:
            inner = _type_schema(tool, param, members[0])
            inner["type"] = [inner["type"], "null"]
            if "enum" in inner:
                inner["enum"] = [*inner["enum"], None]
            return inner
        raise ToolDefinitionError(
            tool,
            f"parameter {param!r} is the union {annotation!r}",
            "Only Optional[X] (X | None) unions can be described; split the tool or use one type.",
        )
    raise ToolDefinitionError(
        tool,
        f"parameter {param!r} has type {annotation!r}, which has no JSON-schema description here",
        f"Use one of: {_SUPPORTED}.",
    )


def function_schema(function: Callable[..., Any], name: str | None = None) -> tuple[str, str, dict[str, Any]]:
    """Return ``(name, description, parameters)`` describing ``function``.

    Raises :class:`ToolDefinitionError` for a missing docstring, a missing or
    unsupported annotation, ``*args``/``**kwargs``, positional-only
    parameters, or a default that is not JSON-serialisable.
    """
    tool = name or getattr(function, "__name__", None) or repr(function)
    summary, param_docs = parse_docstring(inspect.getdoc(function))
    if not summary:
        raise ToolDefinitionError(
            tool, "it has no docstring", "Give it a one-line docstring: the model reads it."
        )
    try:
        hints = typing.get_type_hints(function)
    except Exception as exc:  # unresolvable forward references
        raise ToolDefinitionError(
            tool, f"its annotations cannot be resolved ({exc})", "Import the annotated types."
        ) from exc
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(
                tool, f"parameter {param.name!r} is *args/**kwargs", "List every parameter explicitly."
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise ToolDefinitionError(
                tool, f"parameter {param.name!r} is positional-only", "Tools are called by keyword; drop the '/'."
            )
        if param.name not in hints:
            raise ToolDefinitionError(
                tool, f"parameter {param.name!r} has no type annotation", f"Annotate it with one of: {_SUPPORTED}."
            )
        schema = _type_schema(tool, param.name, hints[param.name])
        if param.name in param_docs:
            schema["description"] = param_docs[param.name]
        if param.default is param.empty:
            required.append(param.name)
        else:
            try:
                json.dumps(param.default)
            except TypeError as exc:
                raise ToolDefinitionError(
                    tool,
                    f"the default of {param.name!r} ({param.default!r}) is not JSON",
                    "Use a JSON-serialisable default.",
                ) from exc
            schema["default"] = param.default
        properties[param.name] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return tool, summary, parameters


# ---------------------------------------------------------------- checking

_PY_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    # bool is an int in Python but not in JSON; a model writing true for 1 is wrong.
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def validate_arguments(tool: str, schema: Mapping[str, Any], arguments: Any) -> dict[str, Any]:
    """Check ``arguments`` against the tool's ``parameters`` schema and return
    them, with integral floats (``3.0``) given for ``integer`` fields turned
    into ints (JSON writers often emit them). Unknown top-level arguments are
    rejected unless the schema allows ``additionalProperties``. Raises
    :class:`ToolArgumentError` naming the first bad field."""
    if not isinstance(arguments, dict):
        raise ToolArgumentError(tool, None, f"expected a JSON object, got {type(arguments).__name__}")
    return _check(tool, schema, arguments, path="", top=True)


def _check(tool: str, schema: Mapping[str, Any], value: Any, path: str, top: bool = False) -> Any:
    expected = schema.get("type")
    if expected is not None:
        kinds = expected if isinstance(expected, list) else [expected]
        if "integer" in kinds and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not any(_PY_TYPES.get(kind, lambda v: True)(value) for kind in kinds):
            shown = json.dumps(value)[:60] if _jsonable(value) else repr(value)[:60]
            raise ToolArgumentError(tool, path or None, f"expected {' or '.join(kinds)}, got {shown}")
    if "enum" in schema and value not in schema["enum"]:
        raise ToolArgumentError(tool, path or None, f"{value!r} is not one of {schema['enum']!r}")
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_check(tool, schema["items"], item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise ToolArgumentError(tool, _join(path, name), "is required but missing")
        # JSON Schema allows extra keys by default, but a Python function
        # cannot take an argument it does not name, so the top level refuses them.
        extra = schema.get("additionalProperties", not top)
        result: dict[str, Any] = {}
        for name, item in value.items():
            if name in properties:
                result[name] = _check(tool, properties[name], item, _join(path, name))
            elif extra is False:
                allowed = ", ".join(properties) or "none"
                raise ToolArgumentError(tool, _join(path, name), f"is not a parameter (parameters: {allowed})")
            elif isinstance(extra, Mapping):
                result[name] = _check(tool, extra, item, _join(path, name))
            else:
                result[name] = item
        return result
    return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
