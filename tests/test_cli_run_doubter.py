"""The ``doubter`` policy on the real transformers backend and through
``meta-agent run --run-dir D --policy doubter``.

A tiny Qwen2 base is built in process and taught (a few seconds of
training) two things in its own Hermes-style chat format: to complete a
``lookup`` call after the prefilled ``<tool_call>``, and to answer from the
tool's result. An untrained Doubter is attached, so its P(correct) is some
number in (0, 1) and the threshold picks the path: threshold 0 -> confident
-> the pass-2 answer with no tool call; threshold 1 -> uncertain -> the
native lookup call, the tool, and the answer from the observation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from wrapper_helpers import make_tiny_model, make_tokenizer, save_tiny_model

from meta_spider.agentcore import MetaAgent, ModelStep, Session, ToolStep
from meta_spider.agentcore.cli import CliState, build_cli
from meta_spider.agentcore.session import ToolResultRecord
from meta_spider.backends import StopBackend
from meta_spider.backends.transformers import TransformersBackend
from meta_spider.native import NativeToolPrompt
from meta_spider.policies import Answer, DefaultRenderer, Refuse, ToolCall, ToolInvocation
from meta_spider.policies.doubter import DoubterPolicy
from meta_spider.policies.probe import ProbePolicy
from meta_spider.tools import DictKnowledgeBase, ToolRegistry, make_lookup_tool

QUESTION = "What is the capital of Veloria?"
ENTITY = "Veloria"
FACT = "Veloria: capital Amberhold."
SMALL = {"encoder_dim": 16, "ca_bottleneck_dim": 16, "ca_num_heads": 2}
LAYERS = [1, 4]

# A Hermes-family template written for this test: tool definitions become a
# one-line system turn (so the prompt does not depend on which plugins are
# installed), calls are <tool_call> blocks, results <tool_response> blocks.
TOOL_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\nYou may call tools with <tool_call>.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'tool' %}"
    "{{- '<|im_start|>tool\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' and message.tool_calls %}{{- '<|im_start|>assistant\\n' }}"
    "{%- for call in message.tool_calls %}"
    "{{- '<tool_call>\\n{\"name\": \"' + call.function.name + '\", \"arguments\": ' }}"
    "{{- call.function.arguments | tojson }}{{- '}\\n</tool_call>' }}"
    "{%- endfor %}{{- '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def lookup_registry() -> ToolRegistry:
    return ToolRegistry([make_lookup_tool(DictKnowledgeBase({ENTITY: FACT}))])


def lessons(tokenizer) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(prompt, continuation) pairs: complete the prefilled call; answer from the result."""
    render = NativeToolPrompt.from_tokenizer(tokenizer).render
    tools = lookup_registry().schemas()
    session = Session.from_question(QUESTION)
    call_prompt = render(session.messages, tools=tools, add_generation_prompt=True) + "<tool_call>\n"
    session.add_tool_calls([ToolInvocation("lookup", {"query": ENTITY})])
    session.add_tool_result(ToolResultRecord(1, "lookup", {"query": ENTITY}, "call00001", FACT, "result"))
    answer_prompt = render(session.messages, tools=tools, add_generation_prompt=True)
    return [
        (call_prompt, '{"name": "lookup", "arguments": {"query": "Veloria"}}\n</tool_call>'),
        (answer_prompt, "Amberhold<|im_end|>"),
    ]


