"""The comparison report: every number of a fixed behaviour table computed
by hand, the JSON round trip, the rich summary, the risk-coverage PNG, and
BaselineComparison on the tiny real run (probe, calibration, consistency of
P(correct) between generation and the collected states)."""

from __future__ import annotations

import json
import math
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_loom_evaluation import MAX_NEW_TOKENS, expected_oracle, pipe_with_silent_doubter, tiny_run  # noqa: F401

from meta_spider.loom.evaluate.comparison import ComparisonReport, build_report
from meta_spider.loom.evaluate.evaluation import QABenchmark, QuestionOutcome
from meta_spider.loom.evaluate.metrics import expected_calibration_error, selective_metrics
from meta_spider.loom.evaluate.plots import PlotDependencyError, plot_risk_coverage
from meta_spider.policies.actions import REFUSAL_SENTENCE

# id, pass1_correct, action, correct, p_correct, first_token_max_prob, answer_mean_logprob
TABLE = [
    ("q0", True, "confirm", True, 0.92, 0.90, -0.10),
    ("q1", True, "confirm", True, 0.83, 0.50, -0.30),
    ("q2", True, "confirm", True, 0.71, 0.80, -0.20),
    ("q3", True, "refuse", False, 0.33, 0.60, -0.50),   # over-refusal
    ("q4", False, "refuse", False, 0.22, 0.85, -0.40),
    ("q5", False, "refuse", False, 0.12, 0.30, -1.00),
    ("q6", False, "refuse", False, 0.27, 0.40, -0.90),
    ("q7", False, "confirm", False, 0.61, 0.20, -0.80),
    ("q8", False, "correct", True, 0.44, 0.10, -1.20),  # self-correction
    ("q9", True, "correct", False, 0.66, 0.95, -0.05),  # a right answer spoilt
]


def table_outcomes(with_probe: bool = False) -> list[QuestionOutcome]:
    outcomes = []
    for i, (qid, oracle, action, correct, p, first, mean_lp) in enumerate(TABLE):
        text = REFUSAL_SENTENCE if action == "refuse" else f"answer {qid}"
        outcomes.append(QuestionOutcome(qid, f"question {qid}?", f"answer {qid}", oracle, text, action, correct,
                                        p, first, mean_lp, probe_score=(i + 1) / 11 if with_probe else None))
    return outcomes


@pytest.fixture
def report() -> ComparisonReport:
    return build_report(table_outcomes(), benchmark={"dataset": "fixed", "split": "test"})


def test_behaviour_counts_by_hand(report: ComparisonReport) -> None:
    b = report.behaviour
    assert (b.n, b.answered, b.refused) == (10, 6, 4)
    assert b.coverage == 0.6 and b.refusal_rate == 0.4
    assert b.selective_accuracy == pytest.approx(4 / 6)  # q0 q1 q2 q8 of q0 q1 q2 q7 q8 q9
    assert b.overall_accuracy == 0.4
    assert b.base_accuracy == 0.5
    assert b.refusal_precision == 0.75  # q4 q5 q6 of q3 q4 q5 q6
    assert b.over_refusal == 0.25  # q3 of q3 q4 q5 q6
    assert b.knowledge_loss == 0.2  # q3 of q0 q1 q2 q3 q9
    assert report.actions == {"confirm": 4, "correct": 2, "refuse": 4}


def test_paired_tests_by_hand(report: ComparisonReport) -> None:
    from scipy.stats import ttest_rel

    # behaving right: q0 q1 q2 (answered right), q4 q5 q6 (refused, base wrong), q8 (corrected)
    assert (report.mcnemar.base_only, report.mcnemar.modified_only) == (2, 4)  # q3 q9 / q4 q5 q6 q8
    assert report.mcnemar.p_value == pytest.approx(2 * (1 + 6 + 15) / 64)
    base = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
    modified = [1, 1, 1, 0, 1, 1, 1, 0, 1, 0]
    assert report.t_test.mean_difference == pytest.approx(0.2)
    assert report.t_test.std_difference == pytest.approx(math.sqrt(5.6 / 9))
    assert report.t_test.t_statistic == pytest.approx(0.2 / (math.sqrt(5.6 / 9) / math.sqrt(10)))
    assert report.t_test.p_value == pytest.approx(ttest_rel(modified, base).pvalue, rel=1e-9)
    mcnemar, t_test = report.answered_only  # answered: q0 q1 q2 q7 q8 q9
    assert (mcnemar.base_only, mcnemar.modified_only, mcnemar.p_value) == (1, 1, 1.0)  # q9 / q8
    assert t_test.n == 6


