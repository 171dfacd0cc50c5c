"""The agent loop on the scripted FakeBackend: answers, tool calls, every
model-caused error as an observation, max_steps, refusal, sessions."""

from __future__ import annotations

import json

import pytest

from meta_spider.agentcore import (
    ActionTypeError,
    Answer,
    MetaAgent,
    ModelStep,
    Refuse,
    Session,
    SessionFormatError,
    ToolCall,
    ToolStep,
    build_agent,
)
from meta_spider.backends import BackendError, FakeBackend, FakeBackendExhausted
from meta_spider.plugins import UnknownComponentError
from meta_spider.policies import REFUSAL_SENTENCE, DefaultRenderer, DirectPolicy, LatentDecision
from meta_spider.tools import Tool, ToolRegistry, UnknownToolError


def call(name: str, **arguments: object) -> str:
    """A Hermes-style tool call, as the fake template teaches the model."""
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


def explode(reason: str) -> str:
    """Fail on purpose.

    Args:
        reason: Why it fails.
    """
    raise RuntimeError(f"exploded: {reason}")


@pytest.fixture
def tools(plugin_manager) -> ToolRegistry:
    registry = ToolRegistry.from_plugins(plugin_manager)
    registry.register(Tool.from_function(explode), source="tests")
    return registry


def make_agent(backend: FakeBackend, tools: ToolRegistry, max_steps: int = 5, **renderer) -> MetaAgent:
    return MetaAgent(backend, DirectPolicy(), DefaultRenderer(**renderer), tools, max_steps=max_steps)


def kinds(steps: list) -> list[str]:
    names = []
    for step in steps:
        if isinstance(step, ModelStep):
            names.append(type(step.action).__name__)
        elif isinstance(step, ToolStep):
            names.append(f"tool:{step.kind.value}")
        else:
            names.append(f"final:{step.outcome}")
    return names


def test_plain_answer(tools: ToolRegistry) -> None:
    backend = FakeBackend(["  Paris.  "])
    steps = list(make_agent(backend, tools).run("Capital of France?"))
    assert kinds(steps) == ["Answer", "final:answer"]
    final = steps[-1]
    assert final.text == "Paris." and final.model_steps == 1
    assert final.session.messages[-1] == {"role": "assistant", "content": "Paris."}
    # The prompt came from the chat template, with every tool's definition.
    prompt = backend.history[0]
    assert prompt.endswith("<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n")
    for name in ("calculator", "lookup", "explode"):
        assert f'"name": "{name}"' in prompt


def test_one_tool_call_then_answer(tools: ToolRegistry) -> None:
    backend = FakeBackend([call("calculator", expression="17 * 23"), "It is 391."])
    session = Session.from_question("What is 17 * 23?", system="Be exact.")
    steps = list(make_agent(backend, tools).run(session))
    assert kinds(steps) == ["ToolCall", "tool:result", "Answer", "final:answer"]
    tool_step = steps[1]
    assert tool_step.call.name == "calculator" and tool_step.call.call_id == "call00001"
    assert tool_step.observation == "391" and tool_step.ok
    # The second prompt shows the model its own call and the tool's answer.
    assert backend.history[1].endswith(
        '<|im_start|>assistant\n<tool_call>\n{"name": "calculator", "arguments": {"expression": "17 * 23"}}\n'
        "</tool_call><|im_end|>\n<|im_start|>tool\n<tool_response>\n391\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert [m["role"] for m in session.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert session.messages[3] == {"role": "tool", "name": "calculator", "content": "391", "tool_call_id": "call00001"}
    assert session.tool_results[0].ok and session.tool_results[0].arguments == {"expression": "17 * 23"}


def test_two_parallel_calls_in_one_turn(tools: ToolRegistry) -> None:
    backend = FakeBackend(
        [
            "Let me compute both.\n" + call("calculator", expression="2 + 2") + "\n" + call("calculator", expression="3 * 3"),
            "4 and 9.",
        ]
    )
    steps = list(make_agent(backend, tools).run("2+2 and 3*3?"))
    assert kinds(steps) == ["ToolCall", "tool:result", "tool:result", "Answer", "final:answer"]
    assert [s.observation for s in steps[1:3]] == ["4", "9"]
    assert [s.call.call_id for s in steps[1:3]] == ["call00001", "call00002"]
    assert steps[0].action.content == "Let me compute both."


def test_a_direct_tools_result_is_the_answer(tools: ToolRegistry) -> None:
    # The model is never asked to restate the result: its scripted restatement stays unread.
    backend = FakeBackend([call("calculator", expression="17*23"), "The answer is 3911."])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), tools, direct_tools=("calculator",))
    steps = list(agent.run("What is 17*23?"))
    assert kinds(steps) == ["ToolCall", "tool:result", "final:answer"]
    final = steps[-1]
    assert final.text == "391" and final.action == Answer("391", source="tool") and final.model_steps == 1
    assert final.to_dict()["action"] == {"type": "answer", "text": "391", "source": "tool"}
    assert len(backend.history) == 1
    assert [m["role"] for m in final.session.messages] == ["user", "assistant", "tool", "assistant"]
    assert final.session.messages[-1] == {"role": "assistant", "content": "391"}
    # Two direct calls in one turn: both results, in call order.
    backend = FakeBackend([call("calculator", expression="2+2") + "\n" + call("calculator", expression="3*3")])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), tools, direct_tools=["calculator"])
    assert agent.ask("2+2 and 3*3?").text == "4\n9"


