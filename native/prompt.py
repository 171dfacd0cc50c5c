"""`NativeToolPrompt`: build a prompt with the model's own chat template.

Two sources, one result: a transformers tokenizer (its
``apply_chat_template(..., tools=..., tokenize=False)``), or the raw template
text as stored in a GGUF's ``tokenizer.chat_template``, rendered here with
jinja2 set up the way transformers sets it up (sandboxed, ``trim_blocks`` /
``lstrip_blocks``, loop controls, ``{% generation %}``, the globals
``raise_exception`` / ``strftime_now`` / ``namespace`` and transformers'
``tojson``). Both paths render the same text for the same inputs.

This module knows how to render; it does not know any family's call syntax
(:mod:`meta_spider.native.renderer`) and never imports torch or
transformers at module level (a tokenizer is duck-typed).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from meta_spider.native.adapt import (
    TemplateCapabilities, fit_messages, probe_template, template_tools, template_variables,
)
from meta_spider.native.errors import ChatTemplateError, MissingChatTemplateError
from meta_spider.native.families import ToolCallFamily, coerce_family, detect_family
from meta_spider.native.renderer import NativeToolRenderer

__all__ = ["NativeToolPrompt", "compile_chat_template", "thinking_switches"]

# transformers hands a message's reasoning to templates under several names;
# the first is the one most templates read.
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def thinking_switches(enable_thinking: bool | None) -> dict[str, bool]:
    """Template variables that switch reasoning on or off.

    Qwen3 and most hybrid-reasoning templates read ``enable_thinking``;
    others (Granite, DeepSeek V3.1, ...) read ``thinking``. Both are set, so
    one switch works whichever the template reads. None sets neither and
    leaves the template's default.
    """
    if enable_thinking is None:
        return {}
    return {"enable_thinking": bool(enable_thinking), "thinking": bool(enable_thinking)}


@functools.lru_cache(maxsize=32)
def compile_chat_template(template: str) -> Any:
    """Compile a chat template with transformers' jinja configuration.

    Raises :class:`ChatTemplateError` when the text is not valid jinja.
    """
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(jinja2.ext.Extension):
        # `{% generation %}...{% endgeneration %}` marks assistant text for
        # transformers' assistant-token masks; a prompt just renders the body.
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

        def _render_body(self, caller: Any) -> str:
            return caller()

    class TemplateNamespace(jinja2.utils.Namespace):
        # Like transformers: no underscore attributes, so a template cannot
        # reach interpreter internals through a namespace object.
        def __init__(*args: Any, **kwargs: Any) -> None:
            self, args = args[0], args[1:]
            attributes = dict(*args, **kwargs)
            for name in attributes:
                TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__init__(self, attributes)

        def __setitem__(self, name: str, value: Any) -> None:
            TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check_name(name: Any) -> None:
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} starts with '_'")

    class TemplateDict:
        # `dict(...)` and `dict.fromkeys(...)` without handing the template
        # the builtin type itself (transformers does the same).
        def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
            return dict(*args, **kwargs)

        def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
            return dict.fromkeys(*args, **kwargs)

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        value: Any,
        ensure_ascii: bool = False,
        indent: int | None = None,
        separators: tuple[str, str] | None = None,
        sort_keys: bool = False,
    ) -> str:
        # jinja's own tojson HTML-escapes '<', '>', '&' and "'", which would
        # change what the model sees; transformers replaces it with this.
        return json.dumps(
            value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys,
            default=_iterable_as_list,
        )

    def strftime_now(format: str) -> str:
        return datetime.now().strftime(format)

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = strftime_now
    environment.globals["namespace"] = TemplateNamespace
    environment.globals["dict"] = TemplateDict()
    try:
        return environment.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise ChatTemplateError(
            f"template syntax error at line {exc.lineno}: {exc.message}", template_source="template text"
        ) from exc


def _iterable_as_list(value: Any) -> list[Any]:
    # jinja's map/select filters return generators; templates pipe them into
    # tojson (llama.cpp's DeepSeek R1 template does), which JSON cannot write.
    if hasattr(value, "__iter__") and not isinstance(value, (str, bytes, dict)):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _plain(value: Any) -> Any:
    """A deep copy made of plain dicts/lists, so the template sees JSON-like
    data and cannot mutate the caller's messages."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    return value


