"""Gated bottleneck cross-attention: how cognitive tokens enter the residual
stream after one decoder layer.

``delta = tanh(g) * W_o . softmax(Q(norm h) K(norm c)^T / sqrt(r/H)) V(norm c)``
with ``Q, K, V: d -> r`` and ``W_o: r -> d`` (r = ``ca_bottleneck_dim``, H
heads). The module returns the delta; the caller adds it to ``h``. With the
gate at 0 the delta is exactly zero. It knows nothing about hooks, caches or
which layer it sits after.
"""

from __future__ import annotations

import torch
from torch import nn

from meta_spider.wrapper.gates import TanhGate


class BottleneckCrossAttention(nn.Module):
    """Q from the hidden state, K/V from the cognitive tokens, d -> r -> d."""

    def __init__(self, hidden_size: int, bottleneck_dim: int, num_heads: int, gate_init: float) -> None:
        super().__init__()
        if bottleneck_dim % num_heads:
            raise ValueError(f"bottleneck_dim={bottleneck_dim!r} is not divisible by num_heads={num_heads!r}")
        self.num_heads = num_heads
        # Residual-stream scales differ wildly between layers and families;
        # normalising both sides keeps the attention logits in range.
        self.query_norm = nn.LayerNorm(hidden_size)
        self.token_norm = nn.LayerNorm(hidden_size)
        self.q_proj = nn.Linear(hidden_size, bottleneck_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, bottleneck_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, bottleneck_dim, bias=False)
        self.o_proj = nn.Linear(bottleneck_dim, hidden_size, bias=False)
        self.gate = TanhGate(gate_init)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)

    def project_tokens(self, cognitive_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the cognitive tokens, ``[B, H, N, r/H]`` each.
        They depend on the tokens only, so a decoding loop computes them once
        per token set instead of once per generated token."""
        tokens = self.token_norm(cognitive_tokens.float())
        return self._heads(self.k_proj(tokens)), self._heads(self.v_proj(tokens))

    def forward(self, hidden: torch.Tensor, cognitive_tokens: torch.Tensor,
                keys_values: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``hidden [B, T, d]``, ``cognitive_tokens [B, N, d]`` -> delta ``[B, T, d]``
        in float32. ``keys_values`` (from :meth:`project_tokens` of the same
        tokens) skips the K/V projections."""
        hidden = hidden.float()
        k, v = keys_values if keys_values is not None else self.project_tokens(cognitive_tokens)
        q = self._heads(self.q_proj(self.query_norm(hidden)))
        attended = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        batch, _, length, _ = attended.shape
        attended = attended.transpose(1, 2).reshape(batch, length, -1)
        return self.gate() * self.o_proj(attended)