@pytest.mark.parametrize("first_turn", [
    call("calculator", expression="1/0"),  # the tool raised: the model reads the error
    call("calculator", expression="2+2") + "\n" + call("explode", reason="x"),  # a tool that is not direct
    call("calculator", expression="2+2") + "\n<tool_call>\n{broken\n</tool_call>",  # an unreadable attempt
    call("calculator", expr="2+2"),  # bad arguments
])
def test_a_turn_that_is_not_all_direct_results_goes_back_to_the_model(tools: ToolRegistry, first_turn: str) -> None:
    backend = FakeBackend([first_turn, "Done."])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), tools, direct_tools=("calculator",))
    final = agent.ask("Compute.")
    assert final.text == "Done." and final.action.source == "model" and len(backend.history) == 2


def test_direct_tools_must_be_tools_the_agent_offers(tools: ToolRegistry) -> None:
    with pytest.raises(UnknownToolError, match="unknown tool 'weather'; available tools: calculator"):
        MetaAgent(FakeBackend(), DirectPolicy(), DefaultRenderer(), tools, direct_tools=("weather",))
    with pytest.raises(ValueError, match="direct_tools must be a sequence of tool names, got 'calculator'"):
        MetaAgent(FakeBackend(), DirectPolicy(), DefaultRenderer(), tools, direct_tools="calculator")  # type: ignore[arg-type]


def test_unknown_tool_becomes_an_observation_and_the_model_recovers(tools: ToolRegistry) -> None:
    backend = FakeBackend([call("weather", city="Porto"), call("calculator", expression="1 + 1"), "2"])
    steps = list(make_agent(backend, tools).run("1+1?"))
    assert kinds(steps) == ["ToolCall", "tool:unknown_tool", "ToolCall", "tool:result", "Answer", "final:answer"]
    observation = steps[1].observation
    assert observation == f"Error: there is no tool named 'weather'. Available tools: {', '.join(tools.names())}."
    assert f"<tool_response>\n{observation}\n</tool_response>" in backend.history[1]
    assert steps[-1].text == "2"


def test_bad_arguments_become_an_observation(tools: ToolRegistry) -> None:
    backend = FakeBackend([call("calculator", expr="1 + 1"), call("calculator", expression=5), "Giving up."])
    steps = list(make_agent(backend, tools).run("1+1?"))
    assert kinds(steps) == ["ToolCall", "tool:bad_arguments"] * 2 + ["Answer", "final:answer"]
    assert "argument 'expression': is required but missing" in steps[1].observation
    assert "argument 'expression': expected string, got 5" in steps[3].observation
    assert steps[3].observation in backend.history[2]


def test_a_tool_that_raises_becomes_an_observation(tools: ToolRegistry) -> None:
    backend = FakeBackend([call("explode", reason="testing"), call("calculator", expression="1/0"), "Sorry."])
    steps = list(make_agent(backend, tools).run("Go."))
    assert kinds(steps) == ["ToolCall", "tool:tool_raised", "ToolCall", "tool:tool_raised", "Answer", "final:answer"]
    assert steps[1].observation == "Error: tool 'explode' raised RuntimeError: exploded: testing"
    assert "CalculatorDomainError" in steps[3].observation and "division by zero" in steps[3].observation
    assert steps[1].observation in backend.history[1]


