"""The ``doubter`` policy and the ``probe`` baseline with the default
renderer, on the scripted FakeBackend: confident -> the pass-2 answer;
uncertain with a lookup tool -> a native call prefilled with the family's
call prefix, parsed, run, then answered from the observation; uncertain
without one -> refusal; an unparseable call -> refusal with the failure
recorded; thresholds from run.json's calibration."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from rich.console import Console

from meta_spider.agentcore import MetaAgent, Session
from meta_spider.agentcore.launch import AgentLauncher
from meta_spider.agentcore.render import step_renderable
from meta_spider.agentcore.rundir import RunFileError, read_run_settings
from meta_spider.backends import FakeBackend, StopBackend
from meta_spider.backends.base import Introspection
from meta_spider.policies import REFUSAL_SENTENCE, Answer, DefaultRenderer, LatentDecision, Refuse, ToolCall
from meta_spider.policies.doubter import (DEFAULT_THRESHOLD, DoubterPolicy, pending_tool_kinds, resolve_threshold,
                                         tool_result_pending)
from meta_spider.policies.probe import ProbePolicy
from meta_spider.tools import DictKnowledgeBase, EmptyKnowledgeBase, ToolRegistry, make_lookup_tool

QUESTION = "What is the capital of Veloria?"
FACT = "The capital of Veloria is Amberhold."
CALL_BODY = '{"name": "lookup", "arguments": {"query": "capital of Veloria"}}\n</tool_call>'


def lookup_tools(facts: dict[str, str] | None = None) -> ToolRegistry:
    knowledge_base = DictKnowledgeBase(facts if facts is not None else {"capital of Veloria": FACT})
    return ToolRegistry([make_lookup_tool(knowledge_base)])


def introspection(p_correct: float) -> Introspection:
    return Introspection(p_correct=p_correct, cognitive_tokens=[[0.0] * 4] * 2)


def agent(backend, tools: ToolRegistry, policy=None, **renderer) -> MetaAgent:  # type: ignore[no-untyped-def]
    return MetaAgent(StopBackend(backend), policy or DoubterPolicy(threshold=0.5), DefaultRenderer(**renderer), tools,
                     max_steps=4)


def test_confident_decision_answers_with_pass_two() -> None:
    read = introspection(0.9)
    backend = FakeBackend([read, "Amberhold."])
    steps = list(agent(backend, lookup_tools()).run(QUESTION))
    model, final = steps[0], steps[-1]
    assert len(steps) == 2 and isinstance(model.action, Answer)
    assert (final.outcome, final.text) == ("answer", "Amberhold.")
    decision = model.decision
    assert (decision.p_correct, decision.confident) == (0.9, True)
    assert decision.metadata["threshold"] == 0.5 and decision.metadata["threshold_source"] == "explicit"
    # Pass 1 and pass 2 saw the same bare prompt (no tool definitions), pass 2 with the read injected.
    assert backend.reads == [backend.calls[0].prompt] and "<tools>" not in backend.reads[0]
    assert backend.calls[0].inject is read and len(backend.calls) == 1
    # Pass 1 is told the user's question (what the occlusion signal finds the words of).
    assert backend.read_questions == [QUESTION]


def test_uncertain_with_lookup_makes_a_native_call_then_answers_from_the_observation() -> None:
    backend = FakeBackend([introspection(0.2), "I don't know.", CALL_BODY, "It is Amberhold."])
    steps = list(agent(backend, lookup_tools()).run(QUESTION))
    assert [type(step).__name__ for step in steps] == ["ModelStep", "ToolStep", "ModelStep", "FinalStep"]
    first, tool, second, final = steps
    assert isinstance(first.action, ToolCall)
    assert [(c.name, c.arguments) for c in first.action.calls] == [("lookup", {"query": "capital of Veloria"})]
    assert (tool.ok, tool.observation) == (True, FACT)
    assert (final.outcome, final.text) == ("answer", "It is Amberhold.")
    # The call was the model's own completion of a prefilled assistant turn,
    # with the tools offered, stopped at the family's close marker, no injection.
    call_turn = backend.calls[1]
    assert call_turn.prompt.endswith("<|im_start|>assistant\n<tool_call>\n")
    assert '"name": "lookup"' in call_turn.prompt.split("<|im_start|>user")[0]
    assert "</tool_call>" in call_turn.stop and call_turn.inject is None
    lookup = first.decision.metadata["lookup"]
    assert lookup["calls"] == ["lookup"] and lookup["failures"] == [] and lookup["family"] == "hermes"
    assert lookup["finish_reason"] == "stop"  # StopBackend cut "</tool_call>"; the renderer restored it
    # After the observation the gate is skipped: no second read, a plain generation with the tools offered.
    assert len(backend.reads) == 1
    assert second.decision.metadata["gate"].startswith("skipped") and second.decision.p_correct is None
    assert backend.calls[2].inject is None and "<tool_response>\n" + FACT in backend.calls[2].prompt
    assert second.decision.metadata["threshold_source"] == "explicit"


def test_a_calculation_of_numbers_the_question_does_not_give_ends_in_a_refusal() -> None:
    """The world's base, asked "what year was shamor shuson born", called the
    calculator with "30 - 34" and answered -4: a grounded calculator does
    not compute it, and the policy refuses as after a lookup that found
    nothing, saying which."""
    from meta_spider.tools.calculator import calculator
    from meta_spider.tools.tool import Tool

    tools = lookup_tools()
    tools.register(Tool.from_function(calculator), source="tests")
    body = '{"name": "calculator", "arguments": {"expression": "30 - 34"}}\n</tool_call>'
    backend = FakeBackend([introspection(0.2), "I don't know.", body, "-4"])
    steps = list(MetaAgent(StopBackend(backend), DoubterPolicy(threshold=0.5), DefaultRenderer(), tools, max_steps=4,
                           ground_arguments=True, grounded_tools=("calculator",)).run("what year was Mira Tollan born"))
    tool, final = steps[1], steps[-1]
    assert (tool.call.name, tool.kind.value) == ("calculator", "not_found")
    assert (final.outcome, final.text, final.action.reason) == ("refuse", REFUSAL_SENTENCE,
                                                                "every tool call found nothing")


def calculator_tools() -> ToolRegistry:
    from meta_spider.tools.calculator import calculator
    from meta_spider.tools.tool import Tool

    tools = lookup_tools()
    tools.register(Tool.from_function(calculator), source="tests")
    return tools


def test_an_answer_after_a_call_that_failed_is_refused_not_given() -> None:
    """The world's base, asked "What is 2**99999999?", called the calculator,
    which refused a power of thirty million digits, and then answered "The
    answer is 90.": no result came back, so the answer is the base's guess
    and the agent refuses it, without a lookup."""
    body = '{"name": "calculator", "arguments": {"expression": "2**99999999"}}\n</tool_call>'
    backend = FakeBackend([introspection(0.2), "I don't know.", body, "The answer is 90."])
    steps = list(agent(backend, calculator_tools()).run("What is 2**99999999?"))
    assert [type(step).__name__ for step in steps] == ["ModelStep", "ToolStep", "ModelStep", "FinalStep"]
    tool, second, final = steps[1:]
    assert (tool.call.name, tool.kind.value) == ("calculator", "tool_raised") and "limit" in tool.observation
    reason = "no tool call since the question returned a result"
    assert (final.outcome, final.text, final.action.reason) == ("refuse", REFUSAL_SENTENCE, reason)
    assert second.decision.confident is False and second.decision.metadata["gate"].endswith(reason)
    # The model read the failure with the tools offered (it could have called again); no lookup was prefilled.
    assert len(backend.calls) == 3 and '"name": "calculator"' in backend.calls[2].prompt
    assert not backend.calls[2].prompt.endswith("<tool_call>\n") and "lookup" not in second.decision.metadata


def test_after_a_malformed_call_the_model_may_call_again_and_answer_from_the_result() -> None:
    wrong = '{"name": "calculator", "arguments": {"expr": "6*7"}}\n</tool_call>'
    again = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "6*7"}}\n</tool_call>'
    backend = FakeBackend([introspection(0.2), "I don't know.", wrong, again, "42."])
    steps = list(agent(backend, calculator_tools()).run("What is 6 times 7?"))
    kinds = [step.kind.value for step in steps if type(step).__name__ == "ToolStep"]
    assert kinds == ["bad_arguments", "result"]
    assert (steps[-1].outcome, steps[-1].text) == ("answer", "42.")
    assert steps[2].decision.confident is False and isinstance(steps[2].action, ToolCall)  # the retry ran


def test_a_lookup_that_finds_nothing_ends_in_a_refusal_not_a_guess() -> None:
    """Unsure, the model looked the fact up and the knowledge base has no
    entry: the policy refuses instead of asking the model to answer from an
    empty result (the world's base, asked "What is the capital of France?",
    looked up an invented name and then answered "He works for Sheafen
    Motors.")."""
    backend = FakeBackend([introspection(0.2), "I don't know.", CALL_BODY, "He works for Sheafen Motors."])
    steps = list(agent(backend, lookup_tools({"capital of Ruritania": FACT})).run(QUESTION))
    assert [type(step).__name__ for step in steps] == ["ModelStep", "ToolStep", "ModelStep", "FinalStep"]
    tool, second, final = steps[1:]
    assert (tool.kind.value, tool.ok, tool.observation) == ("not_found", False,
                                                             "No entry found for 'capital of Veloria'.")
    assert (final.outcome, final.text) == ("refuse", REFUSAL_SENTENCE)
    assert second.decision.metadata["gate"].startswith("refused: every lookup")
    assert final.action.reason == "every lookup found nothing"  # what the trace shows, not "model"
    assert len(backend.calls) == 2  # the answer after the miss was never generated
    assert final.session.tool_results[-1].kind == "not_found"  # kept in the session (and its file)
    # Only the results after the last question count, and one hit among misses is answered from.
    from types import SimpleNamespace

    from meta_spider.agentcore.steps import ObservationKind

    def view(kinds_by_turn: list[list[object]]) -> SimpleNamespace:
        messages, records = [], []
        for turn, kinds in enumerate(kinds_by_turn):
            messages.append({"role": "user", "content": "q"})
            messages += [{"role": "tool", "content": "r", "tool_call_id": f"c{turn}{k}"} for k in range(len(kinds))]
            records += [SimpleNamespace(kind=kind, call_id=f"c{turn}{k}") for k, kind in enumerate(kinds)]
        return SimpleNamespace(messages=messages, tool_results=records)

    assert pending_tool_kinds(view([["result"], ["not_found", "not_found"]])) == ["not_found", "not_found"]
    assert pending_tool_kinds(view([["not_found"], []])) == []
    assert pending_tool_kinds(view([["not_found", "result"]])) == ["not_found", "result"]
    assert pending_tool_kinds(view([[ObservationKind.NOT_FOUND]])) == ["not_found"]  # enum members too
    # A tool message no record matches (a client's own result on the server) is never a miss.
    mixed = view([["not_found"]])
    mixed.messages.append({"role": "tool", "content": "The capital is Amberhold.", "tool_call_id": "client-1"})
    assert pending_tool_kinds(mixed) == ["not_found", ""]
    assert pending_tool_kinds(SimpleNamespace(messages=[{"role": "tool"}])) == [""]  # a bare view: no kinds


@pytest.mark.parametrize("tools", [ToolRegistry(), ToolRegistry([make_lookup_tool(EmptyKnowledgeBase())])],
                         ids=["no-tools", "lookup-over-empty-knowledge-base"])
def test_uncertain_without_a_lookup_tool_refuses(tools: ToolRegistry) -> None:
    backend = FakeBackend([introspection(0.3), "Amberhold."])
    steps = list(agent(backend, tools).run(QUESTION))
    final = steps[-1]
    assert final.outcome == "refuse" and final.text == REFUSAL_SENTENCE
    assert final.action.reason == "p_correct 0.300 below threshold 0.500, explicit"
    assert len(backend.calls) == 1  # no tool-call attempt


def test_unparseable_call_refuses_and_records_the_failure() -> None:
    broken = '{"name": "lookup", "arguments": {"query": \n</tool_call>'
    backend = FakeBackend([introspection(0.1), "Amberhold.", broken])
    steps = list(agent(backend, lookup_tools()).run(QUESTION))
    model, final = steps
    assert isinstance(model.action, Refuse) and final.outcome == "refuse"
    assert "the lookup call could not be parsed" in model.action.reason
    failures = model.decision.metadata["lookup"]["failures"]
    assert failures and failures[0]["raw"].startswith("<tool_call>\n{")
    record = model.to_dict()  # the failure travels in the step record (meta-agent run --json)
    assert record["decision"]["metadata"]["lookup"]["failures"] == failures
    # A completion with no call at all is refused too.
    backend = FakeBackend([introspection(0.1), "Amberhold.", "no call here"])
    final = agent(backend, lookup_tools()).ask(QUESTION)
    assert final.outcome == "refuse" and "could not be parsed" in final.action.reason


def test_a_call_the_model_broke_off_is_closed_and_held_to_the_question() -> None:
    """The world's base, asked for a lookup, often breaks its call off inside
    the argument ("9 * 9\n</tool_response>", "Rouia Sal 1987 in" and the
    end of its output): the renderer closes the call where it broke, and the
    loop holds its arguments to the question, though this agent grounds no
    tool."""
    def first_steps(body: str) -> list:  # type: ignore[type-arg]
        backend = FakeBackend([introspection(0.2), "I don't know.", body, "It is Amberhold."])
        return list(agent(backend, lookup_tools()).run(QUESTION))

    model, tool, _, final = first_steps('{"name": "lookup", "arguments": {"query": "capital of Veloria\n</tool_resp')
    assert model.action.healed and [(c.name, c.arguments) for c in model.action.calls] == [
        ("lookup", {"query": "capital of Veloria"})]
    assert model.decision.metadata["lookup"]["healed"] == (
        '<tool_call>\n{"name": "lookup", "arguments": {"query": "capital of Veloria"}}</tool_call>')
    assert model.decision.metadata["lookup"]["failures"] == []
    assert (tool.observation, final.text) == (FACT, "It is Amberhold.")
    # Cut short: a near copy of the question's words becomes them ...
    _, tool, _, final = first_steps('{"name": "lookup", "arguments": {"query": "capital of Velor')
    assert (tool.call.arguments, tool.written, tool.observation) == (
        {"query": "capital of Veloria"}, {"query": "capital of Velor"}, FACT)
    # ... and a made-up one searches the question.
    _, tool, *_ = first_steps('{"name": "lookup", "arguments": {"query": "Zed Qu')
    assert (tool.call.arguments, tool.written) == ({"query": QUESTION}, {"query": "Zed Qu"})
    # A closed call that gives an argument its tool does not take, or lacks one it needs, is refused as before.
    for body in ('{"name": "lookup", "arguments": {"query": "capital", "parameters": {"type": "obj',
                 '{"name": "lookup", "arguments": {"query": ', '{"name": "weather", "arguments": {"city": "Ve'):
        model, final = first_steps(body)[:2]
        assert final.outcome == "refuse" and "could not be parsed" in final.action.reason
        assert model.decision.metadata["lookup"]["healed"] is None


def test_confident_refusal_from_pass_two_looks_up_or_refuses() -> None:
    # The model's own "I don't know" is uncertainty: with a lookup it looks up...
    backend = FakeBackend([introspection(0.95), "I don't know.", CALL_BODY, "Amberhold."])
    steps = list(agent(backend, lookup_tools()).run(QUESTION))
    assert isinstance(steps[0].action, ToolCall) and steps[0].action.calls[0].name == "lookup"
    assert steps[0].decision.metadata["lookup"]["reason"] == "the model refused"
    assert (steps[-1].outcome, steps[-1].text) == ("answer", "Amberhold.")
    # ...and without one it stays a refusal in the model's words.
    final = agent(FakeBackend([introspection(0.95), "I don't know."]), ToolRegistry()).ask(QUESTION)
    assert final.outcome == "refuse" and final.action.reason == "model"


def test_gate_after_tool_result_rereads_when_asked() -> None:
    policy = DoubterPolicy(threshold=0.5, gate_after_tool_result=True)
    backend = FakeBackend([introspection(0.2), "?", CALL_BODY, introspection(0.9), "Amberhold."])
    final = agent(backend, lookup_tools(), policy).ask(QUESTION)
    assert final.text == "Amberhold." and len(backend.reads) == 2
    assert "<tool_response>" in backend.reads[1] and "<tools>" not in backend.reads[1]
    assert backend.read_questions == [QUESTION, QUESTION]  # after the tool result the question is still the user's


def test_probe_gates_the_same_read_without_injection() -> None:
    backend = FakeBackend([introspection(0.8), "Amberhold.", introspection(0.2), "?", CALL_BODY, "Amberhold."])
    probe = ProbePolicy(threshold=0.5)
    assert agent(backend, lookup_tools(), probe).ask(QUESTION).text == "Amberhold."
    assert backend.calls[0].inject is None and len(backend.reads) == 1
    steps = list(agent(backend, lookup_tools(), probe).run(QUESTION))
    assert isinstance(steps[0].action, ToolCall) and steps[0].decision.metadata["policy"] == "probe"
    assert steps[0].decision.metadata["injected"] is False and steps[-1].text == "Amberhold."


def test_threshold_resolution_and_validation() -> None:
    calibration = {"doubter": {"threshold": 0.73, "target_risk": 0.1}}
    assert resolve_threshold(None, calibration).value == 0.73
    assert resolve_threshold(None, calibration).source == "calibration:doubter"
    assert resolve_threshold(0.2, calibration).source == "explicit"
    assert resolve_threshold(None, {"doubter": {"threshold": None}}).value == math.inf  # answer nothing
    uncalibrated = resolve_threshold(None, {"max_prob": {"threshold": 0.4}})
    assert (uncalibrated.value, uncalibrated.calibrated) == (DEFAULT_THRESHOLD, False)
    with pytest.raises(ValueError, match="threshold must be a number in \\[0, 1\\] or None, got 1.5"):
        DoubterPolicy(threshold=1.5)
    with pytest.raises(ValueError, match=r"calibration\['doubter'\]\['threshold'\] must be a number or null, got 'x'"):
        DoubterPolicy(calibration={"doubter": {"threshold": "x"}})
    with pytest.raises(ValueError, match="max_new_tokens must be a positive int, got 0"):
        DoubterPolicy(max_new_tokens=0)
    with pytest.raises(ValueError, match="tool_call_max_new_tokens must be a positive int, got 0"):
        DefaultRenderer(tool_call_max_new_tokens=0)
    # Answer nothing: even P(correct) = 1 is uncertain.
    policy = DoubterPolicy(calibration={"doubter": {"threshold": None}})
    decision = policy.decide(Session.from_question(QUESTION), FakeBackend([introspection(1.0), "x"]), ToolRegistry())
    assert decision.confident is False


def test_tool_result_pending_looks_after_the_last_user_turn() -> None:
    assert not tool_result_pending([{"role": "user", "content": "q"}])
    assert tool_result_pending([{"role": "user", "content": "q"}, {"role": "assistant", "content": ""},
                                {"role": "tool", "content": "fact"}])
    assert not tool_result_pending([{"role": "tool", "content": "old"}, {"role": "user", "content": "new q"}])


def write_run(run_dir: Path, **fields: object) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps({"backends": {"fake": {}}, **fields}))
    return run_dir


