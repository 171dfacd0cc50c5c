"""The trainer's configuration (:class:`TrainerConfig`) and its typed error
(:class:`TrainerError`).

The config validates itself in ``__post_init__`` (a ``ValueError`` quoting
the bad value) and round-trips through JSON, so a checkpoint records the
exact settings it was trained with. This module knows nothing about torch,
models or data: it imports nothing heavy.
"""

from __future__ import annotations

import math
from dataclasses import InitVar, asdict, dataclass, field, fields
from typing import Any, Optional

from meta_spider.plugins.errors import MetaSpiderError
from meta_spider.wrapper.refusal import REFUSAL_SENTENCE

OPTIMIZERS = ("adamw", "adam8bit")
EARLY_STOPPING_METRICS = ("val_auroc", "val_loss")
MIXED_PRECISION = ("no", "bf16", "fp16")


class TrainerError(MetaSpiderError, fields=("problem", "fix")):
    """Training cannot start or continue. ``problem`` says what is wrong,
    ``fix`` what to do about it."""

    template = "{problem}. {fix}"


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


_UNSET: Any = type("_Unset", (), {"__repr__": lambda self: "<unset>"})()
"""Default of an alias keyword: tells "not given" from an explicit None."""

ALIASES = {"grad_accumulation": "gradient_accumulation_steps", "learning_rate": "lr",
           "early_stop_patience": "early_stopping_patience"}
"""Keyword aliases :class:`TrainerConfig` accepts (the published API's names
of these fields) -> the field they set."""


