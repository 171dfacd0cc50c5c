"""One agent construction path: a run's calibration reaches the ``doubter``
policy the same way in the quickstart's ``build_agent``, ``meta-agent run``,
``meta-agent chat``, the server, ``AgentComparison`` and ``run_agentic_eval``
(what ``metaloom eval --agentic`` runs).

The run's calibration puts the threshold at 0.37 (as ``metaloom eval``
writes it); the scripted pass 1 reads P(correct) 0.4, so the calibrated
policy answers where the uncalibrated default (0.5) would refuse. A spy on
``MetaAgent`` and ``DoubterPolicy`` records whether each one was made inside
``factory.build_agent`` / ``factory.build_policy``: a path that builds either
itself fails here. The policy-factory contract of ``register_policies``
(``host_keywords``) is checked at the end.
"""

from __future__ import annotations

import inspect
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import httpx
import pytest
from click.testing import CliRunner
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from meta_spider.agentcore import MetaAgent, build_agent, factory
from meta_spider.agentcore.cli import CliState, build_cli
from meta_spider.agentcore.launch import AgentLauncher
from meta_spider.agentcore.rundir import read_run_settings
from meta_spider.agentcore.script import parse_script
from meta_spider.backends import FakeBackend, StopBackend
from meta_spider.backends.base import Introspection
from meta_spider.loom.evaluate.agentic import AgentComparison, AgentTask, run_agentic_eval
from meta_spider.plugins import hookimpl
from meta_spider.policies.doubter import DoubterPolicy

QUESTION = "Capital of Veloria?"
THRESHOLD = 0.37
CALIBRATED = {"value": THRESHOLD, "source": "calibration:doubter"}
READ = 0.4  # above the calibrated threshold, below the uncalibrated default 0.5


@dataclass
class Built:
    """What the spy saw: one ``(object, made in the factory?)`` pair per agent and per Doubter policy."""

    agents: list[tuple[MetaAgent, bool]] = field(default_factory=list)
    policies: list[tuple[DoubterPolicy, bool]] = field(default_factory=list)

    def check(self) -> None:
        assert self.agents and self.policies, "the path built no agent or no doubter policy"
        assert all(inside for _agent, inside in self.agents), "an agent was built outside factory.build_agent"
        assert all(inside for _policy, inside in self.policies), "a policy was built outside factory.build_policy"
        assert all(gate_of(policy) == CALIBRATED for policy, _inside in self.policies)


def gate_of(policy: Any) -> dict[str, Any]:
    return {"value": policy.gate.value, "source": policy.gate.source}


