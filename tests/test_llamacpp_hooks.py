"""The llama.cpp eval-callback hooks read and inject like forward hooks on the transformers model.

Tiny Qwen2 and Llama bases (3 layers, hidden 64, random weights) are exported
to f32 GGUFs and opened with an f32 KV cache, so the file and the hooks are
the only differences from transformers. Stated tolerances (f32 GGUF, f32 KV):
hidden states within ``HIDDEN_ATOL`` and logits within ``LOGITS_ATOL``
(measured: about 1e-5 on values of magnitude 5-10). Checked: reads at every
layer and at several positions, across micro-batches; fixed and
input-dependent injection at one or several layers; pass 2 re-decoding the
last prompt token over pass 1's KV cache and continuing to generate; the last
layer's output-rows-only tensor; KV prefix reuse; typed errors with the
cache rolled back; an f16 GGUF at a looser tolerance; and a subprocess where
importing torch fails.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from llamacpp_helpers import (
    GGML_TYPE_F32,
    PROMPT_TEXTS,
    build_tiny_base,
    random_fixed_delta,
    random_linear_delta,
    reference_layer_outputs,
    reference_logits,
)
from torchless import run_without_torch

from meta_spider.backends.llamacpp.hooks import (
    ContextFullError,
    DecodeOutput,
    GGUFModelError,
    HookedContextConfig,
    HookedLlamaContext,
    InjectionError,
    LayerOutOfRangeError,
    LlamaHookError,
    PositionError,
)

pytestmark = pytest.mark.llamacpp

HIDDEN_ATOL = 1e-4
LOGITS_ATOL = 1e-4
# The same llama.cpp computation reached two ways (KV reuse vs a fresh decode): only kernel batch shapes differ.
SAME_ENGINE_ATOL = 2e-5
# f16 weights and f16 KV cache (llama.cpp's defaults), relative to the largest reference value.
F16_RELATIVE_TOLERANCE = 2e-2


def _config(**overrides) -> HookedContextConfig:
    settings = dict(n_ctx=256, n_batch=64, n_threads=1, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
    settings.update(overrides)
    return HookedContextConfig(**settings)


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def base(request, tmp_path_factory):
    return build_tiny_base(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def hooked(base):
    with HookedLlamaContext(base.gguf_path, _config()) as context:
        yield context


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


# ---- reads ------------------------------------------------------------------


def test_gguf_tokenizer_gives_the_prompt_ids(base, hooked):
    for text, ids in zip(PROMPT_TEXTS, base.prompts):
        assert hooked.tokenize(text) == ids
        assert hooked.detokenize(ids, special=True).decode("utf-8") == base.tokenizer.decode(ids)
    assert hooked.n_layer == base.n_layer and hooked.n_embd == base.hidden_size
    assert hooked.n_vocab == base.model.config.vocab_size
    end_of_turn = base.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert hooked.is_end_of_generation(end_of_turn)
    assert not hooked.is_end_of_generation(base.prompts[0][-1])


def test_read_matches_transformers_at_every_layer_for_the_last_token(base, hooked):
    worst = 0.0
    for ids in base.prompts:
        states = hooked.read(ids, layers=range(base.n_layer))
        captured, result = reference_layer_outputs(base.model, ids)
        assert sorted(states) == list(range(base.n_layer))
        for layer in range(base.n_layer):
            assert states[layer].shape == (1, base.hidden_size)
            worst = max(worst, _max_diff(states[layer][0], captured[layer][-1]))
            if layer < base.n_layer - 1:
                # hidden_states[L + 1] is decoder layer L's output for every layer but the last ...
                expected = result.hidden_states[layer + 1][0, -1].numpy()
                assert _max_diff(states[layer][0], expected) <= HIDDEN_ATOL
        # ... where transformers applies the final norm first.
        with torch.no_grad():
            normed = base.model.model.norm(torch.from_numpy(states[base.n_layer - 1])).numpy()
        assert _max_diff(normed[0], result.hidden_states[-1][0, -1].numpy()) <= HIDDEN_ATOL
    print(f"\n[{base.name}] max |hidden diff| over layers and prompts: {worst:.2e}")
    assert worst <= HIDDEN_ATOL


def test_reads_at_several_positions_across_micro_batches(base):
    """A 4-token batch splits the prompt into several llama_decode calls; rows still map to positions."""
    ids = base.prompts[1]
    positions = [0, 3, 4, len(ids) // 2, len(ids) - 1]
    with HookedLlamaContext(base.gguf_path, _config(n_batch=4)) as small:
        out = small.prefill(ids, read_layers=range(base.n_layer), read_positions=positions,
                            output_positions=range(len(ids)))
    captured, result = reference_layer_outputs(base.model, ids)
    assert out.read_positions == tuple(sorted(set(positions)))
    assert out.output_positions == tuple(range(len(ids)))
    for layer in range(base.n_layer):
        # The last layer's l_out holds only output rows; every position is an output here.
        assert _max_diff(out.hidden[layer], captured[layer][list(out.read_positions)]) <= HIDDEN_ATOL
    assert _max_diff(out.logits, result.logits[0].numpy()) <= LOGITS_ATOL
    assert _max_diff(out.logits_at(3), result.logits[0, 3].numpy()) <= LOGITS_ATOL


def test_reading_the_last_layer_at_an_earlier_position_makes_it_an_output(base, hooked):
    ids = base.prompts[0]
    out = hooked.prefill(ids, reuse_prefix=False, read_layers=[base.n_layer - 1], read_positions=[2])
    captured, result = reference_layer_outputs(base.model, ids)
    assert out.output_positions == (2, len(ids) - 1)
    assert _max_diff(out.hidden[base.n_layer - 1][0], captured[base.n_layer - 1][2]) <= HIDDEN_ATOL
    assert _max_diff(out.logits_at(2), result.logits[0, 2].numpy()) <= LOGITS_ATOL


def test_f16_gguf_reads_within_a_stated_relative_tolerance(base, tmp_path):
    from meta_spider.loom.gguf import export_base_gguf

    path = export_base_gguf((base.model, base.tokenizer), tmp_path / "base-f16.gguf", dtype="f16")
    with HookedLlamaContext(path, HookedContextConfig(n_ctx=256, n_batch=64, n_threads=1)) as f16:
        worst = 0.0
        for ids in base.prompts:
            states = f16.read(ids, layers=range(base.n_layer))
            captured, _ = reference_layer_outputs(base.model, ids)
            for layer in range(base.n_layer):
                reference = captured[layer][-1]
                worst = max(worst, _max_diff(states[layer][0], reference) / float(np.abs(reference).max()))
    print(f"\n[{base.name}] f16 GGUF, f16 KV cache: max relative hidden diff {worst:.2e}")
    assert worst <= F16_RELATIVE_TOLERANCE


# ---- injection --------------------------------------------------------------


@pytest.mark.parametrize("layer_choice", ["first", "middle", "last"])
def test_fixed_delta_matches_a_torch_forward_hook(base, hooked, layer_choice):
    layer = {"first": 0, "middle": base.n_layer // 2, "last": base.n_layer - 1}[layer_choice]
    delta = random_fixed_delta(base.hidden_size, seed=layer)
    for ids in base.prompts[:2]:
        out = hooked.prefill(ids, reuse_prefix=False, inject={layer: delta}, output_positions=range(len(ids)))
        expected = reference_logits(base.model, ids, {layer: delta.torch})
        plain = reference_logits(base.model, ids)
        assert _max_diff(out.logits, expected) <= LOGITS_ATOL
        # The delta really moved the logits, so the comparison above can fail.
        assert _max_diff(expected, plain) > 100 * LOGITS_ATOL


def test_input_dependent_delta_at_several_layers_matches(base, hooked):
    deltas = {0: random_linear_delta(base.hidden_size, seed=1), base.n_layer - 1: random_linear_delta(base.hidden_size, seed=2)}
    ids = base.prompts[2]
    out = hooked.prefill(ids, reuse_prefix=False, inject=deltas, output_positions=range(len(ids)))
    expected = reference_logits(base.model, ids, {layer: d.torch for layer, d in deltas.items()})
    assert _max_diff(out.logits, expected) <= LOGITS_ATOL
    assert _max_diff(expected, reference_logits(base.model, ids)) > 100 * LOGITS_ATOL


def test_the_callable_sees_the_hidden_rows_and_their_positions(base, hooked):
    seen = []

    def spy(rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
        seen.append((rows.copy(), positions.copy()))
        return np.zeros_like(rows)

    ids = base.prompts[0]
    out = hooked.prefill(ids, reuse_prefix=False, inject={1: spy}, inject_positions=[1, 4],
                         read_layers=[1], read_positions=[1, 4])
    (rows, positions), = seen
    assert positions.tolist() == [1, 4]
    np.testing.assert_array_equal(rows, out.hidden[1])
    # A zero delta leaves the base's computation bit for bit.
    plain = hooked.prefill(ids, reuse_prefix=False)
    np.testing.assert_array_equal(out.logits, plain.logits)


def test_last_layer_injection_at_an_earlier_position_touches_only_that_position(base, hooked):
    ids = base.prompts[1]
    last_layer = base.n_layer - 1
    delta = random_fixed_delta(base.hidden_size, seed=7)
    out = hooked.prefill(ids, reuse_prefix=False, inject={last_layer: delta}, inject_positions=[3])
    assert out.output_positions == (3, len(ids) - 1)
    expected = reference_logits(base.model, ids, {last_layer: delta.torch}, positions=[3])
    assert _max_diff(out.logits, expected[[3, len(ids) - 1]]) <= LOGITS_ATOL
    assert _max_diff(out.logits_at(len(ids) - 1), reference_logits(base.model, ids)[-1]) <= LOGITS_ATOL


# ---- KV-cache reuse (pass 2) ------------------------------------------------------


def test_redecoding_the_last_prompt_token_with_injection_reuses_pass_one(base, hooked):
    ids = base.prompts[3]
    last = len(ids) - 1
    deltas = {1: random_linear_delta(base.hidden_size, seed=3)}
    states = hooked.read(ids, layers=[0, 1], reuse_prefix=False)
    assert hooked.n_past == len(ids) and hooked.clean_prefix == len(ids)
    pass2 = hooked.redecode_last(inject=deltas)
    assert pass2.first_position == last and pass2.output_positions == (last,)
    assert hooked.n_past == len(ids) and hooked.clean_prefix == last

    with HookedLlamaContext(base.gguf_path, _config()) as fresh:
        full = fresh.decode(ids, inject=deltas, inject_positions=[last])
    expected = reference_logits(base.model, ids, {1: deltas[1].torch}, positions=[last])[-1]
    print(f"\n[{base.name}] KV reuse vs fresh decode: {_max_diff(pass2.logits, full.logits):.2e}; "
          f"vs transformers: {_max_diff(pass2.logits[0], expected):.2e}")
    assert _max_diff(pass2.logits, full.logits) <= SAME_ENGINE_ATOL
    assert _max_diff(pass2.logits[0], expected) <= LOGITS_ATOL
    assert _max_diff(expected, reference_logits(base.model, ids)[-1]) > 100 * LOGITS_ATOL
    assert sorted(states) == [0, 1]


def test_generation_with_injection_from_the_last_prompt_token_onward(base, hooked):
    """Pass 2 as the backend runs it: re-decode the last prompt token, then one token at a time, all injected."""
    ids = base.prompts[0]
    deltas = {0: random_linear_delta(base.hidden_size, seed=4, scale=0.5), 2: random_fixed_delta(base.hidden_size, seed=5)}
    hooked.read(ids, layers=[1])
    out = hooked.redecode_last(inject=deltas)
    generated = []
    for _ in range(4):
        token = int(np.argmax(out.logits[-1]))
        generated.append(token)
        out = hooked.decode([token], inject=deltas)
    sequence = ids + generated
    expected = reference_logits(base.model, sequence, {layer: d.torch for layer, d in deltas.items()},
                                positions=range(len(ids) - 1, len(sequence)))
    assert hooked.tokens == tuple(sequence)
    assert _max_diff(out.logits[0], expected[-1]) <= LOGITS_ATOL
    assert int(np.argmax(expected[len(ids) - 1])) == generated[0]


def test_pass_one_reuses_only_the_clean_matching_prefix(base, hooked):
    ids = base.prompts[2]
    first = hooked.prefill(ids, reuse_prefix=False)
    assert first.first_position == 0
    longer = ids + base.prompts[0]
    again = hooked.prefill(longer, read_layers=[1])
    assert again.first_position == len(ids)
    # Injected positions are never reused: the next pass 1 recomputes from the first injected one.
    hooked.redecode_last(inject={0: random_fixed_delta(base.hidden_size, seed=6)})
    assert hooked.clean_prefix == len(longer) - 1
    third = hooked.prefill(longer + [ids[0]], read_layers=[1])
    assert third.first_position == len(longer) - 1
    with HookedLlamaContext(base.gguf_path, _config()) as fresh:
        reference = fresh.prefill(longer + [ids[0]], read_layers=[1])
    assert _max_diff(third.hidden[1], reference.hidden[1]) <= SAME_ENGINE_ATOL
    assert _max_diff(third.logits, reference.logits) <= SAME_ENGINE_ATOL


# ---- errors -----------------------------------------------------------------


def test_layers_and_positions_outside_the_decode_are_rejected(base, hooked):
    ids = base.prompts[0]
    with pytest.raises(LayerOutOfRangeError) as caught:
        hooked.read(ids, layers=[base.n_layer])
    assert caught.value.layer == base.n_layer and f"0..{base.n_layer - 1}" in str(caught.value)
    with pytest.raises(LayerOutOfRangeError):
        hooked.read(ids, layers=[-1])
    hooked.prefill(ids, reuse_prefix=False)
    with pytest.raises(PositionError) as position:
        hooked.decode([ids[0]], read_layers=[0], read_positions=[0])
    assert position.value.positions == (0,) and "truncate" in str(position.value)
    assert hooked.n_past == len(ids)


@pytest.mark.parametrize("bad_delta, reason", [
    (lambda rows, positions: np.zeros(3), "shape"),
    (lambda rows, positions: rows * np.nan, "NaN"),
    (lambda rows, positions: 1 / 0, "ZeroDivisionError"),
])
def test_a_failing_injection_raises_and_rolls_the_cache_back(base, hooked, bad_delta, reason):
    ids = base.prompts[1]
    before = hooked.prefill(ids, reuse_prefix=False)
    with pytest.raises(InjectionError, match=reason) as caught:
        hooked.decode(ids[:3], inject={1: bad_delta})
    assert caught.value.layer == 1
    assert hooked.n_past == len(ids) and hooked.tokens == tuple(ids)
    # The cache is intact: re-decoding the last token reproduces pass 1's logits.
    np.testing.assert_allclose(hooked.redecode_last().logits, before.logits, atol=SAME_ENGINE_ATOL)


def test_context_and_file_errors_are_typed(base, tmp_path):
    with pytest.raises(GGUFModelError, match="no such file"):
        HookedLlamaContext(tmp_path / "missing.gguf")
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\x00" * 64)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(base.gguf_path.read_bytes()[: base.gguf_path.stat().st_size // 2])
    for path in (corrupt, truncated):
        with pytest.raises(GGUFModelError) as caught:
            HookedLlamaContext(path, _config())
        assert caught.value.path == path and "gguf-dump" in str(caught.value)
    context = HookedLlamaContext(base.gguf_path, _config(n_ctx=32))
    with pytest.raises(ContextFullError) as full:
        context.decode([1] * (context.n_ctx + 1))
    assert full.value.n_ctx == context.n_ctx and context.n_past == 0
    with pytest.raises(LlamaHookError, match="empty"):
        context.redecode_last()
    with pytest.raises(ValueError, match="n_keep"):
        context.truncate(3)
    with pytest.raises(ValueError, match="vocabulary"):
        context.decode([context.n_vocab])
    context.close()
    with pytest.raises(LlamaHookError, match="closed"):
        context.decode([1])


def test_long_inputs_are_split_into_the_batches_llama_cpp_chose(base):
    """llama.cpp clamps n_batch to the requested n_ctx; reads across the resulting chunks still line up."""
    ids = (base.prompts[1] + base.prompts[3])[:40]
    with HookedLlamaContext(base.gguf_path, _config(n_ctx=16, n_batch=64)) as clamped:
        assert clamped.n_batch < len(ids) <= clamped.n_ctx
        out = clamped.prefill(ids, read_layers=[0, base.n_layer - 1], read_positions=[0, len(ids) - 1])
    captured, _ = reference_layer_outputs(base.model, ids)
    for layer in (0, base.n_layer - 1):
        assert _max_diff(out.hidden[layer], captured[layer][[0, len(ids) - 1]]) <= HIDDEN_ATOL
    # A read only in the first chunk and an injection only in the last one.
    delta = random_linear_delta(base.hidden_size, seed=8)
    with HookedLlamaContext(base.gguf_path, _config(n_ctx=16, n_batch=64)) as clamped:
        mixed = clamped.prefill(ids, read_layers=[0], read_positions=[1], inject={1: delta},
                                inject_positions=[len(ids) - 1], output_positions=[len(ids) - 1])
    assert _max_diff(mixed.hidden[0][0], captured[0][1]) <= HIDDEN_ATOL
    expected = reference_logits(base.model, ids, {1: delta.torch}, positions=[len(ids) - 1])[-1]
    assert _max_diff(mixed.logits_at(len(ids) - 1), expected) <= LOGITS_ATOL


@pytest.mark.parametrize("field, value", [("n_ctx", 0), ("n_batch", -2), ("n_threads", 0), ("n_gpu_layers", -5),
                                          ("type_k", -1)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=f"{field}.*{value}"):
        HookedContextConfig(**{field: value})


# ---- no torch -----------------------------------------------------------------

_TORCHLESS_SCRIPT = '''
    try:
        import torch  # noqa: F401
    except ImportError:
        blocked = True
    else:
        blocked = False

    import numpy as np
    from meta_spider.backends.llamacpp.hooks import HookedContextConfig, HookedLlamaContext

    llama_cpp_at_import = "llama_cpp" in sys.modules
    args = json.loads(sys.argv[1])
    config = HookedContextConfig(n_ctx=256, n_batch=64, n_threads=1, type_k=0, type_v=0)
    with HookedLlamaContext(args["path"], config) as hooked:
        states = hooked.read(args["ids"], layers=[0, 1])
        delta = np.asarray(args["delta"], dtype=np.float32)
        pass2 = hooked.redecode_last(inject={1: lambda rows, positions: np.tanh(rows) * delta})
        maps = open("/proc/self/maps").read().splitlines() if sys.platform.startswith("linux") else []
    print(json.dumps({
        "blocked": blocked,
        "llama_cpp_at_import": llama_cpp_at_import,
        "ggml_base_files": sorted({line.split()[-1] for line in maps if "libggml-base" in line}),
        "torch_loaded": any(name == "torch" or name.startswith("torch.") for name in sys.modules),
        "state": states[1][0].tolist(),
        "logits": pass2.logits[0].tolist(),
    }))
'''


def test_hooks_run_where_importing_torch_fails(base, hooked, tmp_path):
    ids = base.prompts[0]
    delta = random_fixed_delta(base.hidden_size, seed=9).vector
    arguments = json.dumps({"path": str(base.gguf_path), "ids": ids, "delta": delta.tolist()})
    result = run_without_torch(_TORCHLESS_SCRIPT, tmp_path, arguments, timeout=300)
    assert result["blocked"] is True and result["torch_loaded"] is False
    assert result["llama_cpp_at_import"] is False
    if sys.platform.startswith("linux"):
        # The hooks call into the very libggml-base that libllama uses, not a second copy of it.
        assert len(result["ggml_base_files"]) == 1, result["ggml_base_files"]

    expected_state = hooked.read(ids, layers=[1], reuse_prefix=False)[1][0]
    expected: DecodeOutput = hooked.redecode_last(inject={1: lambda rows, positions: np.tanh(rows) * delta})
    assert _max_diff(np.asarray(result["state"], np.float32), expected_state) <= SAME_ENGINE_ATOL
    assert _max_diff(np.asarray(result["logits"], np.float32), expected.logits[0]) <= SAME_ENGINE_ATOL
