"""The ReflexionBuffer: what pass 1 produced, held until pass 2 uses it.

It keeps the cognitive tokens, the P(correct) logit and the pass-1 layer
states (the reference for dynamic refresh), and counts refreshes. It knows
nothing about how the tokens were made or where they are injected.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ReflexionBuffer:
    """Cognitive tokens between the passes (one generation at a time)."""

    cognitive_tokens: torch.Tensor | None = None
    """``[B, N, d]``"""
    p_correct_logit: torch.Tensor | None = None
    """``[B]``"""
    reference_states: torch.Tensor | None = None
    """``[B, L, d]``: the states the tokens were encoded from."""
    refreshes: int = 0

    def store(self, cognitive_tokens: torch.Tensor, p_correct_logit: torch.Tensor | None,
              reference_states: torch.Tensor | None) -> None:
        self.cognitive_tokens = cognitive_tokens
        self.p_correct_logit = p_correct_logit
        self.reference_states = reference_states
        self.refreshes = 0

    def refresh(self, cognitive_tokens: torch.Tensor, reference_states: torch.Tensor) -> None:
        """Replace the tokens after a re-encode; the new states become the
        reference so one drift triggers one refresh, not one per token."""
        self.cognitive_tokens = cognitive_tokens
        self.reference_states = reference_states
        self.refreshes += 1

    @property
    def is_empty(self) -> bool:
        return self.cognitive_tokens is None

    def clear(self) -> None:
        self.cognitive_tokens = self.p_correct_logit = self.reference_states = None
        self.refreshes = 0
