"""Score metrics: how well per-question scores (``p_correct``, higher =
more confident) rank the frozen base's right and wrong answers
(``pass1_correct``, the oracle).

AUROC, the risk-coverage curve and its area (AURC), expected calibration
error (ECE) and the prediction-rejection ratio (PRR). Tied scores are
handled without an arbitrary order: AUROC counts a tie as half a win (as
scikit-learn does) and the risk-coverage metrics use the expected value over
every order of the tied questions. Also the input checks and the JSON view
that :mod:`~meta_spider.loom.evaluate.metrics` shares.

This module knows nothing about models, prompts or datasets: it sees arrays.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from meta_spider.plugins.errors import MetaSpiderError

__all__ = [
    "ArrayLike",
    "JsonReady",
    "RiskCoverageCurve",
    "ScoreMetrics",
    "UndefinedMetricError",
    "auroc",
    "check_flags",
    "check_same_length",
    "check_scores",
    "expected_calibration_error",
    "prediction_rejection_ratio",
    "risk_coverage_curve",
    "score_metrics",
]

ArrayLike = Union[Sequence[float], Sequence[bool], np.ndarray]


class UndefinedMetricError(MetaSpiderError, ValueError, fields=("metric", "reason")):
    """A metric has no value for these inputs (for example AUROC when every
    question has the same label)."""

    template = "{metric} is undefined: {reason}"


def check_scores(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as a finite 1-D float64 array; ValueError naming ``name`` otherwise."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = array[~np.isfinite(array)][:3].tolist()
        raise ValueError(f"{name} must be finite, got {bad!r}")
    return array


def check_flags(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` (booleans or 0/1) as a 1-D bool array; ValueError naming ``name`` otherwise."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.dtype != np.bool_:
        if array.size and not np.all(np.isin(array, (0, 1))):
            raise ValueError(f"{name} must hold booleans (or 0/1), got {array[:5].tolist()!r}")
        array = array.astype(bool)
    return array


def check_same_length(**arrays: np.ndarray) -> int:
    """The one non-zero length of ``arrays``; ValueError naming each length otherwise."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have one length per question, got {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError(f"inputs are empty: {sorted(lengths)} need at least one question")
    return n


class JsonReady:
    """A dataclass mixin: ``to_dict`` for JSON."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (numpy values become floats and lists)."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}  # type: ignore[call-overload]


def _tie_groups(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal values in sorted scores: start and end (exclusive)
    index of each run, and the run index of every position."""
    is_start = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    starts = np.flatnonzero(is_start)
    ends = np.r_[starts[1:], sorted_scores.size]
    return starts, ends, np.cumsum(is_start) - 1


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve of ``scores`` for the positive ``labels``.

    Equals the probability that a random positive outscores a random
    negative, a tie counting one half (the Mann-Whitney statistic), which is
    what scikit-learn's ``roc_auc_score`` computes. Raises
    :class:`UndefinedMetricError` when only one class is present.
    """
    score = check_scores(scores, "scores")
    label = check_flags(labels, "labels")
    check_same_length(scores=score, labels=label)
    n_pos = int(label.sum())
    n_neg = label.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise UndefinedMetricError("AUROC", f"needs both classes, got {n_pos} positive and {n_neg} negative")
    # Average ranks give tied scores the mean of the ranks they span.
    order = np.argsort(score, kind="mergesort")
    starts, ends, group = _tie_groups(score[order])
    ranks = np.empty(score.size, dtype=np.float64)
    ranks[order] = ((starts + ends + 1) / 2.0)[group]
    u_statistic = ranks[label].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))


@dataclass(frozen=True)
class RiskCoverageCurve(JsonReady):
    """Risk (error rate among answered) against coverage, answering the most
    confident questions first; one point per distinct score, from the highest
    (smallest coverage) down. ``thresholds[i]`` answers ``score >= thresholds[i]``."""

    coverage: np.ndarray
    risk: np.ndarray
    thresholds: np.ndarray
    aurc: float


def _expected_errors_by_rank(score: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Expected number of errors among the top-k questions for k = 1..n, with
    tied scores in a uniformly random order (so ties are never broken by the
    arbitrary question order)."""
    order = np.argsort(-score, kind="mergesort")
    errors = (~correct[order]).astype(np.float64)
    starts, ends, group = _tie_groups(score[order])
    group_errors = np.add.reduceat(errors, starts)
    errors_before = np.cumsum(group_errors) - group_errors
    taken = np.arange(score.size) - starts[group] + 1.0
    return errors_before[group] + taken * (group_errors / (ends - starts))[group]


def risk_coverage_curve(scores: ArrayLike, correct: ArrayLike) -> RiskCoverageCurve:
    """The risk-coverage curve of ``scores`` for answers that are ``correct``
    and its area (AURC, lower is better).

    AURC is the mean over k = 1..n of the risk when the k most confident
    questions are answered (expected over orders of tied scores). A constant
    score gives the overall error rate; a perfect ranking gives the smallest
    area the labels allow.
    """
    score = check_scores(scores, "scores")
    right = check_flags(correct, "correct")
    n = check_same_length(scores=score, correct=right)
    expected = _expected_errors_by_rank(score, right)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    risk_by_rank = expected / ranks
    sorted_scores = np.sort(score)[::-1]
    group_ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    return RiskCoverageCurve(
        coverage=(group_ends + 1) / n,
        risk=risk_by_rank[group_ends],
        thresholds=sorted_scores[group_ends],
        aurc=float(risk_by_rank.mean()),
    )