def _inside(function: Any) -> bool:
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code is function.__code__:
            return True
        frame = frame.f_back
    return False


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Iterator[Built]:
    seen = Built()
    agent_init, policy_init = MetaAgent.__post_init__, DoubterPolicy.__post_init__

    def spy_agent(self: MetaAgent) -> None:
        seen.agents.append((self, _inside(factory.build_agent)))
        agent_init(self)

    def spy_policy(self: DoubterPolicy) -> None:
        policy_init(self)
        seen.policies.append((self, _inside(factory.build_policy)))

    monkeypatch.setattr(MetaAgent, "__post_init__", spy_agent)
    monkeypatch.setattr(DoubterPolicy, "__post_init__", spy_policy)
    yield seen


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A run directory whose run.json carries the calibration ``metaloom eval`` writes, and a one-question test split."""
    (tmp_path / "test.jsonl").write_text(json.dumps({"id": "v1", "question": QUESTION, "answer": "Amberhold"}) + "\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({
        "format_version": 1, "model": {"name": "scripted"},
        "dataset": {"name": "jsonl", "options": {"test": str(tmp_path / "test.jsonl")}},
        "calibration": {"doubter": {"threshold": THRESHOLD, "score": "p_correct", "split": "validation"}},
    }))
    return run_dir


SCRIPT = {"outputs": [{"p_correct": READ}, "Amberhold."]}


def scripted_launcher(pm: Any, run: Path) -> AgentLauncher:
    return AgentLauncher(pm, read_run_settings(run), parse_script(SCRIPT))


def test_quickstart_build_agent(plugin_manager, run: Path, built: Built) -> None:
    backend = FakeBackend([Introspection(p_correct=READ), "Amberhold."])
    agent = build_agent(plugin_manager, backend=backend, policy="doubter",
                        calibration=read_run_settings(run).calibration)
    final = agent.ask(QUESTION)
    assert (final.outcome, final.text) == ("answer", "Amberhold.")
    assert isinstance(agent.backend, StopBackend) and agent.backend.inner is backend
    built.check()


def test_meta_agent_run(plugin_manager, run: Path, tmp_path: Path, built: Built) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    result = CliRunner().invoke(build_cli(plugin_manager), [
        "agent", "run", "--run-dir", str(run), "--backend", "fake", "--policy", "doubter", "--script", str(script),
        "--json", QUESTION], obj=CliState(plugin_manager))
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert (record["outcome"], record["text"]) == ("answer", "Amberhold.")
    metadata = record["steps"][0]["decision"]["metadata"]
    assert {"value": metadata["threshold"], "source": metadata["threshold_source"]} == CALIBRATED
    built.check()


def test_meta_agent_chat(plugin_manager, run: Path, tmp_path: Path, built: Built) -> None:
    from meta_spider.agentcore.chat import ChatLoop

    with create_pipe_input() as pipe:
        pipe.send_text(f"{QUESTION}\r/exit\r")
        chat = ChatLoop(scripted_launcher(plugin_manager, run), policy="doubter", backend="fake",
                        console=Console(file=io.StringIO()), input=pipe, output=DummyOutput(),
                        history=tmp_path / "history")
        assert chat.run() == 0
    assert [(turn.outcome, turn.text) for turn in chat.turns] == [("answer", "Amberhold.")]
    built.check()


def test_the_server(plugin_manager, run: Path, built: Built) -> None:
    from meta_spider.agentcore.serve import AgentPool, create_app, running_server

    pool = AgentPool.build(lambda: scripted_launcher(plugin_manager, run), model_id="scripted", policy="doubter",
                           backend="fake")
    with running_server(create_app(pool)) as url:
        reply = httpx.post(f"{url}/v1/chat/completions", timeout=60,
                           json={"model": "scripted", "messages": [{"role": "user", "content": QUESTION}]}).json()
    assert reply["choices"][0]["message"]["content"] == "Amberhold."
    meta = reply["meta_spider"]
    assert (meta["decision"], {"value": meta["threshold"], "source": meta["threshold_source"]}) == (
        "answer", CALIBRATED)
    assert len(built.agents) == 2  # the worker's agent, and the request's view of it
    built.check()


def test_agent_comparison(plugin_manager, run: Path, built: Built) -> None:
    comparison = AgentComparison(FakeBackend([Introspection(p_correct=READ), "Amberhold."]), policies=["doubter"],
                                 calibration=read_run_settings(run).calibration, plugin_manager=plugin_manager)
    report = comparison.run([AgentTask(QUESTION, "Amberhold")])
    assert report.metrics("doubter")["pass_rate"] == 1.0
    assert report.settings["thresholds"]["doubter"] == CALIBRATED
    built.check()


def test_run_agentic_eval(plugin_manager, run: Path, built: Built) -> None:
    backend = FakeBackend(["Paris.", Introspection(p_correct=READ), "Amberhold."])  # direct, then doubter
    report = run_agentic_eval(run, backend=backend, plugin_manager=plugin_manager)
    assert [result.correct for result in report.results["doubter"]] == [True]
    assert report.settings["thresholds"]["doubter"] == CALIBRATED
    built.check()


def test_run_agentic_eval_renders_with_the_runs_renderer(plugin_manager, run: Path) -> None:
    document = json.loads((run / "run.json").read_text())
    document["renderer"] = {"name": "default", "settings": {"refusal": "Not in my records."}}
    (run / "run.json").write_text(json.dumps(document))
    backend = FakeBackend(["Paris.", Introspection(p_correct=0.1), "Amberhold."])  # the doubter is unsure: refuses
    report = run_agentic_eval(run, backend=backend, plugin_manager=plugin_manager)
    assert [result.text for result in report.results["doubter"]] == ["Not in my records."]


# ---- the policy-factory contract -----------------------------------------------------------------


@dataclass
class Recorder:
    """A policy that keeps the keywords it was built with."""

    calibration: Any = "not passed"
    note: str = ""

    def decide(self, session: Any, backend: Any, tools: Any) -> Any:
        raise AssertionError("not run here")


class Declares(Recorder):
    host_keywords = ("calibration",)


class DeclaresUnknown(Recorder):
    host_keywords = ("calibration", "budget")


def plugin_with(**factories: Any) -> ModuleType:
    module = ModuleType("contract_test_plugin")

    @hookimpl
    def register_policies(register):  # type: ignore[no-untyped-def]
        for name, policy_factory in factories.items():
            register(name, policy_factory)

    module.register_policies = register_policies  # type: ignore[attr-defined]
    return module


def test_calibration_goes_only_to_factories_that_declare_it(plugin_manager) -> None:
    plugin_manager.register(plugin_with(plain=Recorder, declares=Declares, unknown=DeclaresUnknown,
                                        refuses=lambda: Recorder()), name="contract-test")
    calibration = {"doubter": {"threshold": THRESHOLD}}
    assert factory.build_policy(plugin_manager, "plain", {"note": "x"}, calibration=calibration) == Recorder(
        "not passed", "x")
    assert factory.build_policy(plugin_manager, "declares", calibration=calibration).calibration == calibration
    assert factory.build_policy(plugin_manager, "declares").calibration is None  # a run without one
    explicit = {"doubter": {"threshold": 0.9}}  # a setting of the same name wins
    assert factory.build_policy(plugin_manager, "declares", {"calibration": explicit},
                                calibration=calibration).calibration == explicit
    with pytest.raises(factory.PolicyContractError, match=r"policy 'unknown' declares host_keywords=.*'budget'"):
        factory.build_policy(plugin_manager, "unknown", calibration=calibration)
    with pytest.raises(factory.ComponentSettingsError, match="cannot build policy 'refuses'.*keys: note"):
        factory.build_policy(plugin_manager, "refuses", {"note": "x"})


def test_objects_are_used_as_given_and_the_backend_is_wrapped_once(plugin_manager) -> None:
    from meta_spider.policies import DefaultRenderer, DirectPolicy
    from meta_spider.tools import DictKnowledgeBase, ToolRegistry

    policy, renderer, tools = DirectPolicy(), DefaultRenderer(), ToolRegistry()
    agent = build_agent(None, backend=FakeBackend(["4."]), policy=policy, renderer=renderer, tools=tools)
    assert (agent.policy, agent.renderer, agent.tools) == (policy, renderer, tools)
    again = build_agent(None, backend=agent.backend, policy=policy, renderer=renderer, tools=tools)
    assert again.backend is agent.backend  # already stops at the turn's end: not wrapped twice
    assert again.ask("2+2?").text == "4."
    with pytest.raises(ValueError, match="give tools or a knowledge_base"):
        build_agent(plugin_manager, backend=FakeBackend(), tools=tools, knowledge_base=DictKnowledgeBase({}))