def test_doubter_scores_by_hand(report: ComparisonReport) -> None:
    scores = report.doubter_scores
    assert scores.auroc == pytest.approx(23 / 25)
    # descending p: q0 q1 q2 q9 q7 q8 q3 q6 q4 q5 -> errors after k answers: 0 0 0 0 1 2 2 3 4 5
    aurc = sum(Fraction(e, k) for k, e in zip(range(1, 11), (0, 0, 0, 0, 1, 2, 2, 3, 4, 5))) / 10
    assert scores.aurc == pytest.approx(float(aurc))
    # non-empty bins: (.9,1] {.92 T} (.8,.9] {.83 T} (.7,.8] {.71 T} (.6,.7] {.61 F, .66 T}
    # (.4,.5] {.44 F} (.3,.4] {.33 T} (.2,.3] {.22 F, .27 F} (.1,.2] {.12 F}
    ece = (0.08 + 0.17 + 0.29 + 2 * 0.135 + 0.44 + 0.67 + 2 * 0.245 + 0.12) / 10
    assert scores.ece == pytest.approx(ece)
    gate = report.gate_at_coverage
    assert gate.threshold == 0.44 and gate.metrics.answered == 6
    assert gate.metrics.selective_accuracy == pytest.approx(4 / 6)


def test_baselines_at_matched_coverage_by_hand(report: ComparisonReport) -> None:
    assert [b.name for b in report.baselines] == ["always_answer", "first_token_max_prob", "answer_mean_logprob"]
    assert any("linear_probe left out" in note for note in report.notes)
    always = report.baseline("always_answer")
    assert always.matched.metrics.coverage == 1.0 and always.matched.metrics.selective_accuracy == 0.5
    assert always.scores.auroc == 0.5
    first = report.baseline("first_token_max_prob")
    assert first.scores.auroc == pytest.approx(22 / 25)
    # top 6 by first-token prob: q9 q0 q4 q2 q3 q1 -> one wrong (q4); refused q5-q8 all base-wrong
    assert first.matched.threshold == 0.5
    assert first.matched.metrics.selective_accuracy == pytest.approx(5 / 6)
    assert first.matched.metrics.refusal_precision == 1.0 and first.matched.metrics.knowledge_loss == 0.0
    mean_lp = report.baseline("answer_mean_logprob")
    assert mean_lp.scores.auroc == pytest.approx(24 / 25)
    assert mean_lp.matched.metrics.selective_accuracy == pytest.approx(5 / 6)
    # ECE sees exp(mean log-prob), a probability (the raw log-probs would clip to 0)
    oracle = [row[1] for row in TABLE]
    ece, _ = expected_calibration_error(np.exp([row[6] for row in TABLE]), oracle)
    assert mean_lp.scores.ece == pytest.approx(ece) and ece != pytest.approx(0.5)


def test_acceptance_by_hand(report: ComparisonReport) -> None:
    checks = {c.name: c for c in report.acceptance}
    assert checks["doubter_auroc"].passed and checks["doubter_auroc"].value == pytest.approx(0.92)
    assert checks["auroc_margin_over_best_baseline"].value == pytest.approx(0.92 - 0.96)
    assert not checks["auroc_margin_over_best_baseline"].passed
    assert checks["coverage"].passed
    assert checks["selective_accuracy_gain"].value == pytest.approx(4 / 6 - 0.5)
    assert not checks["selective_accuracy_gain"].passed
    assert not checks["refusal_precision"].passed
    assert checks["knowledge_loss"].passed  # 0.2 <= 0.2
    assert checks["mcnemar_p"].value == pytest.approx(0.6875) and not checks["mcnemar_p"].passed
    assert report.passed is False


def test_significant_change_for_the_worse_does_not_pass() -> None:
    # the system refuses everything the base gets right: significant, and wrong
    outcomes = [QuestionOutcome(f"q{i}", "?", "a", True, REFUSAL_SENTENCE, "refuse", False, 0.5) for i in range(12)]
    report = build_report(outcomes)
    check = next(c for c in report.acceptance if c.name == "mcnemar_p")
    assert report.mcnemar.p_value < 0.01 and check.value == 1.0 and check.passed is False
    assert report.behaviour.selective_accuracy is None
    assert next(c for c in report.acceptance if c.name == "selective_accuracy_gain").passed is None
    assert report.doubter_scores.auroc is None


