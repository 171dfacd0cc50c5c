"""The compiled eval-callback filter: hooking costs what is hooked, with the same results.

On a tiny Qwen2 base exported to an f32 GGUF: a decode with nothing hooked
never enters Python; a read enters it once per read layer; a generated
token's injection whose delta offers a native form is added in C and gives
the logits the Python hook gives (both also match the transformers
reference through the hook tests); the folded cross-attention equals the
numpy Doubter's own; a NaN from a native delta is a typed error with the
cache rolled back; and with ``META_SPIDER_EVAL_FILTER=python`` the pure-Python
callback gives identical logits.
"""

from __future__ import annotations

import numpy as np
import pytest
from llamacpp_helpers import GGML_TYPE_F32, build_tiny_base

from meta_spider.backends.llamacpp import eval_filter
from meta_spider.backends.llamacpp import eval_hook as llamacpp_eval_hook
from meta_spider.backends.llamacpp.eval_filter import NativeDelta
from meta_spider.backends.llamacpp.hooks import HookedContextConfig, HookedLlamaContext, InjectionError

pytestmark = pytest.mark.llamacpp
SAME_ENGINE_ATOL = 2e-5
FOLD_RTOL = 1e-5


def _config() -> HookedContextConfig:
    return HookedContextConfig(n_ctx=256, n_batch=64, n_threads=1, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_base("qwen2", tmp_path_factory.mktemp("qwen2"))


@pytest.fixture(scope="module")
def hooked(base):
    with HookedLlamaContext(base.gguf_path, _config()) as context:
        if context._filter is None:  # noqa: SLF001 - the test is about which callback is installed
            pytest.fail("the compiled eval filter could not be built here (is a C compiler installed?)")
        yield context


def _delta(hidden: int, seed: int, heads: int = 2, keys: int = 3) -> NativeDelta:
    rng = np.random.default_rng(seed)
    return NativeDelta(rng.standard_normal((hidden, heads * keys)) * 0.3, rng.standard_normal(heads * keys),
                       rng.standard_normal((heads * keys, hidden)) * 0.2, heads, scale=0.7)


def _python_delta(native: NativeDelta):  # type: ignore[no-untyped-def]
    """The same delta in numpy, as a plain callable (no native form offered)."""
    def delta(rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
        x = rows.astype(np.float64)
        normed = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + native.state.eps)
        scores = (normed @ native.score_weight + native.score_bias).reshape(len(x), native.state.heads, -1)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        return (weights.reshape(len(x), -1) @ native.out_weight * native.state.scale).astype(np.float32)

    return delta


def _offering(native: NativeDelta):  # type: ignore[no-untyped-def]
    function = _python_delta(native)
    function.native_delta = lambda: native  # type: ignore[attr-defined]
    return function


class _Counter:
    """Counts the Python hook's entries (the filter calls the hook object, whose class is patched)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = llamacpp_eval_hook.EvalHook.__call__

        def counting(hook, tensor, ask, user_data):  # type: ignore[no-untyped-def]
            self.calls += 1
            return original(hook, tensor, ask, user_data)

        monkeypatch.setattr(llamacpp_eval_hook.EvalHook, "__call__", counting)


def test_python_is_entered_only_for_what_is_hooked(hooked, base, monkeypatch) -> None:
    counter = _Counter(monkeypatch)
    prompt = base.prompts[1]
    hooked.prefill(prompt)
    hooked.decode([5])
    assert counter.calls == 0  # nothing hooked: every node declined in C
    hooked.decode([6], read_layers=[0, 2])
    assert counter.calls == 2  # once per read layer, after it is computed
    native = _delta(base.hidden_size, seed=1)
    hooked.decode([7], inject={1: _offering(native)})
    assert counter.calls == 2  # a generated token's native injection stays in C


def test_a_native_injection_gives_the_python_hook_s_logits(hooked, base) -> None:
    prompt = base.prompts[0]
    natives = {0: _delta(base.hidden_size, seed=2), 2: _delta(base.hidden_size, seed=3, heads=4, keys=2)}
    runs = []
    for make in (_offering, _python_delta):
        hooked.prefill(prompt)
        logits = [hooked.redecode_last(inject={layer: make(n) for layer, n in natives.items()}).logits[-1]]
        for token in (11, 12, 13):
            logits.append(hooked.decode([token], inject={layer: make(n) for layer, n in natives.items()}).logits[-1])
        runs.append(np.stack(logits))
    plain = hooked.prefill(prompt).logits[-1]
    assert np.abs(runs[0] - runs[1]).max() < SAME_ENGINE_ATOL
    assert np.abs(runs[0][0] - plain).max() > 1e-2  # the injection changed the logits


def test_a_nan_native_delta_is_a_typed_error_and_the_token_is_rolled_back(hooked, base) -> None:
    hooked.prefill(base.prompts[2])
    before = hooked.tokens
    poisoned = _delta(base.hidden_size, seed=4)
    poisoned.out_weight[0, 0] = np.nan
    with pytest.raises(InjectionError, match="NaN"):
        hooked.decode([9], inject={1: _offering(poisoned)})
    assert hooked.tokens == before
    hooked.decode([9])  # the context is usable afterwards
    assert hooked.tokens == (*before, 9)


def test_the_pure_python_callback_gives_identical_logits(base, monkeypatch) -> None:
    native = _delta(base.hidden_size, seed=5)
    results = []
    for mode in ("", "python"):
        monkeypatch.setenv(eval_filter.ENV_VAR, mode)
        eval_filter._library.cache_clear()
        with HookedLlamaContext(base.gguf_path, _config()) as context:
            assert (context._filter is None) == (mode == "python")  # noqa: SLF001
            out = context.prefill(base.prompts[3], read_layers=[1])
            step = context.decode([8], inject={2: _offering(native)})
            results.append((out.logits, out.hidden[1], step.logits))
    eval_filter._library.cache_clear()
    for filtered, python in zip(results[0], results[1]):
        assert np.array_equal(filtered, python) or np.abs(filtered - python).max() < SAME_ENGINE_ATOL


def test_the_folded_cross_attention_is_the_numpy_doubter_s(tmp_path) -> None:
    from test_deploy_sidecar import random_doubter

    from meta_spider.backends.llamacpp.numpy_doubter import NumpyDoubter
    from meta_spider.loom.gguf.sidecar import export_sidecar

    doubter = NumpyDoubter.from_sidecar(export_sidecar(random_doubter(seed=6), tmp_path / "sidecar.gguf"))
    rng = np.random.default_rng(7)
    tokens = rng.standard_normal((3, 32)).astype(np.float32)
    hidden = (rng.standard_normal((5, 32)) * 4).astype(np.float32)
    for layer in doubter.cross_attn_layers:
        expected = doubter.cross_attention(layer, hidden, cognitive_tokens=tokens)
        folded = doubter.fold_cross_attention(layer, tokens)(hidden)
        assert np.abs(folded - expected).max() <= FOLD_RTOL * np.abs(expected).max()
