"""Resuming an activation collection: uncommitted work is dropped and
redone, a SIGKILL at a random point (in a child process) resumes to the
same bytes as an uninterrupted run, and a collection is never resumed with
other settings, another base or other questions."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from collector_fixtures import (  # noqa: F401 - model_dir, pipe, dataset_dir, dataset, reference are fixtures
    MAX_NEW_TOKENS, dataset, dataset_dir, folder_bytes, model_dir, pipe, reference,
)
from meta_spider.loom.collect.activations import COLLECTION_FILE, EXAMPLES_FILE, ActivationDataset, ActivationFormatError
from meta_spider.loom.collect.collector import ActivationDatasetCollector, CollectionMismatchError
from meta_spider.loom.datasets import JsonlDataset
from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline
from wrapper_helpers import PROMPTS, make_tiny_model, shared_tokenizer


# ---------------------------------------------------------------- resuming


def test_uncommitted_work_is_dropped_on_resume(pipe: MetaSpiderPipeline, dataset: JsonlDataset,
                                                reference: ActivationDataset, tmp_path: Path) -> None:
    """A crash after a shard was written and its lines (partly) appended,
    before collection.json committed it: resume drops and redoes it."""
    folder = tmp_path / "crashed"
    shutil.copytree(reference.folder, folder)
    info = json.loads((folder / COLLECTION_FILE).read_text())
    info.update(num_examples=4, shards=info["shards"][:1], complete=False)
    (folder / COLLECTION_FILE).write_text(json.dumps(info, indent=2) + "\n")
    with open(folder / EXAMPLES_FILE, "ab") as stream:
        stream.write(b'{"index": 14, "id": "half a li')  # a line cut short
    (folder / ".shard-00003.safetensors.tmp").write_bytes(b"partial")
    with pytest.raises(ActivationFormatError, match="incomplete"):
        ActivationDataset.load(folder)
    assert len(ActivationDataset.load(folder, allow_incomplete=True)) == 4

    collector = ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, shard_size=4, show_progress=False)
    collector.collect_dataset(dataset, ["train", "validation", "test"], output_dir=folder)
    assert folder_bytes(folder) == folder_bytes(reference.folder)

    # Killed before its first commit: debris without collection.json.
    early = tmp_path / "early"
    early.mkdir()
    (early / EXAMPLES_FILE).write_bytes(b'{"index": 0, "i')
    (early / ".collection.json.tmp").write_bytes(b"{")
    collector.collect_dataset(dataset, ["train", "validation", "test"], output_dir=early)
    assert folder_bytes(early) == folder_bytes(reference.folder)


CHILD = textwrap.dedent("""
    import sys, time
    from meta_spider.loom.collect.collector import ActivationDatasetCollector
    from meta_spider.loom.datasets import JsonlDataset
    from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline

    model_dir, data_dir, out, batch_size = sys.argv[1:5]
    pipe = MetaSpiderPipeline.from_pretrained(MetaSpiderConfig(model_name=model_dir, target_layers=[2, 4, 5]))
    dataset = JsonlDataset.from_options(path=data_dir)

    def slow_check(answer, example):  # slows the child so the kill lands mid-run
        time.sleep(0.05)
        return dataset.check_fn(answer, example)

    collector = ActivationDatasetCollector(pipe, max_new_tokens=%d, shard_size=4, batch_size=int(batch_size),
                                           show_progress=False, check_example=slow_check)
    print("started", flush=True)
    collector.collect_dataset(dataset, ["train", "validation", "test"], output_dir=out)
