"""The ``default`` action renderer: native tool calls, the uncertain paths,
refusals and answers.

The model's text is parsed with the tool-call family of its own chat
template (:class:`~meta_spider.native.NativeToolRenderer`); any call or
failed call attempt makes a ``ToolCall``. Otherwise the decision is
*uncertain* when its policy says so (``confident is False``) or when its
``p_correct`` lies below this renderer's optional ``threshold``. Then:

* with a lookup tool available (a tool named ``lookup_tool`` backed by a
  real knowledge base: the built-in ``lookup`` over the empty knowledge base
  does not count, it can only answer "no entry"), the renderer asks the
  model for the call in its own format: the conversation is rendered again
  with the tools offered, the assistant turn is opened with the family's
  :meth:`~meta_spider.native.NativeToolRenderer.call_prefix` (prefill), the
  model completes it (stopping at the family's close marker,
  :meth:`~meta_spider.native.NativeToolRenderer.call_end`, restored after
  the cut) and ``prefix + completion`` is parsed. A parsed call becomes the
  ``ToolCall``. A call the model broke off inside its JSON (a newline in
  the argument, a second key, the token budget spent) is closed where it
  broke (:func:`~meta_spider.native.heal.heal_call`) and becomes a
  ``ToolCall`` marked ``healed`` when it then parses into calls of offered
  tools, each with every argument its tool requires and no other; anything
  else unparseable a ``Refuse`` whose reason carries the
  parse failure (also kept in ``decision.metadata["lookup"]``, with the
  healed text under ``"healed"``);
* without one, the renderer refuses with its ``refusal`` sentence
  (default :data:`REFUSAL_SENTENCE`).

A decision whose policy gives a ``metadata["refusal_reason"]`` is the
policy's refusal: unless the model called a tool, it becomes a ``Refuse``
with that reason and this renderer's ``refusal`` sentence (followed by the
policy's ``metadata["follow_up"]`` question, when it gives one), without a
lookup. The ``doubter`` policy refuses so after misses, after a record its
gate judges no answer, and after calls that failed (where the model may
call again, but its answer would be a guess).

A confident (or unjudged) decision is an ``Answer``, unless its text is (or
starts with) that refusal sentence, which makes a ``Refuse`` (its reason
``"model"``); when a gated
decision was confident yet the model wrote that sentence, it takes the
uncertain path above (a lookup when one is available). The renderer knows
nothing about how confidence was computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meta_spider.backends.base import InferenceBackend
from meta_spider.native.heal import heal_call
from meta_spider.policies.actions import (
    REFUSAL_SENTENCE, Action, Answer, Refuse, ToolCall, ToolInvocation, UnparsedCall, is_refusal,
)
from meta_spider.policies.base import LatentDecision, SessionView, ToolCatalog

__all__ = ["DefaultRenderer", "EMPTY_KNOWLEDGE_BASE"]

EMPTY_KNOWLEDGE_BASE = "none"
"""The knowledge-base name of the built-in ``lookup`` before a real one is
installed (``meta_spider.tools.EmptyKnowledgeBase.name``)."""


@dataclass
class DefaultRenderer:
    """Parse native tool calls; look up or refuse when uncertain; answer otherwise."""

    family: str | None = None
    """Tool-call family override (``"hermes"``, ``"llama3"``, ...); None
    detects it from the backend's chat template."""
    threshold: float | None = None
    """Treat decisions whose ``p_correct`` is below this as uncertain; None
    leaves the verdict to the policy (``confident``)."""
    lookup_when_uncertain: bool = True
    """Ask for a native lookup call when uncertain and a lookup tool is available."""
    lookup_tool: str = "lookup"
    """The tool whose presence enables the lookup path."""
    tool_call_max_new_tokens: int = 96
    """Generation budget for completing the prefilled call."""
    refusal: str = REFUSAL_SENTENCE
    """The refusal sentence: what the renderer says when it refuses, and what
    it recognises as the model refusing (run.json: ``"renderer": {"name":
    "default", "settings": {"refusal": "..."}}``). Keep the one the base was
    trained on; the embedded world's is :data:`REFUSAL_SENTENCE`."""
    _parsers: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    name = "default"

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1] or be None, got {self.threshold!r}")
        if (not isinstance(self.tool_call_max_new_tokens, int) or isinstance(self.tool_call_max_new_tokens, bool)
                or self.tool_call_max_new_tokens < 1):
            raise ValueError(f"tool_call_max_new_tokens must be a positive int, got {self.tool_call_max_new_tokens!r}")
        if not isinstance(self.lookup_tool, str) or not self.lookup_tool:
            raise ValueError(f"lookup_tool must be a tool name, got {self.lookup_tool!r}")
        if self.family is not None:
            from meta_spider.native import coerce_family

            self.family = coerce_family(self.family).value  # an unknown name fails here, listing the known ones
        if not isinstance(self.refusal, str) or not self.refusal.strip():
            raise ValueError(f"refusal must be a non-empty sentence, got {self.refusal!r}")

    def is_refusal(self, text: str) -> bool:
        """Whether ``text`` is (or starts with) this renderer's refusal sentence."""
        return is_refusal(text, self.refusal)

    def _parser(self, backend: InferenceBackend) -> Any:
        from meta_spider.native import NativeToolRenderer

        template = backend.chat_template
        key = (self.family, template)
        if key not in self._parsers:  # detection reads the whole template; do it once
            self._parsers[key] = NativeToolRenderer(family=self.family, template=template)
        return self._parsers[key]

    # ------------------------------------------------------------ rendering

    def render(
        self, decision: LatentDecision, session: SessionView, backend: InferenceBackend, tools: ToolCatalog
    ) -> Action:
        result = self._parser(backend).parse(decision.text)
        if result.tool_calls or result.failures:
            return _tool_call(result)
        text = result.content.strip()
        if decision.metadata.get("refusal_reason"):
            # The policy refuses, knowing why and that a lookup would not help; the sentence is this renderer's.
            follow_up = decision.metadata.get("follow_up")
            said = f"{self.refusal} {follow_up}" if isinstance(follow_up, str) and follow_up.strip() else self.refusal
            return Refuse(text=said, reason=str(decision.metadata["refusal_reason"]))
        uncertain = self._uncertainty(decision)
        if uncertain is None and decision.confident and self.is_refusal(text):
            # Confident by its gate, yet the model wrote that it does not know:
            # with a lookup at hand that is as good a reason as a low P(correct).
            uncertain = "the model refused"
        if uncertain is not None:
            if self.lookup_when_uncertain and self.lookup_available(tools):
                return self._native_lookup(uncertain, decision, session, backend, tools)
            if uncertain == "the model refused":
                return Refuse(text=text, reason="model")
            return Refuse(text=self.refusal, reason=uncertain)
        if self.is_refusal(text):  # the model's own words
            return Refuse(text=text, reason="model")
        return Answer(text=text)

    def _uncertainty(self, decision: LatentDecision) -> str | None:
        """Why the decision is uncertain, or None when it is not."""
        p_correct = decision.p_correct
        if decision.confident is False:
            threshold = decision.metadata.get("threshold")
            if p_correct is not None and isinstance(threshold, (int, float)):
                source = decision.metadata.get("threshold_source")
                suffix = f", {source}" if source else ""
                return f"p_correct {p_correct:.3f} below threshold {threshold:.3f}{suffix}"
            return "the policy is not confident"
        if self.threshold is not None and p_correct is not None and p_correct < self.threshold:
            return f"p_correct {p_correct:.3f} below threshold {self.threshold:.3f}"
        return None

    def lookup_available(self, tools: ToolCatalog) -> bool:
        """Whether ``tools`` hold a lookup tool over a real knowledge base."""
        if tools is None or self.lookup_tool not in tools:
            return False
        getter = getattr(tools, "get", None)  # a ToolRegistry; a bare catalog only says the name exists
        tool = getter(self.lookup_tool) if callable(getter) else None
        metadata = getattr(tool, "metadata", None) or {}
        return metadata.get("knowledge_base") != EMPTY_KNOWLEDGE_BASE

    def _native_lookup(
        self, uncertain: str, decision: LatentDecision, session: SessionView, backend: InferenceBackend,
        tools: ToolCatalog,
    ) -> Action:
        parser = self._parser(backend)
        prefix = parser.call_prefix()
        end = parser.call_end()
        prompt = backend.render_prompt(
            list(session.messages), tools=tools.schemas() or None, add_generation_prompt=True,
            enable_thinking=decision.metadata.get("enable_thinking"),
        )
        completion = backend.generate(prompt + prefix, max_new_tokens=self.tool_call_max_new_tokens,
                                      stop=(end,) if end else ())
        written = prefix + completion.text
        if end is not None and completion.finish_reason == "stop" and not written.rstrip().endswith(end):
            written += end  # the backend cut the close marker off with the stop string
        result = parser.parse(written)
        healed = None if result.tool_calls else heal_call(written, prefix, end)
        if healed is not None:
            mended = parser.parse(healed)
            if mended.tool_calls and not mended.failures and all(_fits(call, tools) for call in mended.tool_calls):
                result = mended
            else:
                healed = None
        decision.metadata["lookup"] = {
            "reason": uncertain,
            "family": parser.family.value,
            "prefix": prefix,
            "completion": completion.text,
            "finish_reason": completion.finish_reason,
            "calls": [call.name for call in result.tool_calls],
            "failures": [{"reason": failure.reason, "raw": failure.raw} for failure in result.failures],
            "healed": healed,
        }
        if result.tool_calls:
            return _tool_call(result, healed=healed is not None)
        problem = "; ".join(failure.reason for failure in result.failures) or "the completion holds no call"
        return Refuse(text=self.refusal, reason=f"{uncertain}; the lookup call could not be parsed ({problem})")


def _fits(call: Any, tools: ToolCatalog) -> bool:
    """Whether ``call`` names a tool of ``tools`` and gives every argument its
    schema requires and no other (what a healed call must do to run)."""
    if call.name not in tools:
        return False
    for schema in tools.schemas():
        function = schema.get("function", schema) if isinstance(schema, dict) else {}
        if function.get("name") == call.name:
            parameters = function.get("parameters") or {}
            known = set(parameters.get("properties") or {})
            required = set(parameters.get("required") or ())
            return isinstance(call.arguments, dict) and required <= call.arguments.keys() <= known
    return False


def _tool_call(result: Any, healed: bool = False) -> ToolCall:
    return ToolCall(
        calls=tuple(
            ToolInvocation(call.name, dict(call.arguments), call.call_id, call.raw) for call in result.tool_calls
        ),
        content=result.content.strip(),
        failures=tuple(UnparsedCall(failure.reason, failure.raw) for failure in result.failures),
        healed=healed,
    )
