"""GGUF base export without llama.cpp: file contents through GGUFReader, layouts, typed errors."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from gguf_helpers import CHATML_TEMPLATE, build_model, build_tokenizer, save_base
from meta_spider.loom.gguf import (
    MissingModelFileError,
    UnsupportedArchitectureError,
    UnsupportedConfigError,
    export_base_gguf,
)
from meta_spider.loom.gguf.tensor_map import permute_for_interleaved_rope


def _field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


@pytest.fixture(scope="module")
def qwen2_folder(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return save_base(tmp_path_factory.mktemp("qwen2") / "hf", "qwen2", "qwen2", train_steps=0,
                     hidden=64, layers=3, heads=4, kv_heads=2, intermediate=96)


@pytest.fixture(scope="module")
def qwen2_reader(qwen2_folder, tmp_path_factory) -> gguf.GGUFReader:
    path = export_base_gguf(qwen2_folder, tmp_path_factory.mktemp("out") / "qwen2-f16.gguf")
    return gguf.GGUFReader(str(path))


def test_architecture_and_hyper_parameters_come_from_the_config(qwen2_reader, qwen2_folder):
    config = json.loads((qwen2_folder / "config.json").read_text())
    r = qwen2_reader
    assert _field(r, "general.architecture") == "qwen2"
    assert _field(r, "qwen2.block_count") == config["num_hidden_layers"] == 3
    assert _field(r, "qwen2.embedding_length") == config["hidden_size"]
    assert _field(r, "qwen2.feed_forward_length") == config["intermediate_size"] == 96
    assert _field(r, "qwen2.context_length") == config["max_position_embeddings"]
    assert _field(r, "qwen2.attention.head_count") == 4
    assert _field(r, "qwen2.attention.head_count_kv") == 2
    assert _field(r, "qwen2.rope.freq_base") == pytest.approx(10000.0)
    assert _field(r, "qwen2.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    assert _field(r, "general.file_type") == gguf.LlamaFileType.MOSTLY_F16


def test_tokenizer_keys_and_chat_template_are_stored(qwen2_reader, qwen2_folder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(qwen2_folder))
    r = qwen2_reader
    assert _field(r, "tokenizer.ggml.model") == "gpt2"
    assert _field(r, "tokenizer.ggml.pre") == "qwen2"
    assert _field(r, "tokenizer.chat_template") == CHATML_TEMPLATE
    tokens = _field(r, "tokenizer.ggml.tokens")
    assert len(tokens) == len(tokenizer)
    assert tokens[tokenizer.convert_tokens_to_ids("<|im_start|>")] == "<|im_start|>"
    assert _field(r, "tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id
    assert _field(r, "tokenizer.ggml.padding_token_id") == tokenizer.pad_token_id
    assert _field(r, "tokenizer.ggml.add_bos_token") is False


def test_tensor_names_shapes_and_storage_types(qwen2_reader, qwen2_folder):
    from safetensors import safe_open

    with safe_open(str(qwen2_folder / "model.safetensors"), framework="pt") as handle:
        hf_shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    tensors = {t.name: t for t in qwen2_reader.tensors}
    expected = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                "output.weight": "lm_head.weight"}
    per_block = {"attn_norm.weight": "input_layernorm.weight", "attn_q.weight": "self_attn.q_proj.weight",
                 "attn_q.bias": "self_attn.q_proj.bias", "attn_k.weight": "self_attn.k_proj.weight",
                 "attn_k.bias": "self_attn.k_proj.bias", "attn_v.weight": "self_attn.v_proj.weight",
                 "attn_v.bias": "self_attn.v_proj.bias", "attn_output.weight": "self_attn.o_proj.weight",
                 "ffn_norm.weight": "post_attention_layernorm.weight", "ffn_gate.weight": "mlp.gate_proj.weight",
                 "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight"}
    for block in range(3):
        for gguf_suffix, hf_suffix in per_block.items():
            expected[f"blk.{block}.{gguf_suffix}"] = f"model.layers.{block}.{hf_suffix}"
    assert set(tensors) == set(expected)
    for gguf_name, hf_name in expected.items():
        tensor = tensors[gguf_name]
        # GGUF lists dimensions fastest-first, the reverse of torch's order.
        assert tuple(int(d) for d in reversed(tensor.shape)) == hf_shapes[hf_name], gguf_name
        wanted = gguf.GGMLQuantizationType.F16 if len(hf_shapes[hf_name]) == 2 else gguf.GGMLQuantizationType.F32
        assert tensor.tensor_type == wanted, gguf_name


def test_qwen2_weights_are_stored_unpermuted(qwen2_reader, qwen2_folder):
    from safetensors import safe_open

    tensors = {t.name: t for t in qwen2_reader.tensors}
    with safe_open(str(qwen2_folder / "model.safetensors"), framework="pt") as handle:
        q = handle.get_tensor("model.layers.1.self_attn.q_proj.weight").numpy()
        q_bias = handle.get_tensor("model.layers.1.self_attn.q_proj.bias").numpy()
    stored = np.asarray(tensors["blk.1.attn_q.weight"].data).reshape(q.shape)
    np.testing.assert_array_equal(stored, q.astype(np.float16))
    np.testing.assert_array_equal(np.asarray(tensors["blk.1.attn_q.bias"].data), q_bias)


def test_f32_option_and_in_memory_source_match_the_folder_export(qwen2_folder, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(qwen2_folder))
    tokenizer = AutoTokenizer.from_pretrained(str(qwen2_folder))
    from_memory = gguf.GGUFReader(str(export_base_gguf((model, tokenizer), tmp_path / "mem.gguf", dtype="f32")))
    from_folder = gguf.GGUFReader(str(export_base_gguf(qwen2_folder, tmp_path / "dir.gguf", dtype="f32")))
    assert _field(from_memory, "general.file_type") == gguf.LlamaFileType.ALL_F32
    memory_tensors = {t.name: t for t in from_memory.tensors}
    assert set(memory_tensors) == {t.name for t in from_folder.tensors}
    for tensor in from_folder.tensors:
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F32
        np.testing.assert_array_equal(np.asarray(memory_tensors[tensor.name].data), np.asarray(tensor.data))


def test_llama_qk_are_permuted_tied_output_is_dropped_and_head_dim_is_written(tmp_path):
    tokenizer = build_tokenizer(split="gpt2", add_bos=True)
    model = build_model("llama", vocab_size=len(tokenizer), hidden=64, heads=2, kv_heads=1, tie=True,
                        attention_bias=True)
    reader = gguf.GGUFReader(str(export_base_gguf((model, tokenizer), tmp_path / "llama.gguf", dtype="f32")))
    tensors = {t.name: t for t in reader.tensors}
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "tokenizer.ggml.pre") == "gpt-2"
    assert _field(reader, "tokenizer.ggml.add_bos_token") is True
    assert _field(reader, "llama.rope.dimension_count") == 32
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    state = model.state_dict()
    q = state["model.layers.0.self_attn.q_proj.weight"].numpy()
    k_bias = state["model.layers.0.self_attn.k_proj.bias"].numpy()
    v = state["model.layers.0.self_attn.v_proj.weight"].numpy()
    np.testing.assert_array_equal(np.asarray(tensors["blk.0.attn_q.weight"].data).reshape(q.shape),
                                  permute_for_interleaved_rope(q, 2))
    np.testing.assert_array_equal(np.asarray(tensors["blk.0.attn_k.bias"].data), permute_for_interleaved_rope(k_bias, 1))
    np.testing.assert_array_equal(np.asarray(tensors["blk.0.attn_v.weight"].data).reshape(v.shape), v)


def test_permutation_turns_half_rotation_into_pair_rotation():
    """transformers rotates (x_i, x_{i+d/2}); llama.cpp's normal rope rotates (x_2i, x_2i+1)."""
    rng = np.random.default_rng(0)
    n_head, head_dim, pos, theta = 3, 8, 5, 10000.0
    weights = rng.standard_normal((n_head * head_dim, 6))
    x = rng.standard_normal(6)
    freqs = pos * theta ** (-np.arange(0, head_dim, 2) / head_dim)
    cos, sin = np.cos(freqs), np.sin(freqs)

    def halves(q):  # transformers' rotate_half convention, per head
        a, b = q[: head_dim // 2], q[head_dim // 2:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin])

    def pairs(q):  # llama.cpp's interleaved convention, per head
        a, b = q[0::2], q[1::2]
        out = np.empty_like(q)
        out[0::2], out[1::2] = a * cos - b * sin, b * cos + a * sin
        return out

    reference = np.concatenate([halves(h) for h in np.split(weights @ x, n_head)])
    permuted = permute_for_interleaved_rope(weights, n_head) @ x
    rotated = np.concatenate([pairs(h) for h in np.split(permuted, n_head)])
    # Same values per head, rows in the permuted order: undo it and compare.
    undo = permute_for_interleaved_rope(np.arange(n_head * head_dim), n_head)
    restored = np.empty_like(rotated)
    restored[undo] = rotated
    np.testing.assert_allclose(restored, reference, atol=1e-12)


def test_unsupported_architecture_names_itself_and_the_supported_list(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=len(build_tokenizer()),
                                       bos_token_id=0, eos_token_id=0))
    model.config.architectures = ["GPT2LMHeadModel"]
    with pytest.raises(UnsupportedArchitectureError) as caught:
        export_base_gguf((model, build_tokenizer()), tmp_path / "gpt2.gguf")
    assert caught.value.architecture == "GPT2LMHeadModel"
    assert "Qwen2ForCausalLM" in str(caught.value) and "LlamaForCausalLM" in str(caught.value)
    assert not list(tmp_path.iterdir())  # nothing written, not even a partial file


