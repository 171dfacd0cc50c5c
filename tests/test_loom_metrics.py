"""Selective-prediction metrics: cross-checked against scikit-learn where it
has the metric (AUROC, calibration bins), against brute force over tie
orders (AURC, PRR), and on hand-worked examples (behaviour metrics,
thresholds, matched coverage)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score

from meta_spider.loom.evaluate.metrics import (
    BehaviourGoals,
    SelectiveMetrics,
    ThresholdChoice,
    UndefinedMetricError,
    answer_mask_at_coverage,
    auroc,
    choose_threshold,
    evaluate_at_coverage,
    expected_calibration_error,
    prediction_rejection_ratio,
    risk_coverage_curve,
    score_metrics,
    selective_metrics,
    threshold_for_goals,
)


# ------------------------------------------------------------------ AUROC


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=2, max_size=40).filter(
        lambda rows: len({label for _, label in rows}) == 2
    )
)
def test_auroc_matches_sklearn_with_heavy_ties(rows: list[tuple[int, bool]]) -> None:
    scores = np.array([score / 6 for score, _ in rows])  # few distinct values: many ties
    labels = np.array([label for _, label in rows])
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_hand_values_and_undefined() -> None:
    assert auroc([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    assert auroc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]) == 0.5
    with pytest.raises(UndefinedMetricError, match="both classes"):
        auroc([0.1, 0.9], [True, True])
    with pytest.raises(ValueError, match="one length per question"):
        auroc([0.1, 0.9], [True])
    with pytest.raises(ValueError, match="finite"):
        auroc([0.1, float("nan")], [True, False])


# ------------------------------------------------------------------ risk-coverage


def _naive_aurc(scores: list[float], correct: list[bool]) -> float:
    """Mean risk over k for one fixed order of the questions (highest first)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    errors = np.cumsum([not correct[i] for i in order])
    return float(np.mean(errors / np.arange(1, len(scores) + 1)))


def _aurc_over_tie_orders(scores: list[float], correct: list[bool]) -> float:
    """Average of the naive AURC over every order of the questions that
    keeps higher scores first (brute force)."""
    values = []
    for permutation in itertools.permutations(range(len(scores))):
        ordered = sorted(permutation, key=lambda i: -scores[i])  # stable: keeps the permutation inside ties
        errors = np.cumsum([not correct[i] for i in ordered])
        values.append(np.mean(errors / np.arange(1, len(scores) + 1)))
    return float(np.mean(values))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.booleans()), min_size=1, max_size=6))
def test_aurc_is_the_expectation_over_orders_of_tied_scores(rows: list[tuple[int, bool]]) -> None:
    scores = [float(s) for s, _ in rows]
    correct = [c for _, c in rows]
    assert risk_coverage_curve(scores, correct).aurc == pytest.approx(_aurc_over_tie_orders(scores, correct), abs=1e-12)


def test_risk_coverage_curve_without_ties_and_constant_scores() -> None:
    scores = [0.9, 0.7, 0.5, 0.3, 0.1]
    correct = [True, False, True, True, False]
    curve = risk_coverage_curve(scores, correct)
    assert curve.coverage.tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert curve.risk.tolist() == pytest.approx([0.0, 0.5, 1 / 3, 0.25, 0.4])
    assert curve.thresholds.tolist() == scores
    assert curve.aurc == pytest.approx(_naive_aurc(scores, correct))
    constant = risk_coverage_curve([0.5] * 5, correct)
    assert constant.coverage.tolist() == [1.0]
    assert constant.aurc == pytest.approx(0.4)  # the error rate, whatever the order


# ------------------------------------------------------------------ PRR


def _naive_prr(scores: list[float], correct: list[bool]) -> float:
    n = len(scores)
    order = sorted(range(n), key=lambda i: -scores[i])
    wrong = [not correct[i] for i in order]
    errors = sum(wrong)
    model = sum(sum(wrong[:k]) / n for k in range(1, n + 1)) / n
    oracle_order = sorted(wrong)  # right answers first
    oracle = sum(sum(oracle_order[:k]) / n for k in range(1, n + 1)) / n
    random = sum(errors * k / n / n for k in range(1, n + 1)) / n
    return (random - model) / (random - oracle)