""") % MAX_NEW_TOKENS


def _committed(folder: Path) -> int:
    try:
        return json.loads((folder / COLLECTION_FILE).read_text())["num_examples"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


@pytest.mark.parametrize(("target", "batch_size"), [(0, 1), (4, 2), (8, 1)])
def test_sigkill_at_a_random_point_then_resume_gives_the_same_dataset(
    pipe: MetaSpiderPipeline, dataset: JsonlDataset, model_dir: Path, dataset_dir: Path,
    reference: ActivationDataset, tmp_path: Path, target: int, batch_size: int,
) -> None:
    # Kill once ``target`` examples are committed, plus a random moment later
    # (mid-shard, mid-write: a shard takes about 0.2 s in the child).
    delay = random.Random(target).uniform(0.0, 0.3)
    folder = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(model_dir), str(dataset_dir), str(folder), str(batch_size)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _committed(folder) < target and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        assert child.poll() is None, f"the child finished before the kill: {child.stderr.read().decode()[-2000:]}"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert _committed(folder) < len(reference)  # really interrupted

    collector = ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, shard_size=4, batch_size=batch_size,
                                           show_progress=False)
    resumed = collector.collect_dataset(dataset, ["train", "validation", "test"], output_dir=folder)
    assert resumed.complete
    expected = reference if batch_size == 1 else collector.collect_dataset(
        dataset, ["train", "validation", "test"], output_dir=tmp_path / "uninterrupted")
    assert folder_bytes(folder) == folder_bytes(expected.folder)


# ---------------------------------------------------------------- refusing to mix


def test_resuming_with_other_settings_names_the_mismatch(pipe: MetaSpiderPipeline, dataset: JsonlDataset,
                                                        reference: ActivationDataset, tmp_path: Path) -> None:
    folder = tmp_path / "partial"
    shutil.copytree(reference.folder, folder)

    def resume(**overrides: object) -> None:
        settings = {"max_new_tokens": MAX_NEW_TOKENS, "shard_size": 4, "show_progress": False, **overrides}
        ActivationDatasetCollector(pipe, **settings).collect_dataset(dataset, ["train", "validation", "test"],
                                                                     output_dir=folder)

    with pytest.raises(CollectionMismatchError) as error:
        resume(max_new_tokens=MAX_NEW_TOKENS + 1)
    assert error.value.field == "max_new_tokens" and error.value.recorded == MAX_NEW_TOKENS
    with pytest.raises(CollectionMismatchError, match="target_layers"):
        resume(target_layers=[4, 5])
    with pytest.raises(CollectionMismatchError, match="shard_size"):
        resume(shard_size=2)
    recorded = json.loads((folder / "collection.json").read_text())
    (folder / "collection.json").write_text(json.dumps({k: v for k, v in recorded.items() if k != "signals"}))
    with pytest.raises(CollectionMismatchError, match="signals"):  # collected before signals were recorded
        resume()
    (folder / "collection.json").write_text(json.dumps(recorded, indent=2) + "\n")
    with pytest.raises(CollectionMismatchError, match="dataset"):
        ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, shard_size=4, show_progress=False) \
            .collect_dataset(dataset, ["train", "test"], output_dir=folder)
    with pytest.raises(CollectionMismatchError) as error:
        ActivationDatasetCollector(pipe, max_new_tokens=MAX_NEW_TOKENS, shard_size=4, show_progress=False) \
            .collect(list(PROMPTS[:14]), ["x"] * 14, output_dir=folder)
    assert error.value.field == "dataset"

    other = MetaSpiderPipeline(make_tiny_model("qwen2", shared_tokenizer(), seed=1), shared_tokenizer(),
                               MetaSpiderConfig(target_layers=[2, 4, 5]), model_id="another-base")
    with pytest.raises(CollectionMismatchError) as error:
        ActivationDatasetCollector(other, max_new_tokens=MAX_NEW_TOKENS, shard_size=4, show_progress=False) \
            .collect_dataset(dataset, ["train", "validation", "test"], output_dir=folder)
    assert error.value.field == "model" and error.value.requested["model_id"] == "another-base"
    assert folder_bytes(folder) == folder_bytes(reference.folder)  # nothing was touched

    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(ActivationFormatError, match="not an activation dataset"):
        ActivationDatasetCollector(pipe, show_progress=False).collect(["q"], ["a"], output_dir=stranger)


def test_question_changes_are_caught(pipe: MetaSpiderPipeline, tmp_path: Path) -> None:
    collector = ActivationDatasetCollector(pipe, max_new_tokens=2, show_progress=False)
    collector.collect(["What is two plus two?"], ["four"], output_dir=tmp_path)
    with pytest.raises(CollectionMismatchError) as error:
        collector.collect(["What is two plus three?"], ["five"], output_dir=tmp_path)
    assert error.value.field == "questions"


def test_invalid_settings_are_refused(pipe: MetaSpiderPipeline, reference: ActivationDataset) -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        ActivationDatasetCollector(pipe, max_new_tokens=0)
    with pytest.raises(ValueError, match="no questions"):
        ActivationDatasetCollector(pipe, show_progress=False).collect([], [])
    with pytest.raises(ValueError, match="multiple of batch_size"):
        ActivationDatasetCollector(pipe, batch_size=3, shard_size=4)
    with pytest.raises(ValueError, match="out of range"):
        ActivationDatasetCollector(pipe, target_layers=[9])
    with pytest.raises(KeyError, match="unknown tensor"):
        reference.tensor("logits")
    with pytest.raises(ValueError, match="read_position"):
        reference.states("middle")