def test_calibration_threshold_comes_from_run_json(plugin_manager, tmp_path: Path, caplog) -> None:
    (tmp_path / "facts.json").write_text(json.dumps({"capital of Veloria": FACT}))
    run_dir = write_run(tmp_path, calibration={"doubter": {"threshold": 0.8, "coverage": 0.6}},
                        knowledge_base={"facts_path": "facts.json"})
    settings = read_run_settings(run_dir)
    assert settings.calibration["doubter"]["threshold"] == 0.8
    launcher = AgentLauncher(plugin_manager, settings)
    doubter, probe = launcher.make_policy("doubter"), launcher.make_policy("probe")
    assert (doubter.gate.value, doubter.gate.source) == (0.8, "calibration:doubter")
    assert probe.gate.value == 0.8  # the same P(correct), the same calibrated threshold
    launcher.make_policy("direct")  # a policy without a calibration keyword is built as before
    assert launcher.tools.get("lookup").function(query="capital of veloria") == FACT  # run.json's facts
    # p = 0.7 passes 0.5 but not the calibrated 0.8: the lookup path runs.
    backend = FakeBackend([introspection(0.7), "Paris.", CALL_BODY, "Amberhold."])
    run = MetaAgent(StopBackend(backend), doubter, launcher.make_renderer(), launcher.tools, max_steps=4)
    steps = list(run.run(QUESTION))
    assert isinstance(steps[0].action, ToolCall) and steps[-1].text == "Amberhold."
    assert "below threshold 0.800, calibration:doubter" in steps[0].decision.metadata["lookup"]["reason"]
    # No calibration: the documented default, said to be uncalibrated.
    with caplog.at_level(logging.WARNING, logger="meta_spider.policies.doubter"):
        plain = AgentLauncher(plugin_manager, read_run_settings(write_run(tmp_path / "plain"))).make_policy("doubter")
    assert (plain.gate.value, plain.gate.source) == (DEFAULT_THRESHOLD, "default (uncalibrated)")
    assert "uncalibrated default" in caplog.text
    # run.json's policy settings still win over the calibration.
    explicit = write_run(tmp_path / "explicit", calibration={"doubter": {"threshold": 0.8}},
                         policy={"name": "doubter", "settings": {"threshold": 0.3}})
    assert AgentLauncher(plugin_manager, read_run_settings(explicit)).make_policy("doubter").gate.value == 0.3


