"""The agent loop as a firewall: whatever a model writes or a tool returns
becomes an observation, and ``meta-agent run`` never prints a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meta_spider.agentcore import MetaAgent, ToolStep
from meta_spider.agentcore.errors import AgentStepError
from meta_spider.agentcore.steps import FinalStep, ObservationKind
from meta_spider.backends import FakeBackend
from meta_spider.policies import DefaultRenderer, DirectPolicy
from meta_spider.tools import Tool, ToolRegistry
from meta_spider.tools.limits import MAX_NESTING, observation_text


def deep_list(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def call(name: str, arguments: object) -> str:
    # json.dumps recurses per level; the deep lists here are written by hand.
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    __repr__ = __str__


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you either")


def deep_result() -> list:
    """Return a 5,000-deep list."""
    return deep_list(5000)


def unprintable_result() -> object:
    """Return an object whose str() raises."""
    return Unprintable()


def unprintable_error() -> str:
    """Raise an exception whose str() raises."""
    raise UnprintableError()


def huge_result() -> str:
    """Return a megabyte of text."""
    return "x" * 1_000_000


def slow_result() -> str:
    """Take far longer than the time limit."""
    time.sleep(30)
    return "too late"


TOOLS = [deep_result, unprintable_result, unprintable_error, huge_result, slow_result]
ECHO = Tool("echo", "Echo a list back.", {"type": "object", "properties": {"value": {"type": "array"}}},
            lambda value: "echoed")


def run_agent(outputs: list[str], **limits: float) -> list:
    registry = ToolRegistry([Tool.from_function(function) for function in TOOLS] + [ECHO])
    agent = MetaAgent(FakeBackend(outputs), DirectPolicy(), DefaultRenderer(), registry, max_steps=4, **limits)
    return list(agent.run("Go."))


@pytest.mark.parametrize(
    "tool, expected_kind, expected_text",
    [
        ("deep_result", ObservationKind.RESULT, f"nested deeper than {MAX_NESTING} levels"),
        ("unprintable_result", ObservationKind.RESULT, "Unprintable whose text cannot be shown"),
        ("unprintable_error", ObservationKind.TOOL_RAISED, "UnprintableError whose text cannot be shown"),
        ("huge_result", ObservationKind.RESULT, "tool result truncated: showing 8,000 of 1,000,000 characters"),
    ],
)
def test_a_hostile_tool_result_becomes_an_observation(tool: str, expected_kind, expected_text: str) -> None:
    steps = run_agent([call(tool, "{}"), "Done."])
    [tool_step] = [step for step in steps if isinstance(step, ToolStep)]
    assert tool_step.kind is expected_kind
    assert expected_text in tool_step.observation
    assert len(tool_step.observation) < 9000
    final = steps[-1]
    assert isinstance(final, FinalStep) and final.text == "Done."


def test_a_tool_past_its_time_limit_is_abandoned() -> None:
    started = time.perf_counter()
    steps = run_agent([call("slow_result", "{}"), "Done."], tool_time_limit=0.3)
    assert time.perf_counter() - started < 20  # the tool itself sleeps 30 s
    [tool_step] = [step for step in steps if isinstance(step, ToolStep)]
    assert tool_step.kind is ObservationKind.TOOL_RAISED
    assert "did not finish within 0.3 s" in tool_step.observation
    assert steps[-1].text == "Done."


def test_a_600_deep_argument_is_an_unreadable_call_and_the_next_prompt_renders() -> None:
    deep = json.dumps(deep_list(1)).replace("[[]]", "[" * 600 + "]" * 600)
    steps = run_agent([call("echo", '{"value": ' + deep + "}"), "Done."])
    [tool_step] = [step for step in steps if isinstance(step, ToolStep)]
    assert tool_step.kind is ObservationKind.UNPARSEABLE
    assert f"nest deeper than {MAX_NESTING} levels" in tool_step.observation
    assert steps[-1].text == "Done."


def test_a_policy_failing_unexpectedly_is_a_typed_error_naming_the_step() -> None:
    class Broken(DirectPolicy):
        def decide(self, session, backend, tools):  # noqa: ANN001 - the Policy protocol
            raise KeyError("a bug")

    agent = MetaAgent(FakeBackend(["x"]), Broken(), DefaultRenderer(), ToolRegistry())
    with pytest.raises(AgentStepError) as info:
        agent.ask("?")
    assert info.value.step == 1 and "KeyError" in str(info.value)


def test_observation_text_never_recurses() -> None:
    assert "nested deeper" in observation_text({"a": deep_list(100_000)})
    assert observation_text([1, {"b": 2}]) == '[1, {"b": 2}]'


def run_cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "meta-agent"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize(
    "output",
    [
        call("lookup", '{"query": ' + "[" * 600 + "]" * 600 + "}"),
        call("calculator", '{"expression": "round(1, -10**8)"}'),
        call("lookup", '{"query": "' + "\\ud800" * 10 + '"}'),
        "<tool_call>\n" + "{" * 100_000,
    ],
    ids=["deep-argument", "calculator-hang", "lone-surrogate", "unclosed-braces"],
)
def test_meta_agent_run_survives_hostile_model_output(tmp_path: Path, output: str) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"outputs": [output, "Done."], "facts": {"x": "y"}}), encoding="utf-8")
    result = run_cli(["run", "--script", str(script), "What?"], tmp_path)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 0, result.stderr
    assert "Done." in result.stdout
