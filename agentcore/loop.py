"""The agent loop: :class:`MetaAgent` runs a session until an answer, a
refusal, or ``max_steps`` model steps.

Each model step asks the policy for a latent decision and the renderer for an
action. ``Answer`` and ``Refuse`` end the run; ``ToolCall`` runs the tools
and appends their observations, and the model decides again. The loop is a
generator of typed steps (:mod:`meta_spider.agentcore.steps`).

Error tiers (see :mod:`meta_spider.agentcore.errors`): model mistakes become
observations; framework failures propagate. Where observations go in the
chat: a call that was parsed gets a ``tool`` message answering its id; a turn
whose call attempts could *all* not be parsed has no call to answer, so the
model's raw text is kept as its assistant turn and the error comes back as a
``user`` turn (every template accepts that; Mistral's refuses a ``tool``
message after a plain assistant turn).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

from meta_spider.agentcore.errors import ActionTypeError
from meta_spider.agentcore.session import Session, ToolResultRecord
from meta_spider.agentcore.steps import FinalStep, ModelStep, ObservationKind, Step, ToolStep
from meta_spider.backends.base import InferenceBackend
from meta_spider.policies.actions import Answer, Refuse, ToolCall, ToolInvocation, UnparsedCall
from meta_spider.policies.base import ActionRenderer, Policy
from meta_spider.tools import ToolArgumentError, ToolRegistry

__all__ = ["MetaAgent", "INVALID_CALL_NAME"]

INVALID_CALL_NAME = "invalid_tool_call"
"""Tool-message name for an unreadable call attempt next to readable calls."""


@dataclass
class MetaAgent:
    """The loop: a backend, a policy, a renderer and the tools."""

    backend: InferenceBackend
    policy: Policy
    renderer: ActionRenderer
    tools: ToolRegistry
    max_steps: int = 8
    """Most model steps per run; the run ends with outcome ``"max_steps"`` after them."""
    system_prompt: str | None = None
    """System message for sessions started from a question string."""

    def __post_init__(self) -> None:
        if not isinstance(self.max_steps, int) or isinstance(self.max_steps, bool) or self.max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {self.max_steps!r}")
        if not isinstance(self.tools, ToolRegistry):
            raise ValueError(f"tools must be a ToolRegistry, got {self.tools!r}")

    # ------------------------------------------------------------ running

    def run(self, session_or_question: Session | str) -> Iterator[Step]:
        """Yield the steps of one run. A string starts a new session (with
        :attr:`system_prompt`); a :class:`Session` is continued in place."""
        session = self._session(session_or_question)
        for index in range(1, self.max_steps + 1):
            decision = self.policy.decide(session, self.backend, self.tools)
            action = self.renderer.render(decision, session, self.backend, self.tools)
            if not isinstance(action, (Answer, Refuse, ToolCall)):
                raise ActionTypeError(type(self.renderer).__name__, action)
            yield ModelStep(index, decision, action)
            if isinstance(action, Answer):
                session.add_assistant(action.text)
                yield FinalStep("answer", action, index, session)
                return
            if isinstance(action, Refuse):
                session.add_assistant(action.text)
                yield FinalStep("refuse", action, index, session)
                return
            yield from self._run_tools(index, action, decision.text, session)
        yield FinalStep("max_steps", None, self.max_steps, session)

    def ask(self, session_or_question: Session | str) -> FinalStep:
        """Run to the end and return the final step."""
        final: Step | None = None
        for final in self.run(session_or_question):
            pass
        assert isinstance(final, FinalStep)  # run() always ends with one
        return final

    def _session(self, session_or_question: Session | str) -> Session:
        if isinstance(session_or_question, Session):
            return session_or_question
        if isinstance(session_or_question, str):
            return Session.from_question(session_or_question, system=self.system_prompt)
        raise TypeError(f"run() takes a Session or a question string, got {session_or_question!r:.80}")

    # ------------------------------------------------------------ tools

    def _run_tools(self, index: int, action: ToolCall, raw_text: str, session: Session) -> Iterator[ToolStep]:
        if not action.calls:
            # Nothing parsed: keep what the model wrote and tell it why it failed.
            session.add_assistant(raw_text)
            notes = [_unparsed_observation(failure) for failure in action.failures]
            session.add_user("\n".join(notes))
            for failure, note in zip(action.failures, notes):
                yield ToolStep(index, None, note, ObservationKind.UNPARSEABLE, failure.reason)
            return
        calls = session.add_tool_calls(action.calls, action.content)
        for call in calls:
            step = self._execute(index, call)
            session.add_tool_result(
                ToolResultRecord(
                    index, call.name, dict(call.arguments), call.call_id, step.observation, step.kind.value
                )
            )
            yield step
        for failure in action.failures:
            note = _unparsed_observation(failure)
            session.add_tool_result(
                ToolResultRecord(
                    index, INVALID_CALL_NAME, {}, session.new_call_id(), note, ObservationKind.UNPARSEABLE.value
                )
            )
            yield ToolStep(index, None, note, ObservationKind.UNPARSEABLE, failure.reason)

    def _execute(self, index: int, call: ToolInvocation) -> ToolStep:
        tool = self.tools.get(call.name)
        if tool is None:
            available = ", ".join(self.tools.names()) or "(none)"
            note = f"Error: there is no tool named {call.name!r}. Available tools: {available}."
            return ToolStep(index, call, note, ObservationKind.UNKNOWN_TOOL, f"unknown tool {call.name!r}")
        try:
            arguments = tool.validate(call.arguments)
        except ToolArgumentError as exc:
            return ToolStep(index, call, f"Error: {exc}.", ObservationKind.BAD_ARGUMENTS, str(exc))
        try:
            result = tool.function(**arguments)
        except Exception as exc:  # the tool's own failure is the model's observation
            note = f"Error: tool {call.name!r} raised {type(exc).__name__}: {exc}"
            return ToolStep(index, call, note, ObservationKind.TOOL_RAISED, f"{type(exc).__name__}: {exc}")
        return ToolStep(index, call, _observation_text(result), ObservationKind.RESULT)


def _observation_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(result)


def _unparsed_observation(failure: UnparsedCall) -> str:
    return (
        f"Error: a tool call could not be parsed ({failure.reason}). "
        "Write the call again in the exact tool-call format."
    )
