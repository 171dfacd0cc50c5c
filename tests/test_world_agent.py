"""The whole pipeline on the tiny world: build (cached), collect, train and
evaluate through the real commands, then ``meta-agent run`` with the
``doubter`` policy answers a question the base knows without a tool call and
one it does not know through a lookup in the world's knowledge base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from meta_spider.agentcore.cli import CliState
from meta_spider.backends.transformers import TransformersBackend
from meta_spider.policies.actions import ToolInvocation
from test_cli_run_doubter import agent_run


def _world_plugin():  # type: ignore[no-untyped-def]
    """Registers the embedded world's dataset (for a plugin set that lacks it)."""
    import types

    from meta_spider.loom.world.dataset import register_world_dataset
    from meta_spider.plugins import hookimpl

    module = types.ModuleType("world_dataset_test_plugin")

    @hookimpl
    def register_datasets(register):  # type: ignore[no-untyped-def]
        register_world_dataset(register)

    module.register_datasets = register_datasets  # type: ignore[attr-defined]
    return module


@pytest.mark.world
@pytest.mark.slow
def test_tiny_world_answers_what_the_base_knows_and_looks_up_what_it_does_not(tiny_world, tmp_path: Path) -> None:
    """Acceptance: on the tiny world with a trained and calibrated Doubter,
    ``meta-agent run`` answers a question the base knows without a tool
    call, and one it does not know through a lookup."""
    from meta_spider.loom.cli.collect import collect
    from meta_spider.loom.cli.eval import eval_command
    from meta_spider.loom.cli.train import train
    from meta_spider.loom.datasets import dataset_registry
    from meta_spider.loom.world import check_answer
    from meta_spider.plugins import make_plugin_manager

    world = tiny_world
    pm = make_plugin_manager(load_entrypoints=False)
    if "world" not in dataset_registry(pm):
        pm.register(_world_plugin(), name="world-dataset-test")
    run = tmp_path / "run"
    runner = CliRunner()

    def invoke(command, *args: str) -> None:  # type: ignore[no-untyped-def]
        result = runner.invoke(command, [*args], obj=CliState(pm), catch_exceptions=False)
        assert result.exit_code == 0, result.output

    invoke(collect, "--run-dir", str(run), "--model-name", str(world.model_dir), "--dataset", "world",
           "--dataset-option", "preset=tiny", "--dataset-option", "seed=0", "--dtype", "float32",
           "--batch-size", "16", "--quiet")
    invoke(train, "--run-dir", str(run), "--epochs", "4", "--answer-loss-weight", "2")
    invoke(eval_command, "--run-dir", str(run), "--no-plot", "--quiet", "--max-examples", "40")
    manifest = json.loads((run / "run.json").read_text())
    threshold = manifest["calibration"]["doubter"]["threshold"]
    assert threshold is not None, "the calibration found no threshold meeting its target"
    # No facts file: the agent's lookup answers from the run's own dataset (the world).

    # Pick, by the Doubter's own read, a test question the base gets right
    # with P(correct) above the threshold and one it gets wrong below it.
    examples = [json.loads(line) for line in (run / "activations" / "examples.jsonl").read_text().splitlines()]
    backend = TransformersBackend.from_settings(manifest["model"]["name"], checkpoint=run / manifest["checkpoint"],
                                                target_layers=manifest["layers"]["target_layers"], dtype="float32")
    scored = [(backend.read(example["prompt_text"]).p_correct, example) for example in examples
              if example["split"] == "test"][:80]
    known = [(p, e) for p, e in scored if e["pass1_correct"] and p >= threshold]
    unknown = [(p, e) for p, e in scored if not e["pass1_correct"] and p < threshold]
    assert known and unknown, f"threshold {threshold}: {len(known)} known and {len(unknown)} unknown questions"

    def ask(question: str) -> dict:  # type: ignore[type-arg]
        result = agent_run(pm, "--run-dir", str(run), "--policy", "doubter", "--tools", "lookup", "--json", question)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    # Pass 2 of the tiny Doubter sometimes refuses a question the base knows (the agent then looks it up), so
    # the three it is surest of are tried in turn: one must be answered at once, with no tool.
    for _p, known_example in sorted(known, key=lambda x: -x[0])[:3]:
        answered = ask(known_example["question"])
        if [step["type"] for step in answered["steps"]] == ["model", "final"]:
            break
    assert [step["type"] for step in answered["steps"]] == ["model", "final"], answered
    assert answered["outcome"] == "answer" and check_answer(answered["text"], known_example["ground_truths"])
    # The tiny base copies the name into its call in most cases but reads the
    # lookup's answer back right only about a third of the time (small: 0.73),
    # so the unknown questions are tried in the Doubter's order: every one
    # must go through a lookup, and one of the first five must end with the
    # right answer.
    right = []
    for _p, example in sorted(unknown, key=lambda x: x[0])[:5]:
        looked_up = ask(example["question"])
        steps = looked_up["steps"]
        assert [step["type"] for step in steps[:2]] == ["model", "tool"], looked_up
        assert steps[1]["call"]["name"] == "lookup", looked_up
        right.append(looked_up["outcome"] == "answer" and check_answer(looked_up["text"], example["ground_truths"]))
        if right[-1]:
            break
    assert any(right), f"none of {len(right)} looked-up answers was right"

    # One chat, two questions: the world's base was trained on one question per chat, so the agent shows it only
    # the current one, and the question it knows is answered right after another one's lookup, as when asked alone.
    from meta_spider.agentcore import Session
    from meta_spider.agentcore.launch import AgentLauncher
    from meta_spider.agentcore.rundir import read_run_settings

    agent = AgentLauncher(pm, read_run_settings(run), tool_names=["lookup"]).build_agent(policy="doubter")
    assert agent.context == "question"  # the launcher read the run's dataset
    session = Session()
    first = sorted(unknown, key=lambda x: x[0])[0][1]
    for question in (first["question"], known_example["question"]):
        session.add_user(question)
        final = agent.ask(session)
    assert final.outcome == "answer" and check_answer(final.text, known_example["ground_truths"])
    assert final.text == answered["text"]
    assert sum(message["role"] == "user" for message in session.messages) == 2


