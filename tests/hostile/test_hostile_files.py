"""Hostile files handed to the readers: Doubter checkpoints (folder and
single file), every failure a typed error naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from wrapper_helpers import shared_model, shared_tokenizer

from meta_spider.plugins import MetaSpiderError
from meta_spider.wrapper import CheckpointError, Doubter, MetaSpiderConfig, MetaSpiderPipeline
from meta_spider.wrapper.constants import CHECKPOINT_CONFIG_FILE, CHECKPOINT_WEIGHTS_FILE

SMALL = {"encoder_dim": 16, "ca_bottleneck_dim": 16, "ca_num_heads": 2}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A good checkpoint folder and a good single-file checkpoint."""
    root = tmp_path_factory.mktemp("checkpoints")
    pipe = MetaSpiderPipeline(shared_model("qwen2"), shared_tokenizer(),
                              MetaSpiderConfig(model_name="tiny", target_layers=[1, 3]))
    doubter = pipe.new_doubter(**SMALL)
    return doubter.save_checkpoint(root / "folder"), doubter.save_checkpoint(root / "single.safetensors")


def _spoil_folder(good: Path, target: Path, config: bytes | None = None, weights: bytes | None = None) -> Path:
    shutil.copytree(good, target)
    if config is not None:
        (target / CHECKPOINT_CONFIG_FILE).write_bytes(config)
    if weights is not None:
        (target / CHECKPOINT_WEIGHTS_FILE).write_bytes(weights)
    return target


@pytest.mark.parametrize(
    "spoil, complaint",
    [
        (lambda weights: {"weights": weights[: len(weights) // 2]}, "not a valid safetensors file"),
        (lambda weights: {"weights": b"garbage" * 100}, "not a valid safetensors file"),
        (lambda weights: {"weights": b""}, "not a valid safetensors file"),
        (lambda weights: {"config": b"[1, 2, 3]"}, "must be a JSON object"),
        (lambda weights: {"config": b'{"format_version": 1, "config": [1]}'}, "bad config"),
        (lambda weights: {"config": b"\xff\xfe{}"}, "not UTF-8"),
        (lambda weights: {"config": b"[" * 100_000}, "nests too deeply"),
        (lambda weights: {"config": b'{"format_version": 1, "config": {}, "fingerprint": [1]}'}, "cannot read Doubter"),
    ],
    ids=["truncated", "garbage", "empty", "config-list", "config-of-list", "not-utf8", "deep", "fingerprint-list"],
)
def test_a_spoilt_checkpoint_folder_is_a_checkpoint_error(saved, tmp_path: Path, spoil, complaint: str) -> None:
    folder, _ = saved
    weights = (folder / CHECKPOINT_WEIGHTS_FILE).read_bytes()
    target = _spoil_folder(folder, tmp_path / "spoilt", **spoil(weights))
    with pytest.raises(CheckpointError) as info:
        Doubter.from_checkpoint(target)
    assert complaint in str(info.value)
    assert str(target) in str(info.value)
    assert isinstance(info.value, MetaSpiderError)


@pytest.mark.parametrize("cut", [0.5, 0.01])
def test_a_spoilt_single_file_checkpoint_is_a_checkpoint_error(saved, tmp_path: Path, cut: float) -> None:
    _, single = saved
    data = single.read_bytes()
    target = tmp_path / "bad.safetensors"
    target.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        Doubter.from_checkpoint(target)


def test_the_good_checkpoints_still_load(saved) -> None:
    folder, single = saved
    assert json.loads((folder / CHECKPOINT_CONFIG_FILE).read_text())["format_version"] >= 1
    for path in (folder, single):
        assert isinstance(Doubter.from_checkpoint(path), Doubter)
