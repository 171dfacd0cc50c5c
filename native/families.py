"""Tool-call families: the ways chat models write a tool call.

A *family* names one surface syntax for tool calls in model output. Many
models share one (Hermes-3, Qwen2.5 and Qwen3 all write ``<tool_call>``
blocks), so the parser, the call formatter and the call prefix depend on the
family, not on the model. :func:`detect_family` reads the family off the
chat template text.

This module knows only marker strings. It does not parse output (see
:mod:`meta_spider.native.parsers`) and does not render templates (see
:mod:`meta_spider.native.prompt`).
"""

from __future__ import annotations

import enum

__all__ = ["ToolCallFamily", "detect_family", "coerce_family"]


class ToolCallFamily(str, enum.Enum):
    """The surface syntax of a tool call in model output."""

    #: Hermes 2 Pro / Hermes 3 / Qwen2.5 / Qwen3 / Granite 4:
    #: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, several per turn.
    HERMES = "hermes"
    #: Qwen3-Coder / Qwen3.5 / Nemotron 3: ``<tool_call><function=name><parameter=k>v</parameter>
    #: </function></tool_call>``.
    QWEN3_CODER = "qwen3_coder"
    #: Llama 3.1/3.2/3.3: ``{"name": ..., "parameters": {...}}``, optionally after
    #: ``<|python_tag|>``; several separated by ``;`` or newlines.
    LLAMA3 = "llama3"
    #: Pythonic lists ``[f(a=1), g(b="x")]``: Llama 3.2 pythonic, Llama 4
    #: (``<|python_start|>``), Gemma 3, LFM2 (``<|tool_call_start|>``).
    PYTHONIC = "pythonic"
    #: Mistral: ``[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}]`` and
    #: ``[TOOL_CALLS]name[ARGS]{...}``.
    MISTRAL = "mistral"
    #: Functionary v3.1 / Llama 3.1 custom tools: ``<function=name>{json}</function>``.
    FUNCTION_TAG = "function_tag"
    #: Functionary v3.2: ``>>>name\\n{json}`` (``>>>all\\n`` opens plain text).
    FUNCTIONARY_V32 = "functionary_v32"
    #: FireFunction v2 / Phi-4-mini: `` functools[{"name": ..., "arguments": {...}}]``.
    FUNCTOOLS = "functools"
    #: Granite 3.x: ``<|tool_call|>[{"name": ..., "arguments": {...}}]``.
    GRANITE = "granite"
    #: DeepSeek R1: ``<｜tool▁call▁begin｜>function<｜tool▁sep｜>name`` + a fenced JSON block.
    DEEPSEEK_R1 = "deepseek_r1"
    #: DeepSeek V3.1: ``<｜tool▁call▁begin｜>name<｜tool▁sep｜>{json}<｜tool▁call▁end｜>``.
    DEEPSEEK_V3 = "deepseek_v3"
    #: Command R7B / Command-A: ``<|START_ACTION|>[{"tool_call_id", "tool_name", "parameters"}]<|END_ACTION|>``;
    #: Command R+: ``Action: ```json [...] ```\u0060``.
    COMMAND_R = "command_r"
    #: InternLM2: ``<|action_start|><|plugin|>{"name": ..., "parameters": {...}}<|action_end|>``.
    INTERNLM = "internlm"
    #: xLAM: the whole answer is a JSON list ``[{"name": ..., "arguments": {...}}]``.
    XLAM = "xlam"
    #: GPT-OSS harmony: ``<|channel|>commentary to=functions.name <|constrain|>json<|message|>{json}<|call|>``.
    HARMONY = "harmony"
    #: Kimi K2: ``<|tool_call_begin|>functions.name:0<|tool_call_argument_begin|>{json}<|tool_call_end|>``.
    KIMI_K2 = "kimi_k2"
    #: GLM 4.5/4.6: ``<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>``.
    GLM45 = "glm45"
    #: MiniMax-M2: ``<minimax:tool_call><invoke name="f"><parameter name="k">v</parameter></invoke>...``.
    MINIMAX_M2 = "minimax_m2"
    #: Nemotron Nano v2: ``<TOOLCALL>[{"name": ..., "arguments": {...}}]</TOOLCALL>``.
    NEMOTRON = "nemotron"
    #: Seed-OSS: ``<seed:tool_call><function=name><parameter=k>v</parameter></function></seed:tool_call>``.
    SEED_OSS = "seed_oss"


