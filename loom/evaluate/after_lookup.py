"""Fitting the gate after a lookup (:class:`~meta_spider.wrapper.after_lookup.AfterLookupGate`).

A dataset that offers questions asked with their lookup (the world's
``train_lookup`` and ``validation_lookup``: the conversation up to the
record the lookup finds) is collected like any other split: pass 1 on that
conversation, and whether the base's answer there is right. From those rows
:func:`fit_after_lookup_gate` fits a logistic regression telling the answers
the record holds from the ones it does not (the base answering "What is X's
shoe size?" from X's record with X's job) on the Doubter's signals, its
P(correct) logit and, when it has a scope gate, that gate's layer state,
all at the Doubter's read position; the threshold is a low quantile of the
validation rows' right answers, so the gate refuses about that share of
them. ``metaloom eval`` keeps the result in the Doubter's calibration entry.

This module knows collected rows and the Doubter; nothing about agents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from meta_spider.tools.knowledge import LOOKUP_TOOL_NAME
from meta_spider.wrapper.after_lookup import ENTRY_KEY, AfterLookupGate, gate_features

__all__ = ["DEFAULT_QUANTILE", "ENTRY_KEY", "FIT_SPLIT", "LOOKUP_SPLITS", "THRESHOLD_SPLIT", "AfterLookupFit",
           "fit_after_lookup_gate"]

FIT_SPLIT = "train_lookup"
"""The training questions asked with their lookup: what the gate is fitted on."""
THRESHOLD_SPLIT = "validation_lookup"
"""The validation questions asked with their lookup: where its threshold is set."""
LOOKUP_SPLITS = (FIT_SPLIT, THRESHOLD_SPLIT)
DEFAULT_QUANTILE = 0.01
"""The share of the validation questions' right answers after a lookup the
gate may refuse: its threshold is that quantile of their scores."""
L2 = 10.0
"""The fit's L2 penalty times the number of rows (the measurement in
docs/loom.md, finding 23, used the same)."""


@dataclass(frozen=True)
class AfterLookupFit:
    """A fitted gate and what it was fitted and calibrated on."""

    gate: AfterLookupGate
    quantile: float
    fitted_on: int
    """Rows of :data:`FIT_SPLIT`."""
    wrong: int
    """Of those, the answers after the lookup that were wrong."""
    right_on_validation: int
    """Right answers of :data:`THRESHOLD_SPLIT` the threshold was set on."""
    wrong_caught: float
    """Share of the fit rows' wrong answers below the threshold."""

    def to_entry(self) -> dict[str, Any]:
        """The calibration entry's :data:`ENTRY_KEY`: the gate and how it was made."""
        return {**self.gate.to_entry(), "fit_split": FIT_SPLIT, "threshold_split": THRESHOLD_SPLIT,
                "quantile": self.quantile, "n_fit": self.fitted_on, "n_wrong": self.wrong,
                "n_right_validation": self.right_on_validation, "wrong_caught_on_fit": self.wrong_caught}

    def summary(self) -> str:
        state = "" if self.gate.layer_index is None else " and the scope gate's layer state"
        return (f"gate after a lookup: fitted on {self.fitted_on} {FIT_SPLIT} questions ({self.wrong} answered "
                f"wrong from the record) on the signals, the P(correct) logit{state}; refuses below "
                f"{self.gate.threshold:.3f} (the {self.quantile:.0%} quantile of {self.right_on_validation} "
                f"right answers of {THRESHOLD_SPLIT}), which catches {self.wrong_caught:.0%} of the fit's wrong "
                "answers")


def fit_after_lookup_gate(doubter: Any, activations: Any, *,
                          quantile: float = DEFAULT_QUANTILE) -> Optional[AfterLookupFit]:
    """Fit the gate on ``activations``' :data:`FIT_SPLIT` rows and set its
    threshold on :data:`THRESHOLD_SPLIT`'s; None when either split was not
    collected. ValueError when the rows cannot teach it (no wrong answer to
    learn from, no right one to set the threshold on)."""
    from meta_spider.loom.evaluate.comparison import doubter_p_correct
    from meta_spider.loom.evaluate.probe import LogisticProbe

    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile!r}")
    fit, calibrate = (activations.split_indices(split) for split in LOOKUP_SPLITS)
    if not fit or not calibrate:
        return None
    correct = activations.tensor("pass1_correct").numpy().astype(bool)
    if correct[fit].all():
        raise ValueError(f"every {FIT_SPLIT} answer is right: the gate after a lookup has no wrong answer to learn "
                         "from (the world's: --dataset-option train_outside=N)")
    if not correct[calibrate].any():
        raise ValueError(f"no {THRESHOLD_SPLIT} answer is right: nothing to set the gate's threshold on")
    config = doubter.config
    states = activations.states(config.read_position).numpy()
    signals = (activations.signals(config.signals).numpy() if config.signals
               else np.zeros((len(correct), 0)))
    scope = getattr(doubter, "scope_gate", None)
    layer_index = None if scope is None else int(scope.layer_index)
    rows = {}
    for name, indices in zip(LOOKUP_SPLITS, (fit, calibrate)):
        p_correct = doubter_p_correct(doubter, activations, states, indices)
        state = None
        if layer_index is not None:
            state = states[indices][:, list(activations.target_layers).index(config.target_layers[layer_index])]
        rows[name] = gate_features(p_correct, signals[indices], state)
    probe = LogisticProbe(L2 / len(fit)).fit(rows[FIT_SPLIT], correct[fit])
    right = probe.decision_function(rows[THRESHOLD_SPLIT])[correct[calibrate]]
    threshold = float(np.quantile(right, quantile))
    if not np.isfinite(threshold) or not np.all(np.isfinite(probe.weight)):
        raise ValueError("the gate after a lookup's fit gave non-finite scores (non-finite states or signals in the "
                         "collection?): collect the activations again")
    gate = AfterLookupGate(LOOKUP_TOOL_NAME, tuple(config.signals), layer_index, probe.mean, probe.scale,
                           probe.weight, float(probe.bias), threshold)
    wrong = ~correct[fit]
    caught = float((gate.scores(rows[FIT_SPLIT])[wrong] < threshold).mean())
    return AfterLookupFit(gate, quantile, len(fit), int(wrong.sum()), int(correct[calibrate].sum()), caught)