def test_an_unparseable_call_becomes_an_observation(tools: ToolRegistry) -> None:
    broken = '<tool_call>\n{"name": "calculator", "arguments": {"expression": '
    backend = FakeBackend([broken, call("calculator", expression="6*7"), "42"])
    session = Session.from_question("6*7?")
    steps = list(make_agent(backend, tools).run(session))
    assert kinds(steps) == ["ToolCall", "tool:unparseable", "ToolCall", "tool:result", "Answer", "final:answer"]
    assert steps[0].action.calls == () and steps[0].action.failures[0].raw == broken
    assert steps[1].call is None and "could not be parsed" in steps[1].observation
    # Nothing to answer with a tool message: the raw text stays the model's
    # turn and the error comes back as a user turn.
    assert session.messages[1] == {"role": "assistant", "content": broken}
    assert session.messages[2]["role"] == "user" and "truncated JSON" in session.messages[2]["content"]
    assert steps[1].observation in backend.history[1]
    assert steps[-1].text == "42"


def test_a_bad_call_next_to_a_good_one(tools: ToolRegistry) -> None:
    text = call("calculator", expression="2+2") + "\n<tool_call>\n{oops}\n</tool_call>"
    backend = FakeBackend([text, "4"])
    session = Session.from_question("2+2?")
    steps = list(make_agent(backend, tools).run(session))
    assert kinds(steps) == ["ToolCall", "tool:result", "tool:unparseable", "Answer", "final:answer"]
    tool_messages = [m for m in session.messages if m["role"] == "tool"]
    assert [m["name"] for m in tool_messages] == ["calculator", "invalid_tool_call"]
    assert len({m["tool_call_id"] for m in tool_messages}) == 2


def test_max_steps_reached_is_an_outcome_not_an_exception(tools: ToolRegistry) -> None:
    backend = FakeBackend([call("calculator", expression=f"{i}+1") for i in range(3)])
    steps = list(make_agent(backend, tools, max_steps=3).run("Loop forever."))
    assert kinds(steps) == ["ToolCall", "tool:result"] * 3 + ["final:max_steps"]
    final = steps[-1]
    assert final.action is None and final.text is None and final.model_steps == 3
    assert final.session.messages[-1]["role"] == "tool"  # the last observation is kept for a resume
    assert backend.pending == 0 and len(backend.history) == 3


def test_refusal_sentence_becomes_refuse(tools: ToolRegistry) -> None:
    backend = FakeBackend(["I don\u2019t know. Nobody recorded it."])
    final = make_agent(backend, tools).ask("How many grains of sand?")
    assert final.outcome == "refuse"
    assert isinstance(final.action, Refuse) and final.action.reason == "model"
    assert final.text.startswith("I don\u2019t know.")


class ScriptedConfidence:
    """A policy stand-in that reports a fixed p_correct (the doubter's field)."""

    def __init__(self, text: str, p_correct: float) -> None:
        self.text, self.p_correct = text, p_correct

    def decide(self, session, backend, tools) -> LatentDecision:  # type: ignore[no-untyped-def]
        return LatentDecision(self.text, p_correct=self.p_correct)


@pytest.mark.parametrize("p_correct, outcome", [(0.2, "refuse"), (0.9, "answer")])
def test_renderer_threshold_gates_answers(tools: ToolRegistry, p_correct: float, outcome: str) -> None:
    agent = MetaAgent(FakeBackend(), ScriptedConfidence("Paris.", p_correct), DefaultRenderer(threshold=0.5), tools)
    final = agent.ask("Capital of France?")
    assert final.outcome == outcome
    if outcome == "refuse":
        assert final.text == REFUSAL_SENTENCE and "below threshold 0.500" in final.action.reason


def test_threshold_does_not_block_tool_calls(tools: ToolRegistry) -> None:
    renderer = DefaultRenderer(threshold=0.9)
    action = renderer.render(LatentDecision(call("lookup", query="x"), p_correct=0.1), Session(), FakeBackend(), tools)
    assert isinstance(action, ToolCall)


def test_framework_errors_propagate(tools: ToolRegistry) -> None:
    agent = make_agent(FakeBackend([call("calculator", expression="1")]), tools)
    steps = agent.run("?")
    assert isinstance(next(steps), ModelStep) and isinstance(next(steps), ToolStep)
    with pytest.raises(FakeBackendExhausted) as info:  # a BackendError, not an observation
        next(steps)
    assert isinstance(info.value, BackendError) and info.value.calls_made == 1

    class Broken:
        def render(self, *args):  # type: ignore[no-untyped-def]
            return "an answer as a plain string"

    with pytest.raises(ActionTypeError, match="must return Answer, ToolCall or Refuse"):
        MetaAgent(FakeBackend(["x"]), DirectPolicy(), Broken(), tools).ask("?")


