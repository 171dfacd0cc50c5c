"""Gates and adaptive gate control.

:class:`TanhGate` is a learned scalar gate whose value is ``tanh(g)``; its
``init`` is the initial *value* (the raw parameter starts at ``atanh(init)``),
so ``ca_gate_init=0.3`` means the injection starts at 0.3 strength and a gate
set to 0 contributes exactly nothing (the no-harm invariant).

:class:`AdaptiveGateControl` (AGC) scales the injection during long
generations: ``alpha(step) = floor + (1 - floor) * exp(-step / tau)``.
:class:`RefreshGate` decides dynamic refresh from the cosine similarity of the
live and the pass-1 states. :class:`AnswerGate` ties what pass 2 may say to
a calibrated threshold on the Doubter's P(correct). Nothing here knows about
the base model.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from meta_spider.wrapper.checkpoint import calibration_problem
from meta_spider.wrapper.refusal import REFUSAL_SENTENCE, is_refusal


class TanhGate(nn.Module):
    """A scalar gate ``tanh(g)``; ``init`` is the initial value in (-1, 1)."""

    def __init__(self, init: float) -> None:
        super().__init__()
        if not -1.0 < init < 1.0:
            raise ValueError(f"gate init is a tanh value and must lie in (-1, 1), got {init!r}")
        self.raw = nn.Parameter(torch.tensor(math.atanh(init), dtype=torch.float32))

    def forward(self) -> torch.Tensor:
        return torch.tanh(self.raw)

    def set_value(self, value: float) -> None:
        """Set the gate so that ``tanh(g) == value`` (0 gives exactly 0)."""
        if not -1.0 < value < 1.0:
            raise ValueError(f"gate value must lie in (-1, 1), got {value!r}")
        with torch.no_grad():
            self.raw.fill_(math.atanh(value))

    @property
    def value(self) -> float:
        return float(torch.tanh(self.raw.detach()))


@dataclass(frozen=True)
class AdaptiveGateControl:
    """Injection scale per generated token: ``floor + (1 - floor) e^(-step/tau)``.

    ``step`` counts generated tokens from 0 (the forward that produces the
    first new token), so the first token gets the full injection and a long
    answer settles at ``floor``.
    """

    floor: float = 0.3
    tau: float = 32.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"AGC floor must lie in [0, 1], got {self.floor!r}")
        if not (self.tau > 0 and math.isfinite(self.tau)):
            raise ValueError(f"AGC tau must be a positive number, got {self.tau!r}")

    def alpha(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"AGC step must be >= 0, got {step!r}")
        return self.floor + (1.0 - self.floor) * math.exp(-step / self.tau)


def layerwise_cosine(live: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean over target layers of the cosine similarity, per batch row:
    ``[B, L, d] x [B, L, d] -> [B]``."""
    return torch.nn.functional.cosine_similarity(live.float(), reference.float(), dim=-1).mean(dim=-1)


@dataclass(frozen=True)
class RefreshGate:
    """Dynamic refresh trigger: re-encode when the live state has drifted,
    i.e. when the cosine similarity to the reference drops below
    ``threshold`` (for any batch row)."""

    threshold: float = 0.9

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"refresh threshold is a cosine similarity in [-1, 1], got {self.threshold!r}")

    def should_refresh(self, live: torch.Tensor, reference: torch.Tensor) -> bool:
        return bool((layerwise_cosine(live, reference) < self.threshold).any())


@dataclass(frozen=True)
class AnswerGate:
    """Answer when P(correct) >= ``threshold``, otherwise say ``refusal``.

    Pass 2 learnt its own answer-or-refuse boundary from the training
    targets; this gate replaces it by a threshold calibrated on held-out
    questions (``metaloom eval`` chooses one on validation). Below the
    threshold the pipeline writes ``refusal`` without running pass 2; at or
    above it pass 2 writes the answer, and when pass 2 writes a refusal
    anyway (``is_refusal``), the base's own greedy answer stands: the Doubter
    vouched for it. ``threshold = inf`` answers nothing.
    """

    threshold: float
    refusal: str = REFUSAL_SENTENCE
    is_refusal: Optional[Callable[[str], bool]] = None
    """Default: :func:`~meta_spider.wrapper.refusal.is_refusal` of ``refusal``."""

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or math.isnan(self.threshold) or self.threshold < 0.0:
            raise ValueError(f"answer threshold must be a number >= 0 (inf answers nothing), got {self.threshold!r}")
        if not isinstance(self.refusal, str) or not self.refusal.strip():
            raise ValueError(f"refusal must be a non-empty sentence, got {self.refusal!r}")
        if self.is_refusal is None:
            object.__setattr__(self, "is_refusal", functools.partial(is_refusal, refusal=self.refusal))
        if not callable(self.is_refusal) or not self.is_refusal(self.refusal):
            raise ValueError("is_refusal must be a function that recognises the gate's own refusal sentence")

    @classmethod
    def from_calibration(cls, entry: Mapping[str, Any], refusal: Optional[str] = None) -> "AnswerGate":
        """The gate a calibration entry asks for (``metaloom eval`` writes
        one into run.json and into the checkpoint): ``entry["threshold"]``,
        null meaning no threshold met the goals (answer nothing); the
        refusal is ``refusal``, else the entry's ``refusal``, else
        :data:`REFUSAL_SENTENCE`. Raises ValueError quoting a malformed entry."""
        problem = calibration_problem(entry)
        if problem is not None:
            raise ValueError(f"a calibration entry {problem}, got {entry!r:.80}")
        value = math.inf if entry["threshold"] is None else entry["threshold"]
        return cls(threshold=float(value), refusal=refusal or str(entry.get("refusal") or REFUSAL_SENTENCE))

    def answers(self, p_correct: float) -> bool:
        return p_correct >= self.threshold
