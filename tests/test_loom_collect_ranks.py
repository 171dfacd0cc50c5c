"""Two CPU processes collect the dataset one process collects.

``torchrun --standalone --nproc_per_node 2`` (as ``python -m
torch.distributed.run`` from the test's interpreter) launches ``python -m
meta_spider.loom.cli.collect`` twice on a tiny Qwen2 base and 20 questions in
shards of 3: rank 0 reads shards 0, 2, 4, 6, rank 1 shards 1, 3, 5, and rank
0 merges them. The merged folder must hold the single-process examples
(``examples.jsonl`` byte for byte, so answers and correctness too), the same
shard files, states within 1e-5 and the same signals; ``metaloom train`` on
both gives the same validation losses to 4 decimals. A third run is killed
in effect (rank 1's folder cut back to its first committed shard, with an
orphan shard after it) and resumed with torchrun.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from wrapper_helpers import PROMPTS, make_tiny_model, save_tiny_model, shared_tokenizer

from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, COLLECTION_FILE, EXAMPLES_FILE

STATES_ATOL = 1e-5
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
TRAIN_ARGUMENTS = ["--epochs", "2", "--batch-size", "4", "--lr", "3e-3", "--early-stopping-metric", "val_loss",
                   "--encoder-dim", "16", "--ca-bottleneck-dim", "16", "--ca-num-heads", "2",
                   "--logprob-signals", "all", "--local-files-only"]


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tokenizer = shared_tokenizer()
    model = save_tiny_model(make_tiny_model("qwen2", tokenizer), tokenizer, tmp_path_factory.mktemp("tiny-qwen2"))
    splits = {"train": PROMPTS[:14], "validation": PROMPTS[14:20]}

    def write_qa(folder: Path, answers: dict[str, str]) -> Path:
        for split, questions in splits.items():
            lines = [json.dumps({"id": f"{split}{i}", "question": q, "answer": answers.get(f"{split}{i}", "Paris")})
                     for i, q in enumerate(questions)]
            (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
        return folder

    # The random base is never right about "Paris": make every other question's truth its own answer,
    # so that the training split holds right and wrong answers.
    probe = write_qa(tmp_path_factory.mktemp("qa-probe"), {})
    scratch = tmp_path_factory.mktemp("probe-run")
    _collect([sys.executable], scratch, (model, probe))
    examples = [json.loads(line) for line in (scratch / ACTIVATIONS_DIR / EXAMPLES_FILE).read_text().splitlines()]
    answers = {example["id"]: example["answer_text"] for example in examples[::2] if example["answer_text"].strip()}
    return model, write_qa(tmp_path_factory.mktemp("qa"), answers)


def _collect(launcher: list[str], run_dir: Path, sources: tuple[Path, Path], **env: str) -> None:
    model, qa = sources
    arguments = ["--run-dir", str(run_dir), "--model-name", str(model), "--dataset", "jsonl",
                 "--dataset-option", f"path={qa}", "--target-layers", "3,5", "--max-new-tokens", "3",
                 "--shard-size", "3", "--quiet"]
    completed = subprocess.run([*launcher, "-m", "meta_spider.loom.cli.collect", *arguments], env=_env(**env),
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]


def _train(run_dir: Path) -> list[float]:
    completed = subprocess.run([sys.executable, "-m", "meta_spider.loom.cli.train", "--run-dir", str(run_dir),
                                *TRAIN_ARGUMENTS], env=_env(), capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return [entry["val_loss"] for entry in json.loads((run_dir / "training.json").read_text())["history"]]


def _assert_same_collection(single: Path, merged: Path) -> None:
    assert (merged / EXAMPLES_FILE).read_bytes() == (single / EXAMPLES_FILE).read_bytes()
    assert json.loads((merged / COLLECTION_FILE).read_text()) == json.loads((single / COLLECTION_FILE).read_text())
    shards = sorted(path.name for path in single.glob("shard-*"))
    assert len(shards) == 7 and sorted(path.name for path in merged.glob("shard-*")) == shards
    for name in shards:
        one, two = load_file(single / name), load_file(merged / name)
        assert sorted(one) == sorted(two)
        for key, tensor in one.items():
            if key.startswith("states_"):
                torch.testing.assert_close(two[key], tensor, rtol=0, atol=STATES_ATOL, msg=f"{name} {key}")
            else:  # ids, lengths, correctness and the signals
                torch.testing.assert_close(two[key], tensor, rtol=0, atol=0, msg=f"{name} {key}")
    assert not list(merged.parent.glob(f"{ACTIVATIONS_DIR}.rank-*"))  # the rank folders are gone


@pytest.mark.slow
def test_two_processes_collect_what_one_collects_and_train_the_same(sources, tmp_path: Path) -> None:
    _collect([sys.executable], tmp_path / "single", sources)
    _collect(TORCHRUN, tmp_path / "pair", sources)
    _assert_same_collection(tmp_path / "single" / ACTIVATIONS_DIR, tmp_path / "pair" / ACTIVATIONS_DIR)
    manifests = [json.loads((tmp_path / name / "run.json").read_text()) for name in ("single", "pair")]
    for manifest in manifests:
        del manifest["created_at"], manifest["updated_at"]
    assert manifests[1] == manifests[0]
    single, pair = _train(tmp_path / "single"), _train(tmp_path / "pair")
    assert len(single) == len(pair) == 3
    assert [round(loss, 4) for loss in pair] == [round(loss, 4) for loss in single]


@pytest.mark.slow
def test_a_killed_rank_resumes_its_own_shards(sources, tmp_path: Path) -> None:
    _collect([sys.executable], tmp_path / "single", sources)
    run_dir = tmp_path / "resumed"
    # Rank 1 alone: it collects shards 1, 3, 5 into its folder and leaves the merge to rank 0.
    _collect([sys.executable], run_dir, sources, RANK="1", WORLD_SIZE="2", LOCAL_RANK="1")
    rank_one = run_dir / f"{ACTIVATIONS_DIR}.rank-1-of-2"
    info = json.loads((rank_one / COLLECTION_FILE).read_text())
    assert info["shards"] == ["shard-00001.safetensors", "shard-00003.safetensors", "shard-00005.safetensors"]
    assert info["complete"] and info["num_examples"] == 9 and not (run_dir / "run.json").exists()
    # Killed in effect after its first shard: the later shards are orphans, the jsonl has extra lines.
    info.update(shards=info["shards"][:1], num_examples=3, complete=False)
    (rank_one / COLLECTION_FILE).write_text(json.dumps(info, indent=2) + "\n")
    _collect(TORCHRUN, run_dir, sources)
    _assert_same_collection(tmp_path / "single" / ACTIVATIONS_DIR, run_dir / ACTIVATIONS_DIR)
    # Run again: the merged collection is complete, nothing is redone.
    before = (run_dir / ACTIVATIONS_DIR / COLLECTION_FILE).stat().st_mtime_ns
    _collect(TORCHRUN, run_dir, sources)
    assert (run_dir / ACTIVATIONS_DIR / COLLECTION_FILE).stat().st_mtime_ns == before