def test_builtins_satisfy_the_protocols() -> None:
    from meta_spider.policies import ActionRenderer, Policy

    assert isinstance(DirectPolicy(), Policy) and isinstance(DefaultRenderer(), ActionRenderer)
    assert not isinstance(object(), Policy)


def test_agent_configuration_is_validated(tools: ToolRegistry) -> None:
    with pytest.raises(ValueError, match="max_steps must be a positive int, got 0"):
        MetaAgent(FakeBackend(), DirectPolicy(), DefaultRenderer(), tools, max_steps=0)
    with pytest.raises(ValueError, match="tools must be a ToolRegistry"):
        MetaAgent(FakeBackend(), DirectPolicy(), DefaultRenderer(), [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_new_tokens must be a positive int, got -1"):
        DirectPolicy(max_new_tokens=-1)
    with pytest.raises(ValueError, match="threshold"):
        DefaultRenderer(threshold=1.5)
    with pytest.raises(ValueError, match="p_correct"):
        LatentDecision("x", p_correct=2.0)


# ---------------------------------------------------------------- sessions


def test_session_json_round_trip_and_continuation(tools: ToolRegistry, tmp_path) -> None:
    backend = FakeBackend([call("calculator", expression="2**10"), "1024"])
    session = Session.from_question("2**10?", system="Be exact.")
    session.metadata["run"] = "unit-test"
    make_agent(backend, tools).ask(session)

    path = session.save(tmp_path / "session.json")
    loaded = Session.load(path)
    assert loaded == session
    assert json.loads(path.read_text())["format"] == "meta-spider-session"

    # A reloaded session continues exactly: same prompt, ids keep counting.
    follow_up = FakeBackend([call("calculator", expression="1024*2"), "2048"])
    for copy in (session, loaded):
        copy.add_user("And twice that?")
    make_agent(follow_up, tools).ask(loaded)
    reference = FakeBackend([call("calculator", expression="1024*2"), "2048"])
    make_agent(reference, tools).ask(session)
    assert follow_up.history == reference.history
    assert loaded.tool_results[-1].call_id == "call00002"
    assert loaded == session


def test_question_context_shows_the_model_only_the_current_question(tools: ToolRegistry) -> None:
    """``context="question"``: a base trained on one question per chat reads
    each new question as if it were the first (its tool calls and their
    results, and notes about an unreadable call, included); the session keeps
    every turn."""
    broken = '<tool_call>\n{"name": "calculator", "arguments": {"expression": '
    outputs = [call("calculator", expression="2**10"), "1024", broken, call("calculator", expression="6*7"), "42"]
    backend = FakeBackend(list(outputs))
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), tools, context="question")
    session = Session.from_question("2**10?", system="Be exact.")
    agent.ask(session)
    session.add_user("6*7?")
    assert agent.ask(session).text == "42"
    alone = FakeBackend(list(outputs[2:]))
    MetaAgent(alone, DirectPolicy(), DefaultRenderer(), tools).ask(Session.from_question("6*7?", system="Be exact."))
    assert backend.history[2:] == alone.history  # the second question's prompts: as if asked first
    assert "Be exact." in backend.history[2] and "2**10" not in backend.history[2]
    assert "could not be parsed" in backend.history[3]  # the note about the broken call stays in view
    assert [m["content"] for m in session.messages if m["role"] == "user"][:2] == ["2**10?", "6*7?"]
    assert [r.call_id for r in session.tool_results] == ["call00001", "call00002"]  # ids go on counting

    everything = FakeBackend(list(outputs))
    agent = MetaAgent(everything, DirectPolicy(), DefaultRenderer(), tools)
    session = Session.from_question("2**10?", system="Be exact.")
    agent.ask(session)
    session.add_user("6*7?")
    agent.ask(session)
    assert "2**10" in everything.history[2]  # the default: the whole conversation
    with pytest.raises(ValueError, match="context must be one of"):
        MetaAgent(FakeBackend(), DirectPolicy(), DefaultRenderer(), tools, context="last")