@dataclass
class TrainerConfig:
    """How the Doubter is trained (see :class:`meta_spider.loom.train.trainer.Trainer`)."""

    epochs: int = _help("passes over the training split (early stopping may end sooner)", 3)
    batch_size: int = _help("examples per micro-step over all processes together (split between them)", 8)
    gradient_accumulation_steps: int = _help("micro-steps per optimizer update", 1)
    lr: float = _help("base learning rate: encoder weights and cross-attention weights", 2e-4)
    gate_lr_multiplier: float = _help("LR multiple for encoder gates, injection gates and token preferences", 10.0)
    weight_decay: float = _help("decoupled weight decay, applied to weight matrices only", 0.01)
    warmup_fraction: float = _help("fraction of the updates spent in linear warmup before the cosine decay", 0.05)
    min_lr_ratio: float = _help("the cosine schedule ends at this fraction of each group's LR", 0.0)
    max_grad_norm: Optional[float] = _help("clip the global gradient norm to this (None: no clipping)", 1.0)
    optimizer: str = _help("'adamw' (torch) or 'adam8bit' (bitsandbytes Adam8bit)", "adamw")
    probe_loss_weight: float = _help(
        "weight of the BCE of the P(correct) logit (and per-layer probes) vs pass1_correct", 1.0)
    pos_weight: Optional[float] = _help(
        "BCE weight of the correct class (None: 1, or n_wrong/n_correct with balance_classes)", None)
    balance_classes: bool = _help("set pos_weight to n_wrong / n_correct of the training split", False)
    answer_loss_weight: float = _help(
        "LM-loss weight of rows whose target is an answer (confirm / correct) relative to refusal rows; "
        "above 1 moves pass 2 toward answering, below 1 toward refusing", 1.0)
    enable_self_correction: bool = _help("confirm / correct / refuse targets (needs the transformer encoder)", False)
    signals_only: bool = _help(
        "P(correct) reads the pass-1 signals alone: the signal mix gives the encoder's logit weight 0 (the same "
        "Doubter without its states, to measure what the states add); needs a Doubter that reads signals", False)
    pretrain_projectors: bool = _help("fit the selective encoder's per-layer probes to pass1_correct first", True)
    pretrain_iterations: int = _help("L-BFGS iterations of the per-layer probe fit", 50)
    pretrain_l2: float = _help("L2 penalty of the per-layer probe fit", 1e-3)
    scope_quantile: float = _help(
        "a Doubter with a scope gate vetoes below this quantile of the validation questions' scope scores (the "
        "share of ordinary questions it may refuse)", 0.005)
    early_stopping_metric: str = _help("'val_auroc' (of P(correct), higher is better) or 'val_loss'", "val_auroc")
    early_stopping_patience: Optional[int] = _help("epochs without improvement before stopping (None: never)", 3)
    min_delta: float = _help("smallest change of the metric that counts as an improvement", 0.0)
    train_split: str = _help("split of the activation dataset to train on", "train")
    validation_split: str = _help(
        "split to validate on; when empty, validation_fraction of train is held out", "validation")
    validation_fraction: float = _help("share of train held out when the dataset has no validation split", 0.1)
    eval_batch_size: int = _help("examples per validation forward (per process)", 32)
    seed: int = _help("seed of the data order (per epoch) and of torch's RNG", 0)
    mixed_precision: str = _help("accelerate mixed precision: 'no', 'bf16' or 'fp16'", "no")
    keep_epoch_checkpoints: int = _help("epoch checkpoints kept on disk (the newest; best/ is kept apart)", 2)
    restore_best: bool = _help("load the best epoch's weights into the Doubter when fit ends", True)
    refusal: str = _help("the refusal sentence pass 2 learns to say where the base is wrong; keep the one the base "
                         "knows (the embedded world's base was trained on \"I don't know.\")", REFUSAL_SENTENCE)
    grad_accumulation: InitVar[Any] = _UNSET
    """Alias of ``gradient_accumulation_steps`` (see :data:`ALIASES`)."""
    learning_rate: InitVar[Any] = _UNSET
    """Alias of ``lr``."""
    early_stop_patience: InitVar[Any] = _UNSET
    """Alias of ``early_stopping_patience``."""

    def __post_init__(self, grad_accumulation: Any = _UNSET, learning_rate: Any = _UNSET,
                      early_stop_patience: Any = _UNSET) -> None:
        given = {"grad_accumulation": grad_accumulation, "learning_rate": learning_rate,
                 "early_stop_patience": early_stop_patience}
        defaults = {f.name: f.default for f in fields(self)}
        for alias, value in given.items():
            if value is _UNSET:
                continue
            name = ALIASES[alias]
            if getattr(self, name) != defaults[name] and getattr(self, name) != value:
                raise ValueError(f"{alias}={value!r} and {name}={getattr(self, name)!r} set the same thing; give one")
            setattr(self, name, value)
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "eval_batch_size",
                     "keep_epoch_checkpoints", "pretrain_iterations"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("lr", "gate_lr_multiplier", "answer_loss_weight"):
            value = getattr(self, name)
            if not _number(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("weight_decay", "probe_loss_weight", "pretrain_l2", "min_delta"):
            value = getattr(self, name)
            if not _number(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not _number(self.scope_quantile) or not 0.0 < self.scope_quantile < 0.5:
            raise ValueError(f"scope_quantile must lie in (0, 0.5), got {self.scope_quantile!r}")
        for name in ("warmup_fraction", "min_lr_ratio"):
            value = getattr(self, name)
            if not _number(value) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
        if not _number(self.validation_fraction) or not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must lie in (0, 1), got {self.validation_fraction!r}")
        if self.max_grad_norm is not None and (not _number(self.max_grad_norm) or self.max_grad_norm <= 0):
            raise ValueError(f"max_grad_norm must be a positive number or None, got {self.max_grad_norm!r}")
        if self.pos_weight is not None and (not _number(self.pos_weight) or self.pos_weight <= 0):
            raise ValueError(f"pos_weight must be a positive number or None, got {self.pos_weight!r}")
        if self.pos_weight is not None and self.balance_classes:
            raise ValueError(f"give pos_weight={self.pos_weight!r} or balance_classes=True, not both")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.early_stopping_metric not in EARLY_STOPPING_METRICS:
            raise ValueError(f"early_stopping_metric must be one of {EARLY_STOPPING_METRICS}, "
                             f"got {self.early_stopping_metric!r}")
        if self.early_stopping_patience is not None and (
            not isinstance(self.early_stopping_patience, int) or isinstance(self.early_stopping_patience, bool)
            or self.early_stopping_patience < 1
        ):
            raise ValueError("early_stopping_patience must be a positive int or None, "
                             f"got {self.early_stopping_patience!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        for name in ("train_split", "validation_split"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a split name, got {getattr(self, name)!r}")
        if not isinstance(self.refusal, str) or not self.refusal.strip():
            raise ValueError(f"refusal must be a non-empty sentence, got {self.refusal!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an int, got {self.seed!r}")

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger early-stopping metric is an improvement."""
        return self.early_stopping_metric == "val_auroc"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainerConfig":
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainerConfig fields {unknown!r}")
        return cls(**data)

    def schedule_fields(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues
        for the two to end equal (everything but bookkeeping)."""
        ignored = {"keep_epoch_checkpoints", "restore_best", "eval_batch_size"}
        return {k: v for k, v in self.to_dict().items() if k not in ignored}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
