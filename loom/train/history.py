"""What a training run records: one :class:`EpochRecord` per epoch (epoch 0
is the validation before the first update) and the :class:`TrainingResult`
that :meth:`~meta_spider.loom.train.trainer.Trainer.fit` returns.

This module knows the records' fields and their JSON view, not training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["EpochRecord", "TrainingResult"]


@dataclass
class EpochRecord:
    """What one epoch measured (``epoch`` 0 is the validation before training)."""

    epoch: int
    global_step: int
    lr: float
    train_lm_loss: float | None
    train_aux_loss: float | None
    train_auroc: float | None
    val_auroc: float | None
    val_loss: float
    val_lm_loss: float
    val_aux_loss: float
    improved: bool = False


@dataclass
class TrainingResult:
    """What :meth:`Trainer.fit` did."""

    history: list[EpochRecord]
    best_epoch: int | None
    best_metric: float | None
    metric: str
    stopped_early: bool
    global_step: int
    best_checkpoint: Path | None
    pos_weight: float
    target_counts: dict[str, int]
    resumed_from: int | None = None
    num_processes: int = 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["best_checkpoint"] = None if self.best_checkpoint is None else str(self.best_checkpoint)
        return data
