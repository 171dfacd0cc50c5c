"""ActivationDatasetCollector and the activation-dataset format.

A tiny Qwen2 saved to a temporary folder (loaded with
``MetaSpiderPipeline.from_pretrained``, as a user would) answers a small
JSONL dataset; half its reference answers are the base's own greedy
answers, so the dataset's ``check_fn`` marks a real mix of right and wrong
(both from ``collector_fixtures``; resuming is tested in
``test_loom_collector_resume``).
"""

from __future__ import annotations

import gc
import json
import random
import struct
from pathlib import Path

import pytest
import torch
from collector_fixtures import (  # noqa: F401 - model_dir, pipe, dataset_dir, dataset, reference are fixtures
    MAX_NEW_TOKENS, dataset, dataset_dir, folder_bytes, model_dir, pipe, reference,
)
from meta_spider.loom.collect.activations import (
    COLLECTION_FILE, EXAMPLE_FIELDS, PAD_ID, SHARD_TENSORS, ActivationDataset, ActivationFormatError, shard_bytes,
)
from meta_spider.loom.collect.collector import ActivationDatasetCollector, render_qa_prompt
from meta_spider.loom.datasets import JsonlDataset
from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline
from wrapper_helpers import PROMPTS, make_tiny_model, shared_tokenizer

CONTRACT_KEYS = ["format_version", "model", "target_layers", "read_positions", "max_new_tokens", "dataset",
                 "num_examples", "shards", "complete"]


# ---------------------------------------------------------------- format


def test_format_round_trip(reference: ActivationDataset, dataset: JsonlDataset, tmp_path: Path) -> None:
    info = json.loads((reference.folder / COLLECTION_FILE).read_text())
    assert list(info)[: len(CONTRACT_KEYS)] == CONTRACT_KEYS
    assert info["model"] == {"model_id": reference.model["model_id"], "hidden_size": 32, "num_layers": 6}
    assert info["target_layers"] == [2, 4, 5] and info["read_positions"] == ["prompt", "draft"]
    assert info["num_examples"] == 14 and info["complete"] is True
    assert info["shards"] == [f"shard-0000{i}.safetensors" for i in range(4)]
    assert info["dataset"]["name"] == "jsonl" and info["dataset"]["sizes"]["train"] == 8

    n = len(reference)
    assert n == 14 and [e["index"] for e in reference.examples] == list(range(n))
    assert all(list(e) == list(EXAMPLE_FIELDS) for e in reference.examples)
    assert reference.split_indices("train") == list(range(8))
    assert reference.split_indices("val") == [8, 9, 10]
    assert reference.split_indices("test") == [11, 12, 13]

    shapes = {"states_prompt": (n, 3, 32), "states_draft": (n, 3, 32), "pass1_correct": (n,),
              "first_token_max_prob": (n,), "answer_mean_logprob": (n,), "prompt_lengths": (n,),
              "answer_lengths": (n,), "signals": (n, 7)}
    for name in SHARD_TENSORS:
        tensor = reference.tensor(name)
        if name in shapes:
            assert tuple(tensor.shape) == shapes[name], name
    assert reference.tensor("pass1_correct").dtype == torch.uint8
    assert reference.tensor("prompt_ids").dtype == torch.int64
    assert torch.equal(reference.states("prompt"), reference.tensor("states_prompt"))

    # Shard metadata names the index range of each shard.
    from safetensors import safe_open

    for number, name in enumerate(info["shards"]):
        with safe_open(str(reference.folder / name), framework="pt") as handle:
            assert handle.metadata() == {"index_start": str(4 * number), "index_end": str(min(4 * number + 4, n))}

    # Labels agree between the JSONL and the tensor, and there is a real mix.
    labels = [e["pass1_correct"] for e in reference.examples]
    assert reference.tensor("pass1_correct").tolist() == [int(x) for x in labels]
    assert 0 < sum(labels) < n
    for i, example in enumerate(reference.examples):
        source = next(x for x in dataset.split(example["split"]) if x.id == example["id"])
        assert labels[i] == dataset.check_fn(example["answer_text"], source)
        assert reference.answer_ids(i)[: example["answer_token_count"]] == reference.answer_ids(i)
        assert len(reference.answer_ids(i)) == example["answer_token_count"]
        # Padding: left-aligned rows padded with -1.
        row = reference.tensor("prompt_ids")[i]
        assert (row[int(reference.tensor("prompt_lengths")[i]):] == PAD_ID).all()

    copy = ActivationDataset.load(reference.save(tmp_path / "copy"))
    assert copy.examples == reference.examples
    for name in SHARD_TENSORS:
        assert torch.equal(copy.tensor(name), reference.tensor(name)), name


