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


# ---- the question's subject, found by occlusion -------------------------------------------------

def test_question_words_follow_the_tokenization_of_the_rendered_prompt() -> None:
    from meta_spider.wrapper.signals import question_words, word_spans

    tokenizer = shared_tokenizer()
    question = "Where was  Ada Lovelace born?"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Where was Ada born?"},
                                          {"role": "assistant", "content": "London."},
                                          {"role": "user", "content": question}],
                                         tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    encode = lambda prefix: tokenizer(prefix, add_special_tokens=False)["input_ids"]  # noqa: E731
    words = question_words(encode, text, question)
    assert word_spans(question) == [(0, 5), (6, 9), (11, 14), (15, 23), (24, 29)]
    assert len(words) == 5 and all(words)
    start = text.rindex(question)  # the last turn's, not the first turn's "Where was"
    assert words[0][0] == len(encode(text[:start]))
    # Each word's tokens spell it (with the space before it); together they are the question's tokens.
    for (begin, end), positions in zip(word_spans(question), words):
        assert tokenizer.decode([ids[k] for k in positions]).strip() == question[begin:end]
    assert [k for word in words for k in word] == list(range(words[0][0], words[-1][-1] + 1))
    with pytest.raises(ValueError, match="not in the prompt"):
        question_words(encode, text, "Where was Grace Hopper born?")
    assert question_words(encode, text, "  ") == []  # no words: the signal reads 0
    # A long message: its last OCCLUSION_MAX_WORDS words, where its question is.
    from meta_spider.wrapper.signals import OCCLUSION_MAX_WORDS

    long_question = " ".join(["word"] * 40) + " " + question
    long_text = tokenizer.apply_chat_template([{"role": "user", "content": long_question}], tokenize=False,
                                              add_generation_prompt=True)
    long_words = question_words(encode, long_text, long_question)
    long_ids = tokenizer(long_text, add_special_tokens=False)["input_ids"]
    assert len(long_words) == OCCLUSION_MAX_WORDS
    assert tokenizer.decode([long_ids[k] for k in long_words[-1]]).strip() == "born?"
    assert all(k < len(long_ids) for word in long_words for k in word)


def test_the_question_is_looked_for_before_the_template_tail() -> None:
    # "assistant" is also in the generation header the template writes after the user's turn: the words are the
    # user's, on the pipeline's path (pipe.generate, collection, evaluation) as on the backends'.
    from meta_spider.wrapper.signals import question_words

    tokenizer = shared_tokenizer()
    pipe = MetaSpiderPipeline(shared_model("qwen2"), tokenizer, MetaSpiderConfig(model_name="qwen2"))
    tails = pipe.generation_tails()
    assert tails == ("<|im_end|>\n<|im_start|>assistant\n",)  # ChatML: no thinking switch
    text = pipe.render("assistant")
    encode = lambda prefix: tokenizer(prefix, add_special_tokens=False)["input_ids"]  # noqa: E731
    user_start = text.index("user\n") + len("user\n")
    words = pipe.question_words(text, "assistant")
    assert words == [tuple(range(len(encode(text[:user_start])), len(encode(text[:user_start + len("assistant")]))))]
    assert question_words(encode, text, "assistant")[0][0] > len(encode(text[:user_start])) + 1  # no tails: header
    # A template that changes is found again.
    original = tokenizer.chat_template
    try:
        tokenizer.chat_template = original.replace("<|im_start|>assistant", "<|im_start|>model")
        assert pipe.generation_tails() == ("<|im_end|>\n<|im_start|>model\n",)
    finally:
        tokenizer.chat_template = original
    # A tokenizer without a chat template has no tail: a plain string is searched whole.
    bare = MetaSpiderPipeline(shared_model("qwen2"), _without_template(tokenizer), MetaSpiderConfig(model_name="qwen2"))
    plain = "Where was Ada born?"
    assert bare.generation_tails() == ()
    assert bare.question_words(plain, "Ada born?") == question_words(encode, plain, "Ada born?")
    assert len(bare.question_words(plain, "Ada born?")) == 2


def _without_template(tokenizer):
    import copy

    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    return bare