@pytest.mark.parametrize(
    "text, reason",
    [
        ("not json", "invalid JSON"),
        ("[]", "expected a JSON object"),
        ('{"format": "other"}', "format is 'other'"),
        ('{"format": "meta-spider-session", "version": 99}', "version 99 is not supported"),
        ('{"format": "meta-spider-session", "version": 1, "messages": [{"role": "robot"}]}', "messages[0]: role 'robot'"),
        (
            '{"format": "meta-spider-session", "version": 1, "messages": [], "tool_results": [{"x": 1}]}',
            "tool_results[0]: expected the fields",
        ),
        (
            '{"format": "meta-spider-session", "version": 1, "messages": [], "tool_results": [{"step": 1, '
            '"name": "lookup", "arguments": {}, "call_id": null, "content": "", "kind": "not_found", '
            '"choices": "Kai Tolan"}]}',
            "tool_results[0]: choices must be a list of at most 100 names",
        ),
        (
            '{"format": "meta-spider-session", "version": 1, "messages": [], "tool_results": [{"step": 1, '
            '"name": "lookup", "arguments": {}, "call_id": null, "content": "", "kind": "not_found", '
            '"choices": [1, 2]}]}',
            "tool_results[0]: choices must be a list",
        ),
    ],
)
def test_bad_session_files_raise_a_typed_error(text: str, reason: str) -> None:
    with pytest.raises(SessionFormatError) as info:
        Session.from_json(text, source="test.json")
    assert reason in info.value.reason and info.value.source == "test.json"


def test_a_session_saved_before_records_had_choices_still_loads() -> None:
    text = ('{"format": "meta-spider-session", "version": 1, "messages": [], "tool_results": [{"step": 1, '
            '"name": "lookup", "arguments": {"query": "Tolan"}, "call_id": null, "content": "No entry.", '
            '"kind": "not_found"}]}')
    assert Session.from_json(text).tool_results[0].choices == []


def test_model_call_ids_are_kept_when_template_safe() -> None:
    from meta_spider.agentcore import ToolInvocation

    session = Session.from_question("?")
    settled = session.add_tool_calls(
        [ToolInvocation("a", {}, "abcDEF123"), ToolInvocation("b", {}, "not-a-valid-id"), ToolInvocation("c", {})]
    )
    assert [c.call_id for c in settled] == ["abcDEF123", "call00001", "call00002"]


# ---------------------------------------------------------------- plugins


def test_third_party_tool_runs_through_the_agent(plugin_manager) -> None:
    backend = FakeBackend([call("reverse_text", text="spider"), "It reads 'redips'."])
    agent = build_agent(plugin_manager, backend=backend, max_steps=3)
    steps = list(agent.run("Reverse 'spider'."))
    assert kinds(steps) == ["ToolCall", "tool:result", "Answer", "final:answer"]
    assert steps[1].observation == "redips"
    assert '"name": "reverse_text"' in backend.history[0]


def test_build_agent_resolves_plugin_names(plugin_manager) -> None:
    agent = build_agent(
        plugin_manager,
        backend="fake",
        backend_settings={"outputs": ["unused"]},
        policy="echo-policy",
        policy_settings={"prefix": "You said: "},
    )
    assert agent.ask("hello").text == "You said: hello"
    assert agent.backend.pending == 1  # the echo policy never ran the model
    with pytest.raises(UnknownComponentError, match="no policy named 'nosuch'.*direct, doubter, echo-policy, probe"):
        build_agent(plugin_manager, backend="fake", policy="nosuch")


def test_rebuild_agent_keeps_every_setting_and_swaps_the_backend(tools: ToolRegistry) -> None:
    from meta_spider.agentcore.factory import rebuild_agent

    agent = build_agent(None, backend=FakeBackend(), policy=DirectPolicy(), tools=tools, max_steps=3,
                        system_prompt="Be exact.", context="question", direct_tools=("calculator",),
                        ground_arguments=True, grounded_tools=("lookup",))
    other = FakeBackend(["2"])
    rebuilt = rebuild_agent(agent, backend=other)
    assert rebuilt.backend.inner is other and rebuilt.policy is agent.policy and rebuilt.tools is agent.tools
    assert (rebuilt.max_steps, rebuilt.system_prompt, rebuilt.context, rebuilt.direct_tools, rebuilt.ground_arguments,
            rebuilt.grounded_tools) == (3, "Be exact.", "question", ("calculator",), True, ("lookup",))
