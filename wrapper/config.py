"""Configuration dataclasses of the wrapper: :class:`MetaSpiderConfig` (how to
load and wrap a base) and :class:`DoubterConfig` (the Doubter's shape), plus
layer-spec resolution.

Configs validate themselves in ``__post_init__`` and round-trip through JSON
(``to_dict`` / ``from_dict``, recording the framework version). This module
knows nothing about torch or transformers: hidden size and layer count come
from the loaded base (see :mod:`meta_spider.wrapper.layers`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence, Union

from meta_spider.wrapper.constants import (
    DTYPES, ENCODER_TYPES, INJECT_POSITIONS, LAYER_PRESETS, QUANTIZATIONS, READ_POSITIONS,
)

LayerSpec = Union[str, Sequence[int]]
"""``"all"``, ``"late"`` (upper third), a list of layer indices, or the same
list as a comma-separated string (``"10,12,14"``, for command lines)."""


def framework_version() -> str:
    """The installed meta-spider version (``"0+unknown"`` from a bare tree)."""
    from importlib import metadata

    try:
        return metadata.version("meta-spider")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _check_layer_spec(spec: Any, name: str) -> LayerSpec:
    if isinstance(spec, str):
        if spec in LAYER_PRESETS:
            return spec
        try:
            return tuple(int(part) for part in spec.split(",") if part.strip())
        except ValueError:
            raise ValueError(f"{name} must be 'all', 'late' or layer indices, got {spec!r}") from None
    if isinstance(spec, Sequence) and all(isinstance(i, int) and not isinstance(i, bool) for i in spec):
        if not spec:
            raise ValueError(f"{name} must name at least one layer, got {spec!r}")
        return tuple(spec)
    raise ValueError(f"{name} must be 'all', 'late' or a list of ints, got {spec!r}")


def resolve_layers(spec: LayerSpec, num_layers: int, name: str = "target_layers") -> tuple[int, ...]:
    """Turn a layer spec into sorted unique indices in ``[0, num_layers)``.

    ``"late"`` is the upper third: ``floor(2 n / 3) .. n - 1``. Raises
    ``ValueError`` quoting the spec when an index is out of range.
    """
    spec = _check_layer_spec(spec, name)
    if spec == "all":
        return tuple(range(num_layers))
    if spec == "late":
        return tuple(range((2 * num_layers) // 3, num_layers))
    bad = [i for i in spec if not 0 <= i < num_layers]
    if bad:
        raise ValueError(f"{name}={list(spec)!r}: layers {bad} are out of range for a base with {num_layers} layers")
    return tuple(sorted(set(spec)))


def _help(text: str, default: Any = None, factory: Any = None) -> Any:
    if factory is not None:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


class _JsonConfig:
    """``to_dict`` / ``from_dict`` shared by both configs."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        data["framework_version"] = framework_version()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known - {"framework_version"})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown!r}")
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class MetaSpiderConfig(_JsonConfig):
    """How to load a frozen base and wrap it."""

    model_name: str = _help("hub id or local folder of the base causal LM", "")
    device: str = _help("torch device: 'cpu', 'cuda', 'cuda:1', ...", "cpu")
    dtype: str = _help("'auto' (bfloat16 on CUDA, float32 on CPU), 'bfloat16', 'float16' or 'float32'", "auto")
    quantization: str | None = _help("None, 'int8', 'nf4' or 'fp4' (bitsandbytes)", None)
    target_layers: LayerSpec = _help("layers pass 1 reads: 'all', 'late' (upper third) or indices", "late")
    cross_attn_layers: LayerSpec | None = _help("layers pass 2 injects after; None = target_layers", None)
    gradient_checkpointing: bool = _help("checkpoint the base's decoder layers in training forwards", False)
    inject_positions: str = _help("'generation' (from the last prompt token on, reuses pass 1's cache) or 'all'", "generation")
    read_position: str = _help("'prompt' (last prompt token) or 'draft' (end of a greedy draft answer)", "prompt")
    revision: str | None = _help("hub revision (branch, tag or commit)", None)
    local_files_only: bool = _help("never touch the network when loading", False)

    def __post_init__(self) -> None:
        if not isinstance(self.model_name, str):
            raise ValueError(f"model_name must be a string, got {self.model_name!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {self.quantization!r}")
        if self.inject_positions not in INJECT_POSITIONS:
            raise ValueError(f"inject_positions must be one of {INJECT_POSITIONS}, got {self.inject_positions!r}")
        if self.read_position not in READ_POSITIONS:
            raise ValueError(f"read_position must be one of {READ_POSITIONS}, got {self.read_position!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a torch device string, got {self.device!r}")
        self.target_layers = _check_layer_spec(self.target_layers, "target_layers")
        if self.cross_attn_layers is not None:
            self.cross_attn_layers = _check_layer_spec(self.cross_attn_layers, "cross_attn_layers")

    def resolve(self, num_layers: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(target_layers, cross_attn_layers)`` as indices for a base with
        ``num_layers`` decoder layers."""
        target = resolve_layers(self.target_layers, num_layers, "target_layers")
        if self.cross_attn_layers is None:
            return target, target
        return target, resolve_layers(self.cross_attn_layers, num_layers, "cross_attn_layers")


@dataclass
class DoubterConfig(_JsonConfig):
    """The Doubter's shape: what it reads, how it encodes, where it injects."""

    hidden_size: int = _help("hidden size of the base's residual stream (0 with num_layers 0: unsized, "
                             "sized by pipeline.attach)", 0)
    num_layers: int = _help("decoder layer count of the base (0: unsized)", 0)
    target_layers: Sequence[int] = _help("resolved layers pass 1 reads", factory=tuple)
    cross_attn_layers: Sequence[int] | None = _help("resolved layers pass 2 injects after (None = target_layers)", None)
    encoder_type: str = _help("'selective' (one token per layer), 'multi_token' (learned queries) or 'transformer'", "selective")
    num_cognitive_tokens: int = _help("cognitive tokens of the multi_token and transformer encoders", 4)
    encoder_dim: int = _help("inner width of the encoders' bottleneck", 256)
    encoder_num_heads: int = _help("attention heads inside the multi_token/transformer encoders", 4)
    encoder_num_layers: int = _help("transformer encoder depth", 1)
    ca_bottleneck_dim: int = _help("cross-attention bottleneck r (d -> r -> d)", 256)
    ca_num_heads: int = _help("cross-attention heads (must divide ca_bottleneck_dim)", 4)
    ca_gate_init: float = _help("initial injection gate value tanh(g) per layer, in (-1, 1)", 0.3)
    encoder_gate_init: float = _help("initial encoder gate value tanh(g) per cognitive token, in (-1, 1)", 0.3)
    inject_positions: str = _help("'generation' or 'all' (training and inference use the same)", "generation")
    read_position: str = _help("'prompt' or 'draft' (where pass 1 reads)", "prompt")
    agc_floor: float = _help("AGC floor: alpha(step) = floor + (1 - floor) exp(-step / tau)", 0.3)
    agc_tau: float = _help("AGC decay constant in generated tokens", 32.0)
    refresh_threshold: float = _help("dynamic refresh re-encodes when cosine(live, pass-1 state) < this", 0.9)
    signals: Sequence[str] = _help("pass-1 log-prob signals P(correct) also reads (meta_spider.wrapper.signals."
                                   "SIGNALS); draft signals make pass 1 draft whatever the read position",
                                   factory=tuple)
    enable_self_correction: bool = _help("train confirm / correct / refuse targets (needs the transformer "
                                         "encoder; the trainer follows it)", False)
    scope_layer: int | None = _help("target layer whose state the scope gate reads, with the signals, to veto "
                                    "questions outside what the base can answer (meta_spider.wrapper.scope; "
                                    "None: no scope gate)", None)

    def __post_init__(self) -> None:
        from meta_spider.wrapper.signals import check_signal_names

        self.signals = check_signal_names(self.signals)
        sizes = (self.hidden_size, self.num_layers)
        unsized = all(isinstance(v, int) and not isinstance(v, bool) and v == 0 for v in sizes)
        for name in ("hidden_size", "num_layers", "num_cognitive_tokens", "encoder_dim", "encoder_num_heads",
                     "encoder_num_layers", "ca_bottleneck_dim", "ca_num_heads"):
            value = getattr(self, name)
            if unsized and name in ("hidden_size", "num_layers"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}"
                                 + (" (leave hidden_size and num_layers both 0 for a Doubter that "
                                    "pipeline.attach sizes)" if name in ("hidden_size", "num_layers") else ""))
        if unsized:  # the layers resolve against the base on attach
            self.target_layers = _check_layer_spec(list(self.target_layers) or "late", "target_layers")
            if self.cross_attn_layers is not None:
                self.cross_attn_layers = _check_layer_spec(list(self.cross_attn_layers), "cross_attn_layers")
        else:
            self.target_layers = resolve_layers(list(self.target_layers) or "late", self.num_layers, "target_layers")
            cross = self.target_layers if self.cross_attn_layers is None else self.cross_attn_layers
            self.cross_attn_layers = resolve_layers(list(cross), self.num_layers, "cross_attn_layers")
        if self.encoder_type not in ENCODER_TYPES:
            raise ValueError(f"encoder_type must be one of {ENCODER_TYPES}, got {self.encoder_type!r}")
        if not isinstance(self.enable_self_correction, bool):
            raise ValueError(f"enable_self_correction must be a bool, got {self.enable_self_correction!r}")
        if self.enable_self_correction and self.encoder_type != "transformer":
            raise ValueError(f"enable_self_correction needs encoder_type='transformer' (its tokens see one another, "
                             f"which is what lets pass 2 revise an answer), got {self.encoder_type!r}")
        if self.ca_bottleneck_dim % self.ca_num_heads:
            raise ValueError(
                f"ca_bottleneck_dim={self.ca_bottleneck_dim!r} is not divisible by ca_num_heads={self.ca_num_heads!r}"
            )
        if self.encoder_dim % self.encoder_num_heads:
            raise ValueError(
                f"encoder_dim={self.encoder_dim!r} is not divisible by encoder_num_heads={self.encoder_num_heads!r}"
            )
        for name in ("ca_gate_init", "encoder_gate_init"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not -1.0 < value < 1.0:
                raise ValueError(f"{name} is a tanh gate value and must lie in (-1, 1), got {value!r}")
        if self.scope_layer is not None and (isinstance(self.scope_layer, bool) or not isinstance(self.scope_layer, int)
                                             or (not unsized and self.scope_layer not in self.target_layers)):
            raise ValueError(f"scope_layer must be one of the target layers {list(self.target_layers)} (or None), "
                             f"got {self.scope_layer!r}")
        if self.inject_positions not in INJECT_POSITIONS:
            raise ValueError(f"inject_positions must be one of {INJECT_POSITIONS}, got {self.inject_positions!r}")
        if self.read_position not in READ_POSITIONS:
            raise ValueError(f"read_position must be one of {READ_POSITIONS}, got {self.read_position!r}")
        if not 0.0 <= self.agc_floor <= 1.0:
            raise ValueError(f"agc_floor must lie in [0, 1], got {self.agc_floor!r}")
        if not (isinstance(self.agc_tau, (int, float)) and self.agc_tau > 0 and math.isfinite(self.agc_tau)):
            raise ValueError(f"agc_tau must be a positive number, got {self.agc_tau!r}")
        if not -1.0 <= self.refresh_threshold <= 1.0:
            raise ValueError(f"refresh_threshold is a cosine similarity in [-1, 1], got {self.refresh_threshold!r}")

    @property
    def sized(self) -> bool:
        """Whether the config knows its base's shape (an unsized one is
        completed by :meth:`sized_for` when a pipeline attaches it)."""
        return self.hidden_size > 0 and self.num_layers > 0

    def sized_for(self, hidden_size: int, num_layers: int, config: MetaSpiderConfig | None = None) -> "DoubterConfig":
        """This config sized for a base: what :meth:`for_base` gives with
        every field set here that differs from the default kept, so
        ``Doubter(DoubterConfig(encoder_type=...))`` attached to a pipeline
        equals ``pipeline.new_doubter(encoder_type=...)``."""
        defaults = type(self)()
        overrides = {f.name: getattr(self, f.name) for f in fields(self)
                     if f.name not in ("hidden_size", "num_layers") and getattr(self, f.name) != getattr(defaults, f.name)}
        if "target_layers" in overrides and overrides["target_layers"] == "late":
            del overrides["target_layers"]
        return type(self).for_base(hidden_size, num_layers, config, **overrides)

    @property
    def drafts(self) -> bool:
        """Whether pass 1 drafts an answer: a draft read, or a signal that reads the draft."""
        from meta_spider.wrapper.signals import needs_draft

        return self.read_position == "draft" or needs_draft(self.signals)

    @property
    def cognitive_token_count(self) -> int:
        """How many cognitive tokens the encoder emits."""
        if self.encoder_type == "selective":
            return len(self.target_layers)
        return self.num_cognitive_tokens

    @classmethod
    def for_base(cls, hidden_size: int, num_layers: int, config: MetaSpiderConfig | None = None,
                 **overrides: Any) -> "DoubterConfig":
        """A DoubterConfig sized for a base, taking layers and the two
        position choices from ``config`` when given."""
        values: dict[str, Any] = {"hidden_size": hidden_size, "num_layers": num_layers}
        if config is not None:
            target, cross = config.resolve(num_layers)
            values.update(target_layers=target, cross_attn_layers=cross,
                          inject_positions=config.inject_positions, read_position=config.read_position)
        values.update(overrides)
        return cls(**values)