def test_probe_column_becomes_a_baseline() -> None:
    report = build_report(table_outcomes(with_probe=True))
    probe = report.baseline("linear_probe")
    # probe_score = (row + 1) / 11: ranked by row index
    assert probe.scores.auroc == pytest.approx(auroc_by_pairs([(i + 1) / 11 for i in range(10)]))
    assert probe.matched.metrics.answered == 6


def test_baselines_at_their_own_thresholds_by_hand() -> None:
    report = build_report(table_outcomes(), baseline_thresholds={"answer_mean_logprob": (-0.45, "goals"),
                                                                  "first_token_max_prob": (None, "target_risk")})
    mean_lp = report.baseline("answer_mean_logprob").own_threshold
    # answered: q0 q1 q2 q4 q9 (mean log-prob >= -0.45); q4 is the one base-wrong among them;
    # refused q3 q5 q6 q7 q8, of which q3 the base knows
    assert (mean_lp.threshold, mean_lp.rule) == (-0.45, "goals")
    assert mean_lp.metrics.coverage == 0.5 and mean_lp.metrics.selective_accuracy == pytest.approx(4 / 5)
    assert mean_lp.metrics.refusal_precision == pytest.approx(4 / 5)
    assert mean_lp.metrics.knowledge_loss == pytest.approx(1 / 5)
    nothing = report.baseline("first_token_max_prob").own_threshold  # a threshold that answers nothing
    assert nothing.threshold is None and nothing.metrics.coverage == 0.0 and nothing.metrics.knowledge_loss == 1.0
    assert report.baseline("always_answer").own_threshold is None
    # the matched-coverage rows do not move
    assert report.baseline("answer_mean_logprob").matched == build_report(table_outcomes()).baseline(
        "answer_mean_logprob").matched
    text = report.to_json()
    assert json.loads(text)["baselines"][2]["own_threshold"]["metrics"]["coverage"] == 0.5
    assert ComparisonReport.from_json(text).to_json() == text
    assert "at own threshold" in str(report.summary()) and "at own threshold" not in str(build_report(
        table_outcomes()).summary())


def auroc_by_pairs(scores: list[float]) -> float:
    labels = [row[1] for row in TABLE]
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def test_json_round_trip(report: ComparisonReport) -> None:
    text = report.to_json()
    data = json.loads(text)
    assert data["schema_version"] == 2
    assert set(data) == {"schema_version", "benchmark", "definitions", "doubter", "paired", "baselines", "calibration",
                         "probe", "acceptance", "questions", "notes"}
    assert data["doubter"]["behaviour"]["coverage"] == 0.6
    assert data["paired"]["mcnemar"]["modified_only"] == 4
    assert data["questions"][3]["action"] == "refuse"
    again = ComparisonReport.from_json(text)
    assert again.to_json() == text
    assert again.behaviour == report.behaviour
    np.testing.assert_array_equal(again.doubter_scores.curve.risk, report.doubter_scores.curve.risk)
    assert again.questions == report.questions


def test_json_round_trip_keeps_an_infinite_t(report: ComparisonReport) -> None:
    outcomes = [QuestionOutcome(f"q{i}", "?", "a", False, "b", "correct", True, 0.5) for i in range(4)]
    text = build_report(outcomes).to_json()
    assert json.loads(text)["paired"]["t_test"]["t_statistic"] == "inf"
    assert ComparisonReport.from_json(text).t_test.t_statistic == math.inf


def test_json_reads_a_version_1_report_with_its_meaning_kept(report: ComparisonReport) -> None:
    # Version 1 called the share of base-right questions refused "over_refusal".
    def older(metrics: dict) -> dict:
        metrics = dict(metrics)
        metrics["over_refusal"] = metrics.pop("knowledge_loss")
        return metrics

    data = json.loads(report.to_json())
    data["schema_version"] = 1
    data["doubter"]["behaviour"] = older(data["doubter"]["behaviour"])
    for baseline in data["baselines"]:
        baseline["matched"]["metrics"] = older(baseline["matched"]["metrics"])
    for check in data["acceptance"]:
        if check["name"] == "knowledge_loss":
            check["name"] = "over_refusal"
    again = ComparisonReport.from_dict(data)
    assert again.behaviour.knowledge_loss == 0.2 and again.behaviour.over_refusal == 0.25
    assert [c.name for c in again.acceptance] == [c.name for c in report.acceptance]
    for old, new in zip(again.baselines, report.baselines):
        assert old.matched.metrics.knowledge_loss == new.matched.metrics.knowledge_loss
        assert old.matched.metrics.over_refusal == pytest.approx(new.matched.metrics.over_refusal)