@pytest.mark.world
def test_the_small_worlds_agent_answers_17_times_23_with_the_calculators_result(plugin_manager, tmp_path: Path) -> None:
    """The shipped ``small`` base calls the calculator for "What is 17*23?"
    but restates its 391 as "The answer is 3911." (benchmarks/
    calculator_readback.py): a run on the world gives the calculator's result
    as the answer, and without that the base's own restatement is what
    comes back. The policy trusts every draft, as the Doubter trusts this
    one: the base's refusal draft then becomes a tool call."""
    import dataclasses

    from meta_spider.agentcore import build_agent
    from meta_spider.agentcore.launch import AgentLauncher
    from meta_spider.agentcore.rundir import read_run_settings
    from meta_spider.loom.world.cache import cache_key
    from meta_spider.loom.world.presets import get_preset
    from meta_spider.loom.world.shipped import ShippedBase
    from meta_spider.policies import DirectPolicy

    class TrustEveryDraft(DirectPolicy):
        def decide(self, session, backend, tools):  # type: ignore[no-untyped-def]
            return dataclasses.replace(super().decide(session, backend, tools), confident=True)

    (tmp_path / "run.json").write_text(json.dumps({"dataset": {"name": "world", "options": {"preset": "small"}}}))
    launcher = AgentLauncher(plugin_manager, read_run_settings(tmp_path))
    assert launcher.direct_tools == ("calculator",) and launcher.tools.names() == ("calculator", "lookup")
    backend = TransformersBackend.from_settings(str(ShippedBase.find(cache_key(get_preset("small"), 0)).path),
                                                dtype="float32")

    def ask(direct_tools: tuple[str, ...], question: str = "What is 17*23?", ground: bool = False,  # type: ignore[no-untyped-def]
            grounded_tools: tuple[str, ...] = ()):
        agent = build_agent(plugin_manager, backend=backend, policy=TrustEveryDraft(), tools=launcher.tools,
                            context=launcher.context, direct_tools=direct_tools, ground_arguments=ground,
                            grounded_tools=grounded_tools)
        return list(agent.run(question))

    steps = ask(launcher.direct_tools)
    calls = [step for step in steps if getattr(step, "call", None) is not None]
    assert [(step.call.name, step.call.arguments, step.observation) for step in calls] == [
        ("calculator", {"expression": "17*23"}, "391")]
    assert steps[-1].outcome == "answer" and steps[-1].text == "391" and steps[-1].action.source == "tool"
    restated = ask(())[-1]
    assert restated.text == "The answer is 3911." and restated.action.source == "model"
    # Spaced, the base miscopies the question's 23 into its call; grounded (a world run's default), it runs 17 * 23.
    assert launcher.ground_arguments is True
    miscopied = [step for step in ask(launcher.direct_tools, "What is 17 * 23?") if getattr(step, "call", None)]
    assert [(step.call.arguments, step.observation) for step in miscopied] == [({"expression": "17 * 22"}, "374")]
    steps = ask(launcher.direct_tools, "What is 17 * 23?", ground=True)
    grounded = [step for step in steps if getattr(step, "call", None)]
    assert [(step.call.arguments, step.written, step.observation) for step in grounded] == [
        ({"expression": "17 * 23"}, {"expression": "17 * 22"}, "391")]
    assert steps[-1].text == "391"
    # In words of one's own it miscopies a number no run of words holds ("12 plus 30" is no expression):
    # grounding puts the question's number back. Asked about a person without a question mark it calculates
    # numbers it made up: a world run's calculator takes only the question's numbers.
    plus = [step for step in ask(launcher.direct_tools, "What's 12 plus 30?") if getattr(step, "call", None)]
    assert [(step.call.arguments, step.observation) for step in plus] == [({"expression": "14 + 30"}, "44")]
    steps = ask(launcher.direct_tools, "What's 12 plus 30?", ground=True)
    assert steps[-1].text == "42" and steps[-1].action.source == "tool"
    assert launcher.grounded_tools == ("lookup", "calculator")
    steps = ask(launcher.direct_tools, "what year was shamor shuson born", ground=True,
                grounded_tools=launcher.grounded_tools)
    # The question gives no number and names no operation: the made-up calculation ("30 - 34") is a search of it.
    made_up = [step for step in steps if getattr(step, "call", None) and "expression" in (step.written or {})]
    assert made_up and all(step.call == ToolInvocation("lookup", {"query": "what year was shamor shuson born"},
                                                       step.call.call_id, step.call.raw) for step in made_up)
    assert made_up[0].ok and made_up[0].observation.startswith("Shamor Shuson: born 1914")
    assert not any(getattr(step, "call", None) and step.call.name == "calculator" for step in steps)
    assert "-4" not in [step.text for step in steps if hasattr(step, "text")]
    # Asked in lower case it writes a name it made up into its lookup; a lookup is of what the question names,
    # so the question itself is searched, and the world's lookup finds the name among its words.
    steps = ask(launcher.direct_tools, "where was shamor shuson born", ground=True,
                grounded_tools=launcher.grounded_tools)
    lookups = [step for step in steps if getattr(step, "call", None) and step.call.name == "lookup"]
    assert lookups and lookups[0].written is not None and lookups[0].written != lookups[0].call.arguments
    assert lookups[0].call.arguments == {"query": "where was shamor shuson born"}
    assert lookups[0].ok and lookups[0].observation.startswith("Shamor Shuson: born 1914")
