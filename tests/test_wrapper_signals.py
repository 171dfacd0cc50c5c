"""Pass-1 log-prob signals: computed from the base's own logits, read by a
Doubter's signal mix, saved with its checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from wrapper_helpers import PROMPTS, chat_ids, shared_model, shared_tokenizer

from meta_spider.wrapper import Doubter, DoubterConfig, MetaSpiderConfig, MetaSpiderPipeline
from meta_spider.wrapper.signals import SIGNALS, signal_vector, token_logprobs

SMALL = {"encoder_dim": 16, "ca_bottleneck_dim": 16, "ca_num_heads": 2}


def test_token_logprobs_is_log_softmax_at_the_tokens() -> None:
    logits = torch.randn(150, 40, generator=torch.Generator().manual_seed(0)) * 6  # more rows than one chunk
    ids = [3, 0, 39, 7, 7] * 30
    expected = logits.double().log_softmax(-1)[torch.arange(150), torch.tensor(ids)].numpy()
    np.testing.assert_allclose(token_logprobs(logits.numpy(), ids), expected, atol=1e-12)
    with pytest.raises(ValueError, match="token ids"):
        token_logprobs(logits.numpy(), ids[:3])


def test_rarest_token_signals_by_hand() -> None:
    # a template of likely tokens around a rare two-token name and a rare word elsewhere
    prompt = np.array([-0.1, -0.2, -4.0, -5.0, -0.1, -0.3, -6.0, -0.2, -0.1])
    names = ["prompt_logprob_min", "prompt_logprob_low_mean", "prompt_window_logprob_min"]
    # lowest four: -6, -5, -4, -0.3; the least probable three in a row: -0.2 -4 -5
    np.testing.assert_allclose(signal_vector(names, prompt, None), [-6.0, -15.3 / 4, -9.2])
    # a rewording that only makes the template tokens less likely leaves the rarest ones where they were
    reworded = np.where(prompt > -1.0, prompt - 0.5, prompt)
    assert signal_vector(names[:1], reworded, None) == signal_vector(names[:1], prompt, None)
    assert signal_vector(["prompt_logprob_mean"], reworded, None) < signal_vector(["prompt_logprob_mean"], prompt, None)


def test_signal_vector_orders_and_checks_names() -> None:
    prompt, draft = np.array([-1.0, -3.0]), np.array([-0.5, -2.5, -0.0])
    # sum, mean, draft mean, draft min, then the rarest tokens: min, mean of the lowest 4 (all 2), window of 3 (of 2)
    assert signal_vector(SIGNALS, prompt, draft).tolist() == [-4.0, -2.0, -1.0, -2.5, -3.0, -2.0, -4.0]
    assert signal_vector(["draft_logprob_min", "prompt_logprob_mean"], prompt, draft).tolist() == [-2.5, -2.0]
    assert signal_vector(["prompt_logprob_mean"], np.array([]), None).tolist() == [0.0]  # a one-token prompt
    assert signal_vector([name for name in SIGNALS if name.startswith("prompt")], np.array([]), None).tolist() == [0.0] * 5
    with pytest.raises(ValueError, match="needs a draft"):
        signal_vector(["draft_logprob_mean"], prompt, None)
    with pytest.raises(ValueError, match="unknown signals"):
        signal_vector(["perplexity"], prompt, draft)
    with pytest.raises(ValueError, match="unknown signals"):
        DoubterConfig(hidden_size=32, num_layers=6, signals=["prompt_logprob_max"])
    with pytest.raises(ValueError, match="must not repeat"):
        DoubterConfig(hidden_size=32, num_layers=6, signals=["prompt_logprob_sum", "prompt_logprob_sum"])


@pytest.mark.parametrize("read_position", ["prompt", "draft"])
def test_pass1_signals_are_the_bases_own_log_probs(read_position: str) -> None:
    model, tokenizer = shared_model("qwen2"), shared_tokenizer()
    pipe = MetaSpiderPipeline(model, tokenizer, MetaSpiderConfig(model_name="qwen2", read_position=read_position))
    doubter = pipe.attach(pipe.new_doubter(signals=list(SIGNALS), **SMALL))
    assert doubter.config.drafts  # draft signals make pass 1 draft whatever the read position
    ids = chat_ids(tokenizer, PROMPTS[2])
    pass1 = pipe.read_ids(ids, max_draft_tokens=10)
    draft = model.generate(ids, max_new_tokens=10, do_sample=False)[0, ids.shape[1]:].tolist()
    assert pass1.draft_ids == draft
    # One teacher-forced forward over prompt + draft: another computation than the cached decoding.
    with torch.no_grad():
        logits = model(torch.cat([ids, torch.tensor([draft])], dim=1)).logits[0].double()
    token_lp = logits.log_softmax(-1)[:-1].gather(1, torch.cat([ids[0, 1:], torch.tensor(draft)]).unsqueeze(1))[:, 0]
    prompt_lp, draft_lp = token_lp[: ids.shape[1] - 1], token_lp[ids.shape[1] - 1:]
    lowest = prompt_lp.sort().values
    windows = prompt_lp.unfold(0, 3, 1).sum(dim=1)
    expected = [prompt_lp.sum(), prompt_lp.mean(), draft_lp.mean(), draft_lp.min(), prompt_lp.min(),
                lowest[:4].mean(), windows.min()]
    np.testing.assert_allclose(pass1.signals[0].numpy(), [float(v) for v in expected], rtol=1e-5, atol=1e-4)
    # An untouched signal mix passes the encoder's logit through.
    torch.testing.assert_close(pass1.encoded.p_correct_logit, doubter.encoder_logit(pass1.layer_states))
    # Pass 2 still starts from pass 1's cache, and with the injection off it is the base's greedy answer.
    doubter.set_injection_gates(0.0)
    result = pipe.generate(PROMPTS[2], max_new_tokens=10, return_result=True)
    assert result.token_ids == draft and result.reused_prompt_cache


def test_a_doubter_that_reads_signals_needs_them_and_keeps_its_mix(tmp_path) -> None:
    config = DoubterConfig(hidden_size=32, num_layers=6, target_layers=[4, 5], signals=["prompt_logprob_sum",
                                                                                        "draft_logprob_min"], **SMALL)
    torch.manual_seed(0)
    doubter = Doubter(config, model_id="tiny")
    states = torch.randn(3, 2, 32)
    with pytest.raises(ValueError, match=r"reads the pass-1 signals.*\[3, 2\]"):
        doubter.encode(states)
    mix = doubter.signal_mix
    assert not any(p.requires_grad for p in mix.parameters())  # fitted by the trainer, not trained
    with torch.no_grad():
        mix.mean.copy_(torch.tensor([-10.0, -1.0]))
        mix.scale.copy_(torch.tensor([2.0, 0.5]))
        mix.linear.weight.copy_(torch.tensor([[0.5, 1.0, -2.0]]))
        mix.linear.bias.fill_(0.25)
    signals = torch.tensor([[-12.0, -1.5], [-8.0, -0.5], [-10.0, -1.0]])
    with torch.no_grad():
        encoder_logit = doubter.encoder_logit(states)
        logit = doubter.encode(states, signals).p_correct_logit
    z = (signals - torch.tensor([-10.0, -1.0])) / torch.tensor([2.0, 0.5])
    torch.testing.assert_close(logit, 0.5 * encoder_logit + z[:, 0] - 2.0 * z[:, 1] + 0.25)
    loaded = Doubter.from_checkpoint(doubter.save_checkpoint(tmp_path / "ckpt"))
    assert loaded.config.signals == ("prompt_logprob_sum", "draft_logprob_min")
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(states, signals).p_correct_logit, logit)
