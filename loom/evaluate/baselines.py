"""The confidence scores the Doubter is compared against, and the linear
probe behind one of them.

Every baseline keeps the base's own pass-1 answer and decides only whether
to give it, by ranking questions with a score (higher = more confident):

``always_answer``
    A constant: answers everything (coverage 1, the base's accuracy).
``first_token_max_prob``
    The largest softmax probability at the first answer token.
``answer_mean_logprob``
    The mean log-probability of the greedy answer's tokens.
``linear_probe``
    L2-regularised logistic regression on one layer's pass-1 state (at the
    run's read position) predicting ``pass1_correct``. The layer is the one
    whose probe ranks best (AUROC) under k-fold cross-validation inside the
    fitting split; the probe is then refitted on the whole split. The
    evaluation split is never seen while fitting or choosing.
``signals_logistic`` ("pass-1 signals (logistic)")
    Logistic regression on every pass-1 log-prob signal the collection
    recorded (:data:`~meta_spider.wrapper.signals.SIGNALS`: what a Doubter
    that reads signals can read), fitted on the training split: what the
    logits alone can do.
``probe_signals_logistic`` ("probe + signals (logistic)")
    Logistic regression on the best layer's state (chosen as for the probe,
    by cross-validation inside the training split) together with those
    signals, fitted on the training split.

The first two come from the activation dataset; the others are fitted here
(:func:`fit_signal_baselines`) with :class:`~meta_spider.loom.evaluate.probe.LogisticProbe`
at its default settings. This
module knows nothing about generation or reports: it sees arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from meta_spider.loom.evaluate.metrics import UndefinedMetricError, auroc
from meta_spider.loom.evaluate.probe import LogisticProbe

__all__ = [
    "BASELINES",
    "BaselineSpec",
    "LayerProbeChoice",
    "SignalBaselines",
    "fit_signal_baselines",
    "select_probe_layer",
]


@dataclass(frozen=True)
class BaselineSpec:
    """A baseline's name, its per-question score column and what it is."""

    name: str
    column: Optional[str]
    description: str


BASELINES: tuple[BaselineSpec, ...] = (
    BaselineSpec("always_answer", None, "answer every question with the base's answer"),
    BaselineSpec("first_token_max_prob", "first_token_max_prob", "max softmax probability of the first answer token"),
    BaselineSpec("answer_mean_logprob", "answer_mean_logprob", "mean log-probability of the answer tokens"),
    BaselineSpec("linear_probe", "probe_score", "logistic-regression probe on the best layer's state"),
    BaselineSpec("signals_logistic", "signals_score",
                 "pass-1 signals (logistic): logistic regression on the pass-1 log-prob signals, fitted on train"),
    BaselineSpec("probe_signals_logistic", "probe_signals_score",
                 "probe + signals (logistic): logistic regression on the best layer's state and the pass-1 "
                 "log-prob signals, fitted on train"),
)
"""The baselines in report order; ``column`` names the
:class:`~meta_spider.loom.evaluate.evaluation.QuestionOutcome` field holding the score."""


@dataclass
class LayerProbeChoice:
    """The probe layer chosen on the fitting split and the probe refitted
    there. ``cv_auroc`` maps each candidate layer (decoder index) to its
    cross-validated AUROC (None when a fold had one class only)."""

    layer: int
    layer_position: int
    """Index of ``layer`` in the collected target layers (the states' axis 1)."""
    cv_auroc: dict[int, Optional[float]]
    folds: int
    n_fit: int
    l2: float
    probe: LogisticProbe = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "cv_auroc": {str(k): v for k, v in self.cv_auroc.items()},
                "folds": self.folds, "n_fit": self.n_fit, "l2": self.l2}


def _fold_ids(labels: np.ndarray, folds: int) -> np.ndarray:
    """Stratified fold number of each example (deterministic: positives and
    negatives dealt round-robin in order)."""
    ids = np.empty(labels.size, dtype=np.int64)
    for value in (False, True):
        where = np.flatnonzero(labels == value)
        ids[where] = np.arange(where.size) % folds
    return ids


