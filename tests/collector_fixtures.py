"""Fixtures of the collector tests: a tiny Qwen2 saved to a folder (its
answers end at different lengths), a small JSONL dataset that it answers
right and wrong, and one uninterrupted reference collection the other
collections are compared with byte for byte. Module-scoped: each test
module that imports them builds its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from meta_spider.loom.collect.activations import ActivationDataset
from meta_spider.loom.collect.collector import ActivationDatasetCollector
from meta_spider.loom.datasets import JsonlDataset
from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline
from wrapper_helpers import PROMPTS, make_tiny_model, save_tiny_model, shared_tokenizer

MAX_NEW_TOKENS = 6


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2 whose generation config adds a second stop token, one
    that its greedy answers reach at different steps, so answers end at
    different lengths (by a stop token or by the length limit)."""
    tokenizer = shared_tokenizer()
    model = make_tiny_model("qwen2", tokenizer)
    probe = MetaSpiderPipeline(model, tokenizer, MetaSpiderConfig())
    answers = [list(probe.stream_ids(probe.encode(probe.render(p)), max_new_tokens=MAX_NEW_TOKENS))
               for p in PROMPTS[:14]]
    inside = {t for answer in answers for t in answer[1:]}
    stop = min(t for t in inside if 3 <= sum(t in answer for answer in answers) <= 11)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, stop]
    return save_tiny_model(model, tokenizer, tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="module")
def pipe(model_dir: Path) -> MetaSpiderPipeline:
    return MetaSpiderPipeline.from_pretrained(MetaSpiderConfig(model_name=str(model_dir), target_layers=[2, 4, 5]))


@pytest.fixture(scope="module")
def dataset_dir(pipe: MetaSpiderPipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train (8) / validation (3) / test (3) JSONL; even-numbered questions
    carry the base's own answer as reference (right), odd ones a wrong one."""
    folder = tmp_path_factory.mktemp("qa")
    prompts = list(PROMPTS[:14])
    layout = {"train": prompts[:8], "validation": prompts[8:11], "test": prompts[11:]}
    for split, questions in layout.items():
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as stream:
            for i, question in enumerate(questions):
                own = pipe.generate(question, max_new_tokens=MAX_NEW_TOKENS)
                answer = own if i % 2 == 0 and own.strip() else "Paris"
                stream.write(json.dumps({"id": f"{split}-{i}", "question": question, "answer": answer}) + "\n")
    return folder


@pytest.fixture(scope="module")
def dataset(dataset_dir: Path) -> JsonlDataset:
    return JsonlDataset.from_options(path=str(dataset_dir))


@pytest.fixture(scope="module")
def reference(pipe: MetaSpiderPipeline, dataset: JsonlDataset, tmp_path_factory: pytest.TempPathFactory) -> ActivationDataset:
    """One uninterrupted collection (shards of 4) every other test compares with."""
    collector = ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, shard_size=4, show_progress=False)
    return collector.collect_dataset(dataset, ["train", "validation", "test"],
                                     output_dir=tmp_path_factory.mktemp("reference"))


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}
