"""Backprop through the frozen base: the teacher-forced training forward
reaches every wrapper parameter and no base parameter, also with activation
checkpointing and with a 4-bit (nf4) base on CPU; training and inference
inject at the same positions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from wrapper_helpers import PROMPTS, chat_ids, make_tiny_model, save_tiny_model, shared_model, shared_tokenizer

from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline

SMALL = {"encoder_dim": 16, "ca_bottleneck_dim": 16, "ca_num_heads": 2}
PROMPT_IDS = [[5, 6, 7, 8, 9], [10, 11, 12]]
TARGET_IDS = [[20, 21], [22, 23, 24, 25]]


def _assert_gradients_reach_only_the_wrapper(pipe: MetaSpiderPipeline) -> None:
    doubter = pipe.doubter
    doubter.zero_grad(set_to_none=True)
    output = pipe.training_forward(PROMPT_IDS, TARGET_IDS, correct=[1, 0])
    assert torch.isfinite(output.loss) and output.probe_loss is not None
    output.loss.backward()
    without = [name for name, p in doubter.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []
    assert doubter.num_parameters(trainable_only=True) == doubter.num_parameters()
    assert all(not p.requires_grad and p.grad is None for p in pipe.model.parameters())
    # The LM loss alone (no labels) already trains the cross-attention and the encoder's tokens.
    doubter.zero_grad(set_to_none=True)
    pipe.training_forward(PROMPT_IDS, TARGET_IDS).loss.backward()
    for name, module in doubter.cross_attn.items():
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), name


@pytest.mark.parametrize("encoder_type", ["selective", "multi_token", "transformer"])
@pytest.mark.parametrize("inject_positions", ["generation", "all"])
def test_gradients_reach_every_wrapper_parameter_and_no_base_parameter(encoder_type: str, inject_positions: str) -> None:
    pipe = MetaSpiderPipeline(shared_model("llama"), shared_tokenizer(),
                              MetaSpiderConfig(model_name="llama", target_layers=[1, 4], inject_positions=inject_positions))
    pipe.attach(pipe.new_doubter(encoder_type=encoder_type, **SMALL))
    assert pipe.trainable_parameters() == list(pipe.doubter.parameters())
    _assert_gradients_reach_only_the_wrapper(pipe)


def test_gradients_with_activation_checkpointing_recompute_the_layers() -> None:
    model = make_tiny_model("qwen2", shared_tokenizer())
    from meta_spider.wrapper.loading import enable_checkpointing

    enable_checkpointing(model)
    pipe = MetaSpiderPipeline(model, shared_tokenizer(),
                              MetaSpiderConfig(model_name="qwen2", target_layers=[2, 4], gradient_checkpointing=True))
    pipe.attach(pipe.new_doubter(**SMALL))
    calls: list[bool] = []
    # A pre-hook: the non-reentrant recompute stops as soon as the saved
    # tensors are rebuilt, before the MLP returns.
    handle = pipe.structure.layers[5].mlp.register_forward_pre_hook(lambda m, a: calls.append(torch.is_grad_enabled()))
    try:
        _assert_gradients_reach_only_the_wrapper(pipe)
    finally:
        handle.remove()
    # pass 1 + pass 2 + the backward recompute, twice (with and without labels)
    assert len(calls) == 6
    assert not pipe.model.training and not any(layer.training for layer in pipe.structure.layers)


@pytest.mark.parametrize("quantization", ["nf4", "fp4", "int8"])
def test_gradients_through_a_quantized_base_on_cpu(tmp_path: Path, quantization: str) -> None:
    # bitsandbytes' CPU 4-bit kernels need in_features >= its 64-wide blocks.
    model = make_tiny_model("qwen2", shared_tokenizer(), hidden_size=64, intermediate_size=128)
    folder = save_tiny_model(model, shared_tokenizer(), tmp_path / "qwen2-64")
    config = MetaSpiderConfig(model_name=str(folder), quantization=quantization, local_files_only=True,
                              target_layers=[2, 4], gradient_checkpointing=True)
    pipe = MetaSpiderPipeline.from_pretrained(config)
    from bitsandbytes.nn import Linear4bit, Linear8bitLt

    expected = Linear8bitLt if quantization == "int8" else Linear4bit
    assert isinstance(pipe.structure.layers[0].mlp.down_proj, expected)
    pipe.attach(pipe.new_doubter(**SMALL))
    pipe.generate(PROMPTS[0], max_new_tokens=3)  # an inference forward first must not break training
    _assert_gradients_reach_only_the_wrapper(pipe)


@pytest.mark.parametrize("inject_positions", ["generation", "all"])
def test_training_forward_matches_two_pass_inference(inject_positions: str) -> None:
    pipe = MetaSpiderPipeline(shared_model("qwen2"), shared_tokenizer(),
                              MetaSpiderConfig(model_name="qwen2", target_layers=[1, 3], inject_positions=inject_positions))
    pipe.attach(pipe.new_doubter(ca_gate_init=0.9, **SMALL))
    ids = chat_ids(shared_tokenizer(), PROMPTS[8])
    generated = list(pipe.stream_ids(ids, max_new_tokens=8))
    prompt = ids[0].tolist()
    with torch.no_grad():
        output = pipe.training_forward([prompt], [generated], return_logits=True)
    predicted = output.logits[0, len(prompt) - 1 : len(prompt) - 1 + len(generated)].argmax(-1).tolist()
    assert predicted == generated
    # "generation" leaves every prompt position before the last untouched.
    with torch.no_grad():
        plain = pipe.model(input_ids=ids).logits[0]
    untouched = torch.allclose(output.logits[0, : len(prompt) - 1], plain[:-1], atol=1e-5)
    assert untouched == (inject_positions == "generation")


def test_training_forward_accepts_collected_layer_states() -> None:
    pipe = MetaSpiderPipeline(shared_model("qwen2"), shared_tokenizer(),
                              MetaSpiderConfig(model_name="qwen2", target_layers=[1, 3]))
    pipe.attach(pipe.new_doubter(**SMALL))
    tok = shared_tokenizer()
    prompts = [PROMPTS[0], PROMPTS[9]]
    states = pipe.read_states(prompts)
    prompt_ids = [chat_ids(tok, p)[0].tolist() for p in prompts]
    targets = [[30, 31], [32]]
    with torch.no_grad():
        from_dataset = pipe.training_forward(prompt_ids, targets, layer_states=states)
        from_pass1 = pipe.training_forward(prompt_ids, targets)
    torch.testing.assert_close(from_dataset.loss, from_pass1.loss)
    torch.testing.assert_close(from_dataset.layer_states, from_pass1.layer_states, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="as many targets"):
        pipe.training_forward(prompt_ids, targets[:1])


def test_lm_loss_weighs_rows_and_stays_a_token_mean() -> None:
    from meta_spider.wrapper.training import IGNORE_INDEX, lm_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 4, 5], [IGNORE_INDEX, 1, 2, IGNORE_INDEX, IGNORE_INDEX]])
    per_token = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1),
                                                  ignore_index=IGNORE_INDEX, reduction="none").view(2, 4)
    row0, row1 = per_token[0, 1:4], per_token[1, 0:2]  # row 0: 3 target tokens, row 1: 2
    assert torch.allclose(lm_loss(logits, labels), torch.cat([row0, row1]).mean())
    assert torch.allclose(lm_loss(logits, labels, torch.ones(2)), lm_loss(logits, labels))
    weighted = lm_loss(logits, labels, torch.tensor([3.0, 1.0]))
    assert torch.allclose(weighted, (3 * row0.sum() + row1.sum()) / (3 * 3 + 2))
