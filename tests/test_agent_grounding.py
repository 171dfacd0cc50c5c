"""Grounding a call's arguments in the user's words: the function on its
own, in the agent loop (what runs, what the session and the trace keep),
and on a run of the embedded world (on by its dataset, off by the flag)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meta_spider.agentcore import MetaAgent
from meta_spider.agentcore.grounding import ground_call, ground_text, grounding, ungrounded
from meta_spider.agentcore.rundir import read_run_settings
from meta_spider.backends import FakeBackend
from meta_spider.policies import DefaultRenderer, DirectPolicy
from meta_spider.policies.actions import ToolInvocation
from meta_spider.tools import DictKnowledgeBase, ToolRegistry, make_lookup_tool
from meta_spider.tools.calculator import calculator
from meta_spider.tools.tool import Tool


@pytest.mark.parametrize("argument, question, grounded", [
    ("Beastruin Gromton", "Hello, what is the place of birth of Beastruinwyn Gromton?", "Beastruinwyn Gromton"),
    ("17 * 22", "What is 17 * 23?", "17 * 23"),
    ("DesgrenwynVoullnberg", "Where does Drousgrenard Voullnud work?", "Drousgrenard Voullnud"),
    ("mira tolan", "Where was Mira Tollan born?", "Mira Tollan"),  # case is the user's too
    ("17*23", "What is 17*23?", "17*23"),  # an exact copy stays
    ("17 + 23", "Calculate 17*23.", "17*23"),  # the model's spacing: as many numbers, not as many words
    ("17*33", "Compute 17 x 23", "17 x 23"),
    ("8 * 48", "What is 8 multiplied by 48?", "8 * 48"),  # never a word for a number
    ("Mira Tollan", "where was mira tollan born", "Mira Tollan"),  # only case and spaces differ: a copy
    ("Mira Tollan", "What is Mira Tollan's job?", "Mira Tollan"),  # a copy of part of a word run stays
    ("Mira Tolan", "What is Mira Tollan\u2019s job?", "Mira Tollan"),  # a possessive is not part of the name
    ("3 * 2", "What is 3+4 times 2?", "3 * 2"),  # far from every run: the model's own words
    ("Drathan Parziley", "What is the capital of France?", "Drathan Parziley"),
    ("Besa Gromton", "Where was Besatrainwyn Gromton born?", "Besa Gromton"),  # a dropped word is not guessed
    ("Ida Bren", "Is Ida Brenn related to Ida Brent?", "Ida Bren"),  # two runs as near: no guess
    ("", "What is 17*23?", ""),
    ("17 * 22", "", "17 * 22"),
])
def test_ground_text(argument: str, question: str, grounded: str) -> None:
    assert ground_text(argument, question) == grounded


def test_grounding_says_whether_an_argument_is_the_questions_words() -> None:
    question = "Where was Beastruinwyn Gromton born?"
    assert grounding("Beastruin Gromton", question) == ("Beastruinwyn Gromton", True)
    assert grounding("Beastruinwyn Gromton", question) == ("Beastruinwyn Gromton", True)
    assert grounding("Zithan Bruford", question) == ("Zithan Bruford", False)
    assert grounding("x" * 300, question) == ("x" * 300, False)
    call = ToolInvocation("lookup", {"query": "Gromton", "note": "Zithan Bruford", "limit": 2})
    assert ungrounded(call, question) == "Zithan Bruford"
    assert ungrounded(ToolInvocation("lookup", {"query": "Gromton", "limit": 2}), question) is None


def test_ground_call_touches_only_top_level_strings_and_keeps_an_unchanged_call() -> None:
    question = "Where was Beastruinwyn Gromton born?"
    call = ToolInvocation("lookup", {"query": "Beastruin Gromton", "limit": 3, "tags": ["Beastruin Gromton"]}, "c1",
                          "raw text")
    grounded = ground_call(call, question)
    assert grounded.arguments == {"query": "Beastruinwyn Gromton", "limit": 3, "tags": ["Beastruin Gromton"]}
    assert (grounded.name, grounded.call_id, grounded.raw) == ("lookup", "c1", "raw text")
    exact = ToolInvocation("lookup", {"query": "Beastruinwyn Gromton"})
    assert ground_call(exact, question) is exact
    huge = "Beastruin Gromton " * 50_000  # a runaway argument or question: left as written
    assert ground_text(huge, question) == huge and ground_text("Beastruin Gromton", huge * 2) == "Beastruin Gromton"


def call(name: str, **arguments: object) -> str:
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


@pytest.fixture
def tools() -> ToolRegistry:
    registry = ToolRegistry()
    registry.register(Tool.from_function(calculator), source="tests")
    registry.register(make_lookup_tool(DictKnowledgeBase({"Mira Tollan": "Mira Tollan: born in Kuba."})),
                      source="tests")
    return registry


def test_the_loop_runs_the_grounded_call_and_keeps_what_the_model_wrote(tools: ToolRegistry) -> None:
    backend = FakeBackend([call("lookup", query="Mira Tolan"), "She was born in Kuba."])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), tools, ground_arguments=True)
    steps = list(agent.run("Where was Mira Tollan born?"))
    tool_step = steps[1]
    assert tool_step.call.arguments == {"query": "Mira Tollan"} and tool_step.observation == "Mira Tollan: born in Kuba."
    assert tool_step.written == {"query": "Mira Tolan"} and tool_step.to_dict()["written"] == {"query": "Mira Tolan"}
    assert steps[0].action.calls[0].arguments == {"query": "Mira Tolan"}  # the model step shows its own call
    # The conversation the model reads next holds the call that ran.
    assert steps[-1].session.messages[1]["tool_calls"][0]["function"]["arguments"] == {"query": "Mira Tollan"}
    assert steps[-1].text == "She was born in Kuba."
    # Off (the default): the call runs as written and misses.
    backend = FakeBackend([call("lookup", query="Mira Tolan"), "I don't know."])
    steps = list(MetaAgent(backend, DirectPolicy(), DefaultRenderer(), tools).run("Where was Mira Tollan born?"))
    assert steps[1].call.arguments == {"query": "Mira Tolan"} and steps[1].written is None
    assert steps[1].kind.value == "not_found"


def test_a_grounded_tool_does_not_run_for_a_name_the_question_does_not_give(tools: ToolRegistry) -> None:
    ran: list[str] = []
    facts = DictKnowledgeBase({"Mira Tollan": "Mira Tollan: born in Kuba.", "Zed Quux": "Zed Quux: born in Ora."})
    lookup = make_lookup_tool(facts)
    registry = ToolRegistry()
    registry.register(Tool(lookup.name, lookup.description, lookup.parameters,
                           lambda query: ran.append(query) or lookup.function(query=query)), source="tests")
    backend = FakeBackend([call("lookup", query="Zed Quux"), "Never read."])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), registry, grounded_tools=("lookup",))
    steps = list(agent.run("Who invented the telephone?"))
    assert steps[1].kind.value == "not_found" and not steps[1].ok and ran == []
    assert steps[1].observation == "No entry found for 'Zed Quux': the question does not name it."
    assert steps[-1].session.tool_results[0].kind == "not_found"
    backend = FakeBackend([call("lookup", query="Mira Tollan"), "Kuba."])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), registry, grounded_tools=("lookup",))
    assert agent.ask("Where was Mira Tollan born?").text == "Kuba." and ran == ["Mira Tollan"]
    with pytest.raises(ValueError, match="grounded_tools must be a sequence of tool names"):
        MetaAgent(backend, DirectPolicy(), DefaultRenderer(), registry, grounded_tools="lookup")  # type: ignore[arg-type]


def test_a_world_run_grounds_arguments_unless_told_not_to(plugin_manager, tmp_path: Path) -> None:
    from meta_spider.agentcore.launch import AgentLauncher

    assert AgentLauncher(plugin_manager).build_agent().ground_arguments is False
    (tmp_path / "run.json").write_text(json.dumps({"dataset": {"name": "world", "options": {"preset": "tiny"}}}))
    settings = read_run_settings(tmp_path)
    agent = AgentLauncher(plugin_manager, settings).build_agent()
    assert (agent.ground_arguments, agent.grounded_tools) == (True, ("lookup",))
    agent = AgentLauncher(plugin_manager, settings, ground_arguments=False).build_agent()
    assert (agent.ground_arguments, agent.grounded_tools) == (False, ())
