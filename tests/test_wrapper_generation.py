"""Two-pass generation: the no-harm invariant, pass-1 cache reuse, draft
reads, AGC, dynamic refresh and every encoder kind."""

from __future__ import annotations

from contextlib import closing

import pytest
import torch
from wrapper_helpers import PROMPTS, chat_ids, forward_hook_counts, shared_model, shared_tokenizer

from meta_spider.wrapper import AdaptiveGateControl, MetaSpiderConfig, MetaSpiderPipeline, NoDoubterError
from meta_spider.wrapper.injection import InjectionState, injecting
from meta_spider.wrapper.passes import DecodeStats

SMALL = {"encoder_dim": 16, "ca_bottleneck_dim": 16, "ca_num_heads": 2}


def _pipeline(family: str = "qwen2", **config: object) -> MetaSpiderPipeline:
    return MetaSpiderPipeline(shared_model(family), shared_tokenizer(),
                              MetaSpiderConfig(model_name=family, **config))


def _base_greedy(family: str, prompt: str, max_new_tokens: int) -> list[int]:
    ids = chat_ids(shared_tokenizer(), prompt)
    output = shared_model(family).generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
    return output[0, ids.shape[1]:].tolist()


@pytest.mark.parametrize("inject_positions", ["generation", "all"])
def test_no_harm_with_zero_gates_and_after_detach(inject_positions: str) -> None:
    pipe = _pipeline(target_layers=[1, 3, 5], inject_positions=inject_positions)
    doubter = pipe.attach(pipe.new_doubter(ca_gate_init=0.9, **SMALL))
    base = [_base_greedy("qwen2", prompt, 32) for prompt in PROMPTS]
    assert len(PROMPTS) == 20

    # The hooks are live: with open gates the answers move.
    injected = [pipe.generate(p, max_new_tokens=32, return_result=True).token_ids for p in PROMPTS]
    assert injected != base

    doubter.set_injection_gates(0.0)
    assert set(doubter.injection_gate_values().values()) == {0.0}
    for prompt, expected in zip(PROMPTS, base):
        result = pipe.generate(prompt, max_new_tokens=32, return_result=True)
        assert result.token_ids == expected, prompt
        assert result.reused_prompt_cache == (inject_positions == "generation")

    doubter.set_injection_gates(0.9)
    assert pipe.detach() is doubter and pipe.doubter is None
    for prompt, expected in zip(PROMPTS, base):
        assert pipe.generate(prompt, max_new_tokens=32, return_result=True).token_ids == expected


def _positions_through_pass2(pipe: MetaSpiderPipeline, inject_positions: str) -> tuple[int, int]:
    ids = chat_ids(shared_tokenizer(), PROMPTS[1])
    pass1 = pipe.read_ids(ids)
    seen: list[int] = []
    handle = pipe.model.get_input_embeddings().register_forward_hook(lambda m, a, out: seen.append(out.shape[1]))
    try:
        tokens = list(pipe.stream_ids(ids, max_new_tokens=8, pass1=pass1))
    finally:
        handle.remove()
    return sum(seen), ids.shape[1] + len(tokens)


def test_generation_mode_reuses_pass1_cache_for_all_but_the_last_prompt_token() -> None:
    pipe = _pipeline(inject_positions="generation")
    pipe.attach(pipe.new_doubter(**SMALL))
    processed, _ = _positions_through_pass2(pipe, "generation")
    assert processed == 8  # last prompt token + 7 fed-back tokens: one token more than plain decoding
    pipe_all = _pipeline(inject_positions="all")
    pipe_all.attach(pipe_all.new_doubter(**SMALL))
    processed_all, total = _positions_through_pass2(pipe_all, "all")
    assert processed_all == total - 1  # the whole prompt again


