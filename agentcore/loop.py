"""The agent loop: :class:`MetaAgent` runs a session until an answer, a
refusal, or ``max_steps`` model steps.

Each model step asks the policy for a latent decision and the renderer for an
action. ``Answer`` and ``Refuse`` end the run; ``ToolCall`` runs the tools
and appends their observations, and the model decides again. The loop is a
generator of typed steps (:mod:`meta_spider.agentcore.steps`).

Error tiers (see :mod:`meta_spider.agentcore.errors`): model mistakes become
observations; framework failures propagate as project errors, and anything
else a policy or renderer raises is wrapped in :class:`AgentStepError`
naming the step. Tools run under a deadline and a result cap
(:mod:`meta_spider.tools.limits`); a call nested too deeply to render is an
unreadable call attempt. A turn whose calls all go to ``direct_tools`` and
all return a result ends the run with those results as the answer (the
model does not restate them). Where observations go in the
chat: a call that was parsed gets a ``tool`` message answering its id; a turn
whose call attempts could *all* not be parsed has no call to answer, so the
model's raw text is kept as its assistant turn and the error comes back as a
``user`` turn (every template accepts that; Mistral's refuses a ``tool``
message after a plain assistant turn).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterator

from meta_spider.agentcore.arithmetic import named_operations, question_expression, question_numbers
from meta_spider.agentcore.errors import ActionTypeError, AgentStepError
from meta_spider.agentcore.grounding import ground_call, unfounded
from meta_spider.agentcore.session import CONTEXTS, QuestionView, Session, ToolResultRecord
from meta_spider.agentcore.steps import FinalStep, ModelStep, ObservationKind, Step, ToolStep
from meta_spider.backends.base import InferenceBackend
from meta_spider.policies.actions import Answer, Refuse, ToolCall, ToolInvocation, UnparsedCall
from meta_spider.policies.base import ActionRenderer, Policy
from meta_spider.plugins import MetaSpiderError
from meta_spider.tools import NothingFound, SeveralFound, Tool, ToolArgumentError, ToolRegistry
from meta_spider.tools.builtin import is_calculator
from meta_spider.tools.knowledge import is_search
from meta_spider.tools.limits import (
    DEFAULT_MAX_RESULT_CHARS,
    DEFAULT_TIME_LIMIT,
    MAX_NESTING,
    ToolTimeoutError,
    call_with_limits,
    nesting_depth,
    safe_str,
    valid_arguments,
)
from meta_spider.wrapper.signals import last_user_text

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
    tool_time_limit: float = DEFAULT_TIME_LIMIT
    """Seconds one tool call may take before it is abandoned (an observation says so)."""
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS
    """Characters of one tool result the model sees; longer ones are cut with a note."""
    context: str = "all"
    """What the model reads of the session (:data:`~meta_spider.agentcore.session.CONTEXTS`): ``all`` of it, or
    the ``question`` this run answers, with its tool calls and the system prompt (a :class:`QuestionView`: for a
    base trained on one question per chat, earlier turns are noise that changes its answers)."""
    direct_tools: tuple[str, ...] = ()
    """Tools whose result is the answer: when every call of a turn goes to one of them and each returns a
    result, the run ends with the results (joined by newlines) as an :class:`Answer` of source ``"tool"``. For a
    small base that restates a calculator's result less reliably than it calls the calculator. A call that
    fails still goes back to the model, as any failed call does."""
    ground_arguments: bool = False
    """Ground each parsed call's string arguments in the user's last message before it runs: an argument that
    nearly copies a run of its words becomes that run (:mod:`~meta_spider.agentcore.grounding`; the tool step
    keeps what the model wrote). For a small base that miscopies names and numbers from the question."""
    grounded_tools: tuple[str, ...] = ()
    """Tools whose string arguments must come from the user's last message: its words (a copy or a near copy of a
    run of them), or for an arithmetic expression its numbers and operation. A call with an argument that does
    not takes it from the question where it can (:meth:`_from_the_question`: a search of the question, the
    arithmetic the question states, or the other grounded tool's call); otherwise it does not run: the model
    reads that nothing was found, and the call is recorded ``not_found``. A record one of them that searches
    found spells the names the user misspelt, as the model reads the conversation (:class:`QuestionView`)."""

    def __post_init__(self) -> None:
        if not isinstance(self.max_steps, int) or isinstance(self.max_steps, bool) or self.max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {self.max_steps!r}")
        if not isinstance(self.tools, ToolRegistry):
            raise ValueError(f"tools must be a ToolRegistry, got {self.tools!r}")
        if not isinstance(self.tool_time_limit, (int, float)) or not self.tool_time_limit > 0:
            raise ValueError(f"tool_time_limit must be a positive number of seconds, got {self.tool_time_limit!r}")
        if not isinstance(self.max_result_chars, int) or self.max_result_chars < 1:
            raise ValueError(f"max_result_chars must be a positive int, got {self.max_result_chars!r}")
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {self.context!r}")
        for field in ("direct_tools", "grounded_tools"):
            names = getattr(self, field)
            if not isinstance(names, (tuple, list)) or not all(isinstance(name, str) for name in names):
                raise ValueError(f"{field} must be a sequence of tool names, got {names!r:.80}")
            for name in names:
                self.tools[name]  # a tool the agent does not offer: UnknownToolError naming the ones it does
            setattr(self, field, tuple(names))

    # ------------------------------------------------------------ running

    def run(self, session_or_question: Session | str) -> Iterator[Step]:
        """Yield the steps of one run. A string starts a new session (with
        :attr:`system_prompt`); a :class:`Session` is continued in place."""
        session = self._session(session_or_question)
        view = self.view(session)
        for index in range(1, self.max_steps + 1):
            try:
                decision = self.policy.decide(view, self.backend, self.tools)
                action = self.renderer.render(decision, view, self.backend, self.tools)
            except MetaSpiderError:
                raise
            except Exception as exc:  # foreign or unforeseen: typed, with the step it happened in
                raise AgentStepError(index, type(exc).__name__, safe_str(exc)) from exc
            if not isinstance(action, (Answer, Refuse, ToolCall)):
                raise ActionTypeError(type(self.renderer).__name__, action)
            if isinstance(action, ToolCall):
                action = _without_unrenderable_calls(action)
            yield ModelStep(index, decision, action)
            if isinstance(action, Answer):
                session.add_assistant(action.text)
                yield FinalStep("answer", action, index, session)
                return
            if isinstance(action, Refuse):
                session.add_assistant(action.text)
                yield FinalStep("refuse", action, index, session)
                return
            tool_steps: list[ToolStep] = []
            for step in self._run_tools(index, action, decision.text, session):
                tool_steps.append(step)
                yield step
            direct = self._direct_answer(action, tool_steps)
            if direct is not None:
                session.add_assistant(direct.text)
                yield FinalStep("answer", direct, index, session)
                return
        yield FinalStep("max_steps", None, self.max_steps, session)

    def ask(self, session_or_question: Session | str) -> FinalStep:
        """Run to the end and return the final step."""
        final: Step | None = None
        for final in self.run(session_or_question):
            pass
        assert isinstance(final, FinalStep)  # run() always ends with one
        return final

    def view(self, session: Session) -> Session | QuestionView:
        """What the policy and the renderer read of ``session`` (:attr:`context`: all of it, or from its last
        user turn on), where a record a grounded search found spells the names the user misspelt."""
        respelled_by = tuple(name for name in self.grounded_tools if is_search(self.tools[name]))
        if self.context == "all":
            return QuestionView(session, 0, respelled_by) if respelled_by else session
        return QuestionView.of(session, respelled_by=respelled_by)

    def _session(self, session_or_question: Session | str) -> Session:
        if isinstance(session_or_question, Session):
            return session_or_question
        if isinstance(session_or_question, str):
            return Session.from_question(session_or_question, system=self.system_prompt)
        raise TypeError(f"run() takes a Session or a question string, got {session_or_question!r:.80}")

    # ------------------------------------------------------------ tools

    def _direct_answer(self, action: ToolCall, steps: list[ToolStep]) -> Answer | None:
        """The answer a turn of :attr:`direct_tools` calls gives, or None when
        the model must read the results (another tool, a failure, no call)."""
        if not action.calls or action.failures or not self.direct_tools:
            return None
        if not all(step.call is not None and step.call.name in self.direct_tools for step in steps):
            return None  # the calls as they ran: a search of arithmetic may have become a calculation
        if not all(step.kind is ObservationKind.RESULT for step in steps):
            return None
        return Answer("\n".join(step.observation for step in steps), source="tool")

    def _from_the_question(self, call: ToolInvocation, question: str, grounded: tuple[str, ...]) -> ToolInvocation:
        """A grounded tool's call with the argument it made up taken from the
        question instead, or the call as it is.

        A search (a tool over a knowledge base) whose query is not the
        question's words searches the question itself: a lookup is of what
        the question names, and a small model writes a name it made up where
        it cannot copy the user's (asked in lower case, the world's base
        writes "Zaior Heshunlund" for "shamor shuson"). A calculator whose
        expression is not the question's arithmetic computes the arithmetic
        the question states plainly, when it does
        (:func:`~meta_spider.agentcore.arithmetic.question_expression`: the
        base writes "3-1 Dreal / 3" for "seventeen times twenty-three").
        And one tool for the other, when the loop grounds both: a made-up
        search for a question that states arithmetic is its calculation
        ("Lomelle Ganson", or "188/2", for "What is 6 cubed?"), a made-up calculation for
        a question that gives no number and names no operation is a search
        of the question ("60 / 34" for "where was shamor shuson born").
        ``grounded`` names the tools grounded for this call's turn."""
        if call.name not in grounded:
            return call
        found = unfounded(call, question)
        if found is None:
            return call
        made_up, problem = found
        tool = self.tools[call.name]
        if is_search(tool):  # arithmetic is not a query
            expression = question_expression(question)
            other = self._grounded_call(is_calculator, expression, call, grounded) if expression is not None else None
            replacement = question if problem is None else None
        elif is_calculator(tool):
            replacement = question_expression(question)
            arithmetic = replacement is not None or bool(question_numbers(question) or named_operations(question))
            other = None if arithmetic else self._grounded_call(is_search, question, call, grounded)
        else:
            return call
        if other is not None:
            return other
        if replacement is None:
            return call
        arguments = {key: replacement if value == made_up else value for key, value in call.arguments.items()}
        return ToolInvocation(call.name, arguments, call.call_id, call.raw)

    def _grounded_call(self, kind: Callable[[Tool], bool], value: str, call: ToolInvocation,
                       grounded: tuple[str, ...]) -> ToolInvocation | None:
        """A call, in ``call``'s place, of the first tool of ``grounded`` of
        ``kind`` whose one string argument is ``value``, or None when there is none."""
        for name in grounded:
            tool = self.tools[name]
            strings = [key for key, schema in tool.parameters.get("properties", {}).items()
                       if isinstance(schema, dict) and schema.get("type") == "string"]
            if name != call.name and kind(tool) and len(strings) == 1:
                return ToolInvocation(name, {strings[0]: value}, call.call_id, call.raw)
        return None

    def _run_tools(self, index: int, action: ToolCall, raw_text: str, session: Session) -> Iterator[ToolStep]:
        if not action.calls:
            # Nothing parsed: keep what the model wrote and tell it why it failed.
            session.add_assistant(raw_text)
            notes = [_unparsed_observation(failure) for failure in action.failures]
            session.add_user("\n".join(notes))
            for failure, note in zip(action.failures, notes):
                yield ToolStep(index, None, note, ObservationKind.UNPARSEABLE, failure.reason)
            return
        written = action.calls
        # A call the renderer closed where the model broke it off is held to the question, whatever its tool.
        grounded = self.grounded_tools
        if action.healed:
            grounded = tuple(dict.fromkeys(grounded + tuple(call.name for call in action.calls)))
        question = _question(session) if self.ground_arguments or grounded else ""
        if self.ground_arguments or action.healed:
            action = dataclasses.replace(
                action, calls=tuple(ground_call(call, question, cut=action.healed) for call in action.calls))
        if grounded and question:
            action = dataclasses.replace(
                action, calls=tuple(self._from_the_question(call, question, grounded) for call in action.calls))
        calls = session.add_tool_calls(action.calls, action.content)
        for call, original in zip(calls, written):
            found = unfounded(call, question) if call.name in grounded else None
            if found is not None and (found[1] is not None or is_calculator(self.tools[call.name])):
                note = f"Not computed: {found[0]!r} {found[1] or 'is not arithmetic the question asks'}."
                step = ToolStep(index, call, note, ObservationKind.NOT_FOUND, "not the question's arithmetic")
            elif found is not None:
                note = f"No entry found for {found[0]!r}: the question does not name it."
                step = ToolStep(index, call, note, ObservationKind.NOT_FOUND, "not in the question's words")
            else:
                step = self._execute(index, call)
            if call.arguments != original.arguments or call.name != original.name:
                step = dataclasses.replace(step, written=dict(original.arguments),
                                           written_tool=original.name if call.name != original.name else None)
            session.add_tool_result(
                ToolResultRecord(
                    index, call.name, dict(call.arguments), call.call_id, step.observation, step.kind.value,
                    list(step.choices),
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
            text = call_with_limits(
                call.name, tool.function, arguments, time_limit=self.tool_time_limit, max_chars=self.max_result_chars
            )
        except ToolTimeoutError as exc:
            return ToolStep(index, call, f"Error: {exc}.", ObservationKind.TOOL_RAISED, str(exc))
        except NothingFound as exc:  # an answer, not a failure: the model reads it like any result
            choices = exc.matches if isinstance(exc, SeveralFound) else ()
            return ToolStep(index, call, safe_str(exc, limit=self.max_result_chars), ObservationKind.NOT_FOUND,
                            choices=choices)
        except Exception as exc:  # the tool's own failure is the model's observation
            reason = f"{type(exc).__name__}: {safe_str(exc, limit=self.max_result_chars)}"
            note = f"Error: tool {call.name!r} raised {reason}"
            return ToolStep(index, call, note, ObservationKind.TOOL_RAISED, reason)
        return ToolStep(index, call, text, ObservationKind.RESULT)


def _question(session: Session) -> str:
    """The user's last message (what grounding compares arguments with); empty without one."""
    try:
        return last_user_text(session.messages)
    except ValueError:
        return ""


def _without_unrenderable_calls(action: ToolCall) -> ToolCall:
    """``action`` with every call whose arguments nest deeper than
    :data:`MAX_NESTING` moved to the unreadable attempts (the chat template
    would recurse once per level when the call is written back) and lone
    surrogates in the others' arguments replaced."""
    deep = [call for call in action.calls if nesting_depth(call.arguments) > MAX_NESTING]
    if not deep:
        return _with_valid_text(action)
    failures = tuple(
        UnparsedCall(f"the arguments of {call.name!r} nest deeper than {MAX_NESTING} levels", call.raw[:2000])
        for call in deep
    )
    # By identity: comparing the calls would compare (and recurse into) their arguments.
    deep_ids = {id(call) for call in deep}
    kept = tuple(call for call in action.calls if id(call) not in deep_ids)
    return _with_valid_text(dataclasses.replace(action, calls=kept, failures=action.failures + failures))


def _with_valid_text(action: ToolCall) -> ToolCall:
    # A model's JSON may escape lone surrogates ("\ud800"): no terminal or
    # UTF-8 file takes them, so they become U+FFFD before anything sees them.
    calls = tuple(
        ToolInvocation(call.name, valid_arguments(call.arguments), call.call_id, call.raw) for call in action.calls
    )
    return dataclasses.replace(action, calls=calls)


def _unparsed_observation(failure: UnparsedCall) -> str:
    return (
        f"Error: a tool call could not be parsed ({failure.reason}). "
        "Write the call again in the exact tool-call format."
    )
