"""The Doubter: encoder + gated cross-attention + ReflexionBuffer (+ SignalMix).

It is the whole trainable wrapper (the base is never part of it): encode
pass-1 states into cognitive tokens and a P(correct) logit (combined, when
the config names pass-1 signals, with those signals by :class:`SignalMix`),
provide the
per-layer cross-attention the injection hooks call, report its size and its
base fingerprint, and save/load itself (safetensors + JSON, see
:mod:`meta_spider.wrapper.checkpoint`). It knows nothing about tokenisation
or decoding loops; hooks live in :mod:`meta_spider.wrapper.injection`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from meta_spider.wrapper.buffer import ReflexionBuffer
from meta_spider.wrapper.config import DoubterConfig, framework_version
from meta_spider.wrapper.cross_attention import BottleneckCrossAttention
from meta_spider.wrapper.encoders import EncoderOutput, build_encoder
from meta_spider.wrapper.errors import FingerprintMismatchError, ReferenceVocabularyError
from meta_spider.wrapper.gates import TanhGate
from meta_spider.wrapper.scope import ScopeGate
from meta_spider.wrapper.signals import reads_reference, reference_problem

logger = logging.getLogger(__name__)

FINGERPRINT_SHAPE_FIELDS = ("hidden_size", "num_layers")
"""Fingerprint fields that must match for a checkpoint to fit a base."""


def base_fingerprint(model_id: str, hidden_size: int, num_layers: int) -> dict[str, Any]:
    """The identity of a base as far as a Doubter cares."""
    return {"model_id": model_id, "hidden_size": hidden_size, "num_layers": num_layers}


class SignalMix(nn.Module):
    """P(correct) logit = ``linear([encoder logit, z])`` with ``z = (signals -
    mean) / scale``, the pass-1 signals standardised by statistics of the
    training split (buffers, set by the trainer). Starts as the encoder's
    logit unchanged (weights ``[1, 0, ...]``, bias 0). Its weights are
    fitted, not trained: the trainer fits them once, by logistic regression
    on out-of-fold encoder logits, and the optimizer leaves them alone
    (``requires_grad`` is off)."""

    def __init__(self, num_signals: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_signals))
        self.register_buffer("scale", torch.ones(num_signals))
        self.linear = nn.Linear(num_signals + 1, 1)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.weight[0, 0] = 1.0
            self.linear.bias.zero_()
        self.linear.requires_grad_(False)

    def features(self, encoder_logit: torch.Tensor, signals: torch.Tensor) -> torch.Tensor:
        """``[B, 1 + K]``: the encoder's logit and the standardised signals."""
        return torch.cat([encoder_logit.unsqueeze(-1), (signals - self.mean) / self.scale], dim=-1)

    def forward(self, encoder_logit: torch.Tensor, signals: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(encoder_logit, signals)).squeeze(-1)


