"""Projector pretraining: fit the selective encoder's per-layer P(correct)
probes to ``pass1_correct`` before the wrapper is trained end to end, and,
for a Doubter that reads pass-1 signals, its :class:`SignalMix`
(:func:`fit_signal_mix`).

Each probe is a logistic regression on its layer's normalised state,
fitted by full-batch L-BFGS with a small L2 penalty. Starting from fitted
probes gives the combined P(correct) logit (their mean, through the
encoder's probe mix) a calibrated start, and lets the LM loss spend its
early updates on the cross-attention instead of on the probes. Full batch
and deterministic, so every data-parallel process fits the same probes.

This module knows the selective encoder's probe layout and nothing about
the base model or the LM loss; :func:`pretrain_doubter` runs both fits
as the trainer does before its first update.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from meta_spider.loom.train.config import TrainerConfig, TrainerError
from meta_spider.wrapper.encoders import SelectiveEncoder

if TYPE_CHECKING:
    from meta_spider.loom.train.data import TrainingRows

logger = logging.getLogger(__name__)


def _fit_logistic(features: torch.Tensor, labels: torch.Tensor, start: torch.Tensor, *, pos_weight: float,
                  iterations: int, l2: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Weighted logistic regression of ``labels`` on ``features [n, d]`` with
    an L2 penalty on the weights, by full-batch L-BFGS from weights
    ``start`` and bias 0: ``(weights, bias, final loss)``."""
    weight = torch.tensor(float(pos_weight), device=features.device)
    coefficients = start.clone().requires_grad_(True)
    bias = torch.zeros((), device=features.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([coefficients, bias], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

    def loss_of(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        logits = features @ w + b
        return nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight) + l2 * w.square().sum()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_of(coefficients, bias)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return coefficients.detach(), bias.detach(), float(loss_of(coefficients, bias))


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
    losses = []
    for index, (norm, probe) in enumerate(zip(encoder.norms, encoder.probes)):
        with torch.no_grad():
            features = norm(layer_states[:, index].float())
        start = torch.zeros(features.shape[1], device=features.device)
        coefficients, bias, loss = _fit_logistic(features, labels, start, pos_weight=pos_weight, iterations=iterations,
                                                 l2=l2)
        with torch.no_grad():
            probe.weight.copy_(coefficients.view_as(probe.weight))
            probe.bias.copy_(bias.view_as(probe.bias))
        losses.append(loss)
    return losses


def out_of_fold_encoder_logits(doubter: nn.Module, layer_states: torch.Tensor, correct: torch.Tensor, *,
                               folds: int = 5, seed: int = 0, pos_weight: float = 1.0, iterations: int = 50,
                               l2: float = 1e-3) -> torch.Tensor:
    """The selective encoder's P(correct) logit of every row as it would be
    on unseen rows: the per-layer probes refitted ``folds`` times, each time
    without one seeded fold, which they then score. A logit fitted on the
    very rows it scores is more sure of itself than it will be on new
    questions, and a mix fitted on it would trust it too much. Other
    encoders have no probes to refit: their in-sample logit is returned."""
    import copy

    with torch.no_grad():
        logits = doubter.encoder_logit(layer_states).detach().clone()
    encoder = doubter.encoder
    if not isinstance(encoder, SelectiveEncoder) or len(correct) < 2 * folds:
        return logits
    order = torch.randperm(len(correct), generator=torch.Generator().manual_seed(seed))
    for held in order.chunk(folds):
        keep = torch.ones(len(correct), dtype=torch.bool)
        keep[held] = False
        if correct[keep].float().min() == correct[keep].float().max():
            continue  # one class left: keep the in-sample logits of this fold
        fold_encoder = copy.deepcopy(encoder)
        fit_layer_probes(fold_encoder, layer_states[keep], correct[keep], pos_weight=pos_weight,
                         iterations=iterations, l2=l2)
        with torch.no_grad():
            logits[held] = fold_encoder(layer_states[held].float()).p_correct_logit
    return logits


def fit_signal_mix(doubter: nn.Module, encoder_logits: torch.Tensor, signals: torch.Tensor, correct: torch.Tensor, *,
                   pos_weight: float = 1.0, iterations: int = 100, l2: float = 1e-3, use_encoder: bool = True) -> float:
    """Set the Doubter's signal standardisation to the statistics of
    ``signals [n, K]`` and fit its :class:`SignalMix` (a logistic regression
    on ``encoder_logits [n]``, preferably :func:`out_of_fold_encoder_logits`,
    and the standardised signals, L2 on the weights) to ``correct``, in
    place; returns the final loss. Without ``use_encoder`` the encoder's
    logit gets weight 0 and P(correct) reads the signals alone."""
    mix = getattr(doubter, "signal_mix", None)
    if mix is None:
        raise TrainerError("this Doubter reads no pass-1 signals", "build it with DoubterConfig(signals=[...])")
    device = mix.mean.device
    labels = correct.float().to(device)
    if labels.min() == labels.max():
        raise TrainerError("the training split holds only one class of answers, so P(correct) cannot be learned",
                           "collect a dataset where the base is right sometimes and wrong sometimes")
    signals = signals.float().to(device)
    with torch.no_grad():
        mix.mean.copy_(signals.mean(dim=0))
        mix.scale.copy_(signals.std(dim=0).clamp_min(1e-6))
        features = mix.features(encoder_logits.float().to(device), signals)
        if not use_encoder:
            features[:, 0] = 0.0  # no gradient reaches its weight, which stays at 0
    start = torch.zeros(features.shape[1], device=device)
    start[0] = 1.0 if use_encoder else 0.0
    coefficients, bias, loss = _fit_logistic(features, labels, start, pos_weight=pos_weight, iterations=iterations,
                                             l2=l2)
    with torch.no_grad():
        mix.linear.weight.copy_(coefficients.view_as(mix.linear.weight))
        mix.linear.bias.copy_(bias.view_as(mix.linear.bias))
    return loss


def fit_scope_gate(doubter: nn.Module, rows: "TrainingRows", *, quantile: float, l2: float = 1.0) -> dict[str, float]:
    """Fit the Doubter's :class:`~meta_spider.wrapper.scope.ScopeGate` in
    place: a logistic regression on the training split telling the base's
    invented drafts (a question whose only true answer is the refusal
    sentence, drafted something else) from every other question, on the read
    layer's state and the signals; the threshold is the ``quantile`` of the
    validation questions' scores. Returns what the fit saw."""
    from meta_spider.loom.evaluate.probe import LogisticProbe

    gate = doubter.scope_gate
    invented = rows.unanswerable & ~rows.correct if rows.unanswerable is not None else torch.zeros_like(rows.correct)
    train = torch.tensor(rows.train, dtype=torch.long)
    count = int(invented[train].sum())
    if count == 0:
        raise TrainerError("the scope gate learns from unanswerable training questions (the only true answer is the "
                           "refusal sentence) that the base answered anyway, and the training split has none",
                           "collect a dataset that has such questions (the world: --dataset-option train_outside=N), "
                           "or train without --scope-layer")
    with torch.no_grad():
        features = gate.raw_features(rows.states, rows.signals).double().cpu().numpy()
    probe = LogisticProbe(l2 / len(rows.train)).fit(features[rows.train], (~invented[train]).numpy())
    scores = probe.decision_function(features[rows.validation])
    threshold = float(torch.quantile(torch.from_numpy(scores), quantile))
    if not math.isfinite(threshold) or not all(math.isfinite(float(w)) for w in probe.weight):
        raise TrainerError("the scope gate's fit gave non-finite scores (non-finite states or signals in the "
                           "collection?)", "collect the activations again")
    with torch.no_grad():
        for name, value in (("mean", probe.mean), ("scale", probe.scale), ("weight", probe.weight)):
            getattr(gate, name).copy_(torch.as_tensor(value, dtype=torch.float32))
        gate.bias.fill_(probe.bias)
        gate.threshold.fill_(threshold)
    return {"invented": count, "threshold": threshold, "quantile": quantile}


def mix_rows(doubter: nn.Module, rows: "TrainingRows") -> list[int]:
    """The training rows the signal mix learns P(correct) from: all of them,
    or with a scope gate only the questions the data can answer (the gate
    learns the others; a question whose right answer is the refusal would
    teach the mix that an unfamiliar subject is a sign of a right answer)."""
    if getattr(doubter, "scope_gate", None) is None or rows.unanswerable is None:
        return list(rows.train)
    return [index for index in rows.train if not bool(rows.unanswerable[index])]


def pretrain_doubter(doubter: nn.Module, rows: "TrainingRows", config: TrainerConfig, pos_weight: float,
                     device: torch.device) -> None:
    """Fit the per-layer probes (``pretrain_projectors``, selective
    encoder) and then the signal mix (whenever the Doubter reads signals)
    on the training rows, in place."""
    selective = doubter.config.encoder_type == "selective"
    if config.pretrain_projectors and not selective:
        logger.info("pretrain_projectors: the %s encoder has no per-layer probes; nothing to fit",
                    doubter.config.encoder_type)
    elif config.pretrain_projectors:
        losses = fit_layer_probes(doubter.encoder, rows.states[rows.train].to(device), rows.correct[rows.train],
                                  pos_weight=pos_weight, iterations=config.pretrain_iterations, l2=config.pretrain_l2)
        logger.info("fitted %d per-layer probes (losses %s)", len(losses), ", ".join(f"{x:.3f}" for x in losses))
    if rows.signals is not None:
        mixed = mix_rows(doubter, rows)
        states, correct = rows.states[mixed].to(device), rows.correct[mixed]
        if config.signals_only:  # the encoder's logit gets weight 0: no need to compute it
            logits = torch.zeros(len(mixed), device=device)
        else:
            logits = out_of_fold_encoder_logits(doubter, states, correct, seed=config.seed, pos_weight=pos_weight,
                                                iterations=config.pretrain_iterations, l2=config.pretrain_l2)
        loss = fit_signal_mix(doubter, logits, rows.signals[mixed], correct, pos_weight=pos_weight,
                              iterations=config.pretrain_iterations, l2=config.pretrain_l2,
                              use_encoder=not config.signals_only)
        logger.info("fitted the signal mix on %s%s (loss %.3f)", ", ".join(doubter.config.signals),
                    " alone" if config.signals_only else "", loss)
    if getattr(doubter, "scope_gate", None) is not None:
        fitted = fit_scope_gate(doubter, rows, quantile=config.scope_quantile)
        logger.info("fitted the scope gate on %d invented drafts; vetoes below %.3f (the %.0f%% quantile of "
                    "validation)", fitted["invented"], fitted["threshold"], 100 * config.scope_quantile)
