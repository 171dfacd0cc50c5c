"""The world's probe settings and its grouped cross-validation, on the
project's one probe (:class:`~meta_spider.loom.evaluate.probe.LogisticProbe`)
and one AUROC (:func:`~meta_spider.loom.evaluate.metrics.auroc`).

The world's probes keep the settings its published numbers were measured
with (:func:`world_probe`); an AUROC the labels leave undefined reads as nan
here, so a layer table can hold it and ``np.nan_to_num`` can rank it last.

This module knows nothing about models or the world; it sees feature
matrices and 0/1 labels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from meta_spider.loom.evaluate.metrics import UndefinedMetricError, auroc
from meta_spider.loom.evaluate.probe import LogisticProbe

__all__ = ["auroc_or_nan", "cross_validated_auroc", "world_probe"]


def world_probe(l2: float = 1e-2, max_iter: int = 200) -> LogisticProbe:
    """A probe with the world's settings: the bias starts at 0, every
    feature's spread gets 1e-6 added, and L-BFGS stops on torch's default
    tolerances."""
    return LogisticProbe(l2, max_iter, std_epsilon=1e-6, prior_bias=False, tolerance_grad=1e-7,
                         tolerance_change=1e-9)


def auroc_or_nan(scores: Sequence[float], labels: Sequence[int]) -> float:
    """:func:`~meta_spider.loom.evaluate.metrics.auroc`, or nan when only one
    class is present."""
    try:
        return auroc(scores, labels)
    except UndefinedMetricError:
        return float("nan")


def cross_validated_auroc(features: np.ndarray, labels: Sequence[int], folds: int = 5,
                          l2: float = 1e-2, groups: Sequence[int] | None = None) -> float:
    """Held-out AUROC of a world probe over ``folds`` folds (every example
    scored by the probe that did not see it); ``groups`` (e.g. person ids)
    keeps all rows of a group in one fold."""
    labels = np.asarray(labels)
    keys = np.asarray(groups) if groups is not None else np.arange(len(labels))
    unique = np.unique(keys)
    fold_of = {k: i % folds for i, k in enumerate(unique)}
    assignment = np.array([fold_of[k] for k in keys])
    scores = np.zeros(len(labels))
    for fold in range(folds):
        test = assignment == fold
        probe = world_probe(l2).fit(features[~test], labels[~test])
        scores[test] = probe.decision_function(features[test])
    return auroc_or_nan(scores, labels)
