"""The published API, used as a new user writes it: the import names
(``meta_core``, ``meta_loom``, ``meta_agent``, ``meta_deploy``, the
``meta_spider`` umbrella), an unsized Doubter sized on attach, detaching the
object, the collector with a string scorer, the trainer's published keyword
names, a benchmark written as a list of tasks and its printed summary,
against a tiny in-process model."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from wrapper_helpers import PROMPTS, shared_model, shared_tokenizer

PUBLISHED = ("meta_core", "meta_loom", "meta_agent", "meta_deploy")


@pytest.mark.parametrize("package", PUBLISHED)
def test_every_published_name_is_the_projects_own_object(package: str) -> None:
    module = importlib.import_module(package)
    assert module.EXPORTS and sorted(module.EXPORTS) == module.__all__
    for name, home in module.EXPORTS.items():
        assert home.startswith("meta_spider."), (name, home)
        assert getattr(module, name) is getattr(importlib.import_module(home), name), name


def test_the_umbrella_offers_every_published_name() -> None:
    import meta_spider

    for package in PUBLISHED:
        module = importlib.import_module(package)
        for name in module.EXPORTS:
            assert getattr(meta_spider, name) is getattr(module, name), name
    from meta_spider import Doubter, DoubterConfig, MetaSpiderConfig, MetaSpiderPipeline  # noqa: F401
    with pytest.raises(AttributeError, match="no attribute 'Nonesuch'"):
        meta_spider.Nonesuch  # noqa: B018


def test_importing_the_published_names_loads_no_torch(tmp_path: Path) -> None:
    code = ("import sys, meta_spider, meta_core, meta_loom, meta_agent, meta_deploy\n"
            "print(sorted(m for m in ('torch', 'llama_cpp', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ------------------------------------------------------------------ the pipeline and the Doubter


def _pipe():
    from meta_core import MetaSpiderConfig, MetaSpiderPipeline

    return MetaSpiderPipeline(shared_model("qwen2"), shared_tokenizer(),
                              MetaSpiderConfig(model_name="qwen2", target_layers=[2, 4]))


def test_an_unsized_doubter_is_sized_by_attach() -> None:
    from meta_core import Doubter, DoubterConfig

    pipe = _pipe()
    doubter = Doubter(DoubterConfig(encoder_type="selective", encoder_dim=16, ca_bottleneck_dim=16))
    assert not doubter.sized and list(doubter.parameters()) == []
    with pytest.raises(ValueError, match="unsized.*attach"):
        doubter.encode(torch.zeros(1, 2, 32))
    assert pipe.attach(doubter) is doubter
    assert (doubter.config.hidden_size, doubter.config.num_layers) == (32, 6)
    expected = pipe.new_doubter(encoder_type="selective", encoder_dim=16, ca_bottleneck_dim=16)
    assert doubter.config.to_dict() == expected.config.to_dict()
    assert {k: v.shape for k, v in doubter.state_dict().items()} == {k: v.shape for k, v in expected.state_dict().items()}
    result = pipe.generate(PROMPTS[0], max_new_tokens=4, return_result=True)
    assert 0.0 < result.p_correct < 1.0


def test_an_unsized_config_keeps_what_the_user_set() -> None:
    from meta_core import Doubter, DoubterConfig

    pipe = _pipe()
    doubter = pipe.attach(Doubter(DoubterConfig(target_layers=[1, 5], cross_attn_layers=[3], encoder_dim=16,
                                                ca_bottleneck_dim=16, read_position="draft")))
    config = doubter.config
    assert (tuple(config.target_layers), tuple(config.cross_attn_layers), config.read_position) == ((1, 5), (3,), "draft")
    with pytest.raises(ValueError, match="hidden_size must be a positive int, got 0.*both 0"):
        DoubterConfig(hidden_size=0, num_layers=6)


def test_self_correction_needs_the_transformer_encoder_and_reaches_training() -> None:
    from meta_core import Doubter, DoubterConfig
    from meta_loom import Trainer

    with pytest.raises(ValueError, match="enable_self_correction needs encoder_type='transformer'.*'selective'"):
        DoubterConfig(enable_self_correction=True)
    pipe = _pipe()
    doubter = pipe.attach(Doubter(DoubterConfig(encoder_type="transformer", enable_self_correction=True,
                                                encoder_dim=16, ca_bottleneck_dim=16)))
    assert doubter.config.enable_self_correction
    assert Trainer(doubter, pipe).config.enable_self_correction
    unattached = Doubter(DoubterConfig(encoder_dim=16, ca_bottleneck_dim=16))
    Trainer(unattached, pipe)  # sized as attach would size it
    assert unattached.sized and unattached.config.hidden_size == 32


def test_detach_takes_the_object_and_refuses_a_stranger() -> None:
    from meta_core import Doubter, DoubterConfig, DoubterNotAttachedError

    pipe = _pipe()
    first = pipe.attach(Doubter(DoubterConfig(encoder_dim=16, ca_bottleneck_dim=16)))
    second = pipe.attach(Doubter(DoubterConfig(encoder_dim=16, ca_bottleneck_dim=16)), name="second")
    assert pipe.detach(first) is first and pipe.doubter is second
    with pytest.raises(DoubterNotAttachedError, match="not attached.*'second'"):
        pipe.detach(first)
    with pytest.raises(DoubterNotAttachedError, match="'nobody'"):
        pipe.detach("nobody")
    assert pipe.detach(second) is second and pipe.doubter is None
    with pytest.raises(DoubterNotAttachedError):
        pipe.detach()
    assert pipe.generate(PROMPTS[0], max_new_tokens=4, return_result=True).decision == "base"


# ------------------------------------------------------------------ collect, train, evaluate


def test_classify_action_with_one_argument() -> None:
    from meta_loom import classify_action

    assert classify_action("I don't know.") == "refuse"
    assert classify_action("Paris.") == "confirm"
    assert classify_action("Paris.", "Rome") == "correct"


def test_trainer_config_takes_the_published_names() -> None:
    from meta_loom import TrainerConfig

    config = TrainerConfig(epochs=2, batch_size=4, grad_accumulation=3, learning_rate=1e-3, gate_lr_multiplier=5,
                           pretrain_projectors=True, early_stop_patience=2)
    assert (config.gradient_accumulation_steps, config.lr, config.early_stopping_patience) == (3, 1e-3, 2)
    assert TrainerConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainerConfig(early_stop_patience=None).early_stopping_patience is None
    with pytest.raises(ValueError, match="learning_rate=0.1 and lr=0.2"):
        TrainerConfig(learning_rate=0.1, lr=0.2)


def test_the_published_workflow_end_to_end(tmp_path: Path) -> None:
    from meta_core import Doubter, DoubterConfig
    from meta_loom import (
        ActivationDatasetCollector,
        BaselineComparison,
        BenchmarkTask,
        QABenchmark,
        Trainer,
        TrainerConfig,
    )

    pipe = _pipe()
    questions = list(PROMPTS[:16])
    # A random tiny model knows nothing: take its own answer as the truth for
    # every other question, so both classes occur.
    own = [pipe.generate(q, max_new_tokens=6) for q in questions]
    truths = [answer if i % 2 == 0 else "zebra crossing" for i, answer in enumerate(own)]

    def exact(prediction: str, truth: str) -> bool:  # the documented scorer: two strings
        return prediction.strip() == truth.strip()

    collector = ActivationDatasetCollector(pipe, max_new_tokens=6, check_correctness=exact, show_progress=False)
    train_samples = collector.collect(questions[:10], truths[:10])
    val_samples = collector.collect(questions[10:], truths[10:])
    assert [e["pass1_correct"] for e in train_samples.examples] == [i % 2 == 0 for i in range(10)]
    saved = ActivationDatasetCollector.save(train_samples, tmp_path / "train.pt")
    assert saved.is_dir() and {p.suffix for p in saved.iterdir()} <= {".safetensors", ".json", ".jsonl"}

    doubter = Doubter(DoubterConfig(encoder_type="selective", encoder_dim=16, ca_bottleneck_dim=16))
    pipe.attach(doubter)
    config = TrainerConfig(epochs=1, batch_size=4, grad_accumulation=1, learning_rate=1e-3, gate_lr_multiplier=5,
                           pretrain_projectors=True, early_stop_patience=2, pretrain_iterations=5)
    before = {k: v.clone() for k, v in doubter.state_dict().items()}
    result = Trainer(doubter, pipe, config).train(train_samples, val_samples=val_samples)
    assert result.best_epoch == 1 and len(result.history) == 2
    assert any(not torch.equal(before[k], v) for k, v in doubter.state_dict().items())

    bench = QABenchmark(name="mine", tasks=[BenchmarkTask(question=q, ground_truth=t)
                                            for q, t in zip(questions[10:], truths[10:])], scoring="exact_match")
    report = BaselineComparison(pipe, bench, max_tokens=6).run()
    assert report.benchmark["dataset"] == "mine" and report.behaviour.n == 6
    assert [q.pass1_correct for q in report.questions] == [i % 2 == 0 for i in range(10, 16)]
    text = report.summary()
    assert isinstance(text, str) and "Doubter (generated text)" in text and "knowledge loss" in text


def test_benchmark_scoring_choices() -> None:
    from meta_loom import BenchmarkTask, QABenchmark

    tasks = [BenchmarkTask(question="Capital of France?", ground_truth=["Paris", "Paris, France"])]
    contains = QABenchmark(name="c", tasks=tasks, scoring="contains")
    example = contains.items[0].example
    assert contains.dataset.check_fn("It is Paris, of course.", example)
    assert not QABenchmark(name="e", tasks=tasks).dataset.check_fn("It is Paris, of course.", example)
    custom = QABenchmark(name="f", tasks=tasks, scoring=lambda prediction, truth: truth.lower() in prediction.lower())
    assert custom.dataset.check_fn("paris!", example)
    with pytest.raises(ValueError, match="scoring must be one of"):
        QABenchmark(name="x", tasks=tasks, scoring="fuzzy")
    with pytest.raises(ValueError, match="needs a non-empty ground truth"):
        BenchmarkTask(question="Q?", ground_truth="")


# ------------------------------------------------------------------ calibration travels with the checkpoint


def test_the_calibration_round_trips_through_both_checkpoint_layouts(tmp_path: Path) -> None:
    from meta_core import CheckpointError, Doubter
    from meta_spider.wrapper.checkpoint import write_calibration

    pipe = _pipe()
    doubter = pipe.new_doubter(encoder_dim=16, ca_bottleneck_dim=16)
    entry = {"threshold": 0.25, "split": "validation", "rule": "goals", "score": "p_correct",
             "goals": {"min_coverage": 0.5}}
    for path in (tmp_path / "folder", tmp_path / "single.safetensors"):
        doubter.save_checkpoint(path)
        assert Doubter.from_checkpoint(path).calibration is None
        write_calibration(path, entry)
        loaded = Doubter.from_checkpoint(path)
        assert loaded.calibration == entry
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), doubter.state_dict().values()))
        loaded.save_checkpoint(tmp_path / "again")  # saving keeps it
        assert Doubter.from_checkpoint(tmp_path / "again").calibration == entry
        write_calibration(path, None)
        assert Doubter.from_checkpoint(path).calibration is None
    document = json.loads((tmp_path / "folder" / "doubter_config.json").read_text())
    document["calibration"] = {"no": "threshold"}
    (tmp_path / "folder" / "doubter_config.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="'calibration' must be an object with a 'threshold'"):
        Doubter.from_checkpoint(tmp_path / "folder")


def test_attaching_a_calibrated_checkpoint_sets_the_answer_gate(tmp_path: Path) -> None:
    from meta_core import MetaSpiderConfig, MetaSpiderPipeline
    from meta_spider.wrapper.checkpoint import write_calibration
    from meta_spider.wrapper.refusal import REFUSAL_SENTENCE
    from wrapper_helpers import save_tiny_model

    base = save_tiny_model(shared_model("qwen2"), shared_tokenizer(), tmp_path / "base")
    pipe = _pipe()
    pipe.new_doubter(encoder_dim=16, ca_bottleneck_dim=16).save_checkpoint(tmp_path / "ckpt")
    write_calibration(tmp_path / "ckpt", {"threshold": 1.0, "split": "validation"})  # P(correct) < 1: refuse all
    loaded = MetaSpiderPipeline.from_pretrained(MetaSpiderConfig(model_name=str(base), local_files_only=True))
    doubter = loaded.attach(tmp_path / "ckpt")
    assert loaded.answer_gate is not None and loaded.answer_gate.threshold == 1.0
    result = loaded.generate(PROMPTS[1], max_new_tokens=4, return_result=True)
    assert (result.decision, result.text) == ("gate_refused", REFUSAL_SENTENCE)
    loaded.detach(doubter)  # the gate was this Doubter's: it goes with it
    assert loaded.answer_gate is None
    write_calibration(tmp_path / "ckpt", {"threshold": None})  # no threshold met the goals: answer nothing
    assert loaded.attach(tmp_path / "ckpt") and loaded.answer_gate.threshold == float("inf")


def test_a_run_with_a_trained_doubter_defaults_to_the_doubter_policy(tmp_path: Path) -> None:
    from meta_spider.agentcore.launch import AgentLauncher
    from meta_spider.agentcore.rundir import ComponentChoice, RunSettings
    from meta_spider.plugins import make_plugin_manager

    pm = make_plugin_manager(load_entrypoints=False)

    def policy(**settings: object) -> str:
        return AgentLauncher(pm, run_settings=RunSettings(**settings)).policy_for(None)

    assert policy() == "direct"
    assert policy(backends={"transformers": {"model_name": "m", "checkpoint": str(tmp_path)}}) == "doubter"
    assert policy(backends={"llamacpp": {"model_path": "b.gguf", "sidecar_path": "s.gguf"}}) == "doubter"
    assert policy(backends={"llamacpp": {"model_path": "b.gguf"}}) == "direct"
    assert policy(backends={"transformers": {"checkpoint": "c"}}, policy=ComponentChoice("probe")) == "probe"


# ------------------------------------------------------------------ the refusal sentence


def test_the_refusal_sentence_is_the_worlds_and_configurable_everywhere() -> None:
    from meta_spider.backends import FakeBackend
    from meta_spider.loom.train.targets import build_targets
    from meta_spider.loom.world import generator
    from meta_spider.policies import DefaultRenderer, Refuse
    from meta_spider.policies.actions import REFUSAL_SENTENCE
    from meta_spider.policies.base import LatentDecision
    from meta_spider.wrapper.gates import AnswerGate
    from meta_spider.wrapper.refusal import PUBLISHED_REFUSAL_SENTENCE, is_refusal

    # The embedded world's base is trained on the project's sentence, and its generator still writes it.
    assert REFUSAL_SENTENCE == "I don't know." and generator.REFUSAL_SENTENCE is REFUSAL_SENTENCE
    other = PUBLISHED_REFUSAL_SENTENCE
    assert is_refusal("I DON\u2019T know.") and not is_refusal(other) and is_refusal(other.upper(), other)

    renderer = DefaultRenderer(refusal=other)
    backend = FakeBackend()
    refused = renderer.render(LatentDecision(text="Paris.", p_correct=0.1, confident=False), None, backend, None)
    assert refused == Refuse(text=other, reason="the policy is not confident")
    said = renderer.render(LatentDecision(text=other, confident=True), None, backend, None)
    assert isinstance(said, Refuse) and said.reason == "model"
    assert not isinstance(renderer.render(LatentDecision(text="I don't know.", confident=True), None, backend, None),
                          Refuse)  # another sentence is just an answer to this renderer

    gate = AnswerGate(threshold=0.5, refusal=other)
    assert gate.is_refusal(other) and not gate.is_refusal(REFUSAL_SENTENCE)
    tokenizer = shared_tokenizer()
    targets = build_targets([[1, 2]], [False], [["Paris"]], tokenizer, [tokenizer.eos_token_id], refusal=other)
    assert tokenizer.decode(targets.ids[0][:-1]) == other and targets.kinds == ["refuse"]


def test_run_json_sets_the_agents_refusal_sentence() -> None:
    from meta_spider.agentcore.launch import AgentLauncher
    from meta_spider.agentcore.rundir import ComponentChoice, RunSettings
    from meta_spider.loom.train.config import TrainerConfig
    from meta_spider.plugins import make_plugin_manager

    settings = RunSettings(renderer=ComponentChoice("default", {"refusal": "No idea."}))
    renderer = AgentLauncher(make_plugin_manager(load_entrypoints=False), run_settings=settings).make_renderer()
    assert renderer.refusal == "No idea." and renderer.is_refusal("no idea. sorry")
    assert TrainerConfig(refusal="No idea.").refusal == "No idea."
    with pytest.raises(ValueError, match="refusal must be a non-empty sentence"):
        TrainerConfig(refusal=" ")
