"""The tool-call family can be named instead of detected: on the renderer
(the Python config), in run.json's renderer settings, and with
``meta-agent --tool-family``; a wrong name fails with the known names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from meta_spider.agentcore.cli import build_cli
from meta_spider.agentcore.launch import AgentLauncher
from meta_spider.agentcore.rundir import read_run_settings
from meta_spider.policies import DefaultRenderer

GLM_CALL = "<tool_call>calculator\n<arg_key>expression</arg_key>\n<arg_value>17 * 23</arg_value>\n</tool_call>"


def test_the_renderer_takes_a_family_and_rejects_unknown_ones() -> None:
    assert DefaultRenderer(family="GLM45").family == "glm45"
    with pytest.raises(ValueError, match="unknown tool-call family 'glm'.*'glm45'"):
        DefaultRenderer(family="glm")


def test_run_json_and_the_launcher_option_choose_the_family(tmp_path: Path, plugin_manager) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"renderer": {"name": "default", "settings": {"family": "kimi_k2"}}}))
    settings = read_run_settings(tmp_path)
    assert AgentLauncher(plugin_manager, settings).make_renderer().family == "kimi_k2"
    # The command-line choice wins over run.json's.
    assert AgentLauncher(plugin_manager, settings, tool_family="glm45").make_renderer().family == "glm45"


def test_meta_agent_run_parses_the_named_family(tmp_path: Path, plugin_manager) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"outputs": [GLM_CALL, "It is 391."]}))
    cli = build_cli(plugin_manager)
    runner = CliRunner()
    result = runner.invoke(cli, ["agent", "run", "What is 17 * 23?", "--script", str(script), "--json",
                                 "--tool-family", "glm45"])
    assert result.exit_code == 0, result.output
    steps = json.loads(result.output)["steps"]
    assert [step["call"]["arguments"] for step in steps if step["type"] == "tool"] == [{"expression": "17 * 23"}]
    assert [step["observation"] for step in steps if step["type"] == "tool"] == ["391"]
    # Detected from the fake backend's Qwen-style template instead, the same
    # text is a broken Hermes call: reported back, never run.
    result = runner.invoke(cli, ["agent", "run", "What is 17 * 23?", "--script", str(script), "--json"])
    assert result.exit_code == 0, result.output
    tool_steps = [step for step in json.loads(result.output)["steps"] if step["type"] == "tool"]
    assert tool_steps and not any(step["ok"] for step in tool_steps)
    bad = runner.invoke(cli, ["agent", "run", "hi", "--tool-family", "glm"])
    assert bad.exit_code != 0 and "glm45" in bad.output


PLAIN_TEMPLATE = (  # ChatML that cannot show tools: the prompt builder writes them into the system text
    "{%- for m in messages %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def test_a_named_family_is_the_syntax_the_prompt_teaches(plugin_manager) -> None:
    """For a template that cannot show tools the prompt explains them with an
    example call: in the family the agent parses, not the detected one, so
    the model is shown the syntax that will be read back."""
    from meta_spider.agentcore import build_agent
    from meta_spider.backends import FakeBackend

    def first_prompt(renderer: DefaultRenderer) -> str:
        backend = FakeBackend([GLM_CALL, "It is 391."], chat_template=PLAIN_TEMPLATE)
        agent = build_agent(plugin_manager, backend=backend, renderer=renderer)
        final = agent.ask("What is 17 * 23?")
        return backend.history[0], final.text

    named, answer = first_prompt(DefaultRenderer(family="glm45"))
    assert "<arg_key>" in named and '"arguments"' not in named.split("write the call exactly in this form")[1]
    assert answer == "It is 391."  # the call it was shown, parsed and run
    detected, _ = first_prompt(DefaultRenderer())
    assert "<arg_key>" not in detected and '"arguments"' in detected


def test_the_transformers_backend_teaches_the_named_family(tmp_path: Path) -> None:
    """The same through the model's own tokenizer template (the prompt path
    the transformers and llama.cpp backends share)."""
    from wrapper_helpers import make_tiny_model, make_tokenizer, save_tiny_model

    from meta_spider.backends import StopBackend, use_tool_family
    from meta_spider.backends.transformers import TransformersBackend
    from meta_spider.tools import DictKnowledgeBase, make_lookup_tool

    tokenizer = make_tokenizer()
    tokenizer.chat_template = PLAIN_TEMPLATE
    folder = save_tiny_model(make_tiny_model("qwen2", tokenizer), tokenizer, tmp_path / "plain")
    backend = StopBackend(TransformersBackend.from_settings(str(folder), local_files_only=True))
    tools = [make_lookup_tool(DictKnowledgeBase({})).to_schema()]
    messages = [{"role": "user", "content": "Where is Veloria?"}]
    assert "<arg_key>" not in backend.render_prompt(messages, tools=tools)
    assert use_tool_family(backend, "glm45")  # through the wrapper, to the backend's prompt builder
    assert "<arg_key>query</arg_key>" in backend.render_prompt(messages, tools=tools)
    assert not use_tool_family(object(), "glm45")  # a backend that renders its own way: nothing to set