def select_probe_layer(states: Any, labels: Any, layers: Sequence[int], *, folds: int = 5,
                       l2: float = 1.0) -> LayerProbeChoice:
    """Choose the probe layer by stratified k-fold AUROC on ``states``
    (``[n, L, d]``, axis 1 in the order of ``layers``) and ``labels``
    (``pass1_correct``), then refit the probe on all of them.

    ``folds`` shrinks to the minority class count when that is smaller (at
    least 2). Raises :class:`UndefinedMetricError` when the labels hold one
    class only (no probe can be fitted or judged).
    """
    x = np.asarray(states, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if x.ndim != 3 or x.shape[0] != y.size or x.shape[1] != len(layers):
        raise ValueError(f"states must be [n, {len(layers)}, d] with n = {y.size} labels, got {x.shape}")
    minority = int(min(y.sum(), (~y).sum()))
    if minority < 2:
        raise UndefinedMetricError("linear probe", f"needs at least 2 examples of each class, got {minority} in the minority")
    folds = max(2, min(folds, minority))
    fold = _fold_ids(y, folds)
    cv_auroc: dict[int, Optional[float]] = {}
    for position, layer in enumerate(layers):
        scores = np.empty(y.size, dtype=np.float64)
        for k in range(folds):
            held = fold == k
            probe = LogisticProbe(l2).fit(x[~held, position], y[~held])
            scores[held] = probe.decision_function(x[held, position])
        try:
            cv_auroc[int(layer)] = auroc(scores, y)
        except UndefinedMetricError:
            cv_auroc[int(layer)] = None
    # Ties go to the earlier (shallower) layer; an undefined AUROC ranks last.
    best_position = max(range(len(layers)), key=lambda p: (cv_auroc[int(layers[p])] or -1.0, -p))
    probe = LogisticProbe(l2).fit(x[:, best_position], y)
    return LayerProbeChoice(layer=int(layers[best_position]), layer_position=best_position, cv_auroc=cv_auroc,
                            folds=folds, n_fit=int(y.size), l2=l2, probe=probe)


@dataclass
class SignalBaselines:
    """The two baselines fitted on the training split that read the pass-1
    signals: ``signals`` alone, and ``signals`` with the state of ``layer``
    (None, with ``probe_signals`` None, when no probe layer could be chosen)."""

    signals: tuple[str, ...]
    n_fit: int
    signals_l2: float
    signals_probe: LogisticProbe = field(repr=False)
    layer: Optional[int] = None
    layer_position: Optional[int] = None
    probe_l2: float = 1.0
    probe_signals: Optional[LogisticProbe] = field(default=None, repr=False)

    def scores(self, states: Any, signals: Any) -> dict[str, np.ndarray]:
        """P(correct) of each baseline (keyed by its score column) for
        ``states [n, L, d]`` and ``signals [n, K]`` (``signals`` order)."""
        signal_values = np.asarray(signals, dtype=np.float64)
        result = {"signals_score": self.signals_probe.predict_proba(signal_values)}
        if self.probe_signals is not None and self.layer_position is not None:
            layer_states = np.asarray(states, dtype=np.float64)[:, self.layer_position]
            result["probe_signals_score"] = self.probe_signals.predict_proba(
                np.concatenate([layer_states, signal_values], axis=1))
        return result

    def to_dict(self) -> dict[str, Any]:
        return {"signals": list(self.signals), "n_fit": self.n_fit, "signals_l2": self.signals_l2,
                "layer": self.layer, "probe_l2": self.probe_l2}


def fit_signal_baselines(states: Any, signals: Any, labels: Any, layers: Sequence[int], signal_names: Sequence[str],
                         *, folds: int = 5, probe_l2: float = 1.0) -> SignalBaselines:
    """Fit :class:`SignalBaselines` on one split: ``states [n, L, d]``,
    ``signals [n, K]`` and ``labels`` (``pass1_correct``). The signals-only
    regression is penalised as lightly as scikit-learn's default (``C = 1``,
    i.e. ``l2 = 1 / n`` on the mean loss): four features cannot overfit a
    split of any useful size, and a baseline held back by its penalty would
    flatter the Doubter. The state-reading one uses the probe's ``probe_l2``.
    Raises :class:`UndefinedMetricError` when the labels hold one class only."""
    x_signals = np.asarray(signals, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if x_signals.ndim != 2 or x_signals.shape != (y.size, len(signal_names)):
        raise ValueError(f"signals must be [{y.size}, {len(signal_names)}], got {x_signals.shape}")
    if y.all() or not y.any():
        raise UndefinedMetricError("pass-1 signal baselines", "the fitting split holds one class only")
    signals_l2 = 1.0 / y.size
    baselines = SignalBaselines(tuple(signal_names), int(y.size), signals_l2,
                                LogisticProbe(signals_l2).fit(x_signals, y), probe_l2=probe_l2)
    try:
        choice = select_probe_layer(states, y, layers, folds=folds, l2=probe_l2)
    except UndefinedMetricError:
        return baselines
    layer_states = np.asarray(states, dtype=np.float64)[:, choice.layer_position]
    baselines.layer, baselines.layer_position = choice.layer, choice.layer_position
    baselines.probe_signals = LogisticProbe(probe_l2).fit(np.concatenate([layer_states, x_signals], axis=1), y)
    return baselines