def prediction_rejection_ratio(scores: ArrayLike, correct: ArrayLike) -> float:
    """Prediction-rejection ratio: how much of the oracle's gain over random
    rejection the scorer achieves (1 = oracle ranking, 0 = random, < 0 =
    worse than random).

    Rejection curves follow Malinin's definition: rejecting the least
    confident questions and counting a rejected question as handled, the
    curve is the error count among the retained questions divided by n, for
    each number retained. PRR = (A_random - A_scorer) / (A_random - A_oracle)
    with A the area under each curve. Raises :class:`UndefinedMetricError`
    when every answer is right or every answer is wrong (the oracle cannot
    beat random then).
    """
    score = check_scores(scores, "scores")
    right = check_flags(correct, "correct")
    n = check_same_length(scores=score, correct=right)
    total_errors = float((~right).sum())
    if total_errors == 0 or total_errors == n:
        raise UndefinedMetricError("PRR", f"needs both right and wrong answers, got {int(total_errors)} wrong of {n}")
    retained = np.arange(1, n + 1, dtype=np.float64)
    area_scorer = _expected_errors_by_rank(score, right).sum() / n
    area_random = (total_errors * retained / n).sum() / n
    area_oracle = np.maximum(0.0, total_errors - (n - retained)).sum() / n
    return float((area_random - area_scorer) / (area_random - area_oracle))


def expected_calibration_error(
    p_correct: ArrayLike, correct: ArrayLike, n_bins: int = 10
) -> tuple[float, dict[str, list[float]]]:
    """Expected calibration error with ``n_bins`` equal-width bins on [0, 1].

    Bin ``i`` holds scores in ``(i/n_bins, (i+1)/n_bins]`` (0 goes to the
    first bin), as scikit-learn's ``calibration_curve(strategy="uniform")``
    bins them. ECE = sum over bins of (bin size / n) * |accuracy - mean score|.
    Returns the ECE and the reliability table of the non-empty bins
    (``confidence``, ``accuracy``, ``count``, ``lower``, ``upper``).
    """
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    probability = check_scores(p_correct, "p_correct")
    right = check_flags(correct, "correct")
    n = check_same_length(p_correct=probability, correct=right)
    if probability.min() < 0.0 or probability.max() > 1.0:
        raise ValueError(
            f"p_correct must lie in [0, 1] for ECE, got range [{probability.min()!r}, {probability.max()!r}]"
        )
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_ids = np.searchsorted(edges[1:-1], probability, side="left")
    counts = np.bincount(bin_ids, minlength=n_bins)
    confidence_sums = np.bincount(bin_ids, weights=probability, minlength=n_bins)
    correct_sums = np.bincount(bin_ids, weights=right.astype(np.float64), minlength=n_bins)
    filled = counts > 0
    confidence = confidence_sums[filled] / counts[filled]
    accuracy = correct_sums[filled] / counts[filled]
    ece = float((counts[filled] / n * np.abs(accuracy - confidence)).sum())
    table = {
        "confidence": confidence.tolist(),
        "accuracy": accuracy.tolist(),
        "count": counts[filled].astype(float).tolist(),
        "lower": edges[:-1][filled].tolist(),
        "upper": edges[1:][filled].tolist(),
    }
    return ece, table


@dataclass(frozen=True)
class ScoreMetrics(JsonReady):
    """How well ``p_correct`` predicts the oracle. A metric that the labels
    leave undefined (one class only) is ``None``."""

    n: int
    base_accuracy: float
    auroc: Optional[float]
    aurc: float
    ece: float
    prr: Optional[float]
    n_bins: int
    reliability: dict[str, list[float]]
    curve: RiskCoverageCurve

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["curve"] = self.curve.to_dict()
        return data


def score_metrics(p_correct: ArrayLike, pass1_correct: ArrayLike, n_bins: int = 10) -> ScoreMetrics:
    """AUROC, AURC, ECE and PRR of ``p_correct`` against the oracle."""
    probability = check_scores(p_correct, "p_correct")
    oracle = check_flags(pass1_correct, "pass1_correct")
    n = check_same_length(p_correct=probability, pass1_correct=oracle)
    ece, table = expected_calibration_error(probability, oracle, n_bins)
    curve = risk_coverage_curve(probability, oracle)
    try:
        area = auroc(probability, oracle)
    except UndefinedMetricError:
        area = None
    try:
        prr = prediction_rejection_ratio(probability, oracle)
    except UndefinedMetricError:
        prr = None
    return ScoreMetrics(
        n=n, base_accuracy=float(oracle.mean()), auroc=area, aurc=curve.aurc, ece=ece, prr=prr,
        n_bins=n_bins, reliability=table, curve=curve,
    )
