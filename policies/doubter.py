"""The ``doubter`` policy: two passes, and a calibrated verdict.

Pass 1 (``backend.read(prompt, question=...)``) reads the model's state at the prompt and
returns the Doubter's :class:`~meta_spider.backends.base.Introspection`
(P(correct) and the cognitive tokens); pass 2 (``backend.generate(prompt,
inject=introspection)``) writes the answer with the cognitive tokens
injected. Together they form the :class:`LatentDecision`: the pass-2 text,
``p_correct`` and ``confident = p_correct >= threshold``. What an uncertain
decision becomes (a native lookup call or a refusal) is the renderer's job
(:class:`~meta_spider.policies.renderer.DefaultRenderer`).

Where the threshold comes from, in order: an explicit ``threshold`` setting;
the run's calibration (``run.json`` ``calibration[<calibration_key>]
["threshold"]``, chosen on validation by ``metaloom eval``; ``null`` there
means "answer nothing at the target risk"); otherwise
:data:`DEFAULT_THRESHOLD`, recorded in every decision as uncalibrated and
logged as a warning when the policy is built.

Prompts. Pass 1 and pass 2 see the conversation rendered *without* tool
definitions: the Doubter was trained on the dataset's bare prompts, so its
read is only meaningful there. Once the conversation holds a tool result
after the last user turn, the gate is skipped (``gate_after_tool_result``
false, the default): the Doubter was calibrated on bare questions, not on
questions whose answer is already in the context, and re-reading there would
refuse exactly the questions the lookup just rescued. That step is a plain
generation with the tools offered, so the model answers from the
observation (or calls again in its own format). When every result since
the question is a miss (the session records those calls as ``not_found``:
the lookup holds nothing for them, or the call named what the question does
not give), the policy refuses without asking the
model: it was unsure, or said it did not know, and the lookup did not
know either; an answer now would be the base's own guess. When the last
miss named several entries (:class:`~meta_spider.tools.SeveralFound`), the
refusal asks the user which one they mean. When a call
failed instead (the tool raised, as the calculator does past its limits, or
the model's call was malformed) and no result came back, the model reads
the failure with the tools offered and may call again; an answer it writes
is refused for the same reason, without a lookup.

A record found is not always an answer: asked for something the record does
not hold, a small base answers from it with what it does hold. When the
calibration carries a gate after a lookup
(:class:`~meta_spider.wrapper.after_lookup.AfterLookupGate`, fitted by
``metaloom eval`` on questions asked with their lookup) and every result
since the question came from the agent's own run of the tool it was fitted
on (not a client's tool result), pass 1 reads the conversation up to the
result once more, and below the gate's threshold the policy refuses
instead of answering (``gate_after_lookup``, on by default). At or above
it, the answer is generated at the prompt the gate read, without the tool
definitions, so the answer given is the one pass 1 drafted and the gate
judged: with the tools offered, a small base asked in words it never read
often answers with another fact of the record than the one it drafted
(docs/results.md).

This module knows nothing about tool-call syntax or how the backend reads
and injects; it never imports torch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

from meta_spider.backends.base import Completion, InferenceBackend
from meta_spider.policies.actions import REFUSAL_SENTENCE
from meta_spider.policies.base import LatentDecision, SessionView, ToolCatalog
from meta_spider.wrapper.after_lookup import ENTRY_KEY as AFTER_LOOKUP_KEY
from meta_spider.wrapper.after_lookup import AfterLookupGate
from meta_spider.wrapper.checkpoint import usable_threshold
from meta_spider.wrapper.signals import last_user_text

__all__ = [
    "CALIBRATION_KEY",
    "DEFAULT_THRESHOLD",
    "DoubterPolicy",
    "ThresholdSetting",
    "after_lookup_gate",
    "pending_tool_kinds",
    "resolve_threshold",
    "tool_result_pending",
    "which_one",
]

logger = logging.getLogger(__name__)

NOT_FOUND = "not_found"
"""The observation kind of a tool call that found nothing
(``meta_spider.agentcore.steps.ObservationKind.NOT_FOUND``)."""
FOUND = "result"
"""The observation kind of a tool call that returned a result
(``ObservationKind.RESULT``)."""

DEFAULT_THRESHOLD = 0.5
"""The answer threshold when neither a setting nor the run's calibration
gives one. It is a placeholder, not a tuned value: decisions made with it say
``threshold_source = "default (uncalibrated)"``."""

CALIBRATION_KEY = "doubter"
"""The ``run.json`` calibration entry holding the threshold on the Doubter's
P(correct) (written by ``metaloom eval``)."""

UNCALIBRATED = "default (uncalibrated)"
DOUBTER_CALIBRATION = "calibration:checkpoint"
"""Source of a threshold read from the Doubter's checkpoint or sidecar."""


