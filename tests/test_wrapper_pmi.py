"""The prompt's PMI signal: ``log p(t | context) - log p_ref(t)`` with
``p_ref`` the base's mean next-token distribution, computed as a direct
computation would, read by pass 1 with the Doubter's own ``p_ref``, saved
with its checkpoint and refused on a base with another vocabulary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from wrapper_helpers import PROMPTS, chat_ids, shared_model, shared_tokenizer

from meta_spider.wrapper import Doubter, DoubterConfig, MetaSpiderConfig, MetaSpiderPipeline
from meta_spider.wrapper.batched import REFERENCE_BATCH
from meta_spider.wrapper.errors import CheckpointError, ReferenceVocabularyError
from meta_spider.wrapper.signals import PMI_TOP_K, signal_vector

SMALL = {"encoder_dim": 16, "ca_bottleneck_dim": 16, "ca_num_heads": 2}
PMI = ["draft_logprob_mean", "prompt_pmi_top4"]


def test_pmi_signal_by_hand() -> None:
    log_reference = np.log(np.array([0.5, 0.25, 0.125, 0.0625, 0.0625]))
    ids = [0, 4, 1, 2, 3, 4, 0]
    prompt = np.array([-0.5, -3.0, -1.0, -0.1, -4.0, -0.2])  # tokens 1.. given the ones before
    pmi = prompt - log_reference[ids[1:]]
    expected = np.sort(pmi)[-PMI_TOP_K:].mean()
    got = signal_vector(["prompt_pmi_top4"], prompt, None, prompt_ids=ids, log_reference=log_reference)
    assert got.tolist() == [pytest.approx(expected, abs=1e-12)]
    # a short prompt averages what it has; a one-token prompt gives 0
    assert signal_vector(["prompt_pmi_top4"], prompt[:2], None, prompt_ids=ids[:3],
                         log_reference=log_reference)[0] == pytest.approx(pmi[:2].mean())
    assert signal_vector(["prompt_pmi_top4"], np.array([]), None, prompt_ids=[3], log_reference=log_reference)[0] == 0
    with pytest.raises(ValueError, match="reference distribution"):
        signal_vector(["prompt_pmi_top4"], prompt, None, prompt_ids=ids)
    with pytest.raises(ValueError, match="7 token ids"):
        signal_vector(["prompt_pmi_top4"], prompt, None, prompt_ids=ids[1:], log_reference=log_reference)
    with pytest.raises(ValueError, match="another base's vocabulary"):
        signal_vector(["prompt_pmi_top4"], prompt, None, prompt_ids=[0, 9, 1, 2, 3, 4, 0], log_reference=log_reference)


def _direct_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits[0].double()


def test_reference_logprobs_is_the_mean_next_token_distribution_over_the_prompts() -> None:
    model, tokenizer = shared_model("qwen2"), shared_tokenizer()
    pipe = MetaSpiderPipeline(model, tokenizer, MetaSpiderConfig(model_name="qwen2"))
    rows = [chat_ids(tokenizer, prompt)[0] for prompt in PROMPTS]
    assert len(rows) > REFERENCE_BATCH and len({len(row) for row in rows}) > 1  # two batches, padded
    # one prompt at a time, unpadded: every position but the last (which predicts the answer)
    total = sum(_direct_logits(model, row.unsqueeze(0))[:-1].softmax(-1).sum(0) for row in rows)
    expected = (total / sum(len(row) - 1 for row in rows)).log().numpy()
    got = pipe.reference_logprobs(rows)
    assert got.shape == (pipe.vocab_size,) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.exp(got).sum() == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="two or more tokens"):
        pipe.reference_logprobs([rows[0][:1]])


def test_pass1_reads_the_pmi_with_the_doubters_reference(tmp_path) -> None:
    model, tokenizer = shared_model("qwen2"), shared_tokenizer()
    pipe = MetaSpiderPipeline(model, tokenizer, MetaSpiderConfig(model_name="qwen2"))
    doubter = pipe.attach(pipe.new_doubter(signals=PMI, **SMALL))
    ids = chat_ids(tokenizer, PROMPTS[3])
    with pytest.raises(ValueError, match="reference distribution"):  # not trained: no p_ref yet
        pipe.read_ids(ids, max_draft_tokens=6)
    log_reference = pipe.reference_logprobs([chat_ids(tokenizer, p)[0] for p in PROMPTS[:8]]).astype(np.float32)
    doubter.set_log_reference(torch.from_numpy(log_reference))
    pass1 = pipe.read_ids(ids, max_draft_tokens=6)
    logits = _direct_logits(model, ids)
    prompt_lp = logits[:-1].log_softmax(-1).gather(1, ids[0, 1:].unsqueeze(1))[:, 0].numpy()
    pmi = prompt_lp - log_reference.astype(np.float64)[ids[0, 1:].numpy()]
    assert float(pass1.signals[0, 1]) == pytest.approx(float(np.sort(pmi)[-4:].mean()), abs=1e-4)

    # The checkpoint carries p_ref: same signals and P(correct) after a round trip.
    loaded = Doubter.from_checkpoint(doubter.save_checkpoint(tmp_path / "ckpt"))
    torch.testing.assert_close(loaded.log_reference, torch.from_numpy(log_reference), rtol=0, atol=0)
    other = MetaSpiderPipeline(model, tokenizer, MetaSpiderConfig(model_name="qwen2"))
    other.attach(loaded)
    again = other.read_ids(ids, max_draft_tokens=6)
    torch.testing.assert_close(again.signals, pass1.signals, rtol=0, atol=0)
    torch.testing.assert_close(again.encoded.p_correct_logit, pass1.encoded.p_correct_logit)
    assert pipe.new_doubter(signals=["draft_logprob_mean"], **SMALL).log_reference is None  # reads no PMI


def test_a_reference_over_another_vocabulary_is_refused(tmp_path) -> None:
    model, tokenizer = shared_model("qwen2"), shared_tokenizer()
    pipe = MetaSpiderPipeline(model, tokenizer, MetaSpiderConfig(model_name="qwen2"))
    doubter = pipe.new_doubter(signals=PMI, **SMALL)
    doubter.set_log_reference(torch.full((pipe.vocab_size + 7,), -6.0))
    path = doubter.save_checkpoint(tmp_path / "wide")
    with pytest.raises(ReferenceVocabularyError, match=rf"covers {pipe.vocab_size + 7} tokens.*vocabulary of "
                       rf"{pipe.vocab_size}.*metaloom collect --pmi-signals"):
        MetaSpiderPipeline(model, tokenizer, MetaSpiderConfig(model_name="qwen2")).attach(path)
    # a file whose p_ref is not one finite vector
    from safetensors.torch import load_file, save_file

    from meta_spider.wrapper.checkpoint import read_checkpoint_document
    from meta_spider.wrapper.constants import METADATA_CONFIG_KEY

    document, weights = read_checkpoint_document(path)
    tensors = load_file(str(weights))
    for bad in (torch.zeros(2, 3), torch.tensor([0.0, float("nan")])):
        save_file({**tensors, "log_reference": bad}, str(tmp_path / "bad.safetensors"),
                  metadata={METADATA_CONFIG_KEY: json.dumps(document)})
        with pytest.raises(CheckpointError, match="bad log_reference"):
            Doubter.from_checkpoint(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="reads no PMI signal"):
        Doubter(DoubterConfig(hidden_size=32, num_layers=6, **SMALL)).set_log_reference(torch.zeros(4))