def test_prediction_rejection_ratio_reference_points() -> None:
    correct = [True, True, False, True, False, False, True, True]
    perfect = [0.9 if c else 0.1 for c in correct]
    assert prediction_rejection_ratio(perfect, correct) == pytest.approx(1.0)
    assert prediction_rejection_ratio([1 - p for p in perfect], correct) < 0
    assert prediction_rejection_ratio([0.5] * len(correct), correct) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(3)
    scores = rng.permutation(len(correct)).astype(float).tolist()  # distinct: no tie handling involved
    assert prediction_rejection_ratio(scores, correct) == pytest.approx(_naive_prr(scores, correct))
    with pytest.raises(UndefinedMetricError, match="PRR"):
        prediction_rejection_ratio([0.1, 0.2], [True, True])


# ------------------------------------------------------------------ ECE


def test_ece_bins_match_sklearn_calibration_curve() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=300)
    p[:4] = [0.0, 0.1, 0.2, 1.0]  # values on bin edges go where sklearn puts them
    y = rng.uniform(size=300) < p
    for n_bins in (5, 10, 15):
        ece, table = expected_calibration_error(p, y, n_bins)
        prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
        assert table["accuracy"] == pytest.approx(prob_true.tolist())
        assert table["confidence"] == pytest.approx(prob_pred.tolist())
        counts = np.array(table["count"])
        assert counts.sum() == 300
        assert ece == pytest.approx(float((counts / 300 * np.abs(prob_true - prob_pred)).sum()))


def test_ece_hand_value_and_validation() -> None:
    # Bin (0.0, 0.5]: scores 0.2, 0.4 -> confidence 0.3, accuracy 0.5.
    # Bin (0.5, 1.0]: scores 0.8, 0.9 -> confidence 0.85, accuracy 1.0.
    ece, table = expected_calibration_error([0.2, 0.4, 0.8, 0.9], [True, False, True, True], n_bins=2)
    assert ece == pytest.approx(0.5 * 0.2 + 0.5 * 0.15)
    assert table["lower"] == [0.0, 0.5] and table["upper"] == [0.5, 1.0]
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0.5], [True], n_bins=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.5], [True])


# ------------------------------------------------------------------ behaviour


def test_selective_metrics_against_the_oracle() -> None:
    pass1_correct = [True, True, True, False, False, False, True, False]
    answered = [True, True, False, True, False, False, True, False]
    correct = [True, True, False, False, True, False, True, False]  # a refused row's value is ignored
    result = selective_metrics(answered, correct, pass1_correct)
    assert (result.n, result.answered, result.refused) == (8, 4, 4)
    assert result.coverage == 0.5 and result.refusal_rate == 0.5
    assert result.selective_accuracy == 0.75
    assert result.overall_accuracy == 3 / 8
    assert result.base_accuracy == 0.5
    # Refused: questions 2 (base right), 4, 5, 7 (base wrong): 3 of 4 justified.
    assert result.refusal_precision == 0.75
    # Of the 4 refusals, the base knew 1 (question 2).
    assert result.over_refusal == 0.25 and result.over_refusal == 1 - result.refusal_precision
    # Base right on 0, 1, 2, 6; refused only 2.
    assert result.knowledge_loss == 0.25
    assert SelectiveMetrics.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_over_refusal_and_knowledge_loss_differ() -> None:
    # The base knows 4 of 8; the system refuses 2 of them and nothing else:
    # every refusal was of a question the base knew, half of what it knew is lost.
    result = selective_metrics([False, False, True, True, True, True, True, True],
                               [False, False, True, True, False, False, False, False],
                               [True, True, True, True, False, False, False, False])
    assert result.over_refusal == 1.0 and result.refusal_precision == 0.0
    assert result.knowledge_loss == 0.5


def test_selective_metrics_from_a_dict_written_before_knowledge_loss() -> None:
    result = selective_metrics([True, False, False, True], [True, False, False, False], [True, True, False, False])
    old = result.to_dict()
    old["over_refusal"] = old.pop("knowledge_loss")  # the earlier name of that quantity
    assert SelectiveMetrics.from_dict(old) == result


def test_selective_metrics_empty_denominators_are_none() -> None:
    always = selective_metrics([True, True], [True, False], [True, False])
    assert always.refusal_precision is None and always.over_refusal is None and always.knowledge_loss == 0.0
    never = selective_metrics([False, False], [False, False], [False, False])
    assert never.selective_accuracy is None and never.knowledge_loss is None and never.refusal_precision == 1.0
    assert never.over_refusal == 0.0
    with pytest.raises(ValueError, match="booleans"):
        selective_metrics([2, 0], [1, 0], [1, 0])