def test_reused_cache_gives_the_same_tokens_as_a_fresh_prefill() -> None:
    pipe = _pipeline()
    pipe.attach(pipe.new_doubter(ca_gate_init=0.9, **SMALL))
    ids = chat_ids(shared_tokenizer(), PROMPTS[5])
    pass1 = pipe.read_ids(ids)
    reused_stats, fresh_stats = DecodeStats(), DecodeStats()
    reused = list(pipe.stream_ids(ids, max_new_tokens=16, pass1=pass1, stats=reused_stats))
    # pass1's cache is consumed now: the second stream prefills again.
    fresh = list(pipe.stream_ids(ids, max_new_tokens=16, pass1=pass1, stats=fresh_stats))
    assert reused_stats.reused_prompt_cache and not fresh_stats.reused_prompt_cache
    assert reused == fresh


def test_draft_read_position_reads_at_the_end_of_the_greedy_draft() -> None:
    pipe = _pipeline(read_position="draft", target_layers=[2, 4])
    doubter = pipe.attach(pipe.new_doubter(**SMALL))
    ids = chat_ids(shared_tokenizer(), PROMPTS[2])
    pass1 = pipe.read_ids(ids, max_draft_tokens=10)
    assert pass1.draft_ids == _base_greedy("qwen2", PROMPTS[2], 10)
    full = torch.cat([ids, torch.tensor([pass1.draft_ids])], dim=1)
    with torch.no_grad():
        hidden = pipe.model(input_ids=full, output_hidden_states=True).hidden_states
    expected = torch.stack([hidden[3][0, -1], hidden[5][0, -1]])
    torch.testing.assert_close(pass1.layer_states[0], expected, atol=1e-5, rtol=1e-4)
    result = pipe.generate(PROMPTS[2], max_new_tokens=10, return_result=True)
    assert result.draft_text == pipe.decode(pass1.draft_ids) and result.reused_prompt_cache
    doubter.set_injection_gates(0.0)
    assert pipe.generate(PROMPTS[2], max_new_tokens=10, return_result=True).token_ids == pass1.draft_ids


def test_collect_states_keeps_both_read_positions_in_one_pass() -> None:
    pipe = _pipeline(target_layers=[2, 4])
    collected = pipe.collect_states(PROMPTS[2], max_draft_tokens=10)
    assert collected.draft_ids == _base_greedy("qwen2", PROMPTS[2], 10)
    torch.testing.assert_close(collected.prompt_states, pipe.read_states([PROMPTS[2]]), atol=1e-5, rtol=1e-4)
    drafted = _pipeline(target_layers=[2, 4], read_position="draft")
    drafted.attach(drafted.new_doubter(**SMALL))
    pass1 = drafted.read_ids(chat_ids(shared_tokenizer(), PROMPTS[2]), max_draft_tokens=10)
    torch.testing.assert_close(collected.draft_states, pass1.layer_states)
    assert pipe.collect_states(PROMPTS[2], max_draft_tokens=0).draft_states is None


def test_bfloat16_base_keeps_no_harm_and_injects(tmp_path) -> None:  # noqa: ANN001 - pytest fixture
    from wrapper_helpers import save_tiny_model

    folder = save_tiny_model(shared_model("llama"), shared_tokenizer(), tmp_path / "llama")
    pipe = MetaSpiderPipeline.from_pretrained(
        MetaSpiderConfig(model_name=str(folder), dtype="bfloat16", local_files_only=True, target_layers=[2, 4])
    )
    assert pipe.model.dtype == torch.bfloat16
    doubter = pipe.attach(pipe.new_doubter(ca_gate_init=0.9, **SMALL))
    ids = chat_ids(shared_tokenizer(), PROMPTS[3])
    base = pipe.model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1]:].tolist()
    assert pipe.generate(PROMPTS[3], max_new_tokens=12, return_result=True).p_correct is not None
    doubter.set_injection_gates(0.0)
    assert pipe.generate(PROMPTS[3], max_new_tokens=12, return_result=True).token_ids == base