def test_bad_knowledge_base_settings_name_the_problem(tmp_path: Path) -> None:
    (tmp_path / "facts.json").write_text(json.dumps(["not", "facts"]))
    settings = read_run_settings(write_run(tmp_path, knowledge_base={"facts_path": "facts.json"}))
    with pytest.raises(RunFileError, match="facts.json: expected query -> fact strings"):
        settings.make_knowledge_base()
    (tmp_path / "facts.jsonl").write_text('{"query": "a", "fact": "A."}\n{"query": "b", "fact": "B."}\n')
    jsonl = read_run_settings(write_run(tmp_path, knowledge_base={"facts_path": "facts.jsonl"}))
    assert jsonl.make_knowledge_base().lookup("B") == "B."
    (tmp_path / "facts.jsonl").write_text('{"query": "a", "fact": "A."}\n')  # one line: still a record
    assert jsonl.make_knowledge_base().lookup("a") == "A." and jsonl.make_knowledge_base().lookup("query") is None
    with pytest.raises(RunFileError, match="field 'knowledge_base'"):
        read_run_settings(write_run(tmp_path, knowledge_base=["facts.json"]))


def test_renderer_keeps_its_direct_policy_behaviour() -> None:
    renderer = DefaultRenderer(threshold=0.5)
    tools = lookup_tools()
    # A decision without a verdict or a probability is answered; a low p_correct with the
    # renderer's own threshold and no real lookup tool is refused.
    assert renderer.render(LatentDecision("Paris."), Session(), FakeBackend(), tools) == Answer("Paris.")
    refused = renderer.render(LatentDecision("Paris.", p_correct=0.1), Session(), FakeBackend(), ToolRegistry())
    assert isinstance(refused, Refuse) and refused.reason == "p_correct 0.100 below threshold 0.500"
    off = DefaultRenderer(lookup_when_uncertain=False)
    assert isinstance(off.render(LatentDecision("x", confident=False), Session(), FakeBackend(), tools), Refuse)