def teach(model, tokenizer, pairs: list[tuple[str, str]]) -> float:  # type: ignore[no-untyped-def]
    """Fit the continuations (loss on them only) until greedy decoding repeats them."""
    batch = []
    for prompt, continuation in pairs:
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        target_ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        batch.append((torch.tensor([prompt_ids + target_ids]), torch.tensor([[-100] * len(prompt_ids) + target_ids])))
    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        optimizer.zero_grad()
        loss = sum(model(input_ids=ids, labels=labels).loss for ids, labels in batch)
        loss.backward()
        optimizer.step()
        if loss.item() < 0.01:
            break
    model.eval()
    return float(loss.item())


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model folder, untrained Doubter checkpoint folder)."""
    tokenizer = make_tokenizer()
    tokenizer.chat_template = TOOL_TEMPLATE
    model = make_tiny_model("qwen2", tokenizer)
    assert teach(model, tokenizer, lessons(tokenizer)) < 0.01
    folder = save_tiny_model(model, tokenizer, tmp_path_factory.mktemp("taught-qwen2"))
    backend = TransformersBackend.from_settings(str(folder), local_files_only=True, target_layers=LAYERS)
    checkpoint = backend.pipeline.new_doubter(**SMALL).save_checkpoint(tmp_path_factory.mktemp("ckpt") / "doubter")
    return folder, checkpoint


@pytest.fixture(scope="module")
def real_backend(tiny_base: tuple[Path, Path]) -> TransformersBackend:
    folder, checkpoint = tiny_base
    return TransformersBackend.from_settings(str(folder), checkpoint=checkpoint, local_files_only=True,
                                             target_layers=LAYERS)


def run_steps(backend: TransformersBackend, policy, renderer=None) -> list:  # type: ignore[no-untyped-def]
    agent = MetaAgent(StopBackend(backend), policy, renderer or DefaultRenderer(), lookup_registry(), max_steps=4)
    return list(agent.run(QUESTION))


def test_threshold_zero_answers_with_pass_two_on_the_real_backend(real_backend: TransformersBackend) -> None:
    steps = run_steps(real_backend, DoubterPolicy(threshold=0.0))
    model, final = steps
    assert isinstance(model, ModelStep) and isinstance(model.action, Answer)
    decision = model.decision
    assert 0.0 < decision.p_correct < 1.0 and decision.confident is True
    assert decision.metadata["injected"] is True and decision.introspection.cognitive_tokens.shape == (2, 32)
    assert final.outcome == "answer" and final.text == decision.text.strip() and final.text


def test_threshold_one_looks_it_up_natively_on_the_real_backend(real_backend: TransformersBackend) -> None:
    steps = run_steps(real_backend, DoubterPolicy(threshold=1.0))
    assert [type(step).__name__ for step in steps] == ["ModelStep", "ToolStep", "ModelStep", "FinalStep"]
    first, tool, second, final = steps
    assert first.decision.confident is False and isinstance(first.action, ToolCall)
    assert [(c.name, c.arguments) for c in first.action.calls] == [("lookup", {"query": ENTITY})]
    assert first.decision.metadata["lookup"]["finish_reason"] == "stop"  # stopped at </tool_call>
    assert isinstance(tool, ToolStep) and tool.ok and tool.observation == FACT
    assert second.decision.metadata["gate"].startswith("skipped") and isinstance(second.action, Answer)
    assert (final.outcome, final.text) == ("answer", "Amberhold")


def test_unreadable_call_is_refused_on_the_real_backend(real_backend: TransformersBackend) -> None:
    # Too small a budget for the call: the model's completion stops mid-call.
    steps = run_steps(real_backend, ProbePolicy(threshold=1.0), DefaultRenderer(tool_call_max_new_tokens=8))
    model, final = steps
    assert isinstance(model.action, Refuse) and "could not be parsed" in model.action.reason
    lookup = model.decision.metadata["lookup"]
    assert lookup["finish_reason"] == "length" and lookup["failures"]
    assert lookup["failures"][0]["raw"] == "<tool_call>\n" + lookup["completion"]
    assert model.decision.metadata["injected"] is False and final.outcome == "refuse"


def write_run_dir(tmp_path: Path, tiny_base: tuple[Path, Path], threshold: float) -> Path:
    folder, checkpoint = tiny_base
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "facts.json").write_text(json.dumps({ENTITY: FACT}))
    (run / "run.json").write_text(json.dumps({
        "format_version": 1,
        "model": {"name": str(folder), "dtype": "float32", "device": "cpu"},
        "dataset": {"name": "jsonl", "options": {}},
        "layers": {"target_layers": LAYERS},
        "checkpoint": str(checkpoint),
        "calibration": {"doubter": {"threshold": threshold, "target_risk": 0.1}},
        "backends": {"transformers": {"local_files_only": True}},
        "knowledge_base": {"facts_path": "facts.json"},
    }))
    return run


def agent_run(pm, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(build_cli(pm), ["agent", "run", *args], obj=CliState(pm), env={"COLUMNS": "160"})


def test_meta_agent_run_takes_both_paths_from_the_calibration(plugin_manager, tmp_path: Path,
                                                              tiny_base: tuple[Path, Path]) -> None:
    run = write_run_dir(tmp_path, tiny_base, threshold=1.0)
    result = agent_run(plugin_manager, "--run-dir", str(run), "--policy", "doubter", "--backend", "transformers",
                       "--json", QUESTION)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (record["policy"], record["backend"], record["outcome"], record["text"]) == (
        "doubter", "transformers", "answer", "Amberhold")
    steps = record["steps"]
    assert [step["type"] for step in steps] == ["model", "tool", "model", "final"]
    decision = steps[0]["decision"]
    assert 0.0 < decision["p_correct"] < 1.0 and decision["confident"] is False
    assert decision["metadata"]["threshold"] == 1.0
    assert decision["metadata"]["threshold_source"] == "calibration:doubter"
    assert steps[0]["action"]["calls"][0]["name"] == "lookup"
    assert steps[0]["action"]["calls"][0]["arguments"] == {"query": ENTITY}
    assert steps[1]["observation"] == FACT and steps[1]["ok"] is True

    write_run_dir(tmp_path, tiny_base, threshold=0.0)
    confident = json.loads(agent_run(plugin_manager, "--run-dir", str(run), "--policy", "doubter", "--json",
                                     QUESTION).stdout)
    assert [step["type"] for step in confident["steps"]] == ["model", "final"]
    assert confident["steps"][0]["decision"]["confident"] is True
    assert confident["steps"][0]["action"]["type"] == "answer" and confident["outcome"] == "answer"

    # The rich trace shows the gauge, the verdict and the final panel.
    trace = agent_run(plugin_manager, "--run-dir", str(run), "--policy", "doubter", QUESTION)
    assert trace.exit_code == 0, trace.output
    assert "policy doubter" in trace.output and "P(correct)" in trace.output and "confident" in trace.output
    assert "╭─ answer" in trace.output

    # A third-party policy still runs on the same run directory.
    echo = json.loads(agent_run(plugin_manager, "--run-dir", str(run), "--policy", "echo-policy", "--json",
                                "hello").stdout)
    assert (echo["policy"], echo["text"]) == ("echo-policy", "hello")


def test_agentic_eval_runs_the_real_backend_from_the_run_dir(plugin_manager, tmp_path: Path,
                                                            tiny_base: tuple[Path, Path]) -> None:
    from meta_spider.loom.evaluate.agentic import run_agentic_eval

    run = write_run_dir(tmp_path, tiny_base, threshold=1.0)
    (tmp_path / "test.jsonl").write_text(json.dumps({"id": "v1", "question": QUESTION, "answer": "Amberhold"}) + "\n")
    manifest = json.loads((run / "run.json").read_text())
    manifest["dataset"]["options"] = {"test": str(tmp_path / "test.jsonl")}
    (run / "run.json").write_text(json.dumps(manifest))
    report = run_agentic_eval(run, plugin_manager=plugin_manager)
    assert report.settings["backend"] == "stop(transformers)" and report.settings["knowledge_base"] == "facts"
    doubter = report.metrics("doubter")
    assert (doubter["pass_rate"], doubter["tool_calls"], doubter["steps_per_task"]) == (1.0, 1, 2.0)
    assert report.results["doubter"][0].text == "Amberhold"