def test_shard_writer_is_deterministic_and_readable(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    tensors = {"b": torch.arange(6, dtype=torch.float32).reshape(2, 3), "a": torch.tensor([1, 0], dtype=torch.uint8),
               "c": torch.tensor([[-1, 5]], dtype=torch.int64)}
    first = shard_bytes(tensors, {"index_start": "0", "index_end": "2", "zz": "x"})
    second = shard_bytes(dict(reversed(list(tensors.items()))), {"zz": "x", "index_end": "2", "index_start": "0"})
    assert first == second
    (header_size,) = struct.unpack("<Q", first[:8])
    assert header_size % 8 == 0
    (tmp_path / "s.safetensors").write_bytes(first)
    loaded = load_file(str(tmp_path / "s.safetensors"))
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_prompts_and_ids_are_the_rendered_chat_prompts(pipe: MetaSpiderPipeline, reference: ActivationDataset) -> None:
    for i, example in enumerate(reference.examples):
        assert example["prompt_text"] == pipe.render(example["question"])
        assert reference.prompt_ids(i) == pipe.encode(example["prompt_text"])[0].tolist()
        answer = reference.answer_ids(i)
        assert example["answer_text"] == pipe.decode(answer)
        assert answer == list(pipe.stream_ids(pipe.encode(example["prompt_text"]), max_new_tokens=MAX_NEW_TOKENS))


def test_log_probs_match_a_teacher_forced_forward(pipe: MetaSpiderPipeline, reference: ActivationDataset) -> None:
    """The baselines' scores, checked against one full forward of prompt +
    answer (a different computation from the cached decoding)."""
    for i in range(len(reference)):
        prompt, answer = reference.prompt_ids(i), reference.answer_ids(i)
        with torch.no_grad():
            logits = pipe.model(torch.tensor([prompt + answer])).logits[0].float()
        log_probs = torch.log_softmax(logits[len(prompt) - 1: len(prompt) - 1 + len(answer)], dim=-1)
        expected_mean = log_probs.gather(1, torch.tensor(answer).unsqueeze(1)).mean()
        assert float(reference.tensor("answer_mean_logprob")[i]) == pytest.approx(float(expected_mean), abs=1e-4)
        assert float(reference.tensor("first_token_max_prob")[i]) == pytest.approx(float(log_probs[0].exp().max()), abs=1e-5)


# ---------------------------------------------------------------- equality with the pipeline's reads


@pytest.mark.parametrize("read_position", ["prompt", "draft"])
def test_states_equal_the_pipelines_pass1(pipe: MetaSpiderPipeline, reference: ActivationDataset, read_position: str) -> None:
    """What the trainer reads from disk is bit for bit what inference's pass
    1 reads, at both read positions."""
    doubter = pipe.new_doubter(read_position=read_position, encoder_dim=16, encoder_num_heads=2,
                               ca_bottleneck_dim=16, ca_num_heads=2)
    pipe.attach(doubter, name="probe")
    try:
        for i, example in enumerate(reference.examples):
            ids = pipe.encode(example["prompt_text"])
            pass1 = pipe.read_ids(ids, max_draft_tokens=MAX_NEW_TOKENS)
            assert torch.equal(pass1.layer_states[0], reference.states(read_position)[i])
            if read_position == "draft":
                assert pass1.draft_ids == reference.answer_ids(i)
            direct = pipe.collect_states(example["question"], max_draft_tokens=MAX_NEW_TOKENS)
            assert torch.equal(direct.prompt_states[0], reference.states("prompt")[i])
            assert torch.equal(direct.draft_states[0], reference.states("draft")[i])
    finally:
        pipe.detach("probe")


def test_shard_size_does_not_change_the_data(pipe: MetaSpiderPipeline, dataset: JsonlDataset,
                                             reference: ActivationDataset, tmp_path: Path) -> None:
    collector = ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, shard_size=6, show_progress=False)
    resharded = collector.collect_dataset(dataset, ["train", "val", "test"], output_dir=tmp_path / "six")
    assert len(resharded.info["shards"]) == 3
    assert resharded.examples == reference.examples
    for name in SHARD_TENSORS:
        assert torch.equal(resharded.tensor(name), reference.tensor(name)), name
    single = ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, shard_size=4, show_progress=False)
    again = single.collect_dataset(dataset, ["train", "validation", "test"], output_dir=tmp_path / "four")
    assert folder_bytes(again.folder) == folder_bytes(reference.folder)


