"""The one logistic probe under both of its callers' settings: the numbers
each caller got before the two probes were one (recorded from the separate
implementations on the same problem), and the settings that tell them apart."""

from __future__ import annotations

import numpy as np
import pytest

from meta_spider.loom.evaluate.probe import LogisticProbe
from meta_spider.loom.world.probe import world_probe


def small_problem() -> tuple[np.ndarray, np.ndarray]:
    """40 examples, one feature with a spread of about 2e-6 (where the
    world's epsilon on the spread matters) that still carries signal."""
    rng = np.random.default_rng(42)
    x = rng.normal(size=(40, 3)) * np.array([1.0, 4.0, 2e-6])
    y = (x[:, 0] - 0.2 * x[:, 1] + x[:, 2] * 3e5 + rng.normal(size=40) > 0).astype(int)
    return x, y


# Fitted with l2 = 0.1 by the baselines' probe and by the world's probe as
# they stood before they became one class.
BASELINES_BEFORE = ([0.9557807285571396, -0.45833677188939875, -0.039789302264542525], 0.2829430241866575)
WORLD_BEFORE = ([0.9557797964815422, -0.46146225467693536, -0.04006088290128021], 0.2827796315230293)


@pytest.mark.parametrize(("make", "before"), [(lambda: LogisticProbe(0.1), BASELINES_BEFORE),
                                              (lambda: world_probe(0.1), WORLD_BEFORE)],
                         ids=["baselines", "world"])
def test_each_caller_gets_the_probe_it_had(make, before) -> None:
    x, y = small_problem()
    probe = make().fit(x, y)
    weight, bias = before
    # L-BFGS in float64 is deterministic here; the tolerance only absorbs
    # a BLAS that sums in another order.
    assert probe.weight == pytest.approx(weight, rel=1e-9, abs=1e-12)
    assert probe.bias == pytest.approx(bias, rel=1e-9, abs=1e-12)


def test_the_settings_differ_where_the_callers_differ() -> None:
    x, y = small_problem()
    baselines, world = LogisticProbe(0.1).fit(x, y), world_probe(0.1).fit(x, y)
    assert world.scale[2] == pytest.approx(baselines.scale[2] + 1e-6, rel=1e-12)
    assert abs(world.weight[1] - baselines.weight[1]) > 1e-3
    # Starting the bias at the log-odds or at 0 lands on the same optimum
    # when both stop on the same tolerances.
    zero_start = LogisticProbe(0.1, prior_bias=False).fit(x, y)
    assert zero_start.weight == pytest.approx(baselines.weight, abs=1e-6)


def test_a_constant_feature_stays_zero_under_both_settings() -> None:
    x, y = small_problem()
    x[:, 2] = 7.0
    for probe in (LogisticProbe(0.1), world_probe(0.1)):
        probe.fit(x, y)
        assert probe.weight[2] == 0.0
        assert np.all(np.isfinite(probe.decision_function(x)))


@pytest.mark.parametrize("settings", [{"l2": -1.0}, {"l2": float("nan")}, {"std_epsilon": -1e-6},
                                      {"tolerance_grad": float("inf")}, {"max_iter": 0}])
def test_bad_settings_name_themselves(settings) -> None:
    name = next(iter(settings))
    with pytest.raises(ValueError, match=name):
        LogisticProbe(**settings)


def test_labels_must_be_binary() -> None:
    x, _ = small_problem()
    with pytest.raises(ValueError, match="0/1"):
        LogisticProbe().fit(x, np.full(40, 2))
