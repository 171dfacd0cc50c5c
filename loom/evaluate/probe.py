"""The project's one linear probe: L2-regularised logistic regression on
standardised features, fitted with L-BFGS in float64 torch (no
scikit-learn).

Two callers fit it with different settings, and each keeps its own: the
baselines (:mod:`~meta_spider.loom.evaluate.baselines`) start the bias at the
labels' log-odds and stop on tight tolerances; the embedded world's probes
(:mod:`~meta_spider.loom.world.probe`) start from zero, stop on torch's
default tolerances and add a small epsilon to every feature's spread. The
settings are constructor arguments, so one fit serves both.

This module knows nothing about models, layers or folds: it sees a feature
matrix and 0/1 labels.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

__all__ = ["LogisticProbe"]


def _finite_at_least(value: Any, name: str, lowest: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < lowest:
        raise ValueError(f"{name} must be a finite number >= {lowest:g}, got {value!r}")
    return float(value)


class LogisticProbe:
    """L2-regularised logistic regression on standardised features.

    ``fit(features [n, d], labels [n])`` minimises the mean log-loss plus
    ``l2 / 2 * |w|^2`` (the bias is not penalised) with L-BFGS in float64;
    ``predict_proba(features)`` returns P(label = 1).

    Features are standardised by their mean and ``std + std_epsilon``; a
    feature whose spread is still below 1e-12 is only centred (it stays 0).
    ``prior_bias`` starts the bias at the labels' log-odds instead of 0;
    ``tolerance_grad`` and ``tolerance_change`` stop L-BFGS (torch's own
    defaults are 1e-7 and 1e-9).
    """

    def __init__(self, l2: float = 1.0, max_iter: int = 200, *, std_epsilon: float = 0.0, prior_bias: bool = True,
                 tolerance_grad: float = 1e-9, tolerance_change: float = 1e-12) -> None:
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
        self.l2 = _finite_at_least(l2, "l2", 0.0)
        self.max_iter = max_iter
        self.std_epsilon = _finite_at_least(std_epsilon, "std_epsilon", 0.0)
        self.prior_bias = bool(prior_bias)
        self.tolerance_grad = _finite_at_least(tolerance_grad, "tolerance_grad", 0.0)
        self.tolerance_change = _finite_at_least(tolerance_change, "tolerance_change", 0.0)
        self.mean: Optional[np.ndarray] = None
        self.scale: Optional[np.ndarray] = None
        self.weight: Optional[np.ndarray] = None
        self.bias: float = 0.0

    def fit(self, features: Any, labels: Any) -> "LogisticProbe":
        """Fit on ``features [n, d]`` and 0/1 ``labels [n]``; returns self."""
        import torch

        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
            raise ValueError(f"need features [n, d] and labels [n] with n > 0, got shapes {x.shape} and {y.shape}")
        if not np.all(np.isin(y, (0.0, 1.0))):
            raise ValueError(f"labels must be 0/1, got {np.unique(y)[:5].tolist()!r}")
        self.mean = x.mean(axis=0)
        spread = x.std(axis=0) + self.std_epsilon
        self.scale = np.where(spread > 1e-12, spread, 1.0)  # constant features stay 0 after standardising
        xs = torch.from_numpy((x - self.mean) / self.scale)
        ys = torch.from_numpy(y)
        weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        start = 0.0
        if self.prior_bias:
            prior = min(max(y.mean(), 1e-6), 1 - 1e-6)
            start = math.log(prior / (1 - prior))
        bias = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=self.max_iter,
                                      tolerance_grad=self.tolerance_grad, tolerance_change=self.tolerance_change,
                                      line_search_fn="strong_wolfe")

        def closure() -> Any:
            optimizer.zero_grad()
            logits = xs @ weight + bias
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, ys) + 0.5 * self.l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        self.weight = weight.detach().numpy().copy()
        self.bias = float(bias.detach())
        return self

    def decision_function(self, features: Any) -> np.ndarray:
        """Logits for ``features [n, d]``."""
        if self.weight is None:
            raise RuntimeError("LogisticProbe used before fit(); call fit(features, labels) first")
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.weight.size:
            raise ValueError(f"features must be [n, {self.weight.size}], got shape {x.shape}")
        return ((x - self.mean) / self.scale) @ self.weight + self.bias

    def predict_proba(self, features: Any) -> np.ndarray:
        """P(label = 1) for ``features [n, d]``."""
        logits = self.decision_function(features)
        return 1.0 / (1.0 + np.exp(-logits))