def _deepseek(template: str) -> ToolCallFamily:
    # R1 writes the name after a "function" type and the arguments in a
    # ```json fence; V3.1 writes name<｜tool▁sep｜>arguments.
    return ToolCallFamily.DEEPSEEK_R1 if "```json" in template else ToolCallFamily.DEEPSEEK_V3


# Checked in this order; the first marker found in the template wins. Order
# matters because templates mention more than one syntax: Qwen3-Coder writes
# ``<function=`` *inside* ``<tool_call>``, GLM writes ``<arg_key>`` inside
# ``<tool_call>``, Functionary has an ``ipython`` role *and* ``<function=``
# calls. The most specific marker comes first.
_MARKERS: tuple[tuple[str, ToolCallFamily], ...] = (
    ("<|channel|>", ToolCallFamily.HARMONY),
    ("<|tool_calls_section_begin|>", ToolCallFamily.KIMI_K2),
    ("<minimax:tool_call>", ToolCallFamily.MINIMAX_M2),
    ("<seed:tool_call>", ToolCallFamily.SEED_OSS),
    ("<arg_key>", ToolCallFamily.GLM45),
    ("<TOOLCALL>", ToolCallFamily.NEMOTRON),
    ("<|START_ACTION|>", ToolCallFamily.COMMAND_R),
    ("<|CHATBOT_TOKEN|>", ToolCallFamily.COMMAND_R),
    ("<|plugin|>", ToolCallFamily.INTERNLM),
    ("functools", ToolCallFamily.FUNCTOOLS),
    ("<|tool_call|>", ToolCallFamily.GRANITE),
    ("<|tool_call_start|>", ToolCallFamily.PYTHONIC),
    ("<|tool_list_start|>", ToolCallFamily.PYTHONIC),
    ("<|python_start|>", ToolCallFamily.PYTHONIC),
    ("[TOOL_CALLS]", ToolCallFamily.MISTRAL),
    # Llama 3.2 / Llama 4 / Gemma 3 pythonic templates describe the call
    # list in prose (they also have an ipython role, so before Llama 3).
    ("[func_name1(", ToolCallFamily.PYTHONIC),
    ("xLAM", ToolCallFamily.XLAM),
    ("<parameter=", ToolCallFamily.QWEN3_CODER),
    ("<tool_call>", ToolCallFamily.HERMES),
    ("<function=", ToolCallFamily.FUNCTION_TAG),
    (">>>", ToolCallFamily.FUNCTIONARY_V32),
    ("<|python_tag|>", ToolCallFamily.LLAMA3),
    ("ipython", ToolCallFamily.LLAMA3),
)


def detect_family(template: str | None) -> ToolCallFamily:
    """Return the tool-call family a chat template teaches its model.

    Looks for each family's markers in the template text (see ``_MARKERS``;
    DeepSeek's ``tool▁calls▁begin`` picks R1 or V3 by the ``\u0060\u0060\u0060json`` fence).
    A template without any marker, or no template at all, gives
    :attr:`ToolCallFamily.HERMES`: it is the most widely trained syntax, and
    an explicit family (config, ``run.json``, ``--tool-family``) overrides
    this guess.
    """
    if not template:
        return ToolCallFamily.HERMES
    if "tool▁calls▁begin" in template:
        return _deepseek(template)
    for marker, family in _MARKERS:
        if marker in template:
            return family
    return ToolCallFamily.HERMES


def coerce_family(family: ToolCallFamily | str) -> ToolCallFamily:
    """Turn a family name (``"hermes"``, ``"LLAMA3"``, ...) into the enum.

    Raises ValueError naming the bad value and the accepted names.
    """
    if isinstance(family, ToolCallFamily):
        return family
    if isinstance(family, str):
        key = family.strip().lower().replace("-", "_")
        for member in ToolCallFamily:
            if key in (member.value, member.name.lower()):
                return member
    accepted = ", ".join(repr(member.value) for member in ToolCallFamily)
    raise ValueError(f"unknown tool-call family {family!r}; use one of {accepted}")
