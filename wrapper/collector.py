"""Reading residual-stream states after chosen decoder layers.

:class:`ActivationCollector` registers forward hooks on decoder blocks inside
a context manager that always removes them. A hook keeps one row per batch
item (the row at a given position, by default the last real token), so a
long prompt never stores ``[B, T, d]`` per layer. The state after layer L is
``hidden_states[L + 1]`` of transformers' ``output_hidden_states`` (except
for the last layer, where transformers applies the final norm first).

The collector knows nothing about tokenisation or encoders.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from meta_spider.wrapper.layers import layer_output_tensor


def last_token_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token per row: right padding (``1 1 1 0``) and
    left padding (``0 1 1 1``) alike."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.to(torch.long) * (positions + 1)).argmax(dim=1)


def left_pad(rows: Sequence[torch.Tensor], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` of prompt ids (1-D) as one left-padded batch: ``input_ids``
    and ``attention_mask``, both ``[B, max length]``."""
    size, width = len(rows), max(len(row) for row in rows)
    input_ids = torch.full((size, width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((size, width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row):] = row
        mask[i, width - len(row):] = 1
    return input_ids, mask


def padded_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens, so a left-padded row gets the
    same positions as the unpadded sequence."""
    position_ids = attention_mask.to(torch.long).cumsum(dim=1) - 1
    return position_ids.clamp(min=0)


class ActivationRecord:
    """States captured during one ``recording`` block."""

    def __init__(self, layers: Sequence[int]) -> None:
        self.layers = tuple(layers)
        self.rows: dict[int, torch.Tensor] = {}

    def states(self) -> torch.Tensor:
        """``[B, len(layers), d]`` in layer order (float32)."""
        missing = [layer for layer in self.layers if layer not in self.rows]
        if missing:
            raise RuntimeError(f"no states were recorded for layers {missing}: was the model run inside recording()?")
        return torch.stack([self.rows[layer] for layer in self.layers], dim=1)


class ActivationCollector:
    """Captures rows of the residual stream after ``layers`` of a decoder."""

    def __init__(self, decoder_layers: nn.ModuleList, layers: Sequence[int]) -> None:
        self.decoder_layers = decoder_layers
        self.layers = tuple(layers)

    @contextmanager
    def recording(self, positions: torch.Tensor | None = None, *, keep_grad: bool = False) -> Iterator[ActivationRecord]:
        """Record, for every forward inside the block, the state at
        ``positions`` (``[B]`` long; None = the last position of the input).
        A later forward overwrites an earlier one (decoding loops read the
        newest token). Hooks are removed on exit, also on error."""
        record = ActivationRecord(self.layers)
        handles = []

        def make_hook(layer: int):  # noqa: ANN202 - torch hook signature
            def hook(module: nn.Module, args: object, output: object) -> None:
                hidden = layer_output_tensor(output)
                if positions is None:
                    rows = hidden[:, -1]
                else:
                    rows = hidden[torch.arange(hidden.shape[0], device=hidden.device), positions.to(hidden.device)]
                rows = rows.float()
                record.rows[layer] = rows if keep_grad else rows.detach()

            return hook

        try:
            for layer in self.layers:
                handles.append(self.decoder_layers[layer].register_forward_hook(make_hook(layer)))
            yield record
        finally:
            for handle in handles:
                handle.remove()