def record_gate(threshold: float = 0.0, tool: str = "lookup") -> dict:
    """A gate after a lookup reading only the P(correct) logit: it answers where the re-read P(correct) >= 0.5
    (threshold 0)."""
    return {"tool": tool, "signals": [], "layer_index": None, "mean": [0.0], "scale": [1.0], "weight": [1.0],
            "bias": 0.0, "threshold": threshold}


def test_gate_after_a_lookup_refuses_a_record_that_does_not_answer() -> None:
    policy = DoubterPolicy(calibration={"doubter": {"threshold": 0.5, "after_lookup": record_gate()}})
    drafted = Introspection(p_correct=0.1, cognitive_tokens=[[0.0] * 4] * 2, extras={"draft_text": "Tollan Works."})
    backend = FakeBackend([introspection(0.2), "?", CALL_BODY, drafted])
    steps = list(agent(backend, lookup_tools(), policy).run(QUESTION))
    final = steps[-1]
    assert (final.outcome, final.text) == ("refuse", REFUSAL_SENTENCE)
    decision = steps[-2].decision
    assert decision.metadata["gate"].startswith("refused: the record found does not answer the question")
    assert decision.metadata["after_lookup"]["score"] == pytest.approx(math.log(0.1 / 0.9))
    # what pass 1 drafted from the record is kept, and the trace shows it was withheld
    assert decision.metadata["withheld"] == decision.metadata["after_lookup"]["draft"] == "Tollan Works."
    console = Console(record=True, width=120)
    console.print(step_renderable(steps[-2]))
    assert "the base's answer, withheld: 'Tollan Works.'" in console.export_text()
    assert final.action.reason.startswith("the record found does not answer the question: gate after a lookup -2.197")
    # pass 1 read the conversation up to the record, without the tool definitions, told the user's question
    assert len(backend.reads) == 2 and "<tool_response>" in backend.reads[1] and "<tools>" not in backend.reads[1]
    assert backend.read_questions == [QUESTION, QUESTION] and len(backend.calls) == 2  # nothing generated after it