def test_agc_scales_each_pass2_forward_by_its_alpha() -> None:
    pipe = _pipeline()
    doubter = pipe.attach(pipe.new_doubter(agc_floor=0.2, agc_tau=3.0, **SMALL))
    ids = chat_ids(shared_tokenizer(), PROMPTS[0])
    stats = DecodeStats()
    tokens = list(pipe.stream_ids(ids, max_new_tokens=12, agc=True, stats=stats))
    agc = AdaptiveGateControl(0.2, 3.0)
    assert stats.injection_scales == [agc.alpha(step) for step in range(len(tokens))]
    # The scale multiplies the injected residual exactly.
    layer = doubter.config.cross_attn_layers[0]
    tokens_in = torch.randn(1, 2, 32)
    deltas = []
    for scale in (1.0, 0.25):
        captured: list[torch.Tensor] = []
        handle = pipe.structure.layers[layer].register_forward_hook(lambda m, a, out: captured.append(out))
        with torch.no_grad(), injecting(pipe.structure.layers, doubter, InjectionState(tokens_in, scale=scale)):
            pipe.model(input_ids=ids)
        handle.remove()
        with torch.no_grad():
            plain_captured: list[torch.Tensor] = []
            handle = pipe.structure.layers[layer].register_forward_hook(lambda m, a, out: plain_captured.append(out))
            pipe.model(input_ids=ids)
            handle.remove()
        deltas.append(captured[0] - plain_captured[0])
    torch.testing.assert_close(deltas[1], deltas[0] * 0.25, atol=1e-6, rtol=1e-4)


def test_dynamic_refresh_reencodes_when_similarity_drops() -> None:
    pipe = _pipeline()
    ids = chat_ids(shared_tokenizer(), PROMPTS[4])
    never = pipe.attach(pipe.new_doubter(refresh_threshold=-1.0, ca_gate_init=0.9, **SMALL), name="never")
    stats = DecodeStats()
    with_gate_off = list(pipe.stream_ids(ids, max_new_tokens=12, dynamic_refresh=True, stats=stats))
    assert stats.refreshes == 0
    assert with_gate_off == list(pipe.stream_ids(ids, max_new_tokens=12))

    always = pipe.new_doubter(refresh_threshold=1.0, ca_gate_init=0.9, **SMALL)
    always.load_state_dict(never.state_dict())
    pipe.attach(always, name="always")
    stats = DecodeStats()
    refreshed = list(pipe.stream_ids(ids, max_new_tokens=12, dynamic_refresh=True, stats=stats))
    assert stats.refreshes >= 1 and always.buffer.refreshes == stats.refreshes
    reference = always.buffer.reference_states
    with torch.no_grad():
        torch.testing.assert_close(always.buffer.cognitive_tokens, always.encode(reference).cognitive_tokens)
    assert refreshed != with_gate_off or stats.refreshes == len(refreshed)


@pytest.mark.parametrize("encoder_type", ["selective", "multi_token", "transformer"])
def test_every_encoder_type_generates_and_reports_p_correct(encoder_type: str) -> None:
    pipe = _pipeline(target_layers=[1, 3, 5])
    doubter = pipe.attach(pipe.new_doubter(encoder_type=encoder_type, num_cognitive_tokens=5, **SMALL))
    result = pipe.generate([{"role": "user", "content": PROMPTS[6]}], max_new_tokens=5, return_result=True)
    expected_tokens = 3 if encoder_type == "selective" else 5
    assert result.cognitive_tokens.shape == (expected_tokens, 32)
    assert 0.0 < result.p_correct < 1.0
    encoded = doubter.encode(torch.randn(4, 3, 32))
    assert encoded.cognitive_tokens.shape == (4, expected_tokens, 32) and encoded.p_correct_logit.shape == (4,)
    assert (encoded.probe_logits is not None) == (encoder_type == "selective")


def test_stopping_a_stream_early_removes_the_hooks() -> None:
    pipe = _pipeline()
    pipe.attach(pipe.new_doubter(**SMALL))
    ids = chat_ids(shared_tokenizer(), PROMPTS[0])
    before = forward_hook_counts(pipe.structure.layers)
    with closing(pipe.stream_ids(ids, max_new_tokens=20)) as stream:
        next(stream)
        assert forward_hook_counts(pipe.structure.layers) != before
    assert forward_hook_counts(pipe.structure.layers) == before