def test_batched_reads_equal_single_reads(pipe: MetaSpiderPipeline, dataset: JsonlDataset,
                                          reference: ActivationDataset, tmp_path: Path) -> None:
    """Left-padded batches whose rows stop at different steps give the same
    answers, labels and ids as batch 1, and states equal to float rounding."""
    lengths = reference.tensor("answer_lengths").tolist()
    assert len(set(lengths)) > 1 and min(lengths) < MAX_NEW_TOKENS  # rows really stop at different steps
    collector = ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, batch_size=3, shard_size=6,
                                           show_progress=False)
    batched = collector.collect_dataset(dataset, ["train", "validation", "test"], output_dir=tmp_path / "b")
    assert batched.examples == reference.examples
    for name in ("pass1_correct", "prompt_ids", "prompt_lengths", "answer_ids", "answer_lengths"):
        assert torch.equal(batched.tensor(name), reference.tensor(name)), name
    for name in ("states_prompt", "states_draft", "first_token_max_prob", "answer_mean_logprob", "signals"):
        torch.testing.assert_close(batched.tensor(name), reference.tensor(name), atol=1e-4, rtol=1e-5)


def test_signals_equal_the_pipelines_pass1(pipe: MetaSpiderPipeline, reference: ActivationDataset) -> None:
    """The pass-1 signals a Doubter is trained on are the ones inference
    computes; the draft's mean log-prob is the mean-log-prob baseline's."""
    from meta_spider.wrapper.signals import SIGNALS

    assert reference.info["signals"] == list(SIGNALS)
    doubter = pipe.new_doubter(signals=list(SIGNALS), encoder_dim=16, encoder_num_heads=2, ca_bottleneck_dim=16,
                               ca_num_heads=2)
    pipe.attach(doubter, name="signals")
    try:
        for i, example in enumerate(reference.examples):
            pass1 = pipe.read_ids(pipe.encode(example["prompt_text"]), max_draft_tokens=MAX_NEW_TOKENS)
            torch.testing.assert_close(pass1.signals[0], reference.signals(SIGNALS)[i], atol=1e-5, rtol=1e-6)
    finally:
        pipe.detach("signals")
    torch.testing.assert_close(reference.signals(["draft_logprob_mean"])[:, 0], reference.tensor("answer_mean_logprob"))
    assert reference.signals(["draft_logprob_min", "prompt_logprob_sum"]).shape == (len(reference), 2)


def test_a_collection_serves_the_signals_it_recorded(reference: ActivationDataset, tmp_path: Path) -> None:
    """A collection from before the rarest-token signals still serves the
    four it recorded, and names the ones it lacks."""
    from meta_spider.loom.collect.activations import ActivationFormatError

    older = ActivationDataset.load(reference.save(tmp_path / "older"))
    four = ["prompt_logprob_sum", "prompt_logprob_mean", "draft_logprob_mean", "draft_logprob_min"]
    older.info["signals"] = four  # its signals tensor keeps seven columns; the first four are those names
    assert older.recorded_signals == tuple(four)
    torch.testing.assert_close(older.signals(four[::-1]), reference.signals(four[::-1]))
    with pytest.raises(ActivationFormatError, match="not \\['prompt_logprob_min'\\]"):
        older.signals(["prompt_logprob_sum", "prompt_logprob_min"])
    older.info["signals"] = []
    with pytest.raises(ActivationFormatError, match="before pass-1 signals were recorded"):
        older.signals(["prompt_logprob_sum"])


@pytest.mark.parametrize("family", ["gemma2", "gpt2", "llava"])
def test_batched_reads_across_families(family: str) -> None:
    """Sliding-window layers (Gemma 2, window shorter than the prompts),
    learned positions (GPT-2) and a multimodal wrapper (Llava) batch too."""
    tokenizer = shared_tokenizer()
    family_pipe = MetaSpiderPipeline(make_tiny_model(family, tokenizer), tokenizer, MetaSpiderConfig())
    collector = ActivationDatasetCollector(family_pipe, max_new_tokens=MAX_NEW_TOKENS, show_progress=False)
    texts = [family_pipe.render(p) for p in PROMPTS[:6]]
    for single, batched in zip([collector.read_example(t) for t in texts], collector.read_batch(texts)):
        assert batched.answer_ids == single.answer_ids and batched.prompt_ids == single.prompt_ids
        torch.testing.assert_close(batched.states_prompt, single.states_prompt, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batched.states_draft, single.states_draft, atol=1e-5, rtol=1e-5)


