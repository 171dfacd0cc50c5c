"""Scoring reads of pass 1 for P(correct) the one way the reader benchmarks
here do: a logistic regression on standardised features, fitted on the
training rows, its AUROC per scored split; and the read validation would
pick over the signals alone. Imported as ``from readers import ...`` (the
scripts run as ``python benchmarks/NAME.py``, this folder first on the path)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence


def logistic_aurocs(features: Any, correct: Any, rows: Mapping[str, Any], scored: Sequence[str], *,
                    c: float, train: str = "train") -> dict[str, float]:
    """AUROC on each of ``scored`` of a logistic regression (inverse L2
    strength ``c``) fitted on ``rows[train]``; NaN features read as 0."""
    from sklearn.metrics import roc_auc_score

    score = logistic_scores(features, correct, rows[train], c=c)
    return {split: roc_auc_score(correct[rows[split]], score[rows[split]]) for split in scored}


def logistic_scores(features: Any, correct: Any, fit_rows: Any, *, c: float) -> Any:
    """The decision function on every row of a logistic regression (inverse
    L2 strength ``c``) on standardised ``features``, fitted on ``fit_rows``;
    NaN features read as 0."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features = np.nan_to_num(features)
    scaler = StandardScaler().fit(features[fit_rows])
    fitted = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(features[fit_rows]), correct[fit_rows])
    return fitted.decision_function(scaler.transform(features))


def say_validation_pick(say: Callable[..., None], row: Callable[[str, dict[str, float]], None],
                        with_signals: Mapping[str, dict[str, float]], alone: dict[str, float],
                        scored: Sequence[str]) -> None:
    """The read with the highest validation AUROC beside the signals, its
    AUROCs with them, the signals' alone and the difference."""
    pick = max(with_signals, key=lambda name: with_signals[name]["validation"])
    say()
    say(f"chosen on validation: {pick} + signals")
    row("  that read + signals", with_signals[pick])
    row("  signals alone", alone)
    row("  difference", {split: with_signals[pick][split] - alone[split] for split in scored})