def test_gate_after_a_lookup_lets_a_record_that_answers_through() -> None:
    policy = DoubterPolicy(calibration={"doubter": {"threshold": 0.5, "after_lookup": record_gate()}})
    backend = FakeBackend([introspection(0.2), "?", CALL_BODY, introspection(0.8), "It is Amberhold."])
    steps = list(agent(backend, lookup_tools(), policy).run(QUESTION))
    assert (steps[-1].outcome, steps[-1].text) == ("answer", "It is Amberhold.")
    decision = steps[-2].decision
    assert decision.metadata["gate"].startswith("passed") and decision.metadata["after_lookup"]["score"] > 0
    # the answer comes from the prompt the gate read (no tool definitions), so it is the one the gate judged
    assert backend.calls[-1].prompt == backend.reads[-1] and "<tools>" not in backend.calls[-1].prompt
    assert backend.calls[-1].inject is None and decision.metadata["prompt"] == backend.reads[-1]


def test_gate_after_a_lookup_judges_only_its_own_tool_and_can_be_switched_off() -> None:
    other = DoubterPolicy(calibration={"doubter": {"threshold": 0.5, "after_lookup": record_gate(tool="search")}})
    off = DoubterPolicy(calibration={"doubter": {"threshold": 0.5, "after_lookup": record_gate()}},
                        gate_after_lookup=False)
    for policy in (other, off):
        backend = FakeBackend([introspection(0.2), "?", CALL_BODY, "It is Amberhold."])
        assert agent(backend, lookup_tools(), policy).ask(QUESTION).text == "It is Amberhold."
        assert len(backend.reads) == 1 and "<tools>" in backend.calls[-1].prompt  # answered with the tools offered


