"""The Doubter's math in numpy, from its GGUF sidecar: no torch at inference.

:class:`NumpyDoubter` ports the three encoders (``selective``,
``multi_token``, ``transformer``), the gated bottleneck cross-attention, AGC
and the dynamic-refresh trigger of :mod:`meta_spider.wrapper` operation for
operation (LayerNorm eps 1e-5, exact erf GELU, ReLU feed-forward in the
transformer block, scaled dot-product attention), and the signal mix that
combines P(correct) with pass-1 log-prob signals. The encoder (once per read)
computes in float64; the per-token cross-attention in float32, as the torch
module does.

It knows nothing about llama.cpp, tokens, decoding loops or the file's
layout (:mod:`~meta_spider.backends.llamacpp.sidecar_format` reads it); it
imports only numpy.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from meta_spider.backends.llamacpp.sidecar_format import SidecarContents, SidecarError, read_sidecar
from meta_spider.wrapper.constants import SCOPE_VETO_LOGIT
from meta_spider.wrapper.signals import needs_draft

LAYER_NORM_EPS = 1e-5
"""torch.nn.LayerNorm's default, used by every norm inside the Doubter."""


# ------------------------------------------------------------------ math


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + LAYER_NORM_EPS) * weight + bias


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x: np.ndarray) -> np.ndarray:
    """torch.nn.GELU() (exact, erf form)."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    out = x @ weight.T
    return out if bias is None else out + bias


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, num_heads: int) -> np.ndarray:
    """Scaled dot-product attention over heads: ``[..., Tq, W] x [..., Tk, W] -> [..., Tq, W]``."""
    def heads(x: np.ndarray) -> np.ndarray:
        return x.reshape(*x.shape[:-1], num_heads, x.shape[-1] // num_heads).swapaxes(-2, -3)

    qh, kh, vh = heads(q), heads(k), heads(v)
    weights = _softmax(qh @ kh.swapaxes(-1, -2) / math.sqrt(qh.shape[-1]))
    out = (weights @ vh).swapaxes(-2, -3)
    return out.reshape(*out.shape[:-2], -1)


def _multihead(x_q: np.ndarray, x_kv: np.ndarray, prefix: str, t: Mapping[str, np.ndarray],
               num_heads: int) -> np.ndarray:
    """torch.nn.MultiheadAttention (packed in_proj, batch_first) without masks."""
    wq, wk, wv = np.split(t[f"{prefix}.in_proj_weight"], 3)
    bq, bk, bv = np.split(t[f"{prefix}.in_proj_bias"], 3)
    attended = _attention(_linear(x_q, wq, bq), _linear(x_kv, wk, bk),
                          _linear(x_kv, wv, bv), num_heads)
    return _linear(attended, t[f"{prefix}.out_proj.weight"], t[f"{prefix}.out_proj.bias"])


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """torch.nn.functional.cosine_similarity along the last axis (eps 1e-8 per norm)."""
    norms = np.maximum(np.linalg.norm(a, axis=-1), 1e-8) * np.maximum(np.linalg.norm(b, axis=-1), 1e-8)
    return (a * b).sum(axis=-1) / norms


@dataclass
class NumpyEncoded:
    """What the numpy encoder produced for one read (no batch axis)."""

    cognitive_tokens: np.ndarray
    """``[N, d]`` float32."""
    p_correct_logit: float
    probe_logits: np.ndarray | None = None
    """``[L]`` per-layer probe logits (selective encoder only)."""

    @property
    def p_correct(self) -> float:
        return float(1.0 / (1.0 + math.exp(-self.p_correct_logit)))


class FoldedCrossAttention:
    """One layer's cross-attention for one token set, folded for the per-token path.

    The query's layer-norm affine, the query projection, the keys and the
    ``1/sqrt(head_dim)`` scale fold into one ``[d, heads * N]`` score matrix;
    the values, the output projection and the gate into one ``[heads * N, d]``
    matrix. A generated token then costs two matrix-vector products and a
    softmax per head: the math of :meth:`NumpyDoubter.cross_attention`,
    rounded in another order (float32; about 1e-6 relative).
    """

    def __init__(self, score_weight: np.ndarray, score_bias: np.ndarray, out_weight: np.ndarray,
                 num_heads: int) -> None:
        self.score_weight = np.ascontiguousarray(score_weight, dtype=np.float32)
        self.score_bias = np.ascontiguousarray(score_bias, dtype=np.float32)
        self.out_weight = np.ascontiguousarray(out_weight, dtype=np.float32)
        self.num_heads = num_heads

    def __call__(self, hidden: np.ndarray) -> np.ndarray:
        """Delta ``[T, d]`` (float32) for hidden rows ``[T, d]``."""
        x = np.asarray(hidden, dtype=np.float32)
        centered = x - x.mean(axis=-1, keepdims=True)
        normed = centered / np.sqrt((centered * centered).mean(axis=-1, keepdims=True) + np.float32(LAYER_NORM_EPS))
        scores = (normed @ self.score_weight + self.score_bias).reshape(x.shape[0], self.num_heads, -1)
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights /= weights.sum(axis=-1, keepdims=True)
        return weights.reshape(x.shape[0], -1) @ self.out_weight


class NumpyDoubter:
    """Encoder, per-layer cross-attention, AGC and refresh trigger of a sidecar, in numpy."""

    def __init__(self, config: Mapping[str, Any], tensors: Mapping[str, np.ndarray], *,
                 fingerprint: Mapping[str, Any] | None = None, source: str = "tensors") -> None:
        self.config = dict(config)
        self.fingerprint = dict(fingerprint or {})
        self.source = source
        self.hidden_size = int(self.config["hidden_size"])
        self.num_layers = int(self.config["num_layers"])
        self.target_layers = tuple(int(i) for i in self.config["target_layers"])
        cross = self.config.get("cross_attn_layers")
        self.cross_attn_layers = tuple(int(i) for i in (self.target_layers if cross is None else cross))
        self.encoder_type = str(self.config["encoder_type"])
        self.read_position = str(self.config.get("read_position", "prompt"))
        self.inject_positions = str(self.config.get("inject_positions", "generation"))
        self.agc_floor = float(self.config.get("agc_floor", 0.3))
        self.agc_tau = float(self.config.get("agc_tau", 32.0))
        self.refresh_threshold = float(self.config.get("refresh_threshold", 0.9))
        self.signals = tuple(str(name) for name in (self.config.get("signals") or ()))
        """Pass-1 signals P(correct) reads (:mod:`meta_spider.wrapper.signals`)."""
        scope = self.config.get("scope_layer")
        self.scope_index: int | None = None if scope is None else self.target_layers.index(int(scope))
        """Position in ``target_layers`` of the layer the scope gate reads (None: no scope gate)."""
        self._tensors = {name: np.asarray(value, dtype=np.float64) for name, value in tensors.items()}
        self.log_reference: np.ndarray | None = self._tensors.get("log_reference")
        """``[V]`` log p_ref the PMI signals read (None when the Doubter reads none)."""
        self._fold_cache: dict[int, tuple[np.ndarray, ...]] = {}
        self.calibration: dict[str, Any] | None = None
        """The sidecar's answer-threshold calibration (None: uncalibrated)."""

    @classmethod
    def from_sidecar(cls, path_or_contents: "str | os.PathLike[str] | SidecarContents") -> "NumpyDoubter":
        contents = path_or_contents if isinstance(path_or_contents, SidecarContents) else read_sidecar(path_or_contents)
        doubter = cls(contents.config, contents.tensors, fingerprint=contents.fingerprint, source=str(contents.path))
        doubter.calibration = contents.calibration
        return doubter

    @staticmethod
    def check_shapes(contents: SidecarContents) -> None:
        """Raise :class:`SidecarError` when a tensor's shape does not fit the
        sidecar's config (after :func:`check_sidecar_structure`)."""
        # One encode and one injection per layer on zeros, here at load: a
        # wrongly shaped tensor would otherwise fail mid-generation in a matmul.
        try:
            doubter = NumpyDoubter(contents.config, contents.tensors, source=str(contents.path))
            states = np.zeros((len(doubter.target_layers), doubter.hidden_size))
            signals = np.zeros(len(doubter.signals)) if doubter.signals else None
            encoded = doubter.encode(states, signals)
            tokens = np.asarray(encoded.cognitive_tokens)
            problems = [] if tokens.ndim == 2 and tokens.shape[1] == doubter.hidden_size else [
                f"cognitive tokens of shape {list(tokens.shape)}, not [N, {doubter.hidden_size}]"]
            for layer in doubter.cross_attn_layers:
                delta = doubter.cross_attention(layer, np.zeros((2, doubter.hidden_size)), tokens)
                if delta.shape != (2, doubter.hidden_size):
                    problems.append(f"cross_attn.{layer} gives {list(delta.shape)}, not [2, {doubter.hidden_size}]")
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            problems = [str(exc)[:300]]
        if problems:
            raise SidecarError(contents.path, f"has tensor shapes that do not fit its config "
                               f"(hidden_size {contents.config.get('hidden_size')!r}): {problems[0]}",
                               "export it again from an unmodified checkpoint")

    # -------------------------------------------------------------- encoder

    def _t(self, name: str) -> np.ndarray:
        return self._tensors[name]

    def _gate(self, name: str) -> float:
        return float(np.tanh(self._t(name).reshape(())))

    @property
    def drafts(self) -> bool:
        """Whether pass 1 drafts: a draft read, or a signal that reads the draft."""
        return self.read_position == "draft" or needs_draft(self.signals)

    def encode(self, layer_states: np.ndarray, signals: np.ndarray | None = None) -> NumpyEncoded:
        """Pass-1 states ``[L, d]`` (target-layer order) and, when the Doubter
        reads any, its signals ``[K]`` -> cognitive tokens and P(correct) logit."""
        encoded = self.encode_tokens(layer_states)
        logit, values = encoded.p_correct_logit, np.zeros(0)
        if self.signals:
            values = None if signals is None else np.asarray(signals, dtype=np.float64)
            if values is None or values.shape != (len(self.signals),):
                raise ValueError(f"this Doubter's P(correct) reads the pass-1 signals {list(self.signals)}: pass "
                                 f"signals of shape [{len(self.signals)}], got "
                                 f"{None if values is None else list(values.shape)}")
            standardised = (values - self._t("signal_mix.mean")) / self._t("signal_mix.scale")
            features = np.concatenate([[logit], standardised])
            logit = float(_linear(features, self._t("signal_mix.linear.weight"), self._t("signal_mix.linear.bias"))[0])
        if self.scope_index is not None and self.scope_logit(layer_states, values) < float(self._t("scope_gate.threshold")):
            logit = SCOPE_VETO_LOGIT
        return NumpyEncoded(encoded.cognitive_tokens, logit, encoded.probe_logits)

    def scope_logit(self, layer_states: np.ndarray, signals: np.ndarray) -> float:
        """The scope gate's read of the states ``[L, d]`` and signals ``[K]``
        (:class:`~meta_spider.wrapper.scope.ScopeGate`)."""
        features = np.concatenate([np.asarray(layer_states, dtype=np.float64)[self.scope_index], signals])
        standardised = (features - self._t("scope_gate.mean")) / self._t("scope_gate.scale")
        return float(standardised @ self._t("scope_gate.weight") + float(self._t("scope_gate.bias")))

    def encode_tokens(self, layer_states: np.ndarray) -> NumpyEncoded:
        """The encoder alone: cognitive tokens and the encoder's own P(correct)
        logit (no signals; what dynamic refresh needs)."""
        states = np.asarray(layer_states, dtype=np.float64)
        expected = (len(self.target_layers), self.hidden_size)
        if states.shape != expected:
            raise ValueError(f"layer_states must be {list(expected)}, got {list(states.shape)}")
        if self.encoder_type == "selective":
            return self._encode_selective(states)
        if self.encoder_type == "multi_token":
            return self._encode_multi_token(states)
        if self.encoder_type == "transformer":
            return self._encode_transformer(states)
        raise ValueError(f"unknown encoder_type {self.encoder_type!r} in {self.source}")

    def _encode_selective(self, states: np.ndarray) -> NumpyEncoded:
        tokens, probes = [], []
        for i in range(states.shape[0]):
            p = f"encoder.norms.{i}"
            state = _layer_norm(states[i], self._t(f"{p}.weight"), self._t(f"{p}.bias"))
            q = f"encoder.projectors.{i}"
            hidden = _gelu(_linear(state, self._t(f"{q}.0.weight"), self._t(f"{q}.0.bias")))
            projected = _linear(hidden, self._t(f"{q}.2.weight"), self._t(f"{q}.2.bias"))
            tokens.append(state + self._gate(f"encoder.gates.{i}.raw") * projected)
            probes.append(float(_linear(state, self._t(f"encoder.probes.{i}.weight"),
                                        self._t(f"encoder.probes.{i}.bias"))[0]))
        probe_logits = np.asarray(probes)
        logit = float(_linear(probe_logits, self._t("encoder.probe_mix.weight"), self._t("encoder.probe_mix.bias"))[0])
        return NumpyEncoded(np.stack(tokens).astype(np.float32), logit, probe_logits.astype(np.float32))

    def _pooled_front(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        normed = _layer_norm(states, self._t("encoder.norm.weight"), self._t("encoder.norm.bias"))
        keys = _linear(normed, self._t("encoder.down.weight"), self._t("encoder.down.bias")) + self._t(
            "encoder.layer_embedding")
        return normed, keys

    def _pooled_tokens(self, normed: np.ndarray, query_out: np.ndarray) -> np.ndarray:
        gates = np.asarray([self._gate(f"encoder.gates.{n}.raw") for n in range(query_out.shape[0])])
        up = _linear(query_out, self._t("encoder.up.weight"), self._t("encoder.up.bias"))
        return (normed.mean(axis=0, keepdims=True) + gates[:, None] * up).astype(np.float32)

    def _encode_multi_token(self, states: np.ndarray) -> NumpyEncoded:
        normed, keys = self._pooled_front(states)
        heads = int(self.config.get("encoder_num_heads", 4))
        query_out = _multihead(self._t("encoder.queries"), keys, "encoder.attention", self._tensors, heads)
        logit = float(_linear(query_out.mean(axis=0), self._t("encoder.head.weight"), self._t("encoder.head.bias"))[0])
        return NumpyEncoded(self._pooled_tokens(normed, query_out), logit)

    def _encode_transformer(self, states: np.ndarray) -> NumpyEncoded:
        normed, projected = self._pooled_front(states)
        queries = self._t("encoder.queries")
        heads = int(self.config.get("encoder_num_heads", 4))
        x = np.concatenate([self._t("encoder.summary"), queries, projected], axis=0)
        for k in range(int(self.config.get("encoder_num_layers", 1))):
            p = f"encoder.transformer.layers.{k}"
            # norm_first=True: pre-norm self-attention, then a pre-norm ReLU feed-forward.
            h = _layer_norm(x, self._t(f"{p}.norm1.weight"), self._t(f"{p}.norm1.bias"))
            x = x + _multihead(h, h, f"{p}.self_attn", self._tensors, heads)
            h = _layer_norm(x, self._t(f"{p}.norm2.weight"), self._t(f"{p}.norm2.bias"))
            inner = np.maximum(_linear(h, self._t(f"{p}.linear1.weight"), self._t(f"{p}.linear1.bias")), 0.0)
            x = x + _linear(inner, self._t(f"{p}.linear2.weight"), self._t(f"{p}.linear2.bias"))
        out = _layer_norm(x, self._t("encoder.final_norm.weight"), self._t("encoder.final_norm.bias"))
        logit = float(_linear(out[0], self._t("encoder.head.weight"), self._t("encoder.head.bias"))[0])
        return NumpyEncoded(self._pooled_tokens(normed, out[1: 1 + queries.shape[0]]), logit)

    # -------------------------------------------------------------- cross-attention

    def _ca_heads(self) -> int:
        return int(self.config.get("ca_num_heads", 4))

    def cross_attention(self, layer: int, hidden: np.ndarray, cognitive_tokens: np.ndarray) -> np.ndarray:
        """Delta ``[T, d]`` (float32) for hidden rows ``[T, d]`` after decoder layer ``layer``: the
        plain form of what generation runs folded (:meth:`fold_cross_attention`), for checks."""
        if layer not in self.cross_attn_layers:
            raise ValueError(f"no cross-attention after layer {layer}; the sidecar injects after "
                             f"{list(self.cross_attn_layers)}")
        p = f"cross_attn.{layer}"
        as32 = lambda name: np.asarray(self._t(name), dtype=np.float32)  # noqa: E731
        tokens = _layer_norm(np.asarray(cognitive_tokens, dtype=np.float64),
                             self._t(f"{p}.token_norm.weight"), self._t(f"{p}.token_norm.bias"))
        keys = _linear(tokens, self._t(f"{p}.k_proj.weight")).astype(np.float32)
        values = _linear(tokens, self._t(f"{p}.v_proj.weight")).astype(np.float32)
        # float32, like the torch module
        queries = _layer_norm(np.asarray(hidden, dtype=np.float32), as32(f"{p}.query_norm.weight"),
                              as32(f"{p}.query_norm.bias")) @ as32(f"{p}.q_proj.weight").T
        attended = _attention(queries, keys, values, self._ca_heads())
        return (attended @ as32(f"{p}.o_proj.weight").T) * np.float32(self._gate(f"{p}.gate.raw"))

    def fold_cross_attention(self, layer: int, cognitive_tokens: np.ndarray) -> FoldedCrossAttention:
        """The cross-attention after ``layer`` for ``cognitive_tokens [N, d]``, folded for generation
        (see :class:`FoldedCrossAttention`)."""
        if layer not in self.cross_attn_layers:
            raise ValueError(f"no cross-attention after layer {layer}; the sidecar injects after "
                             f"{list(self.cross_attn_layers)}")
        p = f"cross_attn.{layer}"
        cached = self._fold_cache.get(layer)
        if cached is None:
            # float32 and laid out for the products below, once: every pass 2 folds again, and these
            # products only read the weights (float32 is the precision the per-token path runs at).
            as32 = lambda name: np.asarray(self._t(name), dtype=np.float32)  # noqa: E731
            cached = tuple(np.ascontiguousarray(array) for array in (
                as32(f"{p}.k_proj.weight").T, as32(f"{p}.v_proj.weight").T,  # [d, r]
                as32(f"{p}.q_proj.weight").T, as32(f"{p}.o_proj.weight").T))  # [d, r], [r, d]
            self._fold_cache[layer] = cached
        k_weight_t, v_weight_t, q_weight_t, o_weight_t = cached
        tokens = _layer_norm(np.asarray(cognitive_tokens, dtype=np.float64),
                             self._t(f"{p}.token_norm.weight"), self._t(f"{p}.token_norm.bias")).astype(np.float32)
        keys, values = tokens @ k_weight_t, tokens @ v_weight_t
        heads = self._ca_heads()
        head_dim = q_weight_t.shape[1] // heads
        blocks = [slice(h * head_dim, (h + 1) * head_dim) for h in range(heads)]
        # Column (h, n): head h's query projection against token n's key, scaled as the attention scales.
        scale = np.float32(1.0 / math.sqrt(head_dim))
        scores = np.concatenate([q_weight_t[:, b] @ keys[:, b].T for b in blocks], axis=1) * scale
        # Row (h, n): token n's value through head h's rows of the output projection, times the gate.
        gate = np.float32(self._gate(f"{p}.gate.raw"))
        out = np.concatenate([values[:, b] @ o_weight_t[b, :] for b in blocks], axis=0) * gate
        norm_weight = np.asarray(self._t(f"{p}.query_norm.weight"), dtype=np.float32)
        norm_bias = np.asarray(self._t(f"{p}.query_norm.bias"), dtype=np.float32)
        return FoldedCrossAttention(norm_weight[:, None] * scores, norm_bias @ scores, out, heads)

    def injection_gate_values(self) -> dict[int, float]:
        return {layer: self._gate(f"cross_attn.{layer}.gate.raw") for layer in self.cross_attn_layers}

    # -------------------------------------------------------------- AGC and refresh

    def agc_alpha(self, step: int) -> float:
        """``floor + (1 - floor) exp(-step / tau)``, as AdaptiveGateControl."""
        if step < 0:
            raise ValueError(f"AGC step must be >= 0, got {step!r}")
        return self.agc_floor + (1.0 - self.agc_floor) * math.exp(-step / self.agc_tau)

    def should_refresh(self, live: np.ndarray, reference: np.ndarray) -> bool:
        """Mean cosine over target layers below ``refresh_threshold``, as RefreshGate."""
        similarity = float(_cosine(np.asarray(live, np.float64), np.asarray(reference, np.float64)).mean())
        return similarity < self.refresh_threshold

    def num_parameters(self) -> int:
        return int(sum(array.size for array in self._tensors.values()))