def test_score_metrics_bundle_and_undefined_members() -> None:
    result = score_metrics([0.9, 0.8, 0.3, 0.2], [True, True, False, True])
    assert result.auroc == pytest.approx(roc_auc_score([1, 1, 0, 1], [0.9, 0.8, 0.3, 0.2]))
    assert result.aurc == pytest.approx(risk_coverage_curve([0.9, 0.8, 0.3, 0.2], [True, True, False, True]).aurc)
    document = json.loads(json.dumps(result.to_dict()))
    assert document["curve"]["coverage"] == [0.25, 0.5, 0.75, 1.0]
    one_class = score_metrics([0.9, 0.2], [True, True])
    assert one_class.auroc is None and one_class.prr is None and one_class.aurc == 0.0


# ------------------------------------------------------------------ thresholds


def test_choose_threshold_for_target_coverage_respects_ties() -> None:
    scores = [0.9, 0.8, 0.8, 0.7, 0.1]
    choice = choose_threshold(scores, target_coverage=0.4)
    assert choice.threshold == 0.8 and choice.coverage == 0.6  # the tie at 0.8 cannot be split
    assert choose_threshold(scores, target_coverage=0.2).threshold == 0.9
    assert choose_threshold(scores, target_coverage=1.0).threshold == 0.1
    assert choose_threshold(scores, target_coverage=0.0).coverage == 0.0


def test_choose_threshold_for_target_risk_takes_the_largest_coverage() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    correct = [True, True, False, True, False]  # risk by coverage: 0, 0, 1/3, 1/4, 2/5
    choice = choose_threshold(scores, correct, target_risk=0.25)
    assert choice.threshold == 0.6 and choice.coverage == 0.8 and choice.risk == 0.25
    strict = choose_threshold(scores, correct, target_risk=0.0)
    assert strict.threshold == 0.8 and strict.risk == 0.0
    impossible = choose_threshold([0.9, 0.1], [False, False], target_risk=0.1)
    assert impossible.threshold == math.inf and impossible.coverage == 0.0 and impossible.risk is None
    # JSON cannot hold inf: it round-trips through None.
    assert ThresholdChoice.from_dict(json.loads(json.dumps(impossible.to_dict()))) == impossible
    with pytest.raises(ValueError, match="exactly one"):
        choose_threshold(scores, correct)
    with pytest.raises(ValueError, match="correct="):
        choose_threshold(scores, target_risk=0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        choose_threshold(scores, target_coverage=1.5)


def test_threshold_for_goals_takes_the_widest_margin() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    correct = [True, True, True, True, False, True, False, False, False, False]  # base accuracy 0.5
    # Meeting the default goals: 0.3 (coverage 0.7, gain +0.214: margin 0.014), 0.4 (coverage 0.6, gain
    # +0.333, nothing right refused: margin 0.1) and 0.5 (coverage, precision and knowledge loss exactly at
    # their goals: margin 0). The widest margin wins.
    choice = threshold_for_goals(scores, correct, BehaviourGoals())
    assert choice.threshold == 0.4 and choice.coverage == 0.6 and choice.risk == pytest.approx(1 / 6)
    assert choice.goals == BehaviourGoals().to_dict() and choice.target_coverage is None
    assert ThresholdChoice.from_dict(json.loads(json.dumps(choice.to_dict()))) == choice
    at_03 = selective_metrics([s >= 0.3 for s in scores], correct, correct)
    assert BehaviourGoals().margin(at_03) == pytest.approx(5 / 7 - 0.5 - 0.2)  # the gain's margin is the smallest
    wide = threshold_for_goals(scores, correct, BehaviourGoals(min_coverage=0.65))
    assert wide.threshold == 0.3 and wide.coverage == 0.7  # the only one answering 65%
    assert threshold_for_goals(scores, correct, BehaviourGoals(min_coverage=0.8)) is None
    with pytest.raises(ValueError, match="max_knowledge_loss"):
        BehaviourGoals(max_knowledge_loss=1.5)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.booleans()), min_size=1, max_size=30),
       st.floats(0.0, 1.0), st.floats(-0.2, 0.5), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_threshold_for_goals_matches_a_brute_force_search(rows: list[tuple[int, bool]], coverage: float, gain: float,
                                                          precision: float, over: float) -> None:
    scores = np.array([score / 10 for score, _ in rows])
    correct = np.array([label for _, label in rows])
    goals = BehaviourGoals(min_coverage=coverage, min_selective_gain=gain, min_refusal_precision=precision,
                           max_knowledge_loss=over)
    margins = {t: goals.margin(selective_metrics(scores >= t, correct, correct)) for t in sorted(set(scores.tolist()))}
    meeting = {t: m for t, m in margins.items() if m is not None and m >= -1e-12}
    choice = threshold_for_goals(scores, correct, goals)
    if not meeting:
        assert choice is None
        return
    widest = max(meeting.values())
    assert choice.threshold == min(t for t, m in meeting.items() if m >= widest - 1e-12)
    behaviour = selective_metrics(scores >= choice.threshold, correct, correct)
    assert goals.met_by(behaviour) and behaviour.coverage == choice.coverage


