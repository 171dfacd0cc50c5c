"""Selective-prediction metrics: how well a score ranks the base's right and
wrong answers, and how a system that answers or refuses actually behaves.

Two families, both numpy only:

* **Score metrics** take per-question scores (``p_correct``, higher = more
  confident) and the oracle ``pass1_correct`` (was the frozen base right):
  AUROC, the risk-coverage curve and its area (AURC), expected calibration
  error (ECE) and the prediction-rejection ratio (PRR). Tied scores are
  handled without an arbitrary order: AUROC counts a tie as half a win (as
  scikit-learn does) and the risk-coverage metrics use the expected value
  over every order of the tied questions.
* **Behaviour metrics** take what the modified system did (``answered``, and
  ``correct`` where it answered) next to the oracle: coverage, selective
  accuracy, refusal rate, refusal precision (the share of refusals where the
  base was actually wrong), over-refusal (of the refusals, the share the base
  actually knew: 1 - refusal precision) and knowledge loss (the share of
  base-correct questions that were refused). A refusal is judged against the oracle, never
  by comparing the refusal text with the reference answer.

:func:`choose_threshold` picks an answer threshold on validation scores for a
target coverage or risk; :func:`threshold_for_goals` picks the one that
meets :class:`BehaviourGoals` with the widest margin;
:func:`evaluate_at_coverage` turns any scorer into a
system that answers exactly a given share of questions, so baselines can be
compared with the Doubter at matched coverage.

This module knows nothing about models, prompts or datasets: it sees arrays.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from meta_spider.plugins.errors import MetaSpiderError

__all__ = [
    "BehaviourGoals",
    "MatchedCoverage",
    "RiskCoverageCurve",
    "ScoreMetrics",
    "SelectiveMetrics",
    "ThresholdChoice",
    "UndefinedMetricError",
    "answer_mask_at_coverage",
    "auroc",
    "choose_threshold",
    "expected_calibration_error",
    "evaluate_at_coverage",
    "prediction_rejection_ratio",
    "risk_coverage_curve",
    "score_metrics",
    "selective_metrics",
    "threshold_for_goals",
]

ArrayLike = Union[Sequence[float], Sequence[bool], np.ndarray]


class UndefinedMetricError(MetaSpiderError, ValueError):
    """A metric has no value for these inputs (for example AUROC when every
    question has the same label)."""

    def __init__(self, metric: str, reason: str) -> None:
        self.metric = metric
        self.reason = reason
        super().__init__(f"{metric} is undefined: {reason}")


def _scores(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = array[~np.isfinite(array)][:3].tolist()
        raise ValueError(f"{name} must be finite, got {bad!r}")
    return array


def _flags(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.dtype != np.bool_:
        if array.size and not np.all(np.isin(array, (0, 1))):
            raise ValueError(f"{name} must hold booleans (or 0/1), got {array[:5].tolist()!r}")
        array = array.astype(bool)
    return array


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have one length per question, got {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError(f"inputs are empty: {sorted(lengths)} need at least one question")
    return n


def _mean_or_none(values: np.ndarray) -> Optional[float]:
    return float(values.mean()) if values.size else None


class _Dict:
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (numpy values become floats and lists)."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}  # type: ignore[call-overload]


# ------------------------------------------------------------------ behaviour


@dataclass(frozen=True)
class SelectiveMetrics(_Dict):
    """What an answer-or-refuse system did, judged against the oracle.

    Ratios whose denominator is empty (selective accuracy with nothing
    answered, refusal precision and over-refusal with nothing refused,
    knowledge loss when the base was never right) are ``None``, never a
    made-up 0 or 1.

    ``over_refusal`` is the share of refusals the base actually knew
    (1 - ``refusal_precision``); ``knowledge_loss`` is the share of the
    questions the base knew that were refused (what the goals bound).
    """

    n: int
    answered: int
    refused: int
    coverage: float
    refusal_rate: float
    selective_accuracy: Optional[float]
    overall_accuracy: float
    base_accuracy: float
    refusal_precision: Optional[float]
    over_refusal: Optional[float]
    knowledge_loss: Optional[float]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SelectiveMetrics":
        """The inverse of :meth:`to_dict`. A dictionary written before
        ``knowledge_loss`` existed held that quantity under ``over_refusal``;
        it is read with its meaning kept."""
        values = dict(data)
        if "knowledge_loss" not in values:
            values["knowledge_loss"] = values.pop("over_refusal", None)
            precision = values.get("refusal_precision")
            values["over_refusal"] = None if precision is None else 1.0 - precision
        return cls(**values)


def selective_metrics(answered: ArrayLike, correct: ArrayLike, pass1_correct: ArrayLike) -> SelectiveMetrics:
    """Behaviour metrics of a system that answered (``answered[i]``) or refused.

    ``correct[i]`` is whether its answer was right; it is ignored where the
    system refused. ``pass1_correct[i]`` is whether the frozen base was right
    (the oracle): refusal precision, over-refusal and knowledge loss are
    measured against it.
    ``overall_accuracy`` counts a refusal as not correct.
    """
    answered_a = _flags(answered, "answered")
    correct_a = _flags(correct, "correct") & answered_a
    oracle = _flags(pass1_correct, "pass1_correct")
    n = _same_length(answered=answered_a, correct=correct_a, pass1_correct=oracle)
    refused_a = ~answered_a
    return SelectiveMetrics(
        n=n,
        answered=int(answered_a.sum()),
        refused=int(refused_a.sum()),
        coverage=float(answered_a.mean()),
        refusal_rate=float(refused_a.mean()),
        selective_accuracy=_mean_or_none(correct_a[answered_a]),
        overall_accuracy=float(correct_a.mean()),
        base_accuracy=float(oracle.mean()),
        refusal_precision=_mean_or_none(~oracle[refused_a]),
        over_refusal=_mean_or_none(oracle[refused_a]),
        knowledge_loss=_mean_or_none(refused_a[oracle]),
    )


# ------------------------------------------------------------------ ranking


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
    score = _scores(scores, "scores")
    label = _flags(labels, "labels")
    _same_length(scores=score, labels=label)
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
class RiskCoverageCurve(_Dict):
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
    score = _scores(scores, "scores")
    right = _flags(correct, "correct")
    n = _same_length(scores=score, correct=right)
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
    score = _scores(scores, "scores")
    right = _flags(correct, "correct")
    n = _same_length(scores=score, correct=right)
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
    probability = _scores(p_correct, "p_correct")
    right = _flags(correct, "correct")
    n = _same_length(p_correct=probability, correct=right)
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
class ScoreMetrics(_Dict):
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
    probability = _scores(p_correct, "p_correct")
    oracle = _flags(pass1_correct, "pass1_correct")
    n = _same_length(p_correct=probability, pass1_correct=oracle)
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


# ------------------------------------------------------------------ thresholds


@dataclass(frozen=True)
class ThresholdChoice(_Dict):
    """An answer threshold chosen on validation scores: answer when
    ``score >= threshold``. ``coverage`` and ``risk`` are what it achieved on
    the scores it was chosen on (``risk`` is None when it answers nothing).
    ``goals`` is set (``BehaviourGoals.to_dict()``) when the threshold was
    chosen to meet them."""

    threshold: float
    coverage: float
    risk: Optional[float]
    target_coverage: Optional[float]
    target_risk: Optional[float]
    n: int
    goals: Optional[dict[str, float]] = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view; an answer-nothing threshold (``+inf``, which JSON
        cannot hold) is written as ``None``."""
        data = super().to_dict()
        if data["threshold"] == math.inf:
            data["threshold"] = None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ThresholdChoice":
        """Inverse of :meth:`to_dict` (for the run manifest's calibration)."""
        values = {k: data.get(k) for k in ("threshold", "coverage", "risk", "target_coverage", "target_risk", "n",
                                           "goals")}
        if values["threshold"] is None:
            values["threshold"] = math.inf
        return cls(**values)


