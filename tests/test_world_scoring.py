"""World scoring and probes: golden cases of the normalised exact-match
scorer, and the torch/numpy AUROC and logistic-regression probe checked
against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from meta_spider.loom.world.probe import auroc_or_nan, cross_validated_auroc, world_probe
from meta_spider.loom.world.scorer import check_answer, normalize_answer

TRUTH = ("She was born in Kuba.", "Kuba")


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("She was born in Kuba.", True),
        ("she was born in kuba", True),
        ("  She was born in  Kuba!<|im_end|>", True),
        ("Kuba", True),
        ("She was born in Kuba.\nHe works for Tarnel Mills.", True),
        ("He was born in Kuba.", False),
        ("She was born in Kubara.", False),
        ("She was born in Kuba, Velmar.", False),
        ("", False),
        ("\n\n", False),
        ("I think Kuba", False),
    ],
)
def test_scorer_golden_cases(prediction: str, expected: bool) -> None:
    assert check_answer(prediction, TRUTH) is expected


def test_scorer_accepts_single_string_and_articles() -> None:
    assert check_answer("He works as an engineer.", "He works as a engineer")
    assert check_answer("The Tarnel Mills", "Tarnel Mills")
    assert normalize_answer("<|im_start|>A  B.") == "b"
    assert not check_answer("anything", "")


def test_auroc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(labels * 0.7 + rng.normal(size=300), 1)  # rounding makes ties
    assert auroc_or_nan(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert auroc_or_nan([0.1, 0.9], [0, 1]) == 1.0
    assert np.isnan(auroc_or_nan([0.1, 0.2], [1, 1]))


def test_logistic_probe_matches_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6)) * np.array([1, 5, 0.2, 1, 1, 3])
    y = (x @ np.array([1.0, -0.3, 4.0, 0.0, 0.5, 0.2]) + rng.normal(size=400) > 0).astype(int)
    probe = world_probe(l2=0.5).fit(x, y)
    scaled = StandardScaler().fit_transform(x)
    # sklearn minimises C * sum(loss) + 0.5 |w|^2; ours mean(loss) + 0.5 l2 |w|^2.
    reference = LogisticRegression(C=1 / (0.5 * len(y)), tol=1e-10, max_iter=1000).fit(scaled, y)
    assert probe.weight == pytest.approx(reference.coef_[0], abs=1e-4)
    assert probe.bias == pytest.approx(reference.intercept_[0], abs=1e-4)
    assert np.all((probe.predict_proba(x) > 0) & (probe.predict_proba(x) < 1))
    assert cross_validated_auroc(x, y, groups=np.arange(400) // 4) > 0.9


def test_probe_validates_and_refuses_use_before_fit() -> None:
    with pytest.raises(ValueError, match="l2"):
        world_probe(l2=-1.0)
    with pytest.raises(RuntimeError, match="before fit"):
        world_probe().decision_function(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="shape"):
        world_probe().fit(np.zeros(3), [0, 1, 0])