@pytest.mark.parametrize("missing", ["config.json", "tokenizer.json", "model.safetensors"])
def test_missing_files_are_named(qwen2_folder, tmp_path, missing):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(qwen2_folder, folder)
    (folder / missing).unlink()
    with pytest.raises(MissingModelFileError) as caught:
        export_base_gguf(folder, tmp_path / "x.gguf")
    assert caught.value.folder == folder
    assert missing.split(".")[0] in caught.value.missing or "safetensors" in caught.value.missing


def test_missing_folder_is_a_typed_error(tmp_path):
    with pytest.raises(MissingModelFileError):
        export_base_gguf(tmp_path / "nowhere", tmp_path / "x.gguf")


def test_unsupported_rope_scaling_and_sliding_window_are_refused(tmp_path):
    tokenizer = build_tokenizer()
    llama = build_model("llama", vocab_size=len(tokenizer))
    llama.config.rope_parameters = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 128}
    with pytest.raises(UnsupportedConfigError) as caught:
        export_base_gguf((llama, tokenizer), tmp_path / "a.gguf")
    assert caught.value.field == "rope_type" and caught.value.value == "llama3"
    qwen = build_model("qwen2", vocab_size=len(tokenizer))
    qwen.config.use_sliding_window = True
    with pytest.raises(UnsupportedConfigError, match="use_sliding_window"):
        export_base_gguf((qwen, tokenizer), tmp_path / "b.gguf")


def test_bad_dtype_is_a_value_error_quoting_it(qwen2_folder, tmp_path):
    with pytest.raises(ValueError, match="'q8'"):
        export_base_gguf(qwen2_folder, tmp_path / "x.gguf", dtype="q8")
