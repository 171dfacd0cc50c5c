"""Layer discovery, activation reading, a two-pass generate, no harm at
gates 0 and a training step on a tiny in-process model of every supported
family, the hybrids with recurrent state included."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from wrapper_helpers import (
    HYBRID_FAMILIES,
    PROMPTS,
    TINY_FAMILIES,
    chat_ids,
    forward_hook_counts,
    shared_model,
    shared_tokenizer,
)

from meta_spider.wrapper.passes import DecodeStats
from meta_spider.wrapper import (
    ActivationCollector,
    LayerDiscoveryError,
    MetaSpiderConfig,
    MetaSpiderPipeline,
    discover_decoder,
)

EXPECTED_LAYER_PATHS = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "qwen3": "model.layers",
    "gemma2": "model.layers",
    "gemma3": "model.layers",
    "gemma3_multimodal": "model.language_model.layers",  # not the equally deep vision tower
    "gpt2": "transformer.h",
    "phi3": "model.layers",
    "llava": "model.language_model.layers",
    "qwen3_next": "model.layers",
    "falcon_h1": "model.layers",
    "granitemoehybrid": "model.layers",
    "jamba": "model.layers",  # attention and Mamba blocks of two classes in one list
    "mamba2": "backbone.layers",
    "gemma4": "model.layers",
    "gpt_oss": "model.layers",
    "olmo3": "model.layers",
}
SMALL = dict(encoder_dim=16, ca_bottleneck_dim=16)


def _pipeline(family: str, **config: object) -> MetaSpiderPipeline:
    return MetaSpiderPipeline(shared_model(family), shared_tokenizer(), MetaSpiderConfig(model_name=family, **config))


def test_every_family_has_an_expected_path() -> None:
    assert set(EXPECTED_LAYER_PATHS) == set(TINY_FAMILIES)


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_discovery_finds_the_text_decoder(family: str) -> None:
    structure = discover_decoder(shared_model(family))
    assert structure.layers_path == EXPECTED_LAYER_PATHS[family]
    assert (structure.hidden_size, structure.num_layers, len(structure.layers)) == (32, 6, 6)


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_two_pass_generate_runs_and_injection_changes_the_residual_stream(family: str) -> None:
    pipe = _pipeline(family, target_layers=[2, 4], cross_attn_layers=[3, 5])
    hooks_before = forward_hook_counts(pipe.structure.layers)
    doubter = pipe.attach(pipe.new_doubter(encoder_dim=16, ca_bottleneck_dim=16, ca_gate_init=0.9))
    result = pipe.generate(PROMPTS[3], max_new_tokens=6, return_result=True)
    assert 1 <= len(result.token_ids) <= 6 and result.reused_prompt_cache
    # Recurrent layers cannot drop a token: they restore the state kept before the last prompt token.
    assert result.prompt_cache == ("snapshot" if family in HYBRID_FAMILIES else "cropped")
    assert 0.0 < result.p_correct < 1.0
    assert result.cognitive_tokens.shape == (2, 32)
    # Injection reaches the logits (the token choice of a random model may not move).
    ids = chat_ids(shared_tokenizer(), PROMPTS[3])
    pass1 = pipe.read_ids(ids)
    injected = list(pipe.stream_ids(ids, max_new_tokens=1, pass1=pass1))
    assert len(injected) == 1
    with torch.no_grad():
        plain_logits = pipe.model(input_ids=ids).logits[0, -1]
        from meta_spider.wrapper.injection import InjectionState, injecting

        with injecting(pipe.structure.layers, doubter, InjectionState(pass1.encoded.cognitive_tokens)):
            injected_logits = pipe.model(input_ids=ids).logits[0, -1]
    assert not torch.allclose(plain_logits, injected_logits)
    assert forward_hook_counts(pipe.structure.layers) == hooks_before


@pytest.mark.parametrize("family", ["qwen2", "gpt2", "gemma3_multimodal"])
def test_collector_reads_hidden_states_after_layer(family: str) -> None:
    model = shared_model(family)
    structure = discover_decoder(model)
    ids = chat_ids(shared_tokenizer(), PROMPTS[0])
    collector = ActivationCollector(structure.layers, [0, 2, 4])
    with torch.no_grad(), collector.recording() as record:
        output = model(input_ids=ids, output_hidden_states=True)
        hooks_inside = forward_hook_counts(structure.layers)
    states = record.states()
    assert states.shape == (1, 3, 32)
    for column, layer in enumerate([0, 2, 4]):
        torch.testing.assert_close(states[0, column], output.hidden_states[layer + 1][0, -1].float())
    hooks_after = forward_hook_counts(structure.layers)
    assert [inside - after for inside, after in zip(hooks_inside, hooks_after)] == [1, 0, 1, 0, 1, 0]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_batched_reads_are_right_under_left_and_right_padding(family: str) -> None:
    pipe = _pipeline(family, target_layers=[1, 5])
    prompts = [PROMPTS[0], "Hi", PROMPTS[7]]
    single = torch.cat([pipe.read_states([p]) for p in prompts])
    torch.testing.assert_close(pipe.read_states(prompts), single, atol=1e-5, rtol=1e-4)  # left-padded
    rows = [pipe.encode(pipe.render(p))[0] for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.zeros((3, width), dtype=torch.long)
    mask = torch.zeros((3, width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    torch.testing.assert_close(pipe.read_states_ids(ids, mask, layers=[1, 5]), single, atol=1e-5, rtol=1e-4)


def test_discovery_error_names_the_model() -> None:
    class NoDecoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            from transformers import LlamaConfig

            self.config = LlamaConfig(hidden_size=8, num_hidden_layers=3, num_attention_heads=2)
            self.blocks = nn.ModuleList([nn.Linear(2, 2), nn.ReLU()])

    with pytest.raises(LayerDiscoveryError, match="NoDecoder.*3 identical blocks"):
        discover_decoder(NoDecoder())


def test_pipeline_rejects_layers_outside_the_base() -> None:
    with pytest.raises(ValueError, match=r"\[9\].*6 layers"):
        _pipeline("qwen2", target_layers=[9])


def _base_greedy(family: str, ids: torch.Tensor, max_new_tokens: int) -> list[int]:
    model = shared_model(family)
    return model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)[0, ids.shape[1]:].tolist()


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_gates_at_zero_give_the_base_greedy_output(family: str) -> None:
    pipe = _pipeline(family, target_layers=[2, 4], cross_attn_layers=[3, 5])
    doubter = pipe.attach(pipe.new_doubter(**SMALL))
    doubter.set_injection_gates(0.0)
    for prompt in (PROMPTS[0], PROMPTS[9]):
        result = pipe.generate(prompt, max_new_tokens=8, return_result=True)
        assert result.reused_prompt_cache
        assert result.token_ids == _base_greedy(family, chat_ids(shared_tokenizer(), prompt), 8), prompt


@pytest.mark.parametrize("family", sorted(HYBRID_FAMILIES))
def test_hybrid_rolls_back_over_a_draft(family: str) -> None:
    # A draft read leaves prompt + draft in the recurrent state: pass 2 must
    # go back past every draft token to before the last prompt token.
    pipe = _pipeline(family, target_layers=[2, 4], read_position="draft")
    doubter = pipe.attach(pipe.new_doubter(**SMALL))
    doubter.set_injection_gates(0.0)
    result = pipe.generate(PROMPTS[5], max_new_tokens=6, return_result=True)
    expected = _base_greedy(family, chat_ids(shared_tokenizer(), PROMPTS[5]), 6)
    assert result.prompt_cache == "snapshot" and result.draft_text is not None
    assert result.token_ids == expected


@pytest.mark.parametrize("family", sorted(HYBRID_FAMILIES))
def test_hybrid_answers_a_left_padded_batch_as_one_prompt_at_a_time(family: str) -> None:
    # Left padding runs through the recurrent layers too: each row of a batch
    # (both passes, injection open) must still answer as it does alone.
    pipe = _pipeline(family, target_layers=[2, 4])
    pipe.attach(pipe.new_doubter(signals=["draft_logprob_mean"], ca_gate_init=0.9, **SMALL))
    prompts = [chat_ids(shared_tokenizer(), prompt) for prompt in PROMPTS[:4]]
    assert len({ids.shape[1] for ids in prompts}) > 1
    alone = [pipe.answer_ids(ids, max_new_tokens=6) for ids in prompts]
    together = pipe.answer_batch(prompts, max_new_tokens=6)
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert [r.p_correct for r in together] == pytest.approx([r.p_correct for r in alone], abs=1e-5)


@pytest.mark.parametrize("read_position", ["prompt", "draft"])
@pytest.mark.parametrize("family", sorted(HYBRID_FAMILIES))
def test_hybrid_cache_rolled_back_gives_the_base_next_token_logits(family: str, read_position: str) -> None:
    # Greedy tokens of a random tiny model hardly depend on the context; the
    # logits do: from a wrong recurrent state they differ at once.
    pipe = _pipeline(family, target_layers=[2, 4], read_position=read_position)
    pipe.attach(pipe.new_doubter(**SMALL))
    ids = chat_ids(shared_tokenizer(), PROMPTS[7])
    pass1 = pipe.read_ids(ids, max_draft_tokens=5)
    stats = DecodeStats()
    cache = pipe.decoder.prompt_cache_without_last(pass1, ids, stats)
    assert stats.prompt_cache == "snapshot"
    # The recurrent layers hold what a prefill of the prompt minus its last token leaves.
    fresh = pipe.decoder.new_cache()
    pipe.decoder.forward(ids[:, :-1], fresh)
    recurrent = [(a, b) for a, b in zip(cache.layers, fresh.layers) if hasattr(a, "recurrent_states")]
    assert recurrent
    for rolled, prefilled in recurrent:
        for index, state in rolled.recurrent_states.items():
            if state is not None:
                torch.testing.assert_close(state, prefilled.recurrent_states[index], atol=1e-5, rtol=1e-4)
        for index, conv in rolled.conv_states.items():
            if conv is not None:
                torch.testing.assert_close(conv, prefilled.conv_states[index][..., -conv.shape[-1]:])
    with torch.no_grad():
        expected = pipe.model(input_ids=ids).logits[0, -1].float()
    torch.testing.assert_close(pipe.decoder.forward(ids[:, -1:], cache), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_collected_states_are_the_hidden_states_after_each_layer(family: str) -> None:
    pipe = _pipeline(family)
    ids = chat_ids(shared_tokenizer(), PROMPTS[2])
    read = pipe.collect_states(PROMPTS[2], layers=[1, 4], max_draft_tokens=4)
    with torch.no_grad():
        output = pipe.model(input_ids=ids, output_hidden_states=True)
    assert read.prompt_states.shape == (1, 2, 32) and read.draft_states.shape == (1, 2, 32)
    for column, layer in enumerate([1, 4]):
        torch.testing.assert_close(read.prompt_states[0, column], output.hidden_states[layer + 1][0, -1].float(),
                                   atol=1e-4, rtol=1e-4)
    assert read.draft_ids == _base_greedy(family, ids, 4)


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_one_training_step_moves_only_the_wrapper(family: str) -> None:
    pipe = _pipeline(family, target_layers=[2, 4], cross_attn_layers=[3, 5])
    doubter = pipe.attach(pipe.new_doubter(**SMALL))
    tokenizer = shared_tokenizer()
    prompts = [chat_ids(tokenizer, PROMPTS[i])[0].tolist() for i in (0, 6)]
    targets = [tokenizer("Paris.<|im_end|>", add_special_tokens=False)["input_ids"],
               tokenizer("I do not know.<|im_end|>", add_special_tokens=False)["input_ids"]]
    base_before = [p.detach().clone() for p in pipe.model.parameters()]
    wrapper_before = [p.detach().clone() for p in doubter.parameters()]
    optimizer = torch.optim.AdamW(pipe.trainable_parameters(), lr=1e-2)
    output = pipe.training_forward(prompts, targets, correct=[True, False])
    assert torch.isfinite(output.loss)
    output.loss.backward()
    for layer, module in doubter.cross_attn.items():
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), layer
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(wrapper_before, doubter.parameters()))
    assert all(torch.equal(a, b) and b.grad is None for a, b in zip(base_before, pipe.model.parameters()))
