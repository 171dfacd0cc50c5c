"""Linear probes without scikit-learn: L2-regularised logistic regression
fitted with L-BFGS in float64 torch, rank-based AUROC, and a k-fold layer
selection that never looks at the evaluation set.

This module knows nothing about models or the world; it sees feature
matrices and 0/1 labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).
    Returns nan when only one class is present."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass
class LogisticProbe:
    """Standardised features -> P(label = 1); ``l2`` is the penalty on the
    weights per sample (the bias is not penalised)."""

    l2: float = 1e-2
    max_iter: int = 200
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    weight: np.ndarray | None = None
    bias: float = 0.0

    def __post_init__(self) -> None:
        if self.l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {self.l2!r}")

    def fit(self, features: np.ndarray, labels: Sequence[int]) -> "LogisticProbe":
        """Fit on ``features`` (n, d) and 0/1 ``labels``; returns self."""
        import torch

        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"features must be (n, d) matching {len(y)!r} labels, got shape {x.shape!r}")
        self.mean = x.mean(0)
        self.scale = x.std(0) + 1e-6
        xt = torch.from_numpy((x - self.mean) / self.scale)
        yt = torch.from_numpy(y)
        w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=self.max_iter, line_search_fn="strong_wolfe")

        def closure() -> "torch.Tensor":
            optimizer.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt)
            loss = loss + 0.5 * self.l2 * (w * w).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        self.weight = w.detach().numpy().copy()
        self.bias = float(b.detach())
        return self

    def decision(self, features: np.ndarray) -> np.ndarray:
        """Logits for ``features`` (n, d)."""
        if self.weight is None:
            raise RuntimeError("LogisticProbe.decision called before fit(); call fit(features, labels) first")
        return ((np.asarray(features, dtype=np.float64) - self.mean) / self.scale) @ self.weight + self.bias

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """P(label = 1) for ``features`` (n, d)."""
        return 1.0 / (1.0 + np.exp(-self.decision(features)))


def cross_validated_auroc(features: np.ndarray, labels: Sequence[int], folds: int = 5,
                          l2: float = 1e-2, groups: Sequence[int] | None = None) -> float:
    """Mean held-out AUROC of a probe over ``folds`` folds; ``groups`` (e.g.
    person ids) keeps all rows of a group in one fold."""
    labels = np.asarray(labels)
    keys = np.asarray(groups) if groups is not None else np.arange(len(labels))
    unique = np.unique(keys)
    fold_of = {k: i % folds for i, k in enumerate(unique)}
    assignment = np.array([fold_of[k] for k in keys])
    scores = np.zeros(len(labels))
    for fold in range(folds):
        test = assignment == fold
        probe = LogisticProbe(l2=l2).fit(features[~test], labels[~test])
        scores[test] = probe.decision(features[test])
    return auroc(scores, labels)
