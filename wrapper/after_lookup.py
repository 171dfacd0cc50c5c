"""The gate after a lookup: does the record a tool returned answer the question?

Asked about a recorded person's unrecorded attribute ("What is X's shoe
size?"), an agent looks X up, finds X's record, and a small base answers from
it with another attribute ("He works as a translator."): it has never read a
record that lacks what was asked. Pass 1 on the conversation up to the tool
result tells the two apart where P(correct) alone does less well
(docs/loom.md, "Under shift", finding 23): a linear read of the Doubter's
signals there, its P(correct) logit and, when the Doubter has a scope gate,
the state of that gate's layer.

:class:`AfterLookupGate` is that read: ``score = w . z + b`` with ``z`` the
features of :func:`gate_features`, standardised by statistics of the rows it
was fitted on; the answer after the tool result is given when ``score >=
threshold`` and refused below. ``metaloom eval`` fits it (on the training
questions asked with their lookup, the threshold at a low quantile of the
validation questions' right answers) and keeps it in the Doubter's
calibration entry under :data:`ENTRY_KEY`, so run.json, the checkpoint and
the llama.cpp sidecar all carry it as JSON. The doubter policy applies it.

numpy only: the policy that scores with it never imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["ENTRY_KEY", "AfterLookupGate", "gate_features", "p_correct_logit"]

ENTRY_KEY = "after_lookup"
"""Where a calibration entry keeps the fitted gate."""

_P_FLOOR = 1e-9
"""P(correct) is clipped to [floor, 1 - floor] before its logit (a vetoed
P(correct) is about 1e-13)."""


def p_correct_logit(p_correct: Any) -> np.ndarray:
    """The logit of P(correct), clipped away from 0 and 1."""
    p = np.clip(np.asarray(p_correct, dtype=np.float64), _P_FLOOR, 1.0 - _P_FLOOR)
    return np.log(p) - np.log1p(-p)


def gate_features(p_correct: Any, signals: Any, states: Any | None) -> np.ndarray:
    """``[n, F]`` rows: the signals ``[n, K]``, the P(correct) logit, then the
    read layer's state ``[n, d]`` (when there is one). The fit and the
    policy both build their rows here."""
    p = np.atleast_1d(np.asarray(p_correct, dtype=np.float64))
    columns = [np.asarray(signals, dtype=np.float64).reshape(len(p), -1), p_correct_logit(p)[:, None]]
    if states is not None:
        columns.append(np.asarray(states, dtype=np.float64).reshape(len(p), -1))
    return np.concatenate(columns, axis=1)


def _numbers(entry: Mapping[str, Any], key: str, length: int | None) -> np.ndarray:
    value = entry.get(key)
    if (not isinstance(value, Sequence) or isinstance(value, str)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"'{ENTRY_KEY}.{key}' must be a list of numbers, got {value!r:.60}")
    array = np.asarray(value, dtype=np.float64)
    if length is not None and len(array) != length:
        raise ValueError(f"'{ENTRY_KEY}.{key}' holds {len(array)} numbers where 'weight' holds {length}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"'{ENTRY_KEY}.{key}' holds a number that is not finite")
    return array


def _finite(entry: Mapping[str, Any], key: str) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"'{ENTRY_KEY}.{key}' must be a finite number, got {value!r:.40}")
    return float(value)


@dataclass(frozen=True)
class AfterLookupGate:
    """A fitted linear read on pass 1 after a tool result; answers at or above ``threshold``."""

    tool: str
    """The tool whose results it was fitted on (it judges only those)."""
    signals: tuple[str, ...]
    """The Doubter's signals it reads, in its feature order."""
    layer_index: int | None
    """Position in the Doubter's target layers of the state it reads (None: no state)."""
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: float
    threshold: float

    @classmethod
    def from_entry(cls, entry: Any) -> "AfterLookupGate":
        """The gate kept in a calibration entry's :data:`ENTRY_KEY`; ValueError
        naming the field when it is malformed."""
        if not isinstance(entry, Mapping):
            raise ValueError(f"'{ENTRY_KEY}' must be an object, got {entry!r:.60}")
        tool, signals, layer = entry.get("tool"), entry.get("signals"), entry.get("layer_index")
        if not isinstance(tool, str) or not tool:
            raise ValueError(f"'{ENTRY_KEY}.tool' must name a tool, got {tool!r:.40}")
        if not isinstance(signals, list) or not all(isinstance(s, str) for s in signals):
            raise ValueError(f"'{ENTRY_KEY}.signals' must be a list of signal names, got {signals!r:.60}")
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or layer < 0):
            raise ValueError(f"'{ENTRY_KEY}.layer_index' must be a whole number >= 0 or null, got {layer!r:.40}")
        weight = _numbers(entry, "weight", None)
        scale = _numbers(entry, "scale", len(weight))
        if np.any(scale <= 0):
            raise ValueError(f"'{ENTRY_KEY}.scale' holds a number that is not positive")
        if len(weight) < len(signals) + 1 + (layer is not None):
            raise ValueError(f"'{ENTRY_KEY}.weight' holds {len(weight)} numbers, fewer than its {len(signals)} "
                             "signals, the P(correct) logit and a state need")
        return cls(tool, tuple(signals), layer, _numbers(entry, "mean", len(weight)), scale, weight,
                   _finite(entry, "bias"), _finite(entry, "threshold"))

    def to_entry(self) -> dict[str, Any]:
        """The JSON form :meth:`from_entry` reads."""
        return {"tool": self.tool, "signals": list(self.signals), "layer_index": self.layer_index,
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "weight": self.weight.tolist(),
                "bias": self.bias, "threshold": self.threshold}

    def scores(self, features: np.ndarray) -> np.ndarray:
        """``[n]`` scores of :func:`gate_features` rows."""
        return ((np.asarray(features, dtype=np.float64) - self.mean) / self.scale) @ self.weight + self.bias

    def score(self, p_correct: float, signals: Mapping[str, float], layer_states: Any | None) -> float:
        """The score of one pass-1 read: ``signals`` by name, ``layer_states``
        ``[L, d]`` over the Doubter's target layers. ValueError when the read
        lacks a signal or the state the gate was fitted on."""
        missing = [name for name in self.signals if name not in signals]
        if missing:
            raise ValueError(f"the gate after a lookup reads the signals {missing}, which pass 1 did not return")
        state = None
        if self.layer_index is not None:
            if hasattr(layer_states, "detach"):  # a torch tensor, in whatever dtype the base runs
                layer_states = layer_states.detach().float().cpu().numpy()
            states = None if layer_states is None else np.asarray(layer_states, dtype=np.float64)
            if states is None or states.ndim != 2 or states.shape[0] <= self.layer_index:
                raise ValueError(f"the gate after a lookup reads target layer {self.layer_index}'s state, which "
                                 "pass 1 did not return")
            state = states[self.layer_index][None]
        row = gate_features([p_correct], [[float(signals[name]) for name in self.signals]], state)
        if row.shape[1] != len(self.weight):
            raise ValueError(f"the gate after a lookup was fitted on {len(self.weight)} features; this read has "
                             f"{row.shape[1]} (a Doubter other than the one it was fitted for?)")
        return float(self.scores(row)[0])
