"""Exported GGUF bases run in stock llama-cpp-python like the transformers model they came from.

For a tiny Qwen2 (Qwen2 split regex, no bos, hidden 256 so k-quants apply),
a tiny Llama (GPT-2 split, bos added, hidden 64, attention biases) and one
whose tokenizer splits the digits off before GPT-2 splitting (no bos), all
drawn at a large init scale and trained 80 AdamW steps so top-1 is decisive
(see gguf_helpers; untrained small-init models have near-tied logits whose
top-1 flips under f16 rounding): the f32 export
reproduces transformers' logits at every position to 2e-4 (with an f32 KV
cache, so the file is the only difference); the f16 export agrees on the
next-token top-1 for >= 99% of 200 prompts under llama.cpp's default
settings (f16 KV cache), with logits within 0.15; llama.cpp's tokenizer on
the GGUF gives transformers' ids; Q8_0 and Q4_K_M files load and their
agreement is reported (printed; run with -s) with loose floors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gguf_helpers import parity_prompts, save_base
from meta_spider.loom.gguf import export_base_gguf, quantize_gguf, tensor_type_counts, tensor_types

pytestmark = pytest.mark.llamacpp

GGML_TYPE_F32 = 0  # for llama.cpp's KV-cache type (type_k / type_v)
F16_MAX_ABS_LOGIT_DIFF = 0.15
F32_MAX_ABS_LOGIT_DIFF = 2e-4

MODELS = {
    # init_std halves with 4x the width so both models' logits have a similar scale.
    "qwen2": dict(arch="qwen2", split="qwen2", add_bos=False, hidden=256, intermediate=512, heads=4, kv_heads=2,
                  init_std=0.075),
    "llama": dict(arch="llama", split="gpt2", add_bos=True, hidden=64, intermediate=128, heads=4, kv_heads=2,
                  attention_bias=True),
    # GPT-2 splitting after the digits are split off one by one (StarCoder's and SmolLM's tokenizers)
    "llama-digits": dict(arch="llama", split="gpt2-digits", add_bos=False, hidden=64, intermediate=128, heads=4,
                         kv_heads=2),
}
TOKENIZATION_STRINGS = [
    "Ada was born in Kuba in 1950.",
    "Where was Greta born? She was born in Quarry Bay!",
    "  leading and trailing spaces   ",
    "tabs\tand\nnew\n\nlines\r\n",
    "don't WE'LL it's they've I'm you'd",
    "digits 1234567890 and 3.14159",
    "ünïcödé café naïve € 日本語 🙂",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    'call <tool_call>{"name": "lookup", "arguments": {"q": "Ada"}}</tool_call> done',
    "",
]


@dataclass
class ExportedBase:
    name: str
    folder: Path
    f16: Path
    f32: Path
    tokenizer: Any
    prompts: list[list[int]]
    reference_last_logits: np.ndarray


def _load(path: Path, **kwargs: Any):
    import llama_cpp

    return llama_cpp.Llama(model_path=str(path), n_ctx=128, n_batch=128, n_threads=1, logits_all=True,
                           verbose=False, **kwargs)


def _last_logits(llm, prompts: list[list[int]]) -> np.ndarray:
    rows = []
    for prompt in prompts:
        llm.reset()
        llm.eval(prompt)
        rows.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))
    return np.stack(rows)


def _worst_f32_logit_diff(path: Path, model: Any, prompts: list[list[int]]) -> float:
    """Largest |logit difference| between an f32 GGUF (f32 KV cache) and the
    transformers ``model``, over every position of every prompt."""
    llm = _load(path, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
    worst = 0.0
    for prompt in prompts:
        llm.reset()
        llm.eval(prompt)
        ours = np.array(llm.scores[: llm.n_tokens], dtype=np.float32)
        with torch.no_grad():
            theirs = model(torch.tensor([prompt])).logits[0].numpy()
        worst = max(worst, float(np.abs(ours - theirs).max()))
    llm.close()
    return worst


@pytest.fixture(scope="module", params=sorted(MODELS))
def exported(request, tmp_path_factory) -> ExportedBase:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    spec = dict(MODELS[request.param])
    root = tmp_path_factory.mktemp(request.param)
    folder = save_base(root / "hf", spec.pop("arch"), spec.pop("split"), add_bos=spec.pop("add_bos"),
                       train_steps=80, **spec)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    prompts = parity_prompts(tokenizer, n=200)
    with torch.no_grad():
        reference = np.stack([model(torch.tensor([p])).logits[0, -1].numpy() for p in prompts])
    return ExportedBase(
        name=request.param, folder=folder, tokenizer=tokenizer, prompts=prompts, reference_last_logits=reference,
        f16=export_base_gguf(folder, root / "base-f16.gguf"),
        f32=export_base_gguf(folder, root / "base-f32.gguf", dtype="f32"),
    )


def test_f32_export_reproduces_transformers_logits_at_every_position(exported):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(exported.folder), dtype=torch.float32).eval()
    worst = _worst_f32_logit_diff(exported.f32, model, exported.prompts[:40])
    print(f"\n[{exported.name}] f32 GGUF, f32 KV cache: max |logit diff| over all positions = {worst:.2e}")
    assert worst <= F32_MAX_ABS_LOGIT_DIFF


def test_f16_top1_agreement_over_200_prompts(exported):
    llm = _load(exported.f16)
    ours = _last_logits(llm, exported.prompts)
    llm.close()
    theirs = exported.reference_last_logits
    agreement = float(np.mean(ours.argmax(axis=1) == theirs.argmax(axis=1)))
    diff = np.abs(ours - theirs)
    print(f"\n[{exported.name}] f16 GGUF: top-1 agreement {agreement:.3f} over {len(ours)} prompts; "
          f"|logit diff| max {diff.max():.4f} mean {diff.mean():.5f} (logit range {np.abs(theirs).max():.1f})")
    assert len(exported.prompts) == 200
    assert agreement >= 0.99
    assert diff.max() <= F16_MAX_ABS_LOGIT_DIFF
    # Any disagreement must be a near-tie in the reference, not a wrong computation.
    top2 = np.sort(theirs, axis=1)[:, -2:]
    flipped = ours.argmax(axis=1) != theirs.argmax(axis=1)
    assert np.all(top2[flipped, 1] - top2[flipped, 0] <= 2 * diff.max())


def test_llama_cpp_tokenizer_gives_transformers_ids(exported):
    llm = _load(exported.f16)
    chat = exported.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who is Ada?"}],
        tokenize=False, add_generation_prompt=True,
    )
    for text in TOKENIZATION_STRINGS + [chat]:
        expected = exported.tokenizer.encode(text, add_special_tokens=True)
        got = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        assert got == expected, text
        assert llm.detokenize(got, special=True).decode("utf-8") == exported.tokenizer.decode(expected)
    assert llm.metadata["tokenizer.chat_template"] == exported.tokenizer.chat_template
    llm.close()


def test_quantized_files_load_and_agreement_is_reported(exported, tmp_path):
    theirs_top1 = exported.reference_last_logits.argmax(axis=1)
    q8 = quantize_gguf(exported.f16, tmp_path / "base-q8_0.gguf", "Q8_0")
    q4 = quantize_gguf(exported.f16, tmp_path / "base-q4_k_m.gguf", "Q4_K_M")
    agreement = {}
    for kind, path in (("Q8_0", q8), ("Q4_K_M", q4)):
        llm = _load(path)
        agreement[kind] = float(np.mean(_last_logits(llm, exported.prompts).argmax(axis=1) == theirs_top1))
        llm.close()
        print(f"\n[{exported.name}] {kind}: top-1 agreement {agreement[kind]:.3f}; "
              f"tensor types {tensor_type_counts(path)}; {path.stat().st_size} bytes "
              f"(f16 {exported.f16.stat().st_size})")
    q8_types, q4_types = tensor_types(q8), tensor_types(q4)
    assert q8_types["blk.0.attn_q.weight"] == "Q8_0" and q8_types["output_norm.weight"] == "F32"
    if exported.name == "qwen2":
        # Rows of 256 / 512 values: real k-quants.
        assert q4_types["blk.0.attn_q.weight"] == "Q4_K"
    else:
        # Rows of 64 values are not a multiple of 256: llama.cpp falls back to Q5_0.
        assert q4_types["blk.0.attn_q.weight"] == "Q5_0"
    # Loose floors: they catch a broken file, not quantisation noise on a random tiny model.
    assert agreement["Q8_0"] >= 0.9
    assert agreement["Q4_K_M"] >= 0.5


def test_quantisation_errors_are_typed(tmp_path):
    from meta_spider.loom.gguf import QuantizationFailedError, UnknownQuantizationError

    not_gguf = tmp_path / "broken.gguf"
    not_gguf.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(UnknownQuantizationError) as caught:
        quantize_gguf(not_gguf, tmp_path / "x.gguf", "Q9_9")
    assert caught.value.kind == "Q9_9" and "Q4_K_M" in caught.value.known
    with pytest.raises(FileNotFoundError, match="nowhere.gguf"):
        quantize_gguf(tmp_path / "nowhere.gguf", tmp_path / "x.gguf")
    with pytest.raises(QuantizationFailedError) as failed:
        quantize_gguf(not_gguf, tmp_path / "x.gguf", "q8_0")
    assert failed.value.kind == "Q8_0" and failed.value.status != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.gguf"]  # no partial output left


@pytest.mark.parametrize("arch, overrides", [
    ("qwen2", {"tie_word_embeddings": True}),
    ("llama", {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 50000.0}}),
    ("llama", {"head_dim": 32, "num_key_value_heads": 1}),
], ids=["qwen2-tied-embeddings", "llama-linear-rope", "llama-wide-heads-mqa"])
def test_config_variants_reproduce_transformers_logits(arch, overrides, tmp_path):
    """Values the exporter reads from the config (not fixed ones) reach llama.cpp intact."""
    from gguf_helpers import build_model, build_tokenizer

    torch.set_num_threads(1)
    tokenizer = build_tokenizer(split="gpt2")
    model = build_model(arch, vocab_size=len(tokenizer), **overrides)
    path = export_base_gguf((model, tokenizer), tmp_path / "variant.gguf", dtype="f32")
    worst = _worst_f32_logit_diff(path, model, parity_prompts(tokenizer, n=10))
    assert worst <= F32_MAX_ABS_LOGIT_DIFF