def _check_fraction(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def choose_threshold(
    scores: ArrayLike,
    correct: Optional[ArrayLike] = None,
    *,
    target_coverage: Optional[float] = None,
    target_risk: Optional[float] = None,
) -> ThresholdChoice:
    """Pick the answer threshold on validation ``scores``.

    Give exactly one target. ``target_coverage=c``: the highest threshold
    that answers at least ``c`` of the questions (ties can push coverage a
    little above ``c``; a threshold cannot split tied scores).
    ``target_risk=r`` (needs ``correct``): the lowest threshold whose risk on
    these scores is at most ``r``, i.e. the largest coverage meeting the
    risk; if no threshold does, ``+inf`` (answer nothing).
    """
    if (target_coverage is None) == (target_risk is None):
        raise ValueError(
            f"give exactly one of target_coverage and target_risk, got {target_coverage!r} and {target_risk!r}"
        )
    score = _scores(scores, "scores")
    right = None if correct is None else _flags(correct, "correct")
    n = _same_length(scores=score) if right is None else _same_length(scores=score, correct=right)
    descending = np.sort(score)[::-1]
    if target_coverage is not None:
        wanted = _check_fraction(target_coverage, "target_coverage")
        k = max(1, math.ceil(wanted * n - 1e-12))
        threshold = float(descending[k - 1]) if wanted > 0 else math.inf
    else:
        if right is None:
            raise ValueError("target_risk needs correct= (the validation labels) to measure risk")
        limit = _check_fraction(target_risk, "target_risk")
        curve = risk_coverage_curve(score, right)
        meeting = np.flatnonzero(curve.risk <= limit + 1e-12)
        threshold = float(curve.thresholds[meeting[-1]]) if meeting.size else math.inf
    answered = score >= threshold
    risk = None
    if right is not None and answered.any():
        risk = float((~right[answered]).mean())
    return ThresholdChoice(
        threshold=threshold, coverage=float(answered.mean()), risk=risk,
        target_coverage=target_coverage, target_risk=target_risk, n=n,
    )


@dataclass(frozen=True)
class BehaviourGoals(_Dict):
    """What an answer-or-refuse system should achieve against the oracle.
    The defaults are the project's goals for the Doubter: answer at least
    half the questions, at least 20 points more accurately than the base,
    refuse mostly what the base gets wrong (refusal precision >= 0.80) and
    at most a fifth of what it gets right (knowledge loss <= 0.20)."""

    min_coverage: float = 0.50
    min_selective_gain: float = 0.20
    min_refusal_precision: float = 0.80
    max_knowledge_loss: float = 0.20

    def __post_init__(self) -> None:
        for name in ("min_coverage", "min_refusal_precision", "max_knowledge_loss"):
            _check_fraction(getattr(self, name), name)
        gain = self.min_selective_gain
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not -1.0 <= gain <= 1.0:
            raise ValueError(f"min_selective_gain must be a number in [-1, 1], got {gain!r}")

    def margin(self, metrics: SelectiveMetrics) -> Optional[float]:
        """The smallest distance between ``metrics`` and a goal, in the
        metrics' own units (fractions); negative when a goal is missed, None
        when nothing was answered (no selective accuracy). Refusal precision
        counts only when something was refused, knowledge loss only when the
        base was ever right."""
        if metrics.selective_accuracy is None:
            return None
        slacks = [metrics.coverage - self.min_coverage,
                  metrics.selective_accuracy - metrics.base_accuracy - self.min_selective_gain]
        if metrics.refused and metrics.refusal_precision is not None:
            slacks.append(metrics.refusal_precision - self.min_refusal_precision)
        if metrics.knowledge_loss is not None:
            slacks.append(self.max_knowledge_loss - metrics.knowledge_loss)
        return min(slacks)

    def met_by(self, metrics: SelectiveMetrics) -> bool:
        """Whether ``metrics`` meet every goal."""
        margin = self.margin(metrics)
        return margin is not None and margin >= -1e-12


def threshold_for_goals(scores: ArrayLike, correct: ArrayLike, goals: BehaviourGoals) -> Optional[ThresholdChoice]:
    """The answer threshold on validation ``scores`` that meets ``goals``
    with the widest margin: of the thresholds whose gate (answer when
    ``score >= threshold``, keeping the base's answers, judged by
    ``correct``) meets every goal, the one whose smallest
    :meth:`BehaviourGoals.margin` is largest, so it still meets them on
    questions that differ a little from these; ties go to the one that
    answers more. None when no threshold meets them. Every distinct score
    is tried."""
    score = _scores(scores, "scores")
    right = _flags(correct, "correct")
    n = _same_length(scores=score, correct=right)
    best: Optional[tuple[float, float]] = None  # (margin, threshold)
    for threshold in np.unique(score):  # ascending: coverage falls, so a tie keeps the earlier one
        margin = goals.margin(selective_metrics(score >= threshold, right, right))
        if margin is not None and margin >= -1e-12 and (best is None or margin > best[0] + 1e-12):
            best = (margin, float(threshold))
    if best is None:
        return None
    answered = score >= best[1]
    return ThresholdChoice(
        threshold=best[1], coverage=float(answered.mean()), risk=float((~right[answered]).mean()),
        target_coverage=None, target_risk=None, n=n, goals=goals.to_dict(),
    )


# ------------------------------------------------------------------ matched coverage


def answer_mask_at_coverage(scores: ArrayLike, coverage: float) -> np.ndarray:
    """Which questions a scorer answers at exactly ``coverage``: the
    ``round(coverage * n)`` highest scores (halves round up), ties broken by
    question order (the earlier question first), so the result is
    deterministic and the coverage exact."""
    score = _scores(scores, "scores")
    n = _same_length(scores=score)
    k = int(math.floor(_check_fraction(coverage, "coverage") * n + 0.5))
    order = np.argsort(-score, kind="mergesort")  # stable: equal scores keep question order
    mask = np.zeros(n, dtype=bool)
    mask[order[:k]] = True
    return mask


@dataclass(frozen=True)
class MatchedCoverage(_Dict):
    """A scorer evaluated at a fixed coverage. ``threshold`` is the lowest
    score answered (None when nothing is); ``split_ties`` says the cut fell
    inside a group of tied scores, so question order decided part of it."""

    target_coverage: float
    threshold: Optional[float]
    split_ties: bool
    metrics: SelectiveMetrics

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["metrics"] = self.metrics.to_dict()
        return data


def evaluate_at_coverage(
    scores: ArrayLike,
    answer_correct: ArrayLike,
    coverage: float,
    pass1_correct: Optional[ArrayLike] = None,
) -> MatchedCoverage:
    """Evaluate a scorer as a system that answers the share ``coverage`` of
    questions it is most confident about and refuses the rest.

    ``answer_correct[i]`` is whether the answer it would give is right (for a
    baseline that keeps the base's answer, that is ``pass1_correct``, the
    default oracle when ``pass1_correct`` is omitted). See
    :func:`answer_mask_at_coverage` for the tie rule.
    """
    score = _scores(scores, "scores")
    right = _flags(answer_correct, "answer_correct")
    oracle = right if pass1_correct is None else _flags(pass1_correct, "pass1_correct")
    _same_length(scores=score, answer_correct=right, pass1_correct=oracle)
    answered = answer_mask_at_coverage(score, coverage)
    threshold = float(score[answered].min()) if answered.any() else None
    split_ties = bool(threshold is not None and np.any(score[~answered] == threshold))
    return MatchedCoverage(
        target_coverage=float(coverage), threshold=threshold, split_ties=split_ties,
        metrics=selective_metrics(answered, right, oracle),
    )