# ------------------------------------------------------------------ matched coverage


def test_answer_mask_at_coverage_is_exact_and_breaks_ties_by_question_order() -> None:
    scores = [0.5, 0.9, 0.5, 0.5, 0.1]
    assert answer_mask_at_coverage(scores, 0.4).tolist() == [True, True, False, False, False]
    assert answer_mask_at_coverage(scores, 0.6).tolist() == [True, True, True, False, False]
    assert answer_mask_at_coverage(scores, 0.0).sum() == 0
    assert answer_mask_at_coverage(scores, 1.0).all()
    assert answer_mask_at_coverage([0.3, 0.2, 0.1, 0.0], 0.625).sum() == 3  # 2.5 rounds up


def test_evaluate_at_coverage_matches_behaviour_metrics_on_the_mask() -> None:
    rng = np.random.default_rng(7)
    scores = np.round(rng.uniform(size=50), 1)  # ties on purpose
    pass1_correct = rng.uniform(size=50) < 0.6
    result = evaluate_at_coverage(scores, pass1_correct, 0.46)
    mask = answer_mask_at_coverage(scores, 0.46)
    assert result.metrics.coverage == 0.46 and mask.sum() == 23
    assert result.metrics == selective_metrics(mask, pass1_correct, pass1_correct)
    assert result.threshold == scores[mask].min()
    assert result.split_ties == bool(np.any(scores[~mask] == result.threshold))
    again = evaluate_at_coverage(scores, pass1_correct, 0.46)
    assert again == result  # deterministic
    json.dumps(result.to_dict())
    nothing = evaluate_at_coverage(scores, pass1_correct, 0.0)
    assert nothing.threshold is None and nothing.metrics.selective_accuracy is None


def test_matched_coverage_ranks_a_good_scorer_above_a_bad_one() -> None:
    pass1_correct = np.array([True] * 6 + [False] * 4)
    good = np.where(pass1_correct, 0.8, 0.2)
    bad = np.where(pass1_correct, 0.2, 0.8)
    good_result = evaluate_at_coverage(good, pass1_correct, 0.5).metrics
    bad_result = evaluate_at_coverage(bad, pass1_correct, 0.5).metrics
    assert good_result.selective_accuracy == 1.0 and good_result.refusal_precision == 0.8
    assert bad_result.selective_accuracy == 0.2 and bad_result.knowledge_loss == 5 / 6


def test_a_fixed_threshold_reports_what_it_does_on_the_scores() -> None:
    from meta_spider.loom.evaluate.metrics import fixed_threshold

    choice = fixed_threshold([0.1, 0.5, 0.9, 0.7], [False, False, True, True], np.float32(0.5))
    assert (choice.threshold, choice.coverage, choice.risk, choice.n) == (0.5, 0.75, pytest.approx(1 / 3), 4)
    assert choice.target_coverage is None and choice.target_risk is None
    nothing = fixed_threshold([0.1, 0.5], [False, True], math.inf)
    assert nothing.coverage == 0.0 and nothing.risk is None and nothing.to_dict()["threshold"] is None
    for bad in (True, math.nan, "0.5"):
        with pytest.raises(ValueError, match="threshold must be a number"):
            fixed_threshold([0.1], [True], bad)
