"""Encoders: pass-1 layer states -> cognitive tokens and a P(correct) logit.

Input is ``[B, L, d]`` (one residual-stream state per target layer, float32);
output is an :class:`EncoderOutput` with cognitive tokens ``[B, N, d]`` and a
P(correct) logit ``[B]``. Three kinds (``DoubterConfig.encoder_type``):

- ``selective``: one token per target layer from a per-layer bottleneck
  projector; each layer also has a linear probe giving a P(correct) logit
  (the probes the trainer pretrains), mixed into one logit.
- ``multi_token``: ``num_cognitive_tokens`` learned queries attend over the
  layer states.
- ``transformer``: a small transformer over the layer states plus learned
  query tokens and a summary token; the tokens can see one another, which is
  what lets the model revise its own first impression (self-correction).

Every token is ``base + tanh(g_n) * learned_n``: ``base`` is the normalised
state (selective) or the mean normalised state (the others) and ``g_n`` an
encoder gate, so an untrained encoder already passes the raw state through.
The encoders know nothing about tokenisation, hooks or the base model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from meta_spider.wrapper.config import DoubterConfig
from meta_spider.wrapper.gates import TanhGate


@dataclass
class EncoderOutput:
    """What an encoder produced for a batch."""

    cognitive_tokens: torch.Tensor
    """``[B, N, d]``"""
    p_correct_logit: torch.Tensor
    """``[B]``; sigmoid gives P(correct)."""
    probe_logits: torch.Tensor | None = None
    """``[B, L]`` per-layer probe logits (selective encoder only)."""


class SelectiveEncoder(nn.Module):
    """One cognitive token and one probe per target layer."""

    def __init__(self, config: DoubterConfig) -> None:
        super().__init__()
        d, e, n_layers = config.hidden_size, config.encoder_dim, len(config.target_layers)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(n_layers))
        self.projectors = nn.ModuleList(
            nn.Sequential(nn.Linear(d, e), nn.GELU(), nn.Linear(e, d)) for _ in range(n_layers)
        )
        self.probes = nn.ModuleList(nn.Linear(d, 1) for _ in range(n_layers))
        self.gates = nn.ModuleList(TanhGate(config.encoder_gate_init) for _ in range(n_layers))
        # The mix starts as the mean of the probes, so pretrained probes give
        # a sensible combined logit before the mix itself is trained.
        self.probe_mix = nn.Linear(n_layers, 1)
        with torch.no_grad():
            self.probe_mix.weight.fill_(1.0 / n_layers)
            self.probe_mix.bias.zero_()

    def forward(self, layer_states: torch.Tensor) -> EncoderOutput:
        tokens, probe_logits = [], []
        for i, (norm, projector, probe, gate) in enumerate(zip(self.norms, self.projectors, self.probes, self.gates)):
            state = norm(layer_states[:, i])
            tokens.append(state + gate() * projector(state))
            probe_logits.append(probe(state).squeeze(-1))
        probes = torch.stack(probe_logits, dim=1)
        return EncoderOutput(torch.stack(tokens, dim=1), self.probe_mix(probes).squeeze(-1), probes)


class _PooledBase(nn.Module):
    """Shared front of the query-based encoders: normalise, project to the
    encoder width and tag each state with a learned layer embedding."""

    def __init__(self, config: DoubterConfig) -> None:
        super().__init__()
        d, e, n_layers = config.hidden_size, config.encoder_dim, len(config.target_layers)
        self.norm = nn.LayerNorm(d)
        self.down = nn.Linear(d, e)
        self.layer_embedding = nn.Parameter(torch.randn(n_layers, e) * 0.02)
        self.queries = nn.Parameter(torch.randn(config.num_cognitive_tokens, e) * 0.02)
        self.up = nn.Linear(e, d)
        self.gates = nn.ModuleList(TanhGate(config.encoder_gate_init) for _ in range(config.num_cognitive_tokens))
        self.head = nn.Linear(e, 1)

    def prepare(self, layer_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normed = self.norm(layer_states)
        return normed, self.down(normed) + self.layer_embedding

    def tokens(self, normed: torch.Tensor, query_out: torch.Tensor) -> torch.Tensor:
        gates = torch.stack([gate() for gate in self.gates]).view(1, -1, 1)
        return normed.mean(dim=1, keepdim=True) + gates * self.up(query_out)


class MultiTokenEncoder(_PooledBase):
    """Learned queries attend over the layer states."""

    def __init__(self, config: DoubterConfig) -> None:
        super().__init__(config)
        self.attention = nn.MultiheadAttention(config.encoder_dim, config.encoder_num_heads, batch_first=True)

    def forward(self, layer_states: torch.Tensor) -> EncoderOutput:
        normed, keys = self.prepare(layer_states)
        queries = self.queries.unsqueeze(0).expand(layer_states.shape[0], -1, -1)
        query_out, _ = self.attention(queries, keys, keys, need_weights=False)
        logit = self.head(query_out.mean(dim=1)).squeeze(-1)
        return EncoderOutput(self.tokens(normed, query_out), logit)


class TransformerEncoder(_PooledBase):
    """A small transformer over [summary; queries; layer states]."""

    def __init__(self, config: DoubterConfig) -> None:
        super().__init__(config)
        e = config.encoder_dim
        self.summary = nn.Parameter(torch.randn(1, e) * 0.02)
        block = nn.TransformerEncoderLayer(
            e, config.encoder_num_heads, dim_feedforward=2 * e, dropout=0.0, batch_first=True, norm_first=True
        )
        # enable_nested_tensor only matters for padded batches, which never occur here.
        self.transformer = nn.TransformerEncoder(block, config.encoder_num_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(e)

    def forward(self, layer_states: torch.Tensor) -> EncoderOutput:
        batch = layer_states.shape[0]
        normed, states = self.prepare(layer_states)
        n = self.queries.shape[0]
        sequence = torch.cat(
            [self.summary.expand(batch, -1, -1), self.queries.unsqueeze(0).expand(batch, -1, -1), states], dim=1
        )
        out = self.final_norm(self.transformer(sequence))
        logit = self.head(out[:, 0]).squeeze(-1)
        return EncoderOutput(self.tokens(normed, out[:, 1 : 1 + n]), logit)


def build_encoder(config: DoubterConfig) -> nn.Module:
    """The encoder named by ``config.encoder_type``."""
    kinds = {"selective": SelectiveEncoder, "multi_token": MultiTokenEncoder, "transformer": TransformerEncoder}
    return kinds[config.encoder_type](config)