def test_last_user_text_is_the_question_the_occlusion_reads() -> None:
    from meta_spider.wrapper.signals import last_user_text

    assert last_user_text("Who?") == "Who?"
    messages = [{"role": "user", "content": "First?"}, {"role": "assistant", "content": "A."},
                {"role": "user", "content": [{"type": "text", "text": "Where is "}, {"type": "image"},
                                             {"type": "text", "text": "Ulm?"}]},
                {"role": "tool", "content": "not found"}]
    assert last_user_text(messages) == "Where is Ulm?"
    # parts are joined as a template renders them and as the server reads them: nothing between
    assert last_user_text([{"role": "user", "content": [{"type": "text", "text": "Ulm"},
                                                          {"type": "text", "text": "?"}]}]) == "Ulm?"
    with pytest.raises(ValueError, match="no user message"):
        last_user_text([{"role": "system", "content": "Be brief."}])


def test_occluded_name_logprob_by_hand() -> None:
    from meta_spider.wrapper.signals import Occlusion, without_word

    # prompt positions 1..8; the words: (2,), (3, 4, 5) the name, (6,), (7, 8)
    prompt = np.array([-0.1, -0.5, -4.0, -0.7, -0.3, -2.0, -0.2, -0.9])
    draft = np.array([-0.2, -0.3])  # sums to -0.5
    words = ((2,), (3, 4, 5), (6,), (7, 8))
    # without the name the draft falls most (drop 6.5), then without word 4 (drop 2.5)
    occlusion = Occlusion(words, (-1.0, -7.0, -0.6, -3.0))
    # tokens 3, 4, 5, 7, 8 in prompt order; after the first: -0.7 - 0.3 - 0.2 - 0.9
    got = signal_vector(["occluded_name_logprob", "draft_logprob_mean"], prompt, draft, occlusion=occlusion)
    np.testing.assert_allclose(got, [-2.1, -0.25])
    # a tie takes the earlier words (2 and 3-5: after token 2, -4.0 - 0.7 - 0.3); a question of one
    # one-token word reads nothing after it
    tie = Occlusion(words, (-3.0, -3.0, -3.0, -3.0))
    np.testing.assert_allclose(signal_vector(["occluded_name_logprob"], prompt, draft, occlusion=tie), [-5.0])
    one = Occlusion(((6,),), (-4.0,))
    assert signal_vector(["occluded_name_logprob"], prompt, draft, occlusion=one).tolist() == [0.0]
    assert signal_vector(["occluded_name_logprob"], prompt, draft, occlusion=Occlusion((), ())).tolist() == [0.0]
    assert without_word([10, 11, 12, 13, 14], (2, 3)) == [10, 11, 14]
    with pytest.raises(ValueError, match="give the backend the user's question"):
        signal_vector(["occluded_name_logprob"], prompt, draft)
    with pytest.raises(ValueError, match="needs a draft"):
        signal_vector(["occluded_name_logprob"], prompt, None, occlusion=occlusion)
    with pytest.raises(ValueError, match="one draft log-prob per word"):
        Occlusion(words, (-1.0,))
    with pytest.raises(ValueError, match="past the prompt"):
        signal_vector(["occluded_name_logprob"], prompt[:4], draft, occlusion=occlusion)


