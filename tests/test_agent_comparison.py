"""AgentComparison on a scripted fixture whose numbers are worked out by
hand, its report (summary table, JSON), and run_agentic_eval on a run
directory with a JSONL dataset and a small knowledge base."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from meta_spider.backends import FakeBackend
from meta_spider.backends.base import Introspection
from meta_spider.loom.evaluate.agentic import AgentComparison, AgentTask, run_agentic_eval
from meta_spider.loom.datasets import QAExample, SplitDataset
from meta_spider.tools import DictKnowledgeBase, ToolRegistry, make_lookup_tool

FACTS = {
    "capital of Veloria": "The capital of Veloria is Amberhold.",
    "founder of Amberhold": "Queen Mira founded Amberhold.",
}


def call(query: str) -> str:
    return f'<tool_call>\n{json.dumps({"name": "lookup", "arguments": {"query": query}})}\n</tool_call>'


def completion_of(query: str) -> str:
    """What the model writes after the prefilled ``<tool_call>\\n``."""
    return call(query).removeprefix("<tool_call>\n")


def read(p_correct: float) -> Introspection:
    return Introspection(p_correct=p_correct, cognitive_tokens=[[0.0] * 4])


LOOKUP = make_lookup_tool(DictKnowledgeBase(FACTS, name="veloria"))
TASKS = [
    AgentTask("Capital of France?", "Paris", tools=(LOOKUP,), id="t1"),
    AgentTask("Capital of Veloria?", "Amberhold", tools=(LOOKUP,), id="t2"),
    AgentTask("How many moons has Zog?", "Three", aliases=("3",), tools=(LOOKUP,), id="t3"),
    AgentTask("Largest ocean?", "Pacific", aliases=("the Pacific",), tools=(LOOKUP,), id="t4"),
    AgentTask("Who founded Amberhold?", "Queen Mira", tools=(LOOKUP,), id="t5"),
]
# Task by task (direct | doubter, threshold 0.5 from the calibration):
#   t1  "Paris." right, 1 step           | p 0.9 -> "Paris." right, 1 step
#   t2  "Paris." wrong                   | p 0.1 -> lookup -> "Amberhold." right, 1 call, 2 steps  (rescued)
#   t3  "Two." wrong                     | p 0.2 -> lookup (miss) -> refusal, nothing generated, 1 call, 2 steps
#   t4  "The Pacific." right             | p 0.3 -> lookup (miss) -> refusal, nothing generated, 1 call, 2 steps
#                                                                                                          (broke)
#   t5  native call -> "Queen Mira." right, 1 call, 2 steps | p 0.9 -> "King Bo." wrong, 1 step  (broke)
DIRECT_SCRIPT = ["Paris.", "Paris.", "Two.", "The Pacific.", call("founder of Amberhold"), "Queen Mira."]
DOUBTER_SCRIPT = [
    read(0.9), "Paris.",
    read(0.1), "I don't know.", completion_of("capital of Veloria"), "Amberhold.",
    read(0.2), "Maybe two.", completion_of("moons of Zog"),
    read(0.3), "The Pacific.", completion_of("largest ocean"),
    read(0.9), "King Bo.",
]


def test_comparison_numbers_match_the_hand_count() -> None:
    backend = FakeBackend([*DIRECT_SCRIPT, *DOUBTER_SCRIPT])
    comparison = AgentComparison(backend, policies=("direct", "doubter"),
                                 calibration={"doubter": {"threshold": 0.5}})
    report = comparison.run(TASKS)
    assert backend.pending == 0 and report.policies == ("direct", "doubter")
    direct, doubter = report.metrics("direct"), report.metrics("doubter")
    assert direct == {"n": 5, "correct": 3, "pass_rate": 0.6, "refusals": 0, "refusal_rate": 0.0, "tool_calls": 1,
                      "tool_calls_per_task": 0.2, "tasks_with_tool_calls": 1, "steps_per_task": 1.2, "max_steps": 0}
    assert doubter["correct"] == 2 and doubter["pass_rate"] == 0.4
    assert (doubter["rescued"], doubter["broke"]) == (1, 2)
    assert (doubter["rescued_rate"], doubter["broke_rate"]) == (0.2, 0.4)
    assert (doubter["refusals"], doubter["tool_calls"], doubter["tool_calls_per_task"]) == (2, 3, 0.6)
    assert doubter["steps_per_task"] == 1.6 and doubter["pass_rate_gain_points"] == pytest.approx(-20.0)
    assert report.base_error_rate == pytest.approx(0.4)
    # Per task: who answered what, and the first decision's P(correct).
    by_task = {result.task_id: result for result in report.results["doubter"]}
    assert (by_task["t2"].outcome, by_task["t2"].text, by_task["t2"].correct) == ("answer", "Amberhold.", True)
    assert by_task["t3"].outcome == by_task["t4"].outcome == "refuse" and by_task["t4"].text == "I don't know."
    assert [r.p_correct for r in report.results["doubter"]] == [0.9, 0.1, 0.2, 0.3, 0.9]
    assert report.results["direct"][0].p_correct is None
    assert report.settings["thresholds"]["doubter"] == {"value": 0.5, "source": "calibration:doubter"}


def test_report_json_and_summary() -> None:
    report = AgentComparison(FakeBackend([*DIRECT_SCRIPT, *DOUBTER_SCRIPT]),
                             policy_settings={"doubter": {"threshold": 0.5}}).run(TASKS)
    record = json.loads(report.to_json())
    assert record["baseline"] == "direct" and record["num_tasks"] == 5
    assert record["policies"]["doubter"]["rescued"] == 1 and record["tasks"][1]["tools"] == ["lookup"]
    steps = record["tasks"][1]["results"]["doubter"]["steps"]
    assert [step["type"] for step in steps] == ["model", "tool", "model", "final"]
    assert steps[1]["observation"] == FACTS["capital of Veloria"]
    compact = json.loads(report.to_json(with_steps=False))
    assert "steps" not in compact["tasks"][0]["results"]["direct"]
    console = Console(file=io.StringIO(), width=140, color_system=None)
    console.print(report.summary())
    text = console.file.getvalue()
    assert "5 tasks, baseline direct" in text and "baseline error rate 40.0%" in text
    doubter_row = next(line for line in text.splitlines() if line.strip("│ ").startswith("doubter"))
    for cell in ("40.0%", "1 (20.0%)", "2 (40.0%)", "0.60", "1.60"):
        assert cell in doubter_row


def test_policy_objects_and_bad_arguments() -> None:
    from meta_spider.policies import DirectPolicy

    report = AgentComparison(FakeBackend(["Paris."]), policies=[("plain", DirectPolicy())]).run(TASKS[:1])
    assert report.metrics("plain")["pass_rate"] == 1.0 and "rescued" not in report.metrics("plain")
    # A closed-book baseline is not offered the tools: its prompt has none, so it answers.
    backend = FakeBackend(["Paris.", "Paris."])
    closed = AgentComparison(backend, policies=("direct",), closed_book=("direct",)).run(TASKS[:1])
    assert "<tools>" not in backend.history[0] and closed.settings["closed_book"] == ["direct"]
    AgentComparison(backend, policies=("direct",)).run(TASKS[:1])
    assert "<tools>" in backend.history[1]
    with pytest.raises(ValueError, match="closed_book must name policies of this comparison"):
        AgentComparison(FakeBackend(), policies=("direct",), closed_book=("doubter",))
    with pytest.raises(ValueError, match="policies must be a non-empty sequence"):
        AgentComparison(FakeBackend(), policies=())
    with pytest.raises(ValueError, match="doubter= needs a MetaSpiderPipeline"):
        AgentComparison(FakeBackend(), doubter="checkpoint")
    with pytest.raises(ValueError, match="listed twice"):
        AgentComparison(FakeBackend(), policies=("direct", "direct"))
    with pytest.raises(ValueError, match="AgentTask.expected_answer must be a non-empty string"):
        AgentTask("q", "")
    with pytest.raises(KeyError, match="no policy 'nosuch'"):
        report.metrics("nosuch")


def write_run_dir(tmp_path: Path, *, facts: bool) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.jsonl").write_text(
        '{"id": "v1", "question": "Capital of Veloria?", "answer": "Amberhold"}\n'
        '{"id": "f1", "question": "Capital of France?", "answer": "Paris"}\n'
    )
    run = tmp_path / "run"
    run.mkdir()
    manifest = {"format_version": 1, "model": {"name": "scripted"},
                "dataset": {"name": "jsonl", "options": {"test": str(data / "test.jsonl")}},
                "calibration": {"doubter": {"threshold": 0.6}}}
    if facts:
        (run / "facts.json").write_text(json.dumps(FACTS))
        manifest["knowledge_base"] = {"facts_path": "facts.json"}
    (run / "run.json").write_text(json.dumps(manifest))
    return run


def test_run_agentic_eval_builds_tasks_from_the_run(plugin_manager, tmp_path: Path) -> None:
    run = write_run_dir(tmp_path, facts=True)
    backend = FakeBackend([
        "Paris.", "Paris.",  # direct: v1 wrong, f1 right
        read(0.4), "I don't know.", completion_of("capital of Veloria"), "Amberhold.",  # 0.4 < 0.6: lookup
        read(0.7), "Paris.",
    ])
    console = Console(file=io.StringIO(), width=140, color_system=None)
    report = run_agentic_eval(run, console, backend=backend, plugin_manager=plugin_manager,
                              output=run / "agentic_report.json")
    assert backend.pending == 0
    assert report.metrics("direct")["pass_rate"] == 0.5 and report.metrics("doubter")["pass_rate"] == 1.0
    assert report.metrics("doubter")["rescued"] == 1 and report.metrics("doubter")["tool_calls"] == 1
    assert report.settings["thresholds"]["doubter"]["source"] == "calibration:doubter"
    assert (report.settings["dataset"], report.settings["split"], report.settings["knowledge_base"]) == (
        "jsonl", "test", "facts")
    shown = console.file.getvalue()
    assert "agentic comparison: 2 tasks" in shown
    assert "agent, direct on test" in shown and "agent, doubter on test" in shown and "2/2" in shown  # progress
    assert json.loads((run / "agentic_report.json").read_text())["policies"]["doubter"]["rescued"] == 1


class FactsDataset(SplitDataset):
    """A dataset that brings its own knowledge base (as the embedded world does)."""

    def __init__(self) -> None:
        super().__init__("facts", {"test": [QAExample("v1", "Capital of Veloria?", "Amberhold")]})

    def knowledge_base(self) -> DictKnowledgeBase:
        return DictKnowledgeBase(FACTS, name="dataset-facts")


def test_run_agentic_eval_takes_the_datasets_knowledge_base(plugin_manager, tmp_path: Path) -> None:
    run = write_run_dir(tmp_path, facts=False)
    backend = FakeBackend(["Paris.", read(0.1), "?", completion_of("capital of Veloria"), "Amberhold."])
    report = run_agentic_eval(run, backend=backend, dataset=FactsDataset(), plugin_manager=plugin_manager)
    assert report.settings["knowledge_base"] == "dataset-facts"
    assert [r.text for r in report.results["doubter"]] == ["Amberhold."]
    # Without any knowledge base the tasks offer what `meta-agent run` offers there (every registered tool, the
    # lookup over no facts): the uncertain doubter refuses.
    bare = run_agentic_eval(run, backend=FakeBackend(["Paris.", "Paris.", read(0.1), "?", read(0.9), "Paris."]),
                            plugin_manager=plugin_manager)
    assert [r.outcome for r in bare.results["doubter"]] == ["refuse", "answer"]
    offered = tuple(tool.name for tool in bare.tasks[0].tools)
    assert offered == ToolRegistry.from_plugins(plugin_manager).names() and "calculator" in offered
    assert bare.metrics("doubter")["tool_calls"] == 0


@pytest.mark.parametrize("direct, script, answer", [
    (("calculator",), [], "391"),  # the calculator's result is the answer, as `meta-agent` runs a world run
    ((), ["It is 391."], "It is 391."),  # else the model reads it and answers
    (("lookup",), ["It is 391."], "It is 391."),  # a direct tool the task does not offer is left out
])
def test_the_comparisons_direct_tools_end_a_run_with_their_result(plugin_manager, direct: tuple[str, ...],
                                                                  script: list[str], answer: str) -> None:
    calculator = ToolRegistry.from_plugins(plugin_manager)["calculator"]
    written = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "17*23"}}\n</tool_call>'
    backend = FakeBackend([written, *script])
    comparison = AgentComparison(backend, policies=("direct",), direct_tools=direct)
    result = comparison.run([AgentTask("What is 17*23?", "391", tools=(calculator,))]).results["direct"][0]
    assert backend.pending == 0 and (result.outcome, result.text, result.tool_calls) == ("answer", answer, 1)
    assert result.model_steps == (1 if answer == "391" else 2)


def test_the_comparisons_tool_names_must_be_a_sequence_of_names() -> None:
    for field_name in ("grounded_tools", "direct_tools"):
        with pytest.raises(ValueError, match=f"{field_name} must be a sequence of tool names, got 'calculator'"):
            AgentComparison(FakeBackend([]), policies=("direct",), **{field_name: "calculator"})
    names = AgentComparison(FakeBackend([]), policies=("direct",), direct_tools=iter(["calculator"]),
                            grounded_tools=(name for name in ["lookup"]))
    assert (names.direct_tools, names.grounded_tools) == (("calculator",), ("lookup",))  # an iterator, read once
