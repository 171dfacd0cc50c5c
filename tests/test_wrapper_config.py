"""MetaSpiderConfig / DoubterConfig validation, layer specs, JSON round trips."""

from __future__ import annotations

import json
import math

import pytest

from meta_spider.wrapper import AdaptiveGateControl, DoubterConfig, MetaSpiderConfig, RefreshGate, resolve_layers


def test_layer_presets_resolve_to_indices() -> None:
    assert resolve_layers("all", 4) == (0, 1, 2, 3)
    assert resolve_layers("late", 24) == tuple(range(16, 24))
    assert resolve_layers("late", 6) == (4, 5)
    assert resolve_layers([5, 1, 1], 6) == (1, 5)
    assert resolve_layers("3,1", 6) == (1, 3)


@pytest.mark.parametrize("spec", [[6], [-1], "7,1"])
def test_out_of_range_layers_raise_quoting_the_spec(spec: object) -> None:
    with pytest.raises(ValueError, match="out of range"):
        resolve_layers(spec, 6)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [("dtype", "float8"), ("quantization", "int4"), ("inject_positions", "prompt"),
     ("read_position", "end"), ("target_layers", "early"), ("target_layers", []), ("device", "")],
)
def test_meta_spider_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=repr(value).replace("[", r"\[").replace("]", r"\]")):
        MetaSpiderConfig(model_name="m", **{field: value})


def test_meta_spider_config_resolves_cross_attention_layers_to_targets_by_default() -> None:
    config = MetaSpiderConfig(model_name="m", target_layers=[1, 3])
    assert config.resolve(6) == ((1, 3), (1, 3))
    config = MetaSpiderConfig(model_name="m", target_layers="late", cross_attn_layers=[2])
    assert config.resolve(6) == ((4, 5), (2,))
    with pytest.raises(ValueError, match="cross_attn_layers"):
        MetaSpiderConfig(model_name="m", cross_attn_layers=[9]).resolve(6)


def test_configs_round_trip_through_json() -> None:
    config = MetaSpiderConfig(model_name="org/model", quantization="nf4", target_layers=[2, 4], dtype="bfloat16")
    data = json.loads(json.dumps(config.to_dict()))
    assert "framework_version" in data
    assert MetaSpiderConfig.from_dict(data) == config
    doubter = DoubterConfig(hidden_size=32, num_layers=6, encoder_type="transformer", read_position="draft")
    assert DoubterConfig.from_dict(json.loads(json.dumps(doubter.to_dict()))) == doubter
    with pytest.raises(ValueError, match="bogus"):
        DoubterConfig.from_dict({**doubter.to_dict(), "bogus": 1})


@pytest.mark.parametrize(
    ("field", "value"),
    [("hidden_size", 0), ("encoder_type", "mlp"), ("ca_gate_init", 1.0), ("ca_bottleneck_dim", 10),
     ("agc_floor", 1.5), ("agc_tau", 0), ("refresh_threshold", 2.0), ("target_layers", [6])],
)
def test_doubter_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError):
        DoubterConfig(**{"hidden_size": 32, "num_layers": 6, field: value})


def test_doubter_config_defaults_and_token_counts() -> None:
    config = DoubterConfig(hidden_size=32, num_layers=6)
    assert config.target_layers == (4, 5) and config.cross_attn_layers == (4, 5)
    assert config.cognitive_token_count == 2
    assert DoubterConfig(hidden_size=32, num_layers=6, encoder_type="multi_token",
                         num_cognitive_tokens=3).cognitive_token_count == 3
    base = MetaSpiderConfig(model_name="m", target_layers="all", inject_positions="all", read_position="draft")
    derived = DoubterConfig.for_base(32, 6, base, ca_num_heads=2)
    assert derived.target_layers == tuple(range(6)) and derived.inject_positions == "all"
    assert derived.read_position == "draft" and derived.ca_num_heads == 2


def test_agc_alpha_follows_its_formula() -> None:
    agc = AdaptiveGateControl(floor=0.25, tau=10.0)
    for step in (0, 1, 7, 50, 1000):
        assert agc.alpha(step) == pytest.approx(0.25 + 0.75 * math.exp(-step / 10.0))
    assert agc.alpha(0) == 1.0
    assert agc.alpha(10_000) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="-1"):
        agc.alpha(-1)
    with pytest.raises(ValueError, match="0"):
        AdaptiveGateControl(tau=0)


def test_refresh_gate_fires_below_threshold_only() -> None:
    import torch

    reference = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    gate = RefreshGate(threshold=0.9)
    assert not gate.should_refresh(reference * 3.0, reference)  # same direction: cosine 1
    rotated = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])  # layer cosines 0.707 and 1 -> mean 0.854
    assert gate.should_refresh(rotated, reference)
    assert not RefreshGate(threshold=0.85).should_refresh(rotated, reference)