def test_pass1_occlusion_reads_the_draft_without_each_word() -> None:
    from meta_spider.wrapper.signals import OCCLUDED_WORDS, OCCLUSION_SIGNALS, without_word

    model, tokenizer = shared_model("qwen2"), shared_tokenizer()
    pipe = MetaSpiderPipeline(model, tokenizer, MetaSpiderConfig(model_name="qwen2"))
    doubter = pipe.attach(pipe.new_doubter(signals=["draft_logprob_mean", *OCCLUSION_SIGNALS], **SMALL))
    assert doubter.config.drafts  # the occlusion reads the draft
    question = PROMPTS[4]
    text = pipe.render(question)
    ids = pipe.encode(text)
    words = pipe.question_words(text, question)
    pass1 = pipe.read_ids(ids, max_draft_tokens=8, words=words)
    draft = pass1.draft_ids

    def draft_logprobs(prompt: list[int]) -> torch.Tensor:
        """Teacher-forced, unbatched: log p(draft token | prompt, earlier draft tokens)."""
        with torch.no_grad():
            rows = model(torch.tensor([prompt + draft])).logits[0, len(prompt) - 1:-1].double().log_softmax(-1)
        return rows[torch.arange(len(draft)), torch.tensor(draft)]

    prompt = ids[0].tolist()
    with torch.no_grad():
        prompt_lp = model(ids).logits[0, :-1].double().log_softmax(-1)[torch.arange(len(prompt) - 1),
                                                                       torch.tensor(prompt[1:])]
    drops = [float(draft_logprobs(prompt).sum() - draft_logprobs(without_word(prompt, w)).sum()) for w in words]
    leaned = sorted(sorted(range(len(words)), key=lambda i: -drops[i])[:OCCLUDED_WORDS])
    positions = sorted(k for i in leaned for k in words[i])
    expected = [float(draft_logprobs(prompt).mean()), float(prompt_lp[[k - 1 for k in positions[1:]]].sum())]
    np.testing.assert_allclose(pass1.signals[0].numpy(), expected, rtol=1e-4, atol=1e-4)
    # The batched forwards give each word's draft log-prob as the unbatched forward does.
    sums = pipe.decoder.occluded_draft_logprobs([prompt], [draft], [words], pad_token_id=pipe.pad_token_id)[0]
    np.testing.assert_allclose(sums, [float(draft_logprobs(without_word(prompt, w)).sum()) for w in words],
                               rtol=1e-5, atol=1e-4)
    # generate() finds the question's words itself; ids without them are refused with the fix named.
    result = pipe.generate(question, max_new_tokens=8, return_result=True)
    assert result.p_correct == pytest.approx(pass1.p_correct, abs=1e-6)
    with pytest.raises(ValueError, match=r"needs the user's question: give its words' prompt positions"):
        pipe.read_ids(ids, max_draft_tokens=8)


@pytest.mark.parametrize("family", ["qwen2", "falcon_h1"])
def test_a_long_prompt_shares_the_prefix_before_the_question(family: str) -> None:
    # A conversation before the question: its KV cache is prefilled once and cut back after each word (a hybrid
    # base whose recurrent layers cannot be cut back runs whole rows instead), with the values of whole rows.
    from meta_spider.wrapper.passes import SHARED_PREFIX_TOKENS
    from meta_spider.wrapper.signals import OCCLUSION_SIGNALS

    model, tokenizer = shared_model(family), shared_tokenizer()
    pipe = MetaSpiderPipeline(model, tokenizer, MetaSpiderConfig(model_name=family))
    doubter = pipe.attach(pipe.new_doubter(signals=list(OCCLUSION_SIGNALS), **SMALL))
    question = PROMPTS[4]
    messages = [{"role": "user", "content": " ".join(PROMPTS[:4])}, {"role": "assistant", "content": PROMPTS[5]},
                {"role": "user", "content": question}]
    text = pipe.render(messages)
    ids = pipe.encode(text)[0].tolist()
    words = pipe.question_words(text, question)
    assert words[0][0] >= SHARED_PREFIX_TOKENS
    draft = pipe.read_ids(torch.tensor([ids]), max_draft_tokens=6, words=words).draft_ids
    decoder = pipe.decoder
    shared = decoder.occluded_draft_logprobs([ids], [draft], [words], pad_token_id=pipe.pad_token_id)[0]
    whole = decoder.occluded_draft_logprobs([ids, ids], [draft, draft], [words, words],
                                            pad_token_id=pipe.pad_token_id)[0]  # two prompts: whole rows
    np.testing.assert_allclose(shared, whole, rtol=1e-5, atol=1e-4)
    # Pass 1's own cache is untouched by the occlusion forwards: pass 2 with the injection off is the draft.
    doubter.set_injection_gates(0.0)
    result = pipe.generate(messages, max_new_tokens=6, return_result=True)
    assert result.token_ids == draft and result.reused_prompt_cache
