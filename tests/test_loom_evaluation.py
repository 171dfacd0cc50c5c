"""Evaluation: classify_action on golden strings, the logistic probe against
scikit-learn, the probe-layer choice, QABenchmark's alignment with a
collected activation dataset, and run_benchmark on a tiny real pipeline.

The tiny run: a tiny Qwen2 from config, a JSONL dataset whose reference
answers are the base's own greedy answers for every other question (so the
oracle is really mixed), activations collected by the real collector. The
builders here are reused by the comparison and CLI tests.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from wrapper_helpers import PROMPTS, shared_model, shared_tokenizer

from meta_spider.loom.evaluate.baselines import select_probe_layer
from meta_spider.loom.evaluate.probe import LogisticProbe
from meta_spider.loom.datasets import JsonlDataset
from meta_spider.loom.evaluate.evaluation import (
    BenchmarkAlignmentError,
    EvalHarness,
    HarnessTask,
    QABenchmark,
    QuestionOutcome,
    classify_action,
    run_benchmark,
)
from meta_spider.loom.evaluate.metrics import UndefinedMetricError, auroc
from meta_spider.policies.actions import REFUSAL_SENTENCE

MAX_NEW_TOKENS = 6
SPLITS = {"train": range(0, 6), "validation": range(6, 14), "test": range(14, 20)}
"""PROMPTS index ranges per split; even indices are questions the base 'knows'."""


# ------------------------------------------------------------------ builders


def tiny_pipe(model_name: str = "tiny-qwen2") -> Any:
    from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline

    return MetaSpiderPipeline(shared_model("qwen2"), shared_tokenizer(), MetaSpiderConfig(model_name=model_name))


def write_qa_folder(folder: Path, pipe: Any) -> Path:
    """One ``<split>.jsonl`` per split. The reference answer of an even
    question is the bare base's greedy answer (the base gets it right); an
    odd question's is a word the random base never says."""
    folder.mkdir(parents=True, exist_ok=True)
    assert pipe.doubter is None
    for split, indices in SPLITS.items():
        lines = []
        for i in indices:
            answer = pipe.generate(PROMPTS[i], max_new_tokens=MAX_NEW_TOKENS) if i % 2 == 0 else f"zebra number {i}"
            lines.append(json.dumps({"id": f"q{i}", "question": PROMPTS[i], "answer": answer}) + "\n")
        (folder / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")
    return folder


def collected_run(root: Path, add_splits: Callable[[Path, Any], None] | None = None) -> Path:
    """A run directory made by the real ``metaloom collect`` over a saved
    tiny Qwen2 and :func:`write_qa_folder`'s dataset (``add_splits(folder,
    pipe)`` may write more splits first), with a Doubter checkpoint whose
    injection gates are 0 (so it says what the base said)."""
    from click.testing import CliRunner
    from wrapper_helpers import save_tiny_model

    from meta_spider.loom.cli.collect import collect as collect_command
    from meta_spider.loom.manifest import RunManifest

    base = save_tiny_model(shared_model("qwen2"), shared_tokenizer(), root / "base")
    qa = write_qa_folder(root / "qa", tiny_pipe())
    if add_splits is not None:
        add_splits(qa, tiny_pipe())
    run = root / "run"
    result = CliRunner().invoke(collect_command, [
        "--run-dir", str(run), "--model-name", str(base), "--dataset", "jsonl", "--dataset-option", f"path={qa}",
        "--max-new-tokens", str(MAX_NEW_TOKENS), "--quiet",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doubter = tiny_pipe(str(base)).new_doubter(encoder_dim=16, ca_bottleneck_dim=16)
    doubter.set_injection_gates(0.0)
    doubter.save_checkpoint(run / "checkpoints" / "best")
    RunManifest.update_file(run, checkpoint="checkpoints/best")
    return run


def expected_oracle(split: str) -> list[bool]:
    return [i % 2 == 0 for i in SPLITS[split]]


def collect(pipe: Any, dataset: Any, folder: Path) -> Any:
    from meta_spider.loom.collect.collector import ActivationDatasetCollector

    collector = ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, show_progress=False)
    return collector.collect_dataset(dataset, list(SPLITS), output_dir=folder)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("tiny-run")
    pipe = tiny_pipe()
    dataset = JsonlDataset.from_options(path=write_qa_folder(root / "qa", pipe))
    activations = collect(pipe, dataset, root / "activations")
    return {"pipe": pipe, "dataset": dataset, "activations": activations, "root": root}


@pytest.fixture
def pipe_with_silent_doubter(tiny_run: dict[str, Any]) -> Any:
    """The tiny pipeline with a Doubter whose injection gates are 0: by the
    no-harm invariant pass 2 then says exactly what the base said."""
    pipe = tiny_run["pipe"]
    doubter = pipe.new_doubter(encoder_dim=16, ca_bottleneck_dim=16)
    doubter.set_injection_gates(0.0)
    pipe.attach(doubter)
    yield pipe
    pipe.detach_all()


# ------------------------------------------------------------------ classify_action


# (text, base answer) pairs by the action they are classified as.
CLASSIFIED = {
    "refuse": [(REFUSAL_SENTENCE, "Paris"), ("i don\u2019t know.", "Paris"),
               ("  I DON'T KNOW.  The capital is Paris.", "Paris")],
    "confirm": [("Paris.", "paris"), ("The Paris\nmore text the base did not say", "Paris!")],
    # "Paris. I don't know." is not a refusal (the sentence must open the
    # text), and the whole first line is compared, so the hedge makes it
    # another answer.
    "correct": [("Rome", "Paris"), ("Paris. I don't know.", "Paris"), ("", "Paris")],
}


@pytest.mark.parametrize(
    ("text", "base_answer", "expected"),
    [(text, base_answer, action) for action, pairs in CLASSIFIED.items() for text, base_answer in pairs],
)
def test_classify_action_golden(text: str, base_answer: str, expected: str) -> None:
    assert classify_action(text, base_answer) == expected


def test_classify_action_compares_mcq_letters(tiny_run: dict[str, Any]) -> None:
    from meta_spider.loom.datasets import QAExample

    example = QAExample(id="m1", question="Pick one", answer="B", choices=("x", "y", "z", "w"))
    normalize = QABenchmark(tiny_run["dataset"], activations=tiny_run["activations"]).normalizer(example)
    assert classify_action("B) y", "B", normalize) == "confirm"
    assert classify_action("Answer: C", "B", normalize) == "correct"


def test_question_outcome_rejects_a_correct_refusal() -> None:
    with pytest.raises(ValueError, match="refusal cannot be a correct answer"):
        QuestionOutcome("q", "?", "a", True, REFUSAL_SENTENCE, "refuse", True)
    with pytest.raises(ValueError, match="action must be one of"):
        QuestionOutcome("q", "?", "a", True, "a", "answer", True)


# ------------------------------------------------------------------ probe


def test_logistic_probe_matches_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5)) * np.array([1.0, 3.0, 0.5, 2.0, 1.0]) + 2.0
    y = (x[:, 0] - 0.3 * x[:, 1] + rng.normal(scale=1.0, size=80)) > 1.0
    l2 = 0.1
    probe = LogisticProbe(l2=l2).fit(x, y)
    # sklearn minimises C * sum(loss) + |w|^2 / 2; ours mean(loss) + l2 |w|^2 / 2.
    reference = LogisticRegression(C=1.0 / (l2 * len(y)), tol=1e-10, max_iter=10_000)
    reference.fit(StandardScaler().fit_transform(x), y)
    ours = probe.predict_proba(x)
    theirs = reference.predict_proba(StandardScaler().fit(x).transform(x))[:, 1]
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_select_probe_layer_finds_the_informative_layer() -> None:
    rng = np.random.default_rng(1)
    n, d = 60, 8
    labels = np.arange(n) % 2 == 0
    states = rng.normal(size=(n, 3, d))
    states[:, 1, 2] += np.where(labels, 1.5, -1.5)  # only layer 11 carries the answer
    choice = select_probe_layer(states, labels, [10, 11, 12], folds=4)
    assert choice.layer == 11 and choice.layer_position == 1
    assert choice.cv_auroc[11] > 0.9 > max(choice.cv_auroc[10], choice.cv_auroc[12])
    assert auroc(choice.probe.predict_proba(states[:, 1]), labels) > 0.9


