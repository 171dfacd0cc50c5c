"""Forward hooks that inject cognitive tokens after decoder layers.

:func:`injecting` registers one hook per cross-attention layer inside a
context manager and removes every hook in ``finally``; outside the block the
base runs untouched. The hooks read an :class:`InjectionState` that the
caller may change between forwards (AGC scale, refreshed tokens, a position
mask for teacher-forced training). This module knows nothing about encoders
or decoding loops.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

import torch
from torch import nn

from meta_spider.wrapper.layers import layer_output_tensor, replace_layer_output

if TYPE_CHECKING:
    from meta_spider.wrapper.doubter import Doubter


@dataclass
class InjectionState:
    """What the hooks inject; mutable between forwards."""

    cognitive_tokens: torch.Tensor
    """``[B, N, d]``"""
    scale: float = 1.0
    """Multiplies every delta (AGC sets it per generated token)."""
    position_mask: torch.Tensor | None = None
    """``[B, T]`` 1 where injection applies in the next forward; None = every
    position of the forward (the decoding case)."""
    _keys_values: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)
    _keys_values_of: torch.Tensor | None = field(default=None, repr=False)

    def keys_values(
        self, layer: int, project: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-layer K/V of the current tokens, recomputed only when the
        tokens object changes (a refresh assigns a new tensor). Under
        autograd with grad enabled nothing is reused across forwards, so a
        training step never backpropagates through a stale graph."""
        if self._keys_values_of is not self.cognitive_tokens or torch.is_grad_enabled():
            self._keys_values.clear()
            self._keys_values_of = self.cognitive_tokens
        if layer not in self._keys_values:
            self._keys_values[layer] = project(self.cognitive_tokens)
        return self._keys_values[layer]


@contextmanager
def injecting(decoder_layers: nn.ModuleList, doubter: "Doubter", state: InjectionState) -> Iterator[InjectionState]:
    """Inject ``state.cognitive_tokens`` after each of the Doubter's
    cross-attention layers for every forward inside the block."""
    handles = []

    def make_hook(layer: int):  # noqa: ANN202 - torch hook signature
        cross_attention = doubter.cross_attention(layer)

        def hook(module: nn.Module, args: object, output: object) -> object:
            hidden = layer_output_tensor(output)
            tokens = state.cognitive_tokens.to(hidden.device)
            delta = cross_attention(hidden, tokens, state.keys_values(layer, cross_attention.project_tokens))
            if state.position_mask is not None:
                delta = delta * state.position_mask.to(device=hidden.device, dtype=delta.dtype).unsqueeze(-1)
            if state.scale != 1.0:
                delta = delta * state.scale
            # Add in float32 and cast back: with a zero delta this returns
            # the base's own tensor values bit for bit.
            return replace_layer_output(output, (hidden.float() + delta).to(hidden.dtype))

        return hook

    try:
        for layer in doubter.config.cross_attn_layers:
            handles.append(decoder_layers[layer].register_forward_hook(make_hook(layer)))
        yield state
    finally:
        for handle in handles:
            handle.remove()
