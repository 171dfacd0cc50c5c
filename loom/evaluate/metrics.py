"""Selective-prediction metrics: how a system that answers or refuses
actually behaves, the answer thresholds that steer it, and (re-exported from
:mod:`~meta_spider.loom.evaluate.ranking`, where they live) the score metrics
of how well a score ranks the base's right and wrong answers.

Numpy only:

* **Score metrics** (:mod:`~meta_spider.loom.evaluate.ranking`): AUROC,
  AURC, ECE and PRR of per-question scores against the oracle
  ``pass1_correct`` (was the frozen base right).
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
import numbers
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from meta_spider.loom.evaluate.ranking import (
    ArrayLike,
    JsonReady,
    RiskCoverageCurve,
    ScoreMetrics,
    UndefinedMetricError,
    auroc,
    check_flags,
    check_same_length,
    check_scores,
    expected_calibration_error,
    prediction_rejection_ratio,
    risk_coverage_curve,
    score_metrics,
)

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
    "fixed_threshold",
    "prediction_rejection_ratio",
    "risk_coverage_curve",
    "score_metrics",
    "selective_metrics",
    "threshold_for_goals",
]


def _mean_or_none(values: np.ndarray) -> Optional[float]:
    return float(values.mean()) if values.size else None


# ------------------------------------------------------------------ behaviour


@dataclass(frozen=True)
class SelectiveMetrics(JsonReady):
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
    answered_a = check_flags(answered, "answered")
    correct_a = check_flags(correct, "correct") & answered_a
    oracle = check_flags(pass1_correct, "pass1_correct")
    n = check_same_length(answered=answered_a, correct=correct_a, pass1_correct=oracle)
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


# ------------------------------------------------------------------ thresholds


@dataclass(frozen=True)
class ThresholdChoice(JsonReady):
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
    score = check_scores(scores, "scores")
    right = None if correct is None else check_flags(correct, "correct")
    n = check_same_length(scores=score) if right is None else check_same_length(scores=score, correct=right)
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


def fixed_threshold(scores: ArrayLike, correct: ArrayLike, threshold: float) -> ThresholdChoice:
    """A threshold given, not chosen (one calibrated elsewhere, such as the
    one a Doubter checkpoint carries): what it does on validation ``scores``."""
    score = check_scores(scores, "scores")
    right = check_flags(correct, "correct")
    n = check_same_length(scores=score, correct=right)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or math.isnan(threshold):
        raise ValueError(f"threshold must be a number, got {threshold!r}")
    answered = score >= threshold
    risk = float((~right[answered]).mean()) if answered.any() else None
    return ThresholdChoice(threshold=float(threshold), coverage=float(answered.mean()), risk=risk,
                           target_coverage=None, target_risk=None, n=n)


@dataclass(frozen=True)
class BehaviourGoals(JsonReady):
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
    score = check_scores(scores, "scores")
    right = check_flags(correct, "correct")
    n = check_same_length(scores=score, correct=right)
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
    score = check_scores(scores, "scores")
    n = check_same_length(scores=score)
    k = int(math.floor(_check_fraction(coverage, "coverage") * n + 0.5))
    order = np.argsort(-score, kind="mergesort")  # stable: equal scores keep question order
    mask = np.zeros(n, dtype=bool)
    mask[order[:k]] = True
    return mask


@dataclass(frozen=True)
class MatchedCoverage(JsonReady):
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
    score = check_scores(scores, "scores")
    right = check_flags(answer_correct, "answer_correct")
    oracle = right if pass1_correct is None else check_flags(pass1_correct, "pass1_correct")
    check_same_length(scores=score, answer_correct=right, pass1_correct=oracle)
    answered = answer_mask_at_coverage(score, coverage)
    threshold = float(score[answered].min()) if answered.any() else None
    split_ties = bool(threshold is not None and np.any(score[~answered] == threshold))
    return MatchedCoverage(
        target_coverage=float(coverage), threshold=threshold, split_ties=split_ties,
        metrics=selective_metrics(answered, right, oracle),
    )