def test_signal_baselines_fit_signals_alone_and_with_the_best_layer() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from meta_spider.loom.evaluate.baselines import fit_signal_baselines

    rng = np.random.default_rng(2)
    n, d = 120, 6
    labels = rng.random(n) < 0.5
    # half the answer is in the signals, the other half only in layer 11's state
    signals = rng.normal(size=(n, 2)) + np.where(labels, 0.8, -0.8)[:, None] * np.array([1.0, 0.0])
    states = rng.normal(size=(n, 2, d))
    states[:, 1, 0] += np.where(labels, 1.0, -1.0)
    fitted = fit_signal_baselines(states, signals, labels, [10, 11], ("a", "b"), folds=4)
    assert fitted.layer == 11 and fitted.n_fit == n and fitted.signals == ("a", "b")
    scores = fitted.scores(states, signals)
    # signals alone: scikit-learn's default penalty (C = 1) on standardised signals
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(StandardScaler().fit_transform(signals), labels)
    np.testing.assert_allclose(scores["signals_score"],
                               reference.predict_proba(StandardScaler().fit(signals).transform(signals))[:, 1], atol=1e-5)
    assert auroc(scores["probe_signals_score"], labels) > auroc(scores["signals_score"], labels) + 0.05
    assert fitted.to_dict() == {"signals": ["a", "b"], "n_fit": n, "signals_l2": 1.0 / n, "layer": 11, "probe_l2": 1.0}
    with pytest.raises(UndefinedMetricError, match="one class"):
        fit_signal_baselines(states, signals, np.ones(n, dtype=bool), [10, 11], ("a", "b"))
    with pytest.raises(ValueError, match="signals must be"):
        fit_signal_baselines(states, signals[:, :1], labels, [10, 11], ("a", "b"))


