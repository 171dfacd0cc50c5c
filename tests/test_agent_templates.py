"""The loop's chat messages render with every real chat template in
../shared/templates: tool calls written in the model's own family, their
results, and the observation for an unreadable call all reach the next prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from meta_spider.agentcore import MetaAgent, ModelStep, Session, ToolStep
from meta_spider.backends import FakeBackend
from meta_spider.native import NativeToolRenderer
from meta_spider.policies import DefaultRenderer, DirectPolicy
from meta_spider.tools import ToolRegistry

TEMPLATE_FILES = (
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
    "Qwen-Qwen2.5-7B-Instruct.jinja",
    "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
)


@pytest.mark.parametrize("file_name", TEMPLATE_FILES)
def test_loop_messages_render_with_real_templates(file_name: str, shared_dir: Path, plugin_manager) -> None:
    template = (shared_dir / "templates" / file_name).read_text(encoding="utf-8")
    native = NativeToolRenderer(template=template)
    backend = FakeBackend(
        [
            native.format_call("calculator", {"expression": "17 * 23"}),
            native.call_prefix() + "{not json}",
            "The answer is 391.",
        ],
        chat_template=template,
    )
    tools = ToolRegistry.from_plugins(plugin_manager)
    session = Session.from_question("What is 17 * 23?")
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), tools, max_steps=4)
    steps = list(agent.run(session))

    tool_steps = [step for step in steps if isinstance(step, ToolStep)]
    assert [step.kind.value for step in tool_steps] == ["result", "unparseable"]
    assert tool_steps[0].observation == "391"
    actions = [type(step.action).__name__ for step in steps if isinstance(step, ModelStep)]
    assert actions == ["ToolCall", "ToolCall", "Answer"]
    assert steps[-1].text == "The answer is 391."

    first, second, third = backend.history
    for name in tools.names():
        assert name in first
    assert "391" in second and "391" not in first
    assert "could not be parsed" in third
    # Ids the session assigns are the 9-character form Mistral's template demands.
    assert session.messages[1]["tool_calls"][0]["id"] == "call00001"
