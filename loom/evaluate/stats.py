"""Paired significance tests of base vs modified per-question correctness:
McNemar's exact test and the paired t-test.

scipy is not a dependency, so the distributions are computed here: the
binomial tail exactly with integers (or through the incomplete beta function
for large counts) and Student's t through the regularized incomplete beta
function, evaluated with its continued fraction (modified Lentz method). The
tests cross-check both against scipy.

This module knows nothing about models or datasets: it sees two boolean
vectors over the same questions, in the same order.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence, Union

import numpy as np

__all__ = [
    "McNemarResult",
    "PairedTTestResult",
    "binomial_cdf",
    "mcnemar_exact",
    "paired_t_test",
    "regularized_incomplete_beta",
    "student_t_cdf",
]

Flags = Union[Sequence[bool], Sequence[int], np.ndarray]

_EXACT_BINOMIAL_LIMIT = 2000
"""Up to this many discordant pairs the binomial tail is summed exactly in
integers; above it the incomplete beta function is faster (its accuracy,
limited by ``lgamma`` of large arguments, is about 1e-10 relative at 50 000
pairs, far below what a p-value needs)."""

_CF_MAX_ITERATIONS = 10_000
_CF_EPSILON = 1e-15
_CF_TINY = 1e-300


def _continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (converges fast
    for x < (a + 1) / (a + b + 2)), by the modified Lentz method."""
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
    value = d
    for m in range(1, _CF_MAX_ITERATIONS + 1):
        # Even step of the fraction, then odd step.
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _CF_TINY else _CF_TINY
            delta = c * d
            value *= delta
        if abs(delta - 1.0) < _CF_EPSILON:
            return value
    raise ArithmeticError(f"incomplete beta continued fraction did not converge for a={a!r}, b={b!r}, x={x!r}")


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and
    0 <= x <= 1."""
    if not (a > 0 and b > 0):
        raise ValueError(f"a and b must be positive, got a={a!r}, b={b!r}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must lie in [0, 1], got {x!r}")
    if x == 0.0 or x == 1.0:
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The fraction converges quickly on one side of the mean; use the
    # symmetry I_x(a, b) = 1 - I_{1-x}(b, a) on the other.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _continued_fraction(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t distribution with ``df`` degrees of freedom."""
    if not df > 0:
        raise ValueError(f"df must be positive, got {df!r}")
    if math.isnan(t):
        raise ValueError("t must be a number, got nan")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def binomial_cdf(k: int, n: int, p: float = 0.5) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"need n >= 0 and 0 <= p <= 1, got n={n!r}, p={p!r}")
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p == 0.5 and n <= _EXACT_BINOMIAL_LIMIT:
        return sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    if p == 0.0:
        return 1.0
    if p == 1.0:
        return 0.0
    return regularized_incomplete_beta(n - k, k + 1.0, 1.0 - p)


def _paired(base_correct: Flags, modified_correct: Flags) -> tuple[np.ndarray, np.ndarray]:
    base = np.asarray(base_correct)
    modified = np.asarray(modified_correct)
    for name, array in (("base_correct", base), ("modified_correct", modified)):
        if array.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
        if array.size and not np.all(np.isin(array, (0, 1))):
            raise ValueError(f"{name} must hold booleans (or 0/1), got {array[:5].tolist()!r}")
    if base.shape != modified.shape:
        raise ValueError(
            f"base_correct and modified_correct must cover the same questions, got {base.size} and {modified.size}"
        )
    return base.astype(bool), modified.astype(bool)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's exact test on the discordant pairs.

    ``base_only``: questions the base got right and the modified system
    did not; ``modified_only``: the reverse. Under the null hypothesis each
    discordant question is a fair coin; ``p_value`` is two-sided.
    """

    n: int
    base_only: int
    modified_only: int
    discordant: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return asdict(self)


def mcnemar_exact(base_correct: Flags, modified_correct: Flags) -> McNemarResult:
    """McNemar's exact test of base vs modified correctness on the same
    questions: two-sided binomial test (p = 1/2) on the discordant pairs,
    ``p = min(1, 2 * P(X <= min(b, c)))``. No discordant pair gives p = 1."""
    base, modified = _paired(base_correct, modified_correct)
    base_only = int((base & ~modified).sum())
    modified_only = int((~base & modified).sum())
    discordant = base_only + modified_only
    p_value = 1.0
    if discordant:
        p_value = min(1.0, 2.0 * binomial_cdf(min(base_only, modified_only), discordant, 0.5))
    return McNemarResult(
        n=int(base.size), base_only=base_only, modified_only=modified_only, discordant=discordant, p_value=p_value,
    )


@dataclass(frozen=True)
class PairedTTestResult:
    """Paired t-test of per-question correctness, difference = modified -
    base (so a positive ``mean_difference`` means the modified system is
    right more often). ``p_value`` is two-sided."""

    n: int
    mean_difference: float
    std_difference: float
    t_statistic: float
    df: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (an infinite t is written as a string)."""
        data = asdict(self)
        if math.isinf(self.t_statistic):
            data["t_statistic"] = "inf" if self.t_statistic > 0 else "-inf"
        return data


def paired_t_test(base_correct: Flags, modified_correct: Flags) -> PairedTTestResult:
    """Paired t-test of modified vs base correctness over the same questions.

    Needs at least two questions. Where every difference is the same the
    sample deviation is zero: all-zero differences give t = 0 and p = 1 (no
    difference observed; scipy returns nan there), a constant non-zero
    difference gives an infinite t and p = 0.
    """
    base, modified = _paired(base_correct, modified_correct)
    n = int(base.size)
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 questions, got {n}")
    differences = modified.astype(np.float64) - base.astype(np.float64)
    mean = float(differences.mean())
    std = float(differences.std(ddof=1))
    df = n - 1
    if std == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        p_value = 1.0 if mean == 0.0 else 0.0
    else:
        t = mean / (std / math.sqrt(n))
        p_value = regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return PairedTTestResult(n=n, mean_difference=mean, std_difference=std, t_statistic=t, df=df, p_value=p_value)
