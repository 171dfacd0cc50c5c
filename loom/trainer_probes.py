"""Projector pretraining: fit the selective encoder's per-layer P(correct)
probes to ``pass1_correct`` before the wrapper is trained end to end.

Each probe is a logistic regression on its layer's normalised state,
fitted by full-batch L-BFGS with a small L2 penalty. Starting from fitted
probes gives the combined P(correct) logit (their mean, through the
encoder's probe mix) a calibrated start, and lets the LM loss spend its
early updates on the cross-attention instead of on the probes. Full batch
and deterministic, so every data-parallel process fits the same probes.

This module knows the selective encoder's probe layout and nothing about
the base model or the LM loss.
"""

from __future__ import annotations

import torch
from torch import nn

from meta_spider.loom.trainer_config import TrainerError
from meta_spider.wrapper.encoders import SelectiveEncoder


def fit_layer_probes(
    encoder: nn.Module,
    layer_states: torch.Tensor,
    correct: torch.Tensor,
    *,
    pos_weight: float = 1.0,
    iterations: int = 50,
    l2: float = 1e-3,
) -> list[float]:
    """Fit every per-layer probe of ``encoder`` (a :class:`SelectiveEncoder`)
    in place; returns each probe's final training loss (BCE + L2)."""
    if not isinstance(encoder, SelectiveEncoder):
        raise TrainerError(f"projector pretraining needs the selective encoder, got {type(encoder).__name__}",
                           "set pretrain_projectors=False for this encoder type")
    labels = correct.float().to(layer_states.device)
    if labels.min() == labels.max():
        raise TrainerError(f"the training split holds only {'correct' if labels[0] else 'wrong'} answers, so "
                           "P(correct) cannot be learned", "collect a dataset where the base is right sometimes "
                           "and wrong sometimes")
    weight = torch.tensor(float(pos_weight), device=layer_states.device)
    losses = []
    for index, (norm, probe) in enumerate(zip(encoder.norms, encoder.probes)):
        with torch.no_grad():
            features = norm(layer_states[:, index].float())
        coefficients = torch.zeros(features.shape[1], device=features.device, requires_grad=True)
        bias = torch.zeros((), device=features.device, requires_grad=True)
        optimizer = torch.optim.LBFGS([coefficients, bias], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            logits = features @ coefficients + bias
            loss = nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight)
            loss = loss + l2 * coefficients.square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            probe.weight.copy_(coefficients.view_as(probe.weight))
            probe.bias.copy_(bias.view_as(probe.bias))
            logits = features @ coefficients + bias
            final = nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight)
            losses.append(float(final + l2 * coefficients.square().sum()))
    return losses