def test_plain_question_lists_and_save(pipe: MetaSpiderPipeline, tmp_path: Path) -> None:
    questions = list(PROMPTS[:3])
    own = pipe.generate(questions[0], max_new_tokens=MAX_NEW_TOKENS)
    collector = ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, show_progress=False)
    collected = collector.collect(questions, [own, ["Paris", "Rome"], "four"])
    assert [e["ground_truths"] for e in collected.examples] == [[own], ["Paris", "Rome"], ["four"]]
    assert collected.examples[0]["pass1_correct"] is True
    assert collected.dataset["name"] == "questions" and collected.splits == ["all"]
    saved = ActivationDataset.load(collector.save(tmp_path / "kept"))
    del collector
    gc.collect()  # the temporary folder outlives the collector while the dataset is in use
    assert torch.equal(saved.states("draft"), collected.states("draft"))
    judged = ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, show_progress=False,
                                        check_example=lambda answer, example: example.id == "q1")
    assert [e["pass1_correct"] for e in judged.collect(questions, ["a", "b", "c"]).examples] == [False, True, False]
    # The published form: two strings, right when one ground truth is accepted.
    seen: list[tuple[str, str]] = []

    def by_truth(prediction: str, truth: str) -> bool:
        seen.append((prediction, truth))
        return truth == "Rome"

    strings = ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, show_progress=False,
                                         check_correctness=by_truth)
    collected = strings.collect(questions, ["a", ["Paris", "Rome"], "c"])
    assert [e["pass1_correct"] for e in collected.examples] == [False, True, False]
    assert {truth for _, truth in seen} == {"a", "Paris", "Rome", "c"}
    assert all(isinstance(prediction, str) for prediction, _ in seen)
    with pytest.raises(ValueError, match="not both"):
        ActivationDatasetCollector(pipe, check_correctness=by_truth, check_example=lambda a, e: True)


def test_template_switches_reach_the_prompt(pipe: MetaSpiderPipeline, tmp_path: Path) -> None:
    """A multiple-choice dataset with --mcq-direct renders with thinking off."""
    (tmp_path / "mcq.jsonl").write_text(json.dumps(
        {"id": "m1", "question": "Which is a colour?", "choices": ["red", "dog"], "answer": 0}) + "\n")
    mcq = JsonlDataset.from_options(train=str(tmp_path / "mcq.jsonl"), mcq_direct=True)
    original = pipe.tokenizer.chat_template
    pipe.tokenizer.chat_template = original + "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}"
    try:
        text = render_qa_prompt(pipe, mcq.prompt(mcq.split("train")[0]))
        collected = ActivationDatasetCollector(pipe, max_new_tokens=2, show_progress=False).collect_dataset(mcq)
    finally:
        pipe.tokenizer.chat_template = original
    assert text.endswith("<|im_start|>assistant\n<think></think>") and "A. red" in text
    assert collected.examples[0]["prompt_text"] == text


# ---------------------------------------------------------------- a trained base


@pytest.mark.slow
@pytest.mark.world
def test_collect_on_the_tiny_world(tiny_world, tmp_path: Path) -> None:
    """The embedded world's trained base (built once, cached) on its own QA:
    batched collection, the world's check_fn, a real mix of right and wrong,
    and answers that agree with plain greedy generation."""
    from meta_spider.loom.world.dataset import WorldDataset

    artifacts = tiny_world
    world_pipe = MetaSpiderPipeline.from_pretrained(MetaSpiderConfig(model_name=str(artifacts.model_dir)))
    world = WorldDataset("tiny", 0, artifacts.model_dir)
    collector = ActivationDatasetCollector(world_pipe, max_new_tokens=24, batch_size=8, shard_size=32,
                                           show_progress=False)
    collected = collector.collect_dataset(world, ["train", "test"], max_examples=48, output_dir=tmp_path)
    assert len(collected) == 96 and collected.splits == ["train", "test"]
    correct = collected.tensor("pass1_correct").bool()
    train, test = collected.split_indices("train"), collected.split_indices("test")
    assert 0 < int(correct[train].sum()) < len(train) or 0 < int(correct[test].sum()) < len(test)
    assert float(correct[train].float().mean()) > float(correct[test].float().mean()) - 0.1
    for i in (0, 50):
        example = collected.examples[i]
        assert example["answer_text"] == world_pipe.generate(example["question"], max_new_tokens=24)
