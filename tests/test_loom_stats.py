"""McNemar's exact test and the paired t-test, with their distribution
functions cross-checked against scipy (a test dependency only)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import special, stats

from meta_spider.loom.evaluate.stats import (
    binomial_cdf,
    mcnemar_exact,
    paired_t_test,
    regularized_incomplete_beta,
    student_t_cdf,
)


def test_regularized_incomplete_beta_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        a, b = rng.uniform(0.05, 400, size=2)
        x = rng.uniform()
        expected = special.betainc(a, b, x)
        assert regularized_incomplete_beta(a, b, x) == pytest.approx(expected, rel=1e-9, abs=1e-250)
    assert regularized_incomplete_beta(2.0, 3.0, 0.0) == 0.0
    assert regularized_incomplete_beta(2.0, 3.0, 1.0) == 1.0
    with pytest.raises(ValueError, match="positive"):
        regularized_incomplete_beta(0.0, 1.0, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        regularized_incomplete_beta(1.0, 1.0, 1.5)


@pytest.mark.parametrize("df", [1, 2, 3, 7, 30, 199, 5000])
def test_student_t_cdf_matches_scipy(df: int) -> None:
    for t in (-40.0, -3.2, -1.0, -0.01, 0.0, 0.5, 2.1, 9.0, 1e4):
        assert student_t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), rel=1e-9, abs=1e-15)
    assert student_t_cdf(math.inf, df) == 1.0 and student_t_cdf(-math.inf, df) == 0.0


@pytest.mark.parametrize("n", [1, 7, 40, 1999, 2001, 20000])
def test_binomial_cdf_matches_scipy_on_both_paths(n: int) -> None:
    for k in sorted({0, 1, n // 3, n // 2, n - 1}):
        expected = stats.binom.cdf(k, n, 0.5)
        assert binomial_cdf(k, n) == pytest.approx(expected, rel=1e-9, abs=1e-250)
    assert binomial_cdf(-1, n) == 0.0 and binomial_cdf(n, n) == 1.0
    assert binomial_cdf(2, 10, 0.3) == pytest.approx(stats.binom.cdf(2, 10, 0.3), rel=1e-12)


def test_mcnemar_exact_counts_and_p_value() -> None:
    base = [True] * 10 + [False] * 10 + [True] * 5
    modified = [False] * 2 + [True] * 8 + [True] * 10 + [True] * 5
    result = mcnemar_exact(base, modified)
    assert (result.n, result.base_only, result.modified_only, result.discordant) == (25, 2, 10, 12)
    assert result.p_value == pytest.approx(stats.binomtest(2, 12, 0.5).pvalue, rel=1e-12)
    # Hand value: 0 against 10 -> 2 * 2**-10.
    assert mcnemar_exact([False] * 10, [True] * 10).p_value == pytest.approx(2 / 1024)
    # Balanced discordance caps at 1; no discordance is p = 1.
    assert mcnemar_exact([True, False], [False, True]).p_value == 1.0
    assert mcnemar_exact([True, True], [True, True]).p_value == 1.0
    json.dumps(result.to_dict())


def test_mcnemar_exact_matches_scipy_on_random_pairs() -> None:
    rng = np.random.default_rng(5)
    for size in (30, 400, 6000):
        base = rng.uniform(size=size) < 0.5
        modified = np.where(rng.uniform(size=size) < 0.2, ~base, base)
        modified |= rng.uniform(size=size) < 0.05
        result = mcnemar_exact(base, modified)
        expected = stats.binomtest(min(result.base_only, result.modified_only), result.discordant, 0.5).pvalue
        assert result.p_value == pytest.approx(expected, rel=1e-8, abs=1e-300)


def test_paired_t_test_matches_scipy() -> None:
    rng = np.random.default_rng(11)
    for size in (5, 60, 900):
        base = rng.uniform(size=size) < 0.5
        modified = rng.uniform(size=size) < 0.65
        result = paired_t_test(base, modified)
        reference = stats.ttest_rel(modified.astype(float), base.astype(float))
        assert result.t_statistic == pytest.approx(reference.statistic, rel=1e-10)
        assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
        assert result.df == size - 1
        assert result.mean_difference == pytest.approx(modified.mean() - base.mean())


def test_paired_t_test_degenerate_cases() -> None:
    same = paired_t_test([True, False, True], [True, False, True])
    assert same.t_statistic == 0.0 and same.p_value == 1.0
    always_better = paired_t_test([False] * 4, [True] * 4)
    assert always_better.t_statistic == math.inf and always_better.p_value == 0.0
    assert json.loads(json.dumps(always_better.to_dict()))["t_statistic"] == "inf"
    with pytest.raises(ValueError, match="at least 2"):
        paired_t_test([True], [False])
    with pytest.raises(ValueError, match="same questions"):
        paired_t_test([True, False], [True])
    with pytest.raises(ValueError, match="booleans"):
        mcnemar_exact([0, 2], [1, 1])