def test_select_probe_layer_needs_both_classes() -> None:
    with pytest.raises(UndefinedMetricError, match="linear probe"):
        select_probe_layer(np.zeros((5, 1, 2)), [True, True, True, True, False], [3])


# ------------------------------------------------------------------ benchmark


def test_collected_oracle_is_mixed(tiny_run: dict[str, Any]) -> None:
    activations = tiny_run["activations"]
    for split in SPLITS:
        rows = activations.split_indices(split)
        assert [bool(activations.examples[i]["pass1_correct"]) for i in rows] == expected_oracle(split)


def test_benchmark_aligns_collected_questions(tiny_run: dict[str, Any]) -> None:
    benchmark = QABenchmark(tiny_run["dataset"], split="test", activations=tiny_run["activations"], max_examples=4)
    assert [item.example.id for item in benchmark.items] == ["q14", "q15", "q16", "q17"]
    assert [item.index for item in benchmark.items] == tiny_run["activations"].split_indices("test")[:4]
    assert benchmark.calibration_indices() == tiny_run["activations"].split_indices("validation")
    assert benchmark.describe()["n"] == 4


def test_benchmark_refuses_a_dataset_without_the_collected_questions(tiny_run: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "test.jsonl").write_text(json.dumps({"id": "other", "question": "?", "answer": "a"}) + "\n")
    with pytest.raises(BenchmarkAlignmentError, match="q14") as caught:
        QABenchmark(JsonlDataset.from_options(path=tmp_path), activations=tiny_run["activations"])
    assert caught.value.missing_ids[:2] == ["q14", "q15"]


def test_run_benchmark_with_silent_doubter_confirms_the_base(tiny_run: dict[str, Any],
                                                             pipe_with_silent_doubter: Any) -> None:
    activations = tiny_run["activations"]
    benchmark = QABenchmark(tiny_run["dataset"], split="test", activations=activations)
    outcomes = run_benchmark(pipe_with_silent_doubter, benchmark, max_tokens=MAX_NEW_TOKENS)
    rows = activations.split_indices("test")
    assert [q.base_answer for q in outcomes] == [activations.examples[i]["answer_text"] for i in rows]
    assert [q.text for q in outcomes] == [q.base_answer for q in outcomes]
    assert {q.action for q in outcomes} == {"confirm"}
    assert [q.correct for q in outcomes] == [q.pass1_correct for q in outcomes] == expected_oracle("test")
    np.testing.assert_allclose([q.first_token_max_prob for q in outcomes],
                               activations.tensor("first_token_max_prob")[rows].numpy())
    assert all(0.0 < q.p_correct < 1.0 for q in outcomes)


def test_run_benchmark_without_activations_recomputes_the_oracle(tiny_run: dict[str, Any],
                                                                  pipe_with_silent_doubter: Any) -> None:
    benchmark = QABenchmark(tiny_run["dataset"], split="test", max_examples=3)
    outcomes = run_benchmark(pipe_with_silent_doubter, benchmark, max_tokens=MAX_NEW_TOKENS)
    activations = tiny_run["activations"]
    rows = activations.split_indices("test")[:3]
    assert [q.base_answer for q in outcomes] == [activations.examples[i]["answer_text"] for i in rows]
    assert [q.pass1_correct for q in outcomes] == expected_oracle("test")[:3]
    assert outcomes[0].first_token_max_prob is None


