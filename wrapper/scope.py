"""The scope gate: a fitted veto on P(correct) for questions the base cannot
answer at all.

P(correct) is trained on questions the base may or may not know. Asked
something outside everything it read ("What is the currency of Sweden?" of
a base that knows only people), a small base can still draft a fluent,
confident answer ("He works for Zolge Pharma."), and the draft's log-probs
rank that with its right answers. Whether the question is one the base can
answer at all is written in its hidden state, though: a linear read of one
layer's state at the read position, with the Doubter's pass-1 signals, tells
those invented drafts from ordinary questions where the log-probs cannot
(docs/loom.md, "Under shift", finding 8).

:class:`ScopeGate` is that read: ``logit = w . z + b`` with ``z`` the
state of one target layer and the Doubter's signals, standardised by
statistics of the training split. Where ``logit < threshold`` the Doubter's
P(correct) logit becomes :data:`VETO_LOGIT` (P(correct) about 1e-13), so the
answer gate refuses. Like the signal mix it is fitted, not trained: the
trainer fits it once, before training, on the training split's questions
whose only true answer is the refusal sentence (label: the base drafted
something else), and sets the threshold at a low quantile of the validation
split's scores. Until fitted the threshold is minus infinity: it never
vetoes. All tensors are buffers, so checkpoints and sidecars carry them.
"""

from __future__ import annotations

import torch
from torch import nn

from meta_spider.wrapper.constants import SCOPE_VETO_LOGIT as VETO_LOGIT

__all__ = ["ScopeGate", "VETO_LOGIT"]


class ScopeGate(nn.Module):
    """Linear read of ``layer_states[:, layer_index]`` and the signals; vetoes below ``threshold``."""

    def __init__(self, layer_index: int, num_features: int) -> None:
        super().__init__()
        self.layer_index = layer_index
        """Position of the read layer in the Doubter's ``target_layers``."""
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("scale", torch.ones(num_features))
        self.register_buffer("weight", torch.zeros(num_features))
        self.register_buffer("bias", torch.zeros(()))
        self.register_buffer("threshold", torch.tensor(float("-inf")))

    @property
    def fitted(self) -> bool:
        """Whether a threshold was set (minus infinity: never vetoes)."""
        return bool(self.threshold > float("-inf"))

    def raw_features(self, layer_states: torch.Tensor, signals: torch.Tensor | None) -> torch.Tensor:
        """``[B, d + K]``: the read layer's state and the signals, unstandardised."""
        state = layer_states[:, self.layer_index].to(dtype=torch.float32, device=self.mean.device)
        if signals is None:
            return state
        return torch.cat([state, signals.to(dtype=torch.float32, device=self.mean.device)], dim=-1)

    def logit(self, layer_states: torch.Tensor, signals: torch.Tensor | None) -> torch.Tensor:
        """``[B]``: how far each question lies inside the base's scope (higher: inside)."""
        features = (self.raw_features(layer_states, signals) - self.mean) / self.scale
        return features @ self.weight + self.bias

    def veto(self, p_correct_logit: torch.Tensor, layer_states: torch.Tensor,
             signals: torch.Tensor | None) -> torch.Tensor:
        """``p_correct_logit`` with :data:`VETO_LOGIT` wherever the scope logit is below the threshold."""
        outside = self.logit(layer_states, signals).to(p_correct_logit.device) < self.threshold.to(p_correct_logit.device)
        return torch.where(outside, torch.full_like(p_correct_logit, VETO_LOGIT), p_correct_logit)
