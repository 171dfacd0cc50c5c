"""Pass 1 for activation datasets (``pipe.collect_states_ids``): one prompt is
inference's own pass 1, several are one left-padded batch that agrees with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from wrapper_helpers import PROMPTS, chat_ids, shared_model, shared_tokenizer

from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline
from meta_spider.wrapper.batched import left_pad
from meta_spider.wrapper.signals import SIGNALS, token_logprobs

DRAFT = 12


@pytest.fixture(scope="module")
def pipe() -> MetaSpiderPipeline:
    """The tiny Qwen2 with a second stop token that some of its greedy
    answers reach early, so a batch's rows stop at different steps."""
    pipe = MetaSpiderPipeline(shared_model("qwen2"), shared_tokenizer(), MetaSpiderConfig(model_name="qwen2"))
    answers = [list(pipe.stream_ids(chat_ids(pipe.tokenizer, p), max_new_tokens=DRAFT)) for p in PROMPTS[:5]]
    inside = {t for answer in answers for t in answer[1:-1]}
    stop = min(t for t in inside if 1 <= sum(t in answer[:-1] for answer in answers) <= 3)
    pipe.decoder.eos_token_ids = pipe.decoder.eos_token_ids | {stop}
    return pipe


def test_left_pad_puts_every_prompt_at_the_right_edge() -> None:
    input_ids, mask = left_pad([torch.tensor([5, 6, 7]), torch.tensor([9])], pad_token_id=0)
    assert input_ids.tolist() == [[5, 6, 7], [0, 0, 9]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_one_prompt_is_inference_pass1(pipe: MetaSpiderPipeline) -> None:
    """The read a Doubter with every signal sees at inference, bit for bit,
    plus the two baselines computed from the same logits."""
    ids = chat_ids(pipe.tokenizer, PROMPTS[0])
    layers = pipe.config.resolve(pipe.num_layers)[0]
    (read,) = pipe.collect_states_ids([ids[0]], max_draft_tokens=DRAFT)
    doubter = pipe.attach(pipe.new_doubter(signals=list(SIGNALS), read_position="draft", encoder_dim=16,
                                           ca_bottleneck_dim=16, ca_num_heads=2))
    try:
        pass1 = pipe.read_ids(ids, max_draft_tokens=DRAFT)
    finally:
        pipe.detach(doubter)
    assert read.cache is None and read.draft_ids == pass1.draft_ids and 0 < len(read.draft_ids) <= DRAFT
    assert read.prompt_states.shape == (1, len(layers), pipe.hidden_size)
    assert torch.equal(read.draft_states, pass1.layer_states)
    # The baselines: the first draft token's distribution and the draft's own log-probs.
    logits = pipe.model(ids).logits[0, -1].float()
    assert read.first_token_max_prob == pytest.approx(float(torch.softmax(logits, -1).max()), abs=1e-6)
    assert read.draft_logprob_mean == float(read.draft_logprobs.mean())
    prompt = token_logprobs(pipe.model(ids).logits[0, :-1].float().detach().numpy(), ids[0, 1:].tolist())
    np.testing.assert_allclose(read.prompt_logprobs, prompt, atol=1e-5)


def test_a_batch_agrees_with_one_prompt_at_a_time(pipe: MetaSpiderPipeline) -> None:
    rows = [chat_ids(pipe.tokenizer, prompt)[0] for prompt in PROMPTS[:5]]
    assert len({len(row) for row in rows}) > 1  # real left padding
    batched = pipe.collect_states_ids(rows, max_draft_tokens=DRAFT)
    singles = [pipe.collect_states_ids([row], max_draft_tokens=DRAFT)[0] for row in rows]
    assert len({len(single.draft_ids) for single in singles}) > 1  # rows stop at different steps
    for one, many in zip(singles, batched):
        assert many.draft_ids == one.draft_ids and many.cache is None
        for name in ("prompt_states", "draft_states"):
            torch.testing.assert_close(getattr(many, name), getattr(one, name), atol=1e-5, rtol=1e-5)
        for name in ("prompt_logprobs", "draft_logprobs"):
            np.testing.assert_allclose(getattr(many, name), getattr(one, name), atol=1e-5)
        assert many.first_token_max_prob == pytest.approx(one.first_token_max_prob, abs=1e-5)
        assert many.draft_logprob_mean == pytest.approx(one.draft_logprob_mean, abs=1e-5)


def test_a_read_without_prompts_or_draft_is_refused(pipe: MetaSpiderPipeline) -> None:
    row = chat_ids(pipe.tokenizer, PROMPTS[0])[0]
    with pytest.raises(ValueError, match="at least one prompt"):
        pipe.collect_states_ids([])
    for rows in ([row], [row, row]):
        with pytest.raises(ValueError, match="max_draft_tokens must be >= 1"):
            pipe.collect_states_ids(rows, max_draft_tokens=0)


SMALL = {"encoder_dim": 16, "ca_bottleneck_dim": 16, "ca_num_heads": 2}


OPEN = 0.05
"""Injection gates at which this tiny base's answers change and differ from
row to row with each row's own cognitive tokens (at 0.9 every row repeats
one token)."""


def seeded_doubter(pipe: MetaSpiderPipeline, **options: object):  # noqa: ANN201 - a Doubter
    """A new Doubter whose initial weights do not depend on which tests ran before."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return pipe.new_doubter(**options, **SMALL)


@pytest.mark.parametrize("signals", [["draft_logprob_mean", "occluded_name_logprob"], []],
                         ids=["draft-and-occlusion", "states-only"])
def test_answer_batch_is_answer_ids_with_pass_1_read_together(pipe: MetaSpiderPipeline, signals: list[str]) -> None:
    """Under an answer gate that refuses some prompts and answers others,
    each prompt of a batch gets what it gets alone: the same decision, text
    and draft, and P(correct) up to float rounding. The injection is open
    (:data:`OPEN`), so each answered row's pass 2 depends on its own
    cognitive tokens."""
    from meta_spider.wrapper.gates import AnswerGate

    doubter = pipe.attach(seeded_doubter(pipe, signals=signals, ca_gate_init=OPEN))
    try:
        texts = [pipe.render(prompt) for prompt in PROMPTS[:5]]
        prompts = [pipe.encode(text) for text in texts]
        words = [pipe.question_words(text, prompt) for text, prompt in zip(texts, PROMPTS[:5])] if signals else None
        alone = [pipe.answer_ids(ids, max_new_tokens=DRAFT, words=None if words is None else words[i])
                 for i, ids in enumerate(prompts)]
        scores = sorted(result.p_correct for result in alone)
        pipe.answer_gate = AnswerGate((scores[1] + scores[2]) / 2)  # two refused, three answered
        alone = [pipe.answer_ids(ids, max_new_tokens=DRAFT, words=None if words is None else words[i])
                 for i, ids in enumerate(prompts)]
        together = pipe.answer_batch(prompts, max_new_tokens=DRAFT, words=words)
    finally:
        pipe.answer_gate = None
        pipe.detach(doubter)
    assert sorted(result.decision for result in alone) == ["gate_refused"] * 2 + ["pass2"] * 3
    plain = [list(pipe.stream_ids(ids, max_new_tokens=DRAFT, inject=False)) for ids in prompts]
    assert any(result.token_ids != base for result, base in zip(alone, plain) if result.decision == "pass2")
    for one, many in zip(alone, together):
        assert (many.decision, many.text, many.token_ids, many.draft_text) == \
            (one.decision, one.text, one.token_ids, one.draft_text)
        assert many.p_correct == pytest.approx(one.p_correct, abs=1e-5)
    assert (alone[0].draft_text is None) == (not signals)  # a Doubter that reads no draft signal drafts nothing


def test_answer_batch_is_refused_without_what_it_needs(pipe: MetaSpiderPipeline) -> None:
    prompts = [pipe.encode(pipe.render(prompt)) for prompt in PROMPTS[:2]]
    doubter = pipe.attach(pipe.new_doubter(signals=["occluded_name_logprob"], **SMALL))
    try:
        with pytest.raises(ValueError, match="at least one prompt"):
            pipe.answer_batch([])
        with pytest.raises(ValueError, match="one words entry per prompt: 2 prompts, 1 words"):
            pipe.answer_batch(prompts, words=[[(3,)]])
        with pytest.raises(ValueError, match="needs each prompt's question words"):
            pipe.answer_batch(prompts)
    finally:
        pipe.detach(doubter)


@pytest.mark.parametrize("inject_positions", ["generation", "all"])
def test_a_batched_pass_2_decodes_each_row_as_it_decodes_alone(pipe: MetaSpiderPipeline, inject_positions: str) -> None:
    """Each row with its own cognitive tokens (from its own pass 1), rows of
    different lengths stopping at different steps: the tokens and the finish
    reason of ``stream_injected`` on that row alone."""
    from meta_spider.wrapper.batched import decode_injected
    from meta_spider.wrapper.passes import DecodeStats

    doubter = pipe.attach(seeded_doubter(pipe, ca_gate_init=OPEN, inject_positions=inject_positions))
    try:
        rows = [chat_ids(pipe.tokenizer, prompt)[0] for prompt in PROMPTS[:5]]
        tokens = torch.cat([pipe.read_ids(row.unsqueeze(0), max_draft_tokens=DRAFT).encoded.cognitive_tokens
                            for row in rows])

        def decode_alone() -> list[tuple[list[int], str]]:
            out = []
            for row, own in zip(rows, tokens):
                stats = DecodeStats()
                ids = list(pipe.decoder.stream_injected(doubter, row.unsqueeze(0), own.unsqueeze(0), DRAFT,
                                                        inject_positions=inject_positions, stats=stats))
                out.append((ids, stats.finish_reason))
            return out

        # A stop token inside the first row's injected answer, the one fewest other rows reach: the rows then
        # stop at different steps.
        answers = [ids for ids, _ in decode_alone()]
        stop = min(answers[0][1:-1], key=lambda t: (sum(t in ids for ids in answers), t))
        eos = pipe.decoder.eos_token_ids
        pipe.decoder.eos_token_ids = eos | {stop}
        try:
            alone = decode_alone()
            together = decode_injected(pipe.decoder, doubter, rows, tokens, max_new_tokens=DRAFT,
                                       pad_token_id=pipe.pad_token_id, inject_positions=inject_positions)
            swapped = decode_injected(pipe.decoder, doubter, rows, tokens.flip(0), max_new_tokens=DRAFT,
                                      pad_token_id=pipe.pad_token_id, inject_positions=inject_positions)
        finally:
            pipe.decoder.eos_token_ids = eos
        with pytest.raises(ValueError, match="one set of cognitive tokens per prompt: 5 prompts"):
            decode_injected(pipe.decoder, doubter, rows, tokens[:4], max_new_tokens=DRAFT, pad_token_id=0)
        with pytest.raises(ValueError, match="two tokens or more"):
            decode_injected(pipe.decoder, doubter, [rows[0], rows[1][:1]], tokens[:2], max_new_tokens=DRAFT,
                            pad_token_id=0)
    finally:
        pipe.detach(doubter)
    assert together == alone
    assert swapped != together  # each row decodes with its own cognitive tokens
    assert len({len(ids) for ids, _ in alone}) > 1 and {reason for _, reason in alone} == {"eos", "length"}


def test_generate_batch_answers_chat_prompts_as_generate_does(pipe: MetaSpiderPipeline) -> None:
    """Chat prompts rendered, their question words found (the occlusion
    signal needs them) and answered as one batch: what ``generate`` says to
    each; with no Doubter attached, the base's own greedy answers."""
    prompts = [PROMPTS[0], [{"role": "user", "content": PROMPTS[1]}], PROMPTS[2], PROMPTS[3]]
    plain = pipe.generate_batch(prompts, max_new_tokens=DRAFT)
    assert plain == [pipe.generate(prompt, max_new_tokens=DRAFT) for prompt in prompts]
    doubter = pipe.attach(seeded_doubter(pipe, signals=["occluded_name_logprob"], ca_gate_init=OPEN))
    try:
        alone = [pipe.generate(prompt, max_new_tokens=DRAFT, return_result=True) for prompt in prompts]
        together = pipe.generate_batch(prompts, max_new_tokens=DRAFT, return_result=True)
        texts = pipe.generate_batch(prompts, max_new_tokens=DRAFT)
    finally:
        pipe.detach(doubter)
    assert [r.text for r in together] == [r.text for r in alone] == texts
    assert [r.p_correct for r in together] == pytest.approx([r.p_correct for r in alone], abs=1e-5)
    assert [r.text for r in alone] != plain  # the injection is open: pass 2 is not the base