def test_json_refuses_another_schema_version(report: ComparisonReport) -> None:
    data = report.to_dict() | {"schema_version": 99}
    with pytest.raises(ValueError, match="schema_version 99"):
        ComparisonReport.from_dict(data)


def test_summary_is_a_rich_table(report: ComparisonReport) -> None:
    import io

    from rich.console import Console

    console = Console(record=True, width=200, file=io.StringIO())
    console.print(report.summary())
    console.print(report.acceptance_table())
    text = console.export_text()
    assert "Doubter (generated text)" in text and "first_token_max_prob" in text
    assert "0.920" in text  # the Doubter's AUROC
    assert "McNemar p=0.688" in text and "Acceptance 3/7" in text
    # print() shows the same table as text, not an object's repr
    summary = report.summary()
    assert isinstance(summary, str) and "Doubter (generated text)" in summary and "0.920" in summary
    assert "Table object" not in str(summary) and "McNemar p=0.688" in summary


def test_risk_coverage_png(report: ComparisonReport, tmp_path: Path) -> None:
    from matplotlib.image import imread

    path = plot_risk_coverage(report, tmp_path / "plots" / "rc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_plot_without_matplotlib_says_how_to_fix(report: ComparisonReport, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # import now fails
    with pytest.raises(PlotDependencyError, match=r"meta-spider\[plot\]"):
        plot_risk_coverage(report, tmp_path / "rc.png")
    assert not (tmp_path / "rc.png").exists()


# ------------------------------------------------------------------ the real run


def test_baseline_comparison_on_the_tiny_run(tiny_run: dict[str, Any], pipe_with_silent_doubter: Any) -> None:
    from meta_spider.loom.evaluate.comparison import BaselineComparison

    benchmark = QABenchmark(tiny_run["dataset"], split="test", activations=tiny_run["activations"])
    report = BaselineComparison(pipe_with_silent_doubter, benchmark, max_tokens=MAX_NEW_TOKENS,
                                probe_folds=2, answer_gate=False).run()
    # gates at 0 and no answer gate: the system says what the base said, so it behaves like always-answer
    assert report.behaviour.coverage == 1.0 and report.actions["confirm"] == 6
    assert report.decisions == {"pass2": 6, "gate_refused": 0, "base_answer": 0}
    assert report.behaviour.selective_accuracy == report.behaviour.base_accuracy == 0.5
    assert report.mcnemar.discordant == 0 and report.mcnemar.p_value == 1.0
    assert [q.pass1_correct for q in report.questions] == expected_oracle("test")
    assert report.benchmark["p_correct_max_abs_diff_vs_collected_states"] < 1e-5
    assert report.probe["layer"] in (4, 5) and report.probe["split"] == "validation"
    assert all(q.probe_score is not None for q in report.questions)
    assert [b.name for b in report.baselines][-3:] == ["linear_probe", "signals_logistic", "probe_signals_logistic"]
    # the signal baselines are fitted on the training split, never on the evaluated one
    from meta_spider.loom.evaluate.probe import LogisticProbe
    from meta_spider.wrapper.signals import SIGNALS

    activations = tiny_run["activations"]
    train, test = activations.split_indices("train"), activations.split_indices("test")
    signals = activations.signals(SIGNALS).numpy()
    expected = LogisticProbe(1.0 / len(train)).fit(signals[train], expected_oracle("train")).predict_proba(signals[test])
    np.testing.assert_allclose([q.signals_score for q in report.questions], expected, atol=1e-9)
    assert all(q.probe_signals_score is not None for q in report.questions)
    assert report.benchmark["signal_baselines"]["split"] == "train"
    assert report.benchmark["signal_baselines"]["signals"] == list(SIGNALS)
    best = report.best_baseline
    margin = next(c for c in report.acceptance if c.name == "auroc_margin_over_best_baseline").value
    assert margin == pytest.approx(report.doubter_scores.auroc - best.scores.auroc)
    assert best.scores.auroc == max(b.scores.auroc for b in report.baselines
                                    if b.name != "always_answer" and b.scores.auroc is not None)
    calibration = report.calibration
    # four validation questions cannot meet the behaviour goals: the fallback is the base's accuracy there
    assert calibration["rule"] == "target_coverage" and any("no threshold meets the behaviour goals" in n
                                                              for n in report.notes)
    assert calibration["split"] == "validation" and calibration["target_coverage"] == 0.5
    assert calibration["coverage"] >= 0.5 and 0.0 < calibration["threshold"] < 1.0
    assert calibration["evaluated"]["n"] == 6 and calibration["gated_generation"] is False
    # each baseline but the probe also gated at its own threshold, chosen on validation by the Doubter's rule
    from meta_spider.loom.evaluate.metrics import choose_threshold

    validation = activations.split_indices("validation")
    fitted_on_train = LogisticProbe(1.0 / len(train)).fit(signals[train], expected_oracle("train"))
    validation_scores = {"signals_logistic": fitted_on_train.predict_proba(signals[validation]),
                         "answer_mean_logprob": activations.tensor("answer_mean_logprob").numpy()[validation]}
    test_scores = {"signals_logistic": expected, "answer_mean_logprob": [q.answer_mean_logprob for q in report.questions]}
    for name, scores in validation_scores.items():
        own = report.baseline(name).own_threshold
        choice = choose_threshold(scores.astype(np.float64), expected_oracle("validation"), target_coverage=0.5)
        assert own.rule == "target_coverage" and own.threshold == pytest.approx(choice.threshold)
        oracle = expected_oracle("test")
        assert own.metrics == selective_metrics(np.asarray(test_scores[name]) >= own.threshold, oracle, oracle)
    assert {b.name for b in report.baselines if b.own_threshold is not None} == {
        "first_token_max_prob", "answer_mean_logprob", "signals_logistic", "probe_signals_logistic"}
    assert ComparisonReport.from_json(report.to_json()).to_json() == report.to_json()


def test_baseline_comparison_generates_under_the_calibrated_gate(tiny_run: dict[str, Any],
                                                                  pipe_with_silent_doubter: Any) -> None:
    from meta_spider.loom.evaluate.comparison import BaselineComparison
    from meta_spider.loom.evaluate.metrics import BehaviourGoals

    benchmark = QABenchmark(tiny_run["dataset"], split="test", activations=tiny_run["activations"])
    lenient = BehaviourGoals(min_coverage=0.0, min_selective_gain=-1.0, min_refusal_precision=0.0, max_knowledge_loss=1.0)
    report = BaselineComparison(pipe_with_silent_doubter, benchmark, max_tokens=MAX_NEW_TOKENS, probe_folds=2,
                                goals=lenient).run()
    calibration = report.calibration
    # every threshold meets lenient goals: the one that answers most is the lowest validation score
    assert calibration["rule"] == "goals" and calibration["coverage"] == 1.0 and calibration["goals"] == lenient.to_dict()
    assert calibration["gated_generation"] is True and pipe_with_silent_doubter.answer_gate is None  # restored
    for question in report.questions:
        below = question.p_correct < calibration["threshold"]
        assert question.decision == ("gate_refused" if below else "pass2")
        assert question.action == ("refuse" if below else "confirm")
    gate = selective_metrics([q.decision == "pass2" for q in report.questions],
                             [q.pass1_correct for q in report.questions], [q.pass1_correct for q in report.questions])
    assert report.behaviour == gate  # the text follows the threshold (the silent Doubter keeps the base's answers)
    assert calibration["evaluated"] == gate.to_dict()


def test_baseline_comparison_calibrates_for_a_target_risk(tiny_run: dict[str, Any],
                                                          pipe_with_silent_doubter: Any) -> None:
    from meta_spider.loom.evaluate.comparison import BaselineComparison
    from meta_spider.loom.evaluate.metrics import choose_threshold

    benchmark = QABenchmark(tiny_run["dataset"], split="test", activations=tiny_run["activations"], max_examples=2)
    comparison = BaselineComparison(pipe_with_silent_doubter, benchmark, max_tokens=MAX_NEW_TOKENS, target_risk=0.25)
    report = comparison.run()
    activations = tiny_run["activations"]
    rows = activations.split_indices("validation")
    states, layers, _ = comparison._states()
    scores = comparison._doubter_p_correct(states, layers, rows)
    expected = choose_threshold(scores, expected_oracle("validation"), target_risk=0.25).to_dict()
    assert {k: report.calibration[k] for k in expected} == expected