class Doubter(nn.Module):
    """The trainable wrapper around a frozen base."""

    def __init__(self, config: DoubterConfig, *, model_id: str = "") -> None:
        super().__init__()
        self.config = config
        self.model_id = model_id
        self.calibration: dict[str, Any] | None = None
        """The answer-threshold calibration ``metaloom eval`` chose for this
        Doubter (``threshold``, ``split``, ``rule``, ``goals``, ``score``, ...),
        saved with the checkpoint; :meth:`MetaSpiderPipeline.attach` turns it
        into the pipeline's answer gate. None when uncalibrated."""
        self.buffer = ReflexionBuffer()
        self.encoder: nn.Module | None = None
        self.cross_attn = nn.ModuleDict()
        self.signal_mix: SignalMix | None = None
        self.scope_gate: ScopeGate | None = None
        # ``[V]`` log p_ref, the base's mean next-token distribution over the
        # training prompts, for the PMI signals: a buffer (saved with the
        # weights), empty until trained; None when no signal reads it.
        self.log_reference: torch.Tensor | None
        if reads_reference(config.signals):
            self.register_buffer("log_reference", torch.zeros(0))
        else:
            self.log_reference = None
        if config.sized:  # an unsized config gets its modules when a pipeline attaches it (size_for)
            self._build()

    def _build(self) -> None:
        config = self.config
        self.encoder = build_encoder(config)
        self.cross_attn = nn.ModuleDict(
            {
                str(layer): BottleneckCrossAttention(
                    config.hidden_size, config.ca_bottleneck_dim, config.ca_num_heads, config.ca_gate_init
                )
                for layer in config.cross_attn_layers
            }
        )
        self.signal_mix = SignalMix(len(config.signals)) if config.signals else None
        if config.scope_layer is not None:
            self.scope_gate = ScopeGate(list(config.target_layers).index(config.scope_layer),
                                        config.hidden_size + len(config.signals))

    @property
    def sized(self) -> bool:
        """Whether the Doubter has its modules (see :meth:`size_for`)."""
        return self.encoder is not None

    def size_for(self, hidden_size: int, num_layers: int, config: Any = None, *, model_id: str = "") -> "Doubter":
        """Build the modules of a Doubter made from an unsized config, for a
        base of this shape (``config``: the pipeline's
        :class:`MetaSpiderConfig`, for layers and positions); returns self.
        A sized Doubter is left as it is."""
        if self.sized:
            return self
        self.config = self.config.sized_for(hidden_size, num_layers, config)
        self.model_id = self.model_id or model_id
        self._build()
        return self

    def set_log_reference(self, log_reference: Any) -> None:
        """Carry ``log_reference`` (``[V]`` log p_ref, float32) for the PMI
        signals; raises ValueError for a Doubter that reads none of them or
        a tensor that is not one finite non-empty vector."""
        if self.log_reference is None:
            raise ValueError(f"this Doubter reads no PMI signal (its signals: {list(self.config.signals)}), so it "
                             "carries no reference distribution")
        values = torch.as_tensor(log_reference).detach().to(device="cpu", dtype=torch.float32)
        problem = reference_problem(values.numpy())
        if problem is not None:
            raise ValueError(problem)
        self.log_reference = values.to(self.log_reference.device)

    def check_vocabulary(self, vocab_size: int) -> None:
        """Raise :class:`ReferenceVocabularyError` when this Doubter's
        reference distribution covers another vocabulary than ``vocab_size``
        (nothing to check without one, or before training sets it)."""
        if self.log_reference is not None and self.log_reference.numel() and self.log_reference.numel() != vocab_size:
            raise ReferenceVocabularyError(int(self.log_reference.numel()), int(vocab_size), self.model_id)

    # ------------------------------------------------------------ compute

    def encode(self, layer_states: torch.Tensor, signals: torch.Tensor | None = None, *,
               scope: bool = True) -> EncoderOutput:
        """``[B, L, d]`` pass-1 states (target-layer order) -> tokens + logit;
        ``signals [B, K]`` (the config's ``signals``, in that order) are
        required when the config names any and enter the P(correct) logit.
        A fitted scope gate (:class:`~meta_spider.wrapper.scope.ScopeGate`)
        vetoes questions it reads as outside what the base can answer, unless
        ``scope`` is false (the training loss, which teaches P(correct) on
        every question)."""
        encoded = self.encoder_output(layer_states)
        logit = encoded.p_correct_logit
        if self.signal_mix is not None:
            wanted = (layer_states.shape[0], len(self.config.signals))
            if signals is None or tuple(signals.shape) != wanted:
                got = None if signals is None else tuple(signals.shape)
                raise ValueError(f"this Doubter's P(correct) reads the pass-1 signals {list(self.config.signals)}: "
                                 f"pass signals of shape {list(wanted)}, got {got}")
            logit = self.signal_mix(logit, signals.to(device=logit.device, dtype=torch.float32))
        if self.scope_gate is not None and scope:
            logit = self.scope_gate.veto(logit, layer_states, signals if self.config.signals else None)
        return encoded if logit is encoded.p_correct_logit else dataclasses.replace(encoded, p_correct_logit=logit)

    def cognitive_tokens(self, layer_states: torch.Tensor) -> torch.Tensor:
        """Only the cognitive tokens ``[B, N, d]`` of ``layer_states`` (what
        dynamic refresh needs; no P(correct), so no signals)."""
        return self.encoder_output(layer_states).cognitive_tokens

    def encoder_logit(self, layer_states: torch.Tensor) -> torch.Tensor:
        """The encoder's own P(correct) logit ``[B]``, before any signals."""
        return self.encoder_output(layer_states).p_correct_logit

    def encoder_output(self, layer_states: torch.Tensor) -> EncoderOutput:
        """The encoder alone on ``[B, L, d]`` states: cognitive tokens and
        its own P(correct) logit, before any signals or scope gate."""
        if self.encoder is None:
            raise ValueError("this Doubter is unsized (its config has hidden_size 0): attach it to a pipeline first "
                             "(pipeline.attach(doubter) sizes it from the base)")
        expected = (len(self.config.target_layers), self.config.hidden_size)
        if layer_states.dim() != 3 or tuple(layer_states.shape[1:]) != expected:
            raise ValueError(f"layer_states must be [B, {expected[0]}, {expected[1]}], got {tuple(layer_states.shape)}")
        device = next(self.parameters()).device
        return self.encoder(layer_states.to(device=device, dtype=torch.float32))

    def cross_attention(self, layer: int) -> BottleneckCrossAttention:
        """The cross-attention module injecting after decoder layer ``layer``."""
        return self.cross_attn[str(layer)]  # type: ignore[return-value]

    # ------------------------------------------------------------ gates

    def injection_gates(self) -> dict[int, TanhGate]:
        return {int(layer): module.gate for layer, module in self.cross_attn.items()}

    def set_injection_gates(self, value: float) -> None:
        """Set every injection gate's value ``tanh(g)`` (0 = no injection)."""
        for gate in self.injection_gates().values():
            gate.set_value(value)

    def injection_gate_values(self) -> dict[int, float]:
        return {layer: gate.value for layer, gate in self.injection_gates().items()}

    # ------------------------------------------------------------ identity

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count of the wrapper (the base is not part of it)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def fingerprint(self) -> dict[str, Any]:
        """The base fingerprint saved with the checkpoint."""
        return {
            **base_fingerprint(self.model_id, self.config.hidden_size, self.config.num_layers),
            "target_layers": list(self.config.target_layers),
            "cross_attn_layers": list(self.config.cross_attn_layers),
            "framework_version": framework_version(),
        }

    def check_fits(self, base: Mapping[str, Any]) -> None:
        """Raise :class:`FingerprintMismatchError` (naming both) when this
        Doubter's base differs in shape from ``base``. A differing model id
        alone only logs: the same weights arrive under a hub id, a local
        folder or a GGUF path."""
        mine = self.fingerprint()
        bad = [name for name in FINGERPRINT_SHAPE_FIELDS if mine[name] != base.get(name)]
        if bad:
            raise FingerprintMismatchError(mine, base, bad)
        if mine["model_id"] and base.get("model_id") and mine["model_id"] != base.get("model_id"):
            logger.warning("Doubter trained on %r is attached to %r (same shape)", mine["model_id"], base.get("model_id"))

    # ------------------------------------------------------------ files

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write a checkpoint folder (or a single ``.safetensors`` file when
        ``path`` ends so) and return its path."""
        from meta_spider.wrapper.checkpoint import save_doubter

        return save_doubter(self, path)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "cpu") -> "Doubter":
        """Load a checkpoint written by :meth:`save_checkpoint`."""
        from meta_spider.wrapper.checkpoint import load_doubter

        return load_doubter(path, device=device)