def _normalise_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages as transformers hands them to a template: plain dicts, keys
    whose value is None dropped, reasoning aliased under every name."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a sequence of mappings, got {type(messages).__name__}")
    normalised = []
    for position, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TypeError(f"message {position} must be a mapping with 'role', got {message!r}")
        plain = {key: _plain(value) for key, value in message.items() if value is not None}
        reasoning = next((plain[key] for key in _REASONING_FIELDS if key in plain), None)
        if reasoning is not None:
            plain = {"thinking": reasoning, **plain, "reasoning_content": reasoning}
        normalised.append(plain)
    return normalised


class NativeToolPrompt:
    """Render messages plus tool definitions with a model's own chat template.

    Build one with :meth:`from_tokenizer`, :meth:`from_template` or
    :meth:`from_gguf`. Tool definitions are OpenAI/transformers style
    (``{"type": "function", "function": {"name", "description",
    "parameters"}}``); messages are transformers style.
    """

    def __init__(
        self,
        template: str | None,
        *,
        tokenizer: Any = None,
        context: Mapping[str, Any] | None = None,
        source: str = "template text",
        family: ToolCallFamily | str | None = None,
    ) -> None:
        if template is None and tokenizer is None:
            raise ValueError("NativeToolPrompt needs a template string or a tokenizer, got neither")
        self.tool_family = family
        self.template: str | None = template
        self.tokenizer = tokenizer
        self.context: dict[str, Any] = dict(context or {})
        self.source = source
        self._capabilities: TemplateCapabilities | None = None
        if tokenizer is None and template is not None:
            compile_chat_template(template)  # fail at construction, not at the first prompt

    def __repr__(self) -> str:
        return f"NativeToolPrompt(source={self.source!r}, family={self.family.value!r})"

    # ------------------------------------------------------------ constructors

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> "NativeToolPrompt":
        """Use a transformers tokenizer's ``apply_chat_template``.

        Raises :class:`MissingChatTemplateError` when it has no template.
        """
        chat_template = getattr(tokenizer, "chat_template", None)
        name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
        if not chat_template:
            raise MissingChatTemplateError(name)
        if isinstance(chat_template, Mapping):
            # Several named templates: the tool-use one is what we render with.
            chat_template = chat_template.get("tool_use") or chat_template.get("default")
        return cls(chat_template, tokenizer=tokenizer, source=f"tokenizer {name}")

    @classmethod
    def from_template(
        cls, template: str, *, bos_token: str = "", eos_token: str = "", **extra_context: Any
    ) -> "NativeToolPrompt":
        """Render the raw template text (e.g. a GGUF's ``tokenizer.chat_template``)
        with jinja2. ``bos_token``, ``eos_token`` and ``extra_context`` are
        template variables, as a tokenizer's special tokens are in transformers.

        Raises :class:`ChatTemplateError` when the text is not valid jinja.
        """
        if not isinstance(template, str) or not template.strip():
            raise ValueError(f"template must be non-empty jinja text, got {template!r:.80}")
        context = {"bos_token": bos_token, "eos_token": eos_token, **extra_context}
        return cls(template, context=context)

    @classmethod
    def from_gguf(cls, path: str | os.PathLike[str], **extra_context: Any) -> "NativeToolPrompt":
        """Read ``tokenizer.chat_template`` and the BOS/EOS token texts from a
        GGUF file's metadata (needs the ``gguf`` package, imported here).

        Raises :class:`MissingChatTemplateError` when the file has no template.
        """
        from meta_spider.native.gguf_template import read_gguf_chat_template

        template, bos_token, eos_token = read_gguf_chat_template(path)
        if not template:
            raise MissingChatTemplateError(os.fspath(path))
        prompt = cls.from_template(template, bos_token=bos_token, eos_token=eos_token, **extra_context)
        prompt.source = f"GGUF {os.fspath(path)}"
        return prompt

    # ------------------------------------------------------------ use

    @property
    def tool_family(self) -> ToolCallFamily | None:
        """The tool-call family the model is taken to write (None: detected
        from the template): the syntax of the example call in the
        instructions written for a template that cannot show tools, and of
        earlier calls written into one that cannot show calls. Set it to the
        family the agent parses when detection is not what the model writes;
        a name is checked (ValueError listing the known ones)."""
        return self._tool_family

    @tool_family.setter
    def tool_family(self, family: ToolCallFamily | str | None) -> None:
        self._tool_family = None if family is None else coerce_family(family)

    @property
    def family(self) -> ToolCallFamily:
        """The tool-call family the model writes: :attr:`tool_family` when set,
        else the one this template teaches (detected from its text)."""
        return self.tool_family or detect_family(self.template)

    def renderer(self, family: ToolCallFamily | str | None = None) -> NativeToolRenderer:
        """A :class:`NativeToolRenderer` for this template (``family``, else
        :attr:`tool_family`, overrides detection)."""
        return NativeToolRenderer(family or self.tool_family, template=self.template)

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool | None = None,
        **template_kwargs: Any,
    ) -> str:
        """The prompt text for ``messages`` and ``tools``.

        ``enable_thinking`` sets both ``enable_thinking`` and ``thinking``
        (see :func:`thinking_switches`); explicit ``template_kwargs`` win.
        The messages are first fitted to what the template can render
        (:func:`~meta_spider.native.adapt.fit_messages`): calls, results,
        tools and system text the template would drop are written where it
        shows them.
        Raises :class:`ChatTemplateError` when the template refuses the
        messages (its ``raise_exception``) or fails while rendering.
        """
        kwargs = {**thinking_switches(enable_thinking), **template_kwargs}
        tool_list = None if tools is None else [_plain(tool) for tool in tools]
        # Shape errors in the caller's messages are raised as they are, before
        # any template code runs; only what the template does is wrapped.
        plain_messages = _normalise_messages(messages)
        capabilities = self.capabilities()
        fitted = fit_messages(
            plain_messages, capabilities, tools=tool_list,
            format_calls=lambda calls: self.renderer().format_calls(calls),
        )
        # A template that cannot show `tools` gets them in the system text
        # instead; some (Command R+) fail on the OpenAI shape, so they get none.
        return self._render_raw(fitted, tool_list if capabilities.tools else None, add_generation_prompt, kwargs)

    def capabilities(self) -> TemplateCapabilities:
        """What this template renders (system role, tools, calls, tool
        results), probed once (see :func:`~meta_spider.native.adapt.probe_template`)."""
        if self._capabilities is None:
            self._capabilities = probe_template(
                lambda messages, tools: self._render_raw(messages, tools, True, {}), self.template or ""
            )
        return self._capabilities

    def _render_raw(
        self,
        messages: list[dict[str, Any]],
        tool_list: list[dict[str, Any]] | None,
        add_generation_prompt: bool,
        kwargs: Mapping[str, Any],
    ) -> str:
        """Render exactly these messages (no fitting)."""
        import jinja2

        extra = template_variables(self.template or "", tool_list, datetime.now())
        kwargs = {**extra, **kwargs}
        tool_list = template_tools(self.template or "", tool_list)
        try:
            if self.tokenizer is not None:
                return self.tokenizer.apply_chat_template(
                    [dict(message) for message in messages],  # transformers normalises itself
                    tools=tool_list,
                    add_generation_prompt=add_generation_prompt,
                    tokenize=False,
                    **kwargs,
                )
            compiled = compile_chat_template(self.template)
            variables = {
                **self.context,
                **kwargs,
                "messages": messages,
                "tools": tool_list,
                "documents": None,
                "add_generation_prompt": add_generation_prompt,
            }
            return compiled.render(variables)
        except jinja2.exceptions.TemplateError as exc:
            raise ChatTemplateError(
                str(getattr(exc, "message", None) or exc), template_source=self.source, cause=type(exc).__name__
            ) from exc
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            # Template code failing on these inputs (Hermes-3's tool-use
            # template iterates `tools` even when there are none).
            raise ChatTemplateError(str(exc), template_source=self.source, cause=type(exc).__name__) from exc
