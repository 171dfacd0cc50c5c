"""The gate after a lookup's read (``wrapper/after_lookup.py``): its features,
its JSON form and what it says about a malformed entry or a read that lacks
what it was fitted on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from meta_spider.wrapper.after_lookup import AfterLookupGate, gate_features, p_correct_logit


def gate(layer_index: int | None = 1) -> AfterLookupGate:
    width = 2 + 1 + (3 if layer_index is not None else 0)
    rng = np.random.default_rng(0)
    return AfterLookupGate("lookup", ("a", "b"), layer_index, rng.normal(size=width), rng.uniform(0.5, 2, width),
                           rng.normal(size=width), 0.25, -0.5)


def test_features_are_signals_then_the_p_correct_logit_then_the_state() -> None:
    rows = gate_features([0.5, 0.9], [[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]])
    assert rows.shape == (2, 5)
    np.testing.assert_allclose(rows[:, [0, 1, 3, 4]], [[1, 2, 5, 6], [3, 4, 7, 8]])
    np.testing.assert_allclose(rows[:, 2], [0.0, math.log(9.0)])
    # a vetoed P(correct) (about 1e-13) and an exact 1 stay finite
    assert np.all(np.isfinite(p_correct_logit([1e-13, 0.0, 1.0])))
    assert gate_features([0.5], [[]], None).shape == (1, 1)


def test_one_read_scores_as_its_row_does_whatever_the_state_type() -> None:
    g = gate()
    states = np.arange(6, dtype=np.float64).reshape(2, 3) / 10  # [L, d]: the gate reads target layer 1
    expected = float(g.scores(gate_features([0.7], [[0.1, -0.2]], states[1][None]))[0])
    manual = float(((np.r_[0.1, -0.2, math.log(0.7 / 0.3), states[1]] - g.mean) / g.scale) @ g.weight + g.bias)
    assert expected == pytest.approx(manual)
    signals = {"b": -0.2, "a": 0.1, "unused": 9.0}  # by name, in the gate's order
    assert g.score(0.7, signals, states) == pytest.approx(expected)
    assert g.score(0.7, signals, torch.tensor(states, dtype=torch.bfloat16)) == pytest.approx(expected, abs=0.05)
    assert AfterLookupGate.from_entry(g.to_entry()).score(0.7, signals, states) == pytest.approx(expected)


def test_a_read_without_what_the_gate_reads_is_a_clear_error() -> None:
    g = gate()
    with pytest.raises(ValueError, match=r"reads the signals \['b'\], which pass 1 did not return"):
        g.score(0.5, {"a": 1.0}, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="reads target layer 1's state, which pass 1 did not return"):
        g.score(0.5, {"a": 1.0, "b": 1.0}, None)
    with pytest.raises(ValueError, match="was fitted on 6 features; this read has 5"):
        g.score(0.5, {"a": 1.0, "b": 1.0}, np.zeros((2, 2)))


@pytest.mark.parametrize(("change", "message"), [
    ({"tool": ""}, "'after_lookup.tool' must name a tool"),
    ({"signals": "a"}, "'after_lookup.signals' must be a list of signal names"),
    ({"layer_index": -1}, "'after_lookup.layer_index' must be a whole number >= 0 or null"),
    ({"weight": [1, "x"]}, "'after_lookup.weight' must be a list of numbers"),
    ({"mean": [0.0]}, "'after_lookup.mean' holds 1 numbers where 'weight' holds 6"),
    ({"scale": [1, 1, 1, 1, 1, -1]}, "'after_lookup.scale' holds a number that is not positive"),
    ({"weight": [1e400] * 6}, "'after_lookup.weight' holds a number that is not finite"),
    ({"bias": None}, "'after_lookup.bias' must be a finite number"),
    ({"threshold": float("nan")}, "'after_lookup.threshold' must be a finite number"),
    ({"weight": [1.0] * 3, "mean": [0.0] * 3, "scale": [1.0] * 3}, "holds 3 numbers, fewer than its 2 signals"),
])
def test_a_malformed_entry_names_its_field(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        AfterLookupGate.from_entry({**gate().to_entry(), **change})
    with pytest.raises(ValueError, match="'after_lookup' must be an object"):
        AfterLookupGate.from_entry([1, 2])