@dataclass(frozen=True)
class ThresholdSetting:
    """A resolved answer threshold and where it came from."""

    value: float
    """Answer when ``p_correct >= value``; ``inf`` answers nothing."""
    source: str
    """``"explicit"``, ``"calibration:<key>"`` or ``"default (uncalibrated)"``."""

    @property
    def calibrated(self) -> bool:
        return self.source != UNCALIBRATED


def resolve_threshold(
    threshold: float | None, calibration: Mapping[str, Any] | None, key: str = CALIBRATION_KEY
) -> ThresholdSetting:
    """The threshold to gate on: ``threshold`` if given, else
    ``calibration[key]["threshold"]`` (``None`` there = answer nothing), else
    :data:`DEFAULT_THRESHOLD`. Raises ValueError quoting a malformed value."""
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a number in [0, 1] or None, got {threshold!r}")
        return ThresholdSetting(float(threshold), "explicit")
    if calibration is not None and not isinstance(calibration, Mapping):
        raise ValueError(f"calibration must be run.json's calibration object or None, got {calibration!r:.80}")
    entry = (calibration or {}).get(key)
    if entry is None:
        return ThresholdSetting(DEFAULT_THRESHOLD, UNCALIBRATED)
    if not isinstance(entry, Mapping) or "threshold" not in entry:
        raise ValueError(f"calibration[{key!r}] must be an object with a 'threshold', got {entry!r:.80}")
    value = entry["threshold"]
    if value is None:  # the calibration found no threshold meeting its target: answer nothing
        return ThresholdSetting(math.inf, f"calibration:{key}")
    if not usable_threshold(value):
        raise ValueError(f"calibration[{key!r}]['threshold'] must be a number or null, got {value!r}")
    return ThresholdSetting(float(value), f"calibration:{key}")


