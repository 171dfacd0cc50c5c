"""``meta-agent run``: the trace, ``--json`` step records, run.json settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from meta_spider.agentcore.cli import CliState, build_cli
from meta_spider.agentcore.rundir import RunFileError, read_run_settings
from meta_spider.plugins import PLUGINS_ENV_VAR
from meta_spider.tools import NothingFound

CAPITAL_CALL = '<tool_call>\n{"name": "lookup", "arguments": {"query": "capital of Veloria"}}\n</tool_call>'
CAPITAL_FACT = "The capital of Veloria is Amberhold."


def write_script(tmp_path: Path, outputs: list) -> Path:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"outputs": outputs, "facts": {"capital of Veloria": CAPITAL_FACT}}))
    return script


def invoke(pm, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(build_cli(pm), ["agent", "run", *args], obj=CliState(pm), env={"COLUMNS": "160"})


def test_run_prints_the_trace_and_the_answer(plugin_manager, tmp_path: Path) -> None:
    script = write_script(tmp_path, [CAPITAL_CALL, CAPITAL_FACT])
    result = invoke(plugin_manager, "--script", str(script), "What is the capital of Veloria?")
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    # Streamed text, the decision, the call with arguments, its result, then the final answer panel.
    assert 'step 1 policy direct' in lines
    assert '-> tool call lookup({"query": "capital of Veloria"})' in lines
    assert 'tool [ok] lookup({"query": "capital of Veloria"})' in lines
    assert f"result  {CAPITAL_FACT}" in lines
    assert lines.index("step 2 policy direct") < lines.index("-> answer")
    assert any(line.startswith("╭─ answer") for line in lines)
    assert f"│ {CAPITAL_FACT}" in result.output


def test_run_json_prints_the_step_records(plugin_manager, tmp_path: Path) -> None:
    script = write_script(tmp_path, [CAPITAL_CALL, CAPITAL_FACT])
    result = invoke(plugin_manager, "--script", str(script), "--json", "What is the capital of Veloria?")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert (record["policy"], record["backend"], record["outcome"], record["text"]) == (
        "direct", "fake", "answer", CAPITAL_FACT)
    steps = record["steps"]
    assert [step["type"] for step in steps] == ["model", "tool", "model", "final"]
    assert steps[0]["action"] == {
        "type": "tool_call",
        "calls": [{"name": "lookup", "arguments": {"query": "capital of Veloria"}, "call_id": None}],
        "content": "",
        "failures": [],
    }
    assert steps[0]["decision"]["p_correct"] is None and steps[0]["decision"]["metadata"]["policy"] == "direct"
    assert steps[1] == {
        "type": "tool",
        "index": 1,
        "call": {"name": "lookup", "arguments": {"query": "capital of Veloria"}, "call_id": "call00001"},
        "observation": CAPITAL_FACT,
        "kind": "result",
        "ok": True,
        "error": None,
        "written": None,
        "written_tool": None,
        "choices": [],
    }
    assert steps[3] == {"type": "final", "outcome": "answer", "text": CAPITAL_FACT, "model_steps": 2,
                        "action": {"type": "answer", "text": CAPITAL_FACT, "source": "model"}}


def test_run_dir_supplies_policy_settings_and_backend(plugin_manager, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({
        "model": "ignored-by-the-agent",
        "backends": {"fake": {"stream_chunk": 2}, "transformers": {"model_name": "m", "checkpoint": "doubter"}},
        "policy": {"name": "echo-policy", "settings": {"prefix": "echo: "}},
    }))
    result = invoke(plugin_manager, "--run-dir", str(run_dir), "--json", "hello")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert (record["policy"], record["backend"], record["text"]) == ("echo-policy", "fake", "echo: hello")
    # --policy overrides run.json; run.json's settings belong to its own policy only.
    script = write_script(tmp_path, ["Plain answer."])
    override = json.loads(invoke(plugin_manager, "--run-dir", str(run_dir), "--script", str(script),
                                 "--policy", "direct", "--json", "hello").output)
    assert (override["policy"], override["text"]) == ("direct", "Plain answer.")
    settings = read_run_settings(run_dir)
    assert settings.default_backend == "fake"
    assert settings.backend_settings("transformers")["checkpoint"] == str(run_dir.resolve() / "doubter")


def test_bad_run_json_names_the_field(plugin_manager, tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"backends": ["transformers"]}))
    result = invoke(plugin_manager, "--run-dir", str(tmp_path), "question")
    assert result.exit_code == 1
    assert "field 'backends'" in result.output and "run.json" in result.output and "Traceback" not in result.output
    missing = invoke(plugin_manager, "--run-dir", str(tmp_path / "nowhere"), "question")
    assert missing.exit_code == 1 and "run directory does not exist" in missing.output
    (tmp_path / "run.json").write_text(json.dumps({"policy": {"settings": {}}}))
    try:
        read_run_settings(tmp_path)
    except RunFileError as exc:
        assert exc.field == "policy"
    else:
        raise AssertionError("a policy without a name was accepted")


def test_unknown_policy_and_exhausted_script_fail_cleanly(plugin_manager, tmp_path: Path) -> None:
    unknown = invoke(plugin_manager, "--policy", "nosuch", "question")
    assert unknown.exit_code == 1 and "no policy named 'nosuch'" in unknown.output
    assert "echo-policy" in unknown.output  # the choices include the third-party policy
    exhausted = invoke(plugin_manager, "--script", str(write_script(tmp_path, [])), "question")
    assert exhausted.exit_code == 1 and "no scripted output left" in exhausted.output
    for empty in ("", "   "):  # nothing asked: a usage error before any backend is built
        asked = invoke(plugin_manager, "--script", str(write_script(tmp_path, [CAPITAL_FACT])), empty)
        assert asked.exit_code == 2 and "the question is empty" in asked.output and "step 1" not in asked.output


def test_real_console_script_runs_a_question(tmp_path: Path) -> None:
    script = write_script(tmp_path, [CAPITAL_CALL, CAPITAL_FACT])
    env = {k: v for k, v in os.environ.items() if k != PLUGINS_ENV_VAR}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "meta-agent"), "run", "--script", str(script), "--json",
         "What is the capital of Veloria?"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["text"] == CAPITAL_FACT


def test_a_backend_missing_its_settings_says_which(plugin_manager, tmp_path: Path) -> None:
    import types

    from meta_spider.plugins import hookimpl

    def needs_model(model_name: str) -> object:
        raise AssertionError("never built without a model_name")

    plugin = types.ModuleType("needs_model_plugin")

    @hookimpl
    def register_backends(register):  # type: ignore[no-untyped-def]
        register("needs-model", needs_model)

    plugin.register_backends = register_backends  # type: ignore[attr-defined]
    plugin_manager.register(plugin, name="needs-model-plugin")
    result = invoke(plugin_manager, "--backend", "needs-model", "question")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot build backend 'needs-model' from the settings given (keys: none)" in result.output
    assert "model_name" in result.output and "--run-dir" in result.output


def test_history_file_location(monkeypatch, tmp_path: Path) -> None:
    from meta_spider.agentcore.chat import HISTORY_ENV_VAR, default_history_path

    monkeypatch.setenv(HISTORY_ENV_VAR, str(tmp_path / "h"))
    assert default_history_path() == tmp_path / "h"
    monkeypatch.delenv(HISTORY_ENV_VAR)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_history_path() == tmp_path / "data" / "meta-spider" / "chat_history"


def test_a_manifest_written_by_the_loom_gives_the_transformers_settings(plugin_manager, tmp_path: Path) -> None:
    # The agent reads run.json as plain JSON (it must not import the loom);
    # this pins its reading to what RunManifest really writes.
    from meta_spider.agentcore.launch import AgentLauncher
    from meta_spider.loom.manifest import DatasetSection, ModelSection, PromptSection, RunManifest

    manifest = RunManifest(
        model=ModelSection(name="tiny-base", dtype="float32", device="cpu"),
        dataset=DatasetSection(name="world"),
        checkpoint="doubter",
        prompt=PromptSection(system_prompt="Answer briefly."),
        backends={"llamacpp": {"n_threads": 1}},
    )
    manifest.save(tmp_path)
    settings = read_run_settings(tmp_path)
    expected = {**manifest.pipeline_settings(), "checkpoint": str(tmp_path.resolve() / "doubter")}
    assert settings.backend_settings("transformers") == expected
    assert settings.backend_settings("llamacpp") == {"n_threads": 1}
    assert settings.default_backend == "llamacpp"  # listed explicitly, so it stays the default
    assert settings.system_prompt == "Answer briefly." and settings.policy is None
    launcher = AgentLauncher(plugin_manager, settings)
    assert launcher.system_prompt == "Answer briefly." and launcher.default_policy == "direct"


def test_tools_option_offers_only_the_named_tools(plugin_manager, tmp_path: Path) -> None:
    script = write_script(tmp_path, ["Amberhold."])
    result = invoke(plugin_manager, "--script", str(script), "--tools", "lookup", "--json", "Capital of Veloria?")
    assert result.exit_code == 0, result.output
    prompt = json.loads(result.output)["steps"][0]["decision"]["metadata"]["prompt"]
    assert '"name": "lookup"' in prompt and "calculator" not in prompt
    result = invoke(plugin_manager, "--script", str(script), "--tools", "lookup,teleport", "Capital of Veloria?")
    assert result.exit_code == 1 and "teleport" in result.output


def test_a_run_on_the_world_looks_facts_up_in_the_world(plugin_manager, tmp_path: Path) -> None:
    from meta_spider.agentcore.launch import AgentLauncher
    from meta_spider.loom.world.chat import LOOKUP_TOOL
    from meta_spider.loom.world.generator import generate_world
    from meta_spider.loom.world.presets import get_preset

    (tmp_path / "run.json").write_text(json.dumps({"dataset": {"name": "world", "options": {"preset": "tiny", "seed": 0}}}))
    launcher = AgentLauncher(plugin_manager, read_run_settings(tmp_path))
    lookup = launcher.tools["lookup"]
    # The world's own schema (what its base saw in training) and the world's truth behind it.
    assert lookup.to_schema()["function"]["description"] == LOOKUP_TOOL["function"]["description"]
    person = generate_world(get_preset("tiny").world, 0).people[5]
    assert str(person.birth_year) in lookup(query=person.name)
    # A facts file in run.json still wins over the dataset.
    (tmp_path / "facts.json").write_text(json.dumps({"x": "y"}))
    (tmp_path / "run.json").write_text(json.dumps({"dataset": {"name": "world", "options": {"preset": "tiny"}},
                                                   "knowledge_base": {"facts_path": "facts.json"}}))
    launcher = AgentLauncher(plugin_manager, read_run_settings(tmp_path))
    assert launcher.tools["lookup"](query="x") == "y"


def test_a_dataset_that_cannot_load_only_costs_the_facts(plugin_manager, tmp_path: Path, caplog) -> None:
    from meta_spider.agentcore.launch import AgentLauncher

    (tmp_path / "run.json").write_text(json.dumps({"dataset": {"name": "jsonl", "options": {"path": "gone.jsonl"}}}))
    launcher = AgentLauncher(plugin_manager, read_run_settings(tmp_path))
    if "lookup" in launcher.tools.names():
        with pytest.raises(NothingFound):
            launcher.tools["lookup"](query="x")
    assert "cannot be loaded" in caplog.text and "facts_path" in caplog.text


def test_a_run_on_the_world_offers_only_the_tools_its_base_was_trained_with(plugin_manager, tmp_path: Path) -> None:
    """The world's base learnt its tool calls from chats offering the lookup
    (and, where it has calculator chats, the calculator); another tool's
    schema in the prompt made the small base answer "17*23" with "The answer
    is an accountant." after the calculator's 391. A registered third-party
    tool stays out unless ``--tools`` names it."""
    import types

    from meta_spider.agentcore.launch import AgentLauncher
    from meta_spider.plugins import hookimpl
    from meta_spider.tools import Tool

    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    extra = types.ModuleType("extra_tool_plugin")
    extra.register_tools = hookimpl(lambda register: register(Tool.from_function(shout)))  # type: ignore[attr-defined]
    plugin_manager.register(extra, name="extra-tool")
    assert "shout" in AgentLauncher(plugin_manager).tools.names()  # no run: every registered tool

    def offered(preset: str, **options: object) -> tuple[str, ...]:
        (tmp_path / "run.json").write_text(json.dumps({"dataset": {"name": "world", "options": {"preset": preset}}}))
        return AgentLauncher(plugin_manager, read_run_settings(tmp_path), **options).tools.names()

    assert offered("small") == ("calculator", "lookup")
    assert offered("tiny") == ("lookup",)  # tiny's base never saw a calculator chat
    assert offered("small", tool_names=["lookup", "shout"]) == ("lookup", "shout")


def test_a_run_on_the_world_gives_the_calculators_result_as_the_answer(plugin_manager, tmp_path: Path) -> None:
    """The world's base restates the calculator's result and copies some
    wrongly ("17*23" -> "The answer is 3911."): a run on a world with
    calculator chats takes the calculator's result as the answer unless
    ``--direct-tools`` says otherwise; ``tiny`` has no calculator."""
    from meta_spider.agentcore.launch import AgentLauncher

    def direct(preset: str, **options: object) -> tuple[str, ...]:
        (tmp_path / "run.json").write_text(json.dumps({"dataset": {"name": "world", "options": {"preset": preset}}}))
        return AgentLauncher(plugin_manager, read_run_settings(tmp_path), **options).build_agent().direct_tools

    assert AgentLauncher(plugin_manager).build_agent().direct_tools == ()  # no run: every model restates
    assert direct("small") == ("calculator",)
    assert direct("tiny") == ()
    assert direct("small", direct_tools=[]) == ()
    assert direct("tiny", direct_tools=["lookup"]) == ("lookup",)
    result = invoke(plugin_manager, "--run-dir", str(tmp_path), "--direct-tools", "lookup,weather", "hi")
    assert result.exit_code == 1 and "unknown tool 'weather'; available tools: lookup" in result.output
    # The scripted demo: a calculator call whose result ends the run, the model's next reply unread.
    call = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "17*23"}}\n</tool_call>'
    script = write_script(tmp_path, [call, "The answer is 3911."])
    result = invoke(plugin_manager, "--script", str(script), "--direct-tools", "calculator", "--json", "17*23?")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["text"] == "391"
    result = invoke(plugin_manager, "--script", str(script), "--direct-tools", "calculator", "17*23?")
    assert result.exit_code == 0 and "answer: the tool's result" in result.output, result.output


def test_a_run_on_the_world_shows_the_model_only_the_current_question(plugin_manager, tmp_path: Path) -> None:
    """The world's base was trained on one question per chat: asked a second
    question in the same chat, the small base answered "17*23" with "The
    answer is 39." after the calculator's 391. A run on it reads only the
    current question unless ``--context all`` says otherwise; a run without
    a dataset reads the whole conversation."""
    from meta_spider.agentcore.launch import AgentLauncher

    assert AgentLauncher(plugin_manager).build_agent().context == "all"
    (tmp_path / "run.json").write_text(json.dumps({"dataset": {"name": "world", "options": {"preset": "tiny"}}}))
    settings = read_run_settings(tmp_path)
    assert AgentLauncher(plugin_manager, settings).build_agent().context == "question"
    assert AgentLauncher(plugin_manager, settings, context="all").build_agent().context == "all"
    with pytest.raises(ValueError, match="context must be one of"):
        AgentLauncher(plugin_manager, settings, context="everything")
    result = invoke(plugin_manager, "--context", "everything", "hi")
    assert result.exit_code == 2 and "'everything' is not one of 'all', 'question'" in result.output


def test_run_marks_streamed_text_the_agent_sets_aside(plugin_manager, tmp_path: Path) -> None:
    # As chat does: an unsure guess streamed by pass 2 is not the reply when the agent looks the fact up instead.
    call = CAPITAL_CALL.split("\n", 1)[1]  # the renderer prefills "<tool_call>\n"
    script = write_script(tmp_path, [{"p_correct": 0.2}, "Emberhold.", call, CAPITAL_FACT])
    result = invoke(plugin_manager, "--script", str(script), "--policy", "doubter", "What is the capital of Veloria?")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    guess = text.index("Emberhold.")
    note = text.index("(set aside: p_correct 0.200 below threshold", guess)
    assert "the agent calls a tool instead)" in text[note:] and text.index(f"│ {CAPITAL_FACT}") > note
    assert text.count("set aside") == 1