def test_gate_after_a_lookup_comes_from_the_doubter_when_run_json_has_none() -> None:
    carried = {"threshold": 0.5, "after_lookup": record_gate()}
    first = Introspection(p_correct=0.2, cognitive_tokens=[[0.0] * 4] * 2, calibration=carried)
    policy = DoubterPolicy()
    assert policy.record_gate is None
    backend = FakeBackend([first, "?", CALL_BODY, introspection(0.1)])
    assert agent(backend, lookup_tools(), policy).ask(QUESTION).text == REFUSAL_SENTENCE
    assert policy.record_gate is not None and policy.record_gate.tool == "lookup"


def test_a_malformed_gate_after_a_lookup_names_the_field() -> None:
    broken = {**record_gate(), "scale": [0.0]}
    with pytest.raises(ValueError, match=r"gate after a lookup is unusable: 'after_lookup.scale' holds a number that "
                                         r"is not positive; run `metaloom eval` again"):
        DoubterPolicy(calibration={"doubter": {"threshold": 0.5, "after_lookup": broken}})
    with pytest.raises(ValueError, match=r"'after_lookup.tool' must name a tool"):
        DoubterPolicy(calibration={"doubter": {"threshold": 0.5, "after_lookup": {**record_gate(), "tool": 3}}})


def test_gate_after_a_lookup_leaves_a_clients_own_tool_result_alone() -> None:
    class Client:  # a server request's conversation: the client ran the tool, nothing in the session records it
        messages = [{"role": "user", "content": QUESTION},
                    {"role": "assistant", "content": "", "tool_calls": [
                        {"type": "function", "id": "c1", "function": {"name": "lookup", "arguments": {"query": "x"}}}]},
                    {"role": "tool", "name": "lookup", "tool_call_id": "c1", "content": FACT}]
        tool_results = ()

    policy = DoubterPolicy(calibration={"doubter": {"threshold": 0.5, "after_lookup": record_gate()}})
    backend = FakeBackend(["It is Amberhold."])
    decision = policy.decide(Client(), backend, lookup_tools())
    assert decision.text == "It is Amberhold." and backend.reads == [] and "after_lookup" not in decision.metadata