def test_run_benchmark_classifies_the_generated_text(tiny_run: dict[str, Any]) -> None:
    """An untrained Doubter with open gates changes what the base says; every
    row must still be classified from its own text and scored by check_fn."""
    pipe = tiny_run["pipe"]
    doubter = pipe.new_doubter(encoder_dim=16, ca_bottleneck_dim=16, ca_gate_init=0.9)
    pipe.attach(doubter)
    try:
        benchmark = QABenchmark(tiny_run["dataset"], split="test", activations=tiny_run["activations"])
        outcomes = run_benchmark(pipe, benchmark, max_tokens=MAX_NEW_TOKENS)
    finally:
        pipe.detach_all()
    for item, outcome in zip(benchmark.items, outcomes):
        assert outcome.action == classify_action(outcome.text, outcome.base_answer)
        assert outcome.correct == (outcome.action != "refuse" and tiny_run["dataset"].check_fn(outcome.text, item.example))
    assert any(q.text != q.base_answer for q in outcomes), "open gates should change some answers"


def test_run_benchmark_in_batches_gives_each_question_its_own_outcome(tiny_run: dict[str, Any]) -> None:
    """Pass 1 read four questions at a time (the last batch shorter) under a
    gate that answers some and refuses others: every row as one at a time."""
    from meta_spider.wrapper.gates import AnswerGate

    pipe = tiny_run["pipe"]
    pipe.attach(pipe.new_doubter(encoder_dim=16, ca_bottleneck_dim=16, ca_gate_init=0.9,
                                 signals=["draft_logprob_mean"]))
    benchmark = QABenchmark(tiny_run["dataset"], split="test", activations=tiny_run["activations"])
    assert len(benchmark.items) % 4
    try:
        scores = sorted(q.p_correct for q in run_benchmark(pipe, benchmark, max_tokens=MAX_NEW_TOKENS))
        pipe.answer_gate = AnswerGate(threshold=(scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2)
        alone = run_benchmark(pipe, benchmark, max_tokens=MAX_NEW_TOKENS)
        batched = run_benchmark(pipe, benchmark, max_tokens=MAX_NEW_TOKENS, batch_size=4)
        for size in (0, True, 1.5):
            with pytest.raises(ValueError, match="batch_size must be a positive int"):
                run_benchmark(pipe, benchmark, max_tokens=MAX_NEW_TOKENS, batch_size=size)
    finally:
        pipe.answer_gate = None
        pipe.detach_all()
    assert {q.decision for q in alone} == {"gate_refused", "pass2"}
    for one, many in zip(alone, batched):
        assert (many.id, many.text, many.action, many.correct, many.decision) == \
            (one.id, one.text, one.action, one.correct, one.decision)
        assert many.p_correct == pytest.approx(one.p_correct, abs=1e-5)


def test_run_benchmark_reads_the_gates_own_refusal_as_a_refusal(tiny_run: dict[str, Any],
                                                                 pipe_with_silent_doubter: Any) -> None:
    from meta_spider.wrapper.gates import AnswerGate

    pipe = pipe_with_silent_doubter
    pipe.answer_gate = AnswerGate(threshold=math.inf, refusal="Not in my records.")  # refuses everything
    try:
        benchmark = QABenchmark(tiny_run["dataset"], split="test", activations=tiny_run["activations"], max_examples=3)
        outcomes = run_benchmark(pipe, benchmark, max_tokens=MAX_NEW_TOKENS)
    finally:
        pipe.answer_gate = None
    assert [(q.text, q.action, q.correct) for q in outcomes] == [("Not in my records.", "refuse", False)] * 3


def test_run_benchmark_needs_a_doubter(tiny_run: dict[str, Any]) -> None:
    from meta_spider.wrapper import NoDoubterError

    with pytest.raises(NoDoubterError):
        run_benchmark(tiny_run["pipe"], QABenchmark(tiny_run["dataset"], activations=tiny_run["activations"]))


def test_eval_harness_runs_each_task(tiny_run: dict[str, Any], pipe_with_silent_doubter: Any) -> None:
    dataset, activations = tiny_run["dataset"], tiny_run["activations"]
    tasks = [HarnessTask("test", QABenchmark(dataset, "test", activations, max_examples=4), MAX_NEW_TOKENS),
             HarnessTask("validation", QABenchmark(dataset, "validation", activations, max_examples=4,
                                                     calibration_split="train"), MAX_NEW_TOKENS)]
    reports = EvalHarness(pipe_with_silent_doubter, tasks).run()
    assert list(reports) == ["test", "validation"]
    assert [q.id for q in reports["validation"].questions] == ["q6", "q7", "q8", "q9"]
    assert reports["validation"].calibration["split"] == "train"
    with pytest.raises(ValueError, match="unique"):
        EvalHarness(pipe_with_silent_doubter, [tasks[0], tasks[0]])
