"""What the llama.cpp eval callback does with one computed layer output: read rows, add a delta.

:class:`EvalHook` is the Python callback; :class:`ChunkPlan` says, for the
``llama_decode`` in flight (one micro-batch), which ``l_out-<L>`` tensors to
read at which positions and which injection callables to apply where. The
hook maps tensor rows to absolute positions (the last layer's output holds
only the rows that produce logits), copies the wanted rows out and writes
``h + delta`` back, and records any failure in the plan instead of letting
an exception cross the C boundary. It knows nothing about contexts, batches
or the compiled filter in front of it (:mod:`meta_spider.backends.llamacpp.eval_filter`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from meta_spider.backends.llamacpp import ggml_ctypes
from meta_spider.backends.llamacpp.errors import InjectionError, LayerTensorNotFoundError

__all__ = ["ChunkPlan", "EvalHook", "Injection"]

Injection = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(hidden_rows [k, n_embd] float32, positions [k] int64) -> delta``
(``[k, n_embd]`` or ``[n_embd]``); the tensor is overwritten with ``hidden + delta``."""


@dataclass
class ChunkPlan:
    """What the eval callback does during one ``llama_decode`` (one micro-batch)."""

    layer_by_name: dict[bytes, int]
    positions: np.ndarray
    output_positions: np.ndarray
    read: dict[int, np.ndarray]
    inject: dict[int, tuple[Injection, np.ndarray]]
    hidden: dict[int, dict[int, np.ndarray]]
    seen: dict[int, int] = field(default_factory=dict)
    error: BaseException | None = None


class EvalHook:
    """The ``cb_eval`` callable. Holds the plan of the decode in flight (None between decodes).

    It must not reference the context object, so that the context can be
    finalised while llama.cpp still holds this callback's function pointer.
    """

    def __init__(self, n_embd: int) -> None:
        self.n_embd = n_embd
        self.plan: ChunkPlan | None = None

    def __call__(self, tensor: int | None, ask: bool, user_data: int | None) -> bool:
        plan = self.plan
        if plan is None or not tensor:
            return False
        layer = plan.layer_by_name.get(ggml_ctypes.tensor_name(tensor))
        if layer is None:
            return False
        if ask:
            return True
        if plan.error is not None:
            return False
        try:
            self._apply(plan, layer, tensor)
        except BaseException as exc:  # noqa: BLE001 - an exception must not cross the C boundary
            plan.error = exc
            # False makes the scheduler stop this graph split; the decode is then rolled back.
            return False
        return True

    def _apply(self, plan: ChunkPlan, layer: int, tensor: int) -> None:
        plan.seen[layer] = plan.seen.get(layer, 0) + 1
        if plan.seen[layer] > 1:
            raise LayerTensorNotFoundError(layer, plan.seen[layer])
        name = ggml_ctypes.tensor_name(tensor).decode("utf-8", "replace")
        n_rows, row_len = ggml_ctypes.f32_matrix_shape(tensor)
        if row_len != self.n_embd:
            raise ggml_ctypes.TensorLayoutError(name, f"rows of {row_len} values, expected n_embd={self.n_embd}")
        if n_rows == len(plan.positions):
            row_positions = plan.positions
        elif n_rows == len(plan.output_positions):
            # The last layer gathers only the rows that produce logits before its FFN.
            row_positions = plan.output_positions
        else:
            raise ggml_ctypes.TensorLayoutError(
                name, f"has {n_rows} rows for a batch of {len(plan.positions)} tokens "
                f"with {len(plan.output_positions)} outputs")
        read_positions = plan.read.get(layer, np.empty(0, dtype=np.int64))
        injection = plan.inject.get(layer)
        if n_rows == 1:
            # A one-token decode, every generated token's case: no row search, same checks.
            position = int(row_positions[0])
            for asked in (read_positions, injection[1] if injection else read_positions):
                if asked.size and (asked.size != 1 or int(asked[0]) != position):
                    raise ggml_ctypes.TensorLayoutError(name, f"holds position {position}, not {asked.tolist()}")
            span = ggml_ctypes.read_rows(tensor, 0, 1, row_len)
            if read_positions.size:
                plan.hidden[layer][position] = span[0].copy()
            if injection is not None:
                self._inject(layer, injection, np.zeros(1, dtype=np.int64), span, tensor, 0)
            return
        wanted = np.union1d(read_positions, injection[1] if injection else np.empty(0, dtype=np.int64))
        rows = np.searchsorted(row_positions, wanted)
        if np.any(rows >= len(row_positions)) or np.any(row_positions[np.minimum(rows, len(row_positions) - 1)] != wanted):
            raise ggml_ctypes.TensorLayoutError(name, f"holds positions {row_positions.tolist()}, not {wanted.tolist()}")
        first = int(rows.min())
        span = ggml_ctypes.read_rows(tensor, first, int(rows.max()) + 1 - first, row_len)
        for position in read_positions.tolist():
            plan.hidden[layer][position] = span[int(np.searchsorted(row_positions, position)) - first].copy()
        if injection is not None:
            self._inject(layer, injection, np.searchsorted(row_positions, injection[1]) - first, span, tensor, first)

    @staticmethod
    def _inject(layer: int, injection: tuple[Injection, np.ndarray], local: np.ndarray, span: np.ndarray,
                tensor: int, first: int) -> None:
        """Add the injection's delta to rows ``local`` of ``span`` (rows ``first``... of the tensor) and write back."""
        function, positions = injection
        current = span[local]
        try:
            delta = function(current.copy(), positions.copy())
        except Exception as exc:
            raise InjectionError(layer, positions.tolist(), f"the injection callable raised {exc!r}") from exc
        delta = np.asarray(delta, dtype=np.float32)
        if delta.shape not in (current.shape, (current.shape[1],)):
            raise InjectionError(layer, positions.tolist(),
                                 f"delta has shape {delta.shape}, expected {current.shape} or ({current.shape[1]},)")
        if not np.isfinite(delta).all():
            raise InjectionError(layer, positions.tolist(), "delta contains NaN or infinity")
        # Add in float32, as the transformers hook does for an f32 model.
        span[local] = current + delta
        ggml_ctypes.write_rows(tensor, first, span)