def test_attach_detach_bookkeeping() -> None:
    pipe = _pipeline()
    with pytest.raises(NoDoubterError, match="read"):
        pipe.read_ids(chat_ids(shared_tokenizer(), "x"))
    first = pipe.attach(pipe.new_doubter(**SMALL), name="a")
    second = pipe.attach(pipe.new_doubter(**SMALL), name="b")
    assert pipe.doubter is second
    assert pipe.detach() is second and pipe.doubter is first
    pipe.attach(second, name="b")
    pipe.detach_all()
    assert pipe.doubter is None
    assert not any(p.requires_grad for p in pipe.model.parameters()) and not pipe.model.training


# ------------------------------------------------------------------ the answer gate

REFUSAL = "I am not sure."


def _is_refusal(text: str) -> bool:
    return text.strip().startswith(REFUSAL)


def test_answer_gate_refuses_below_its_threshold_without_running_pass2() -> None:
    from meta_spider.wrapper import AnswerGate

    pipe = _pipeline()
    pipe.attach(pipe.new_doubter(ca_gate_init=0.9, **SMALL))
    free = pipe.generate(PROMPTS[3], max_new_tokens=12, return_result=True)
    assert free.decision == "pass2"
    p = free.p_correct
    pipe.answer_gate = AnswerGate(threshold=p + 1e-6, refusal=REFUSAL, is_refusal=_is_refusal)
    calls = []
    handle = pipe.model.get_input_embeddings().register_forward_hook(lambda m, a, out: calls.append(out.shape[1]))
    try:
        refused = pipe.generate(PROMPTS[3], max_new_tokens=12, return_result=True)
    finally:
        handle.remove()
    assert refused.decision == "gate_refused" and refused.text == REFUSAL and refused.finish_reason == "gate"
    assert refused.p_correct == p and calls == [chat_ids(shared_tokenizer(), PROMPTS[3]).shape[1]]  # pass 1 only
    pipe.answer_gate = AnswerGate(threshold=p, refusal=REFUSAL, is_refusal=_is_refusal)
    answered = pipe.generate(PROMPTS[3], max_new_tokens=12, return_result=True)
    assert answered.decision == "pass2" and answered.token_ids == free.token_ids
    pipe.answer_gate = AnswerGate(threshold=float("inf"), refusal=REFUSAL, is_refusal=_is_refusal)
    assert pipe.generate(PROMPTS[3], max_new_tokens=12) == REFUSAL


@pytest.mark.parametrize("read_position", ["prompt", "draft"])
def test_answer_gate_keeps_the_base_answer_when_pass2_refuses_above_the_threshold(read_position: str) -> None:
    from meta_spider.wrapper import AnswerGate

    pipe = _pipeline(read_position=read_position)
    pipe.attach(pipe.new_doubter(ca_gate_init=0.9, **SMALL))
    injected = pipe.generate(PROMPTS[4], max_new_tokens=12, return_result=True)
    base = _base_greedy("qwen2", PROMPTS[4], 12)
    assert injected.token_ids != base  # pass 2 says something else than the base here
    injected_text = injected.text
    # Treat pass 2's text as a refusal: above the threshold the base's own answer stands.
    gate = AnswerGate(threshold=0.0, refusal=REFUSAL, is_refusal=lambda text: _is_refusal(text) or text == injected_text)
    pipe.answer_gate = gate
    result = pipe.generate(PROMPTS[4], max_new_tokens=12, return_result=True)
    assert result.decision == "base_answer" and result.token_ids == base
    assert result.text == pipe.decode(base) and result.finish_reason in ("eos", "length")


def test_answer_gate_rejects_bad_settings() -> None:
    from meta_spider.wrapper import AnswerGate

    with pytest.raises(ValueError, match="threshold"):
        AnswerGate(threshold=float("nan"), refusal=REFUSAL, is_refusal=_is_refusal)
    with pytest.raises(ValueError, match="refusal"):
        AnswerGate(threshold=0.5, refusal="  ", is_refusal=_is_refusal)
    with pytest.raises(ValueError, match="recognises"):
        AnswerGate(threshold=0.5, refusal=REFUSAL, is_refusal=lambda text: False)