def _question(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the last ``user`` turn (what pass 1's occlusion signal reads); empty without one."""
    try:
        return last_user_text(messages)
    except ValueError:
        return ""


def _since_question(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The messages after the last ``user`` turn (the current question's tool calls and results)."""
    after: list[Mapping[str, Any]] = []
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        after.append(message)
    return after[::-1]


def after_lookup_gate(entry: Mapping[str, Any] | None) -> AfterLookupGate | None:
    """The gate after a lookup a calibration entry carries (None when it
    carries none); ValueError naming the malformed field."""
    if not isinstance(entry, Mapping) or entry.get(AFTER_LOOKUP_KEY) is None:
        return None
    try:
        return AfterLookupGate.from_entry(entry[AFTER_LOOKUP_KEY])
    except ValueError as error:
        raise ValueError(f"the calibration's gate after a lookup is unusable: {error}; run `metaloom eval` again "
                         "to fit it anew") from error


def pending_tool_kinds(session: SessionView) -> list[str]:
    """The observation kind (``not_found``, ``result``, ...) of each tool
    message after the last user turn, matched to the session's tool-result
    records by call id; "" for a message no record matches (a client's own
    tool result, a bare view of the messages)."""
    return [str(getattr(getattr(record, "kind", ""), "value", getattr(record, "kind", "")))
            for record in _pending_records(session)]


def _pending_records(session: SessionView) -> list[Any]:
    """The session's tool-result record of each tool message after the last
    user turn, matched by call id (None where none matches)."""
    records = {getattr(record, "call_id", None): record for record in getattr(session, "tool_results", None) or ()}
    return [records.get(message.get("tool_call_id")) if message.get("tool_call_id") is not None else None
            for message in _since_question(list(session.messages)) if message.get("role") == "tool"]


def which_one(choices: Sequence[str], shown: int = 5) -> str:
    """The question that asks the user to choose between ``choices`` (the
    first ``shown`` named)."""
    if not choices:
        raise ValueError("which_one needs at least one name to ask about")
    names = [str(name) for name in choices[:shown]]
    more = f", or one of {len(choices) - shown} more" if len(choices) > shown else ""
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f"Which one do you mean: {listed}{more}?"


def tool_result_pending(messages: Sequence[Mapping[str, Any]]) -> bool:
    """True when a ``tool`` message follows the last ``user`` message: the
    model is to answer from an observation it asked for."""
    return any(message.get("role") == "tool" for message in _since_question(messages))


@dataclass
class DoubterPolicy:
    """Pass 1 reads P(correct), pass 2 answers with the cognitive tokens injected."""

    threshold: float | None = None
    """Answer threshold on P(correct); None takes the run's calibration."""
    calibration: Mapping[str, Any] | None = None
    """run.json's ``calibration`` object; the host passes it because
    :attr:`host_keywords` names it (see ``register_policies``)."""
    calibration_key: str = CALIBRATION_KEY
    """Which calibration entry holds this policy's threshold."""
    max_new_tokens: int = 256
    """Generation budget for one model step."""
    enable_thinking: bool | None = None
    """Passed to the chat template; None leaves the template's default."""
    stop: tuple[str, ...] = ()
    """Extra stop strings for the backend."""
    gate_after_tool_result: bool = False
    """Re-read and gate even when a tool result answers the question (see the
    module docstring for why the default skips the gate there)."""
    gate_after_lookup: bool = True
    """Refuse after a record found when the calibration's gate after a lookup
    judges that it does not answer the question (see the module docstring)."""
    gate: ThresholdSetting = field(init=False)
    """The resolved threshold and its source."""
    record_gate: AfterLookupGate | None = field(init=False, default=None)
    """The gate after a lookup: run.json's calibration, else the Doubter's own."""

    name: ClassVar[str] = "doubter"
    host_keywords: ClassVar[tuple[str, ...]] = ("calibration",)
    """The policy-factory keywords this policy takes from the host."""
    inject: ClassVar[bool] = True
    """Pass 2 injects the cognitive tokens (the ``probe`` baseline does not)."""

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or isinstance(self.max_new_tokens, bool) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {self.max_new_tokens!r}")
        if isinstance(self.stop, str):
            raise ValueError(f"stop must be a sequence of strings, got the string {self.stop!r}")
        if not isinstance(self.calibration_key, str) or not self.calibration_key:
            raise ValueError(f"calibration_key must be a non-empty string, got {self.calibration_key!r}")
        self.stop = tuple(self.stop)
        self.gate = resolve_threshold(self.threshold, self.calibration, self.calibration_key)
        self.record_gate = after_lookup_gate((self.calibration or {}).get(self.calibration_key))
        if not self.gate.calibrated:
            logger.warning(
                "%s policy: run.json has no calibration[%r]; gating on the Doubter's own calibration when its "
                "checkpoint or sidecar has one, else answering when P(correct) >= %.2f, an uncalibrated default. "
                "Run `metaloom eval --run-dir D` to calibrate, or pass threshold=...",
                self.name, self.calibration_key, self.gate.value,
            )

    # ------------------------------------------------------------ deciding

    def decide(self, session: SessionView, backend: InferenceBackend, tools: ToolCatalog) -> LatentDecision:
        messages = list(session.messages)
        pending = pending_tool_kinds(session)  # one kind per tool result since the question
        if pending and not self.gate_after_tool_result:
            if all(kind == NOT_FOUND for kind in pending):
                return self._refuse_after_misses(messages, backend, session)
            if all(kind not in (FOUND, "") for kind in pending):  # failed calls, and misses: no result came back
                return self._call_again_or_refuse(messages, backend, tools)
            if self.gate_after_lookup and self.record_gate is not None and self._judges(messages, pending):
                prompt = self._bare_prompt(messages, backend)
                judged = self._judge_record(self.record_gate, prompt, messages, backend)
                if judged["score"] < judged["threshold"]:
                    return self._refuse_record(prompt, judged)
                return self._answer_judged(prompt, backend, judged)
            return self._answer_from_observation(messages, backend, tools)
        prompt = self._bare_prompt(messages, backend)
        introspection = backend.read(prompt, question=_question(messages))
        completion = backend.generate(prompt, max_new_tokens=self.max_new_tokens, stop=self.stop,
                                      inject=introspection if self.inject else None)
        p_correct = min(1.0, max(0.0, float(introspection.p_correct)))  # float32 may stray past 1 by an ulp
        self._adopt_doubter_calibration(getattr(introspection, "calibration", None))
        metadata = self._metadata(prompt, completion)
        metadata.update(gate="applied", injected=self.inject)
        return LatentDecision(
            text=completion.text,
            p_correct=p_correct,
            confident=p_correct >= self.gate.value,
            introspection=introspection,
            metadata=metadata,
        )

    def _adopt_doubter_calibration(self, entry: Mapping[str, Any] | None) -> None:
        """Without an explicit threshold or run.json's calibration, gate on
        the one the Doubter carries (its checkpoint or GGUF sidecar): the
        same threshold ``metaloom eval`` wrote into run.json; likewise its
        gate after a lookup."""
        if self.record_gate is None and not (self.calibration or {}).get(self.calibration_key):
            self.record_gate = after_lookup_gate(entry)
        if self.gate.calibrated or not entry:
            return
        setting = resolve_threshold(None, {self.calibration_key: entry}, self.calibration_key)
        self.gate = ThresholdSetting(setting.value, DOUBTER_CALIBRATION)
        logger.info("%s policy: gating on the Doubter's own calibration, P(correct) >= %.4g", self.name, setting.value)

    def _refuse_after_misses(self, messages: list[Any], backend: InferenceBackend,
                             session: SessionView) -> LatentDecision:
        """The refusal after misses, which asks the user to choose when the
        last miss that named several entries listed them."""
        prompt = self._bare_prompt(messages, backend)
        choices = next((list(record.choices) for record in reversed(_pending_records(session))
                        if getattr(record, "choices", None)), [])
        follow_up = which_one(choices) if choices else None
        text = f"{REFUSAL_SENTENCE} {follow_up}" if follow_up else REFUSAL_SENTENCE
        metadata = self._metadata(prompt, Completion(text=text, num_tokens=0))
        names = {message.get("name") for message in _since_question(messages) if message.get("role") == "tool"}
        calls = "lookup" if names == {"lookup"} else "tool call"
        reason = f"every {calls} found nothing" + (", and the lookup found several entries" if choices else "")
        metadata.update(finish_reason=None, gate=f"refused: every {calls} since the question found nothing",
                        refusal_reason=reason, injected=False, follow_up=follow_up)  # nothing was generated
        return LatentDecision(text=text, metadata=metadata)

    def _bare_prompt(self, messages: list[Any], backend: InferenceBackend) -> str:
        """The conversation as pass 1 reads it: without tool definitions."""
        return backend.render_prompt(messages, tools=None, add_generation_prompt=True,
                                     enable_thinking=self.enable_thinking)

    def _judges(self, messages: list[Any], pending: list[str]) -> bool:
        """Whether the gate after a lookup judges this step: every tool message
        since the question is a miss or a record the agent's own run of the
        gate's tool found (a client's own tool result, or another tool's, is
        not what it was fitted on)."""
        assert self.record_gate is not None
        results = [message for message in _since_question(messages) if message.get("role") == "tool"]
        return all(kind == NOT_FOUND or (kind == FOUND and message.get("name") == self.record_gate.tool)
                   for message, kind in zip(results, pending))

    def _judge_record(self, gate: AfterLookupGate, prompt: str, messages: list[Any],
                      backend: InferenceBackend) -> dict[str, Any]:
        """Pass 1 on ``prompt`` (the conversation up to the tool result), scored by ``gate``."""
        introspection = backend.read(prompt, question=_question(messages))
        p_correct = min(1.0, max(0.0, float(introspection.p_correct)))
        extras = introspection.extras or {}
        score = gate.score(p_correct, extras.get("signals") or {}, extras.get("layer_states"))
        return {"score": score, "threshold": gate.threshold, "p_correct": p_correct, "draft": extras.get("draft_text")}

    def _refuse_record(self, prompt: str, judged: dict[str, Any]) -> LatentDecision:
        metadata = self._metadata(prompt, Completion(text=REFUSAL_SENTENCE, num_tokens=0))
        reason = (f"the record found does not answer the question: gate after a lookup {judged['score']:.3f} < "
                  f"{judged['threshold']:.3f}")
        metadata.update(finish_reason=None, injected=False, after_lookup=judged, gate=f"refused: {reason}",
                        refusal_reason=reason, withheld=judged.get("draft"))
        return LatentDecision(text=REFUSAL_SENTENCE, metadata=metadata)

    def _answer_judged(self, prompt: str, backend: InferenceBackend, judged: dict[str, Any]) -> LatentDecision:
        """The answer at ``prompt``, the conversation up to the record as the gate after a lookup read it."""
        completion = backend.generate(prompt, max_new_tokens=self.max_new_tokens, stop=self.stop)
        metadata = self._metadata(prompt, completion)
        metadata.update(gate="passed: the gate after a lookup judges the record an answer", after_lookup=judged,
                        injected=False)
        return LatentDecision(text=completion.text, metadata=metadata)

    def _call_again_or_refuse(self, messages: list[Any], backend: InferenceBackend,
                              tools: ToolCatalog) -> LatentDecision:
        """The step after calls that failed (the tool raised, or the model's
        call was malformed): the model reads the failure with the tools
        offered and may call again, but no result came back, so its answer
        would be the base's own guess: the decision is not confident and
        carries the reason to refuse (the renderer refuses it, no lookup)."""
        decision = self._answer_from_observation(messages, backend, tools)
        reason = "no tool call since the question returned a result"
        decision.metadata.update(gate=f"refused unless the model calls again: {reason}", refusal_reason=reason)
        return LatentDecision(text=decision.text, confident=False, metadata=decision.metadata)

    def _answer_from_observation(self, messages: list[Any], backend: InferenceBackend,
                                 tools: ToolCatalog) -> LatentDecision:
        schemas = tools.schemas() if tools is not None else []
        prompt = backend.render_prompt(messages, tools=schemas or None, add_generation_prompt=True,
                                       enable_thinking=self.enable_thinking)
        completion = backend.generate(prompt, max_new_tokens=self.max_new_tokens, stop=self.stop)
        metadata = self._metadata(prompt, completion)
        metadata.update(gate="skipped: a tool result follows the question", injected=False)
        return LatentDecision(text=completion.text, metadata=metadata)

    def _metadata(self, prompt: str, completion: Completion) -> dict[str, Any]:
        return {
            "policy": self.name,
            "prompt": prompt,
            "finish_reason": completion.finish_reason,
            "num_tokens": completion.num_tokens,
            "threshold": self.gate.value,
            "threshold_source": self.gate.source,
            "enable_thinking": self.enable_thinking,
        }
