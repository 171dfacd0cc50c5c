"""The bases shipped under loom/world/shipped-bases: each is the base of the world
this version generates (same preset key, same data, same file hashes), a
build installs it instead of training and checks every file, a damaged one
or a damaged cache is refused by name, and the train / ship / install round
trip gives the same bits and the same metrics on a preset small enough to
train here in seconds."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from meta_spider.loom.world.cache import WorldBuildError, build_world, cache_key, export_data
from meta_spider.loom.world.generator import generate_world
from meta_spider.loom.world.presets import ModelSpec, TrainSpec, get_preset
from meta_spider.loom.world.shipped import (BASES_ENV_VAR, SHIPPED_MANIFEST, ShipError, ShippedBase,
                                            ShippedBaseError, bases_root, file_hashes, ship)

SHIPPED_LIMIT_BYTES = 20 * 2**20
"""All shipped bases together stay under 20 MiB."""


def shipped_folders() -> list[Path]:
    return sorted(path.parent for path in bases_root().glob(f"*/{SHIPPED_MANIFEST}"))


def test_the_demo_and_test_worlds_are_shipped_within_the_size_limit() -> None:
    keys = {folder.name for folder in shipped_folders()}
    assert {cache_key(get_preset("small"), 0), cache_key(get_preset("tiny"), 0)} <= keys
    size = sum(child.stat().st_size for child in bases_root().rglob("*") if child.is_file())
    assert size <= SHIPPED_LIMIT_BYTES, f"shipped bases take {size} bytes"


@pytest.mark.parametrize("folder", shipped_folders(), ids=lambda folder: folder.name)
def test_each_shipped_base_belongs_to_the_world_this_version_generates(folder: Path, tmp_path) -> None:
    match = re.fullmatch(r"v\d+-(\w+)-[0-9a-f]{8}-seed(\d+)", folder.name)
    assert match, folder.name
    preset, seed = get_preset(match[1]), int(match[2])
    assert cache_key(preset, seed) == folder.name  # the preset definition is the one the base was trained for
    shipped = ShippedBase.find(folder.name)
    assert shipped is not None and file_hashes(folder) == {**shipped.manifest["files"],
                                                            SHIPPED_MANIFEST: file_hashes(folder)[SHIPPED_MANIFEST]}
    assert export_data(generate_world(preset.world, seed), tmp_path) == shipped.manifest["data_sha256"]
    assert shipped.manifest["rebuild"].startswith(f"metaloom world build --preset {preset.name} --seed {seed}")


@pytest.mark.world
@pytest.mark.slow
def test_the_test_world_is_the_shipped_base_checked_on_reuse(tiny_world, tmp_path) -> None:
    shipped = ShippedBase.find(tiny_world.manifest["key"])
    manifest = tiny_world.manifest
    # installed, or trained here bit for bit before the base shipped
    assert manifest["base"]["shipped_sha256"] == shipped.model_sha256
    assert manifest["model_sha256"] == shipped.manifest["files"] and manifest["kernels"] == shipped.kernels
    copy = tmp_path / "world"
    shutil.copytree(tiny_world.path, copy)
    weights = copy / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    changed = r"model/model\.safetensors has sha256 \w{8}…, not the \w{8}… recorded when it was built"
    with pytest.raises(WorldBuildError, match=changed):
        build_world("tiny", seed=0, out=copy, progress=False)
    weights.unlink()
    with pytest.raises(WorldBuildError, match=r"model/model\.safetensors is missing"):
        build_world("tiny", seed=0, out=copy, progress=False)


@pytest.mark.world
@pytest.mark.slow
def test_a_world_cached_before_hashes_were_recorded_is_compared_with_the_shipped_base(tiny_world, tmp_path) -> None:
    from meta_spider.loom.world.cache import describe_base

    def cached_long_ago(name: str, flip: bool) -> Path:
        copy = tmp_path / name
        shutil.copytree(tiny_world.path, copy)
        manifest = json.loads((copy / "world.json").read_text())
        del manifest["model_sha256"], manifest["base"]
        (copy / "world.json").write_text(json.dumps(manifest))
        if flip:
            weights = copy / "model" / "model.safetensors"
            data = bytearray(weights.read_bytes())
            data[-1] ^= 1
            weights.write_bytes(bytes(data))
        return copy

    same = build_world("tiny", seed=0, out=cached_long_ago("same", flip=False), progress=False)
    assert same.manifest["base"]["source"] == "trained"
    assert "bit-identical to the shipped base" in describe_base(same.manifest)
    other = build_world("tiny", seed=0, out=cached_long_ago("other", flip=True), progress=False)
    assert "not the shipped base" in describe_base(other.manifest)
    assert "`metaloom world build --force` installs the shipped one" in describe_base(other.manifest)
    assert build_world("tiny", seed=0, out=other.path, progress=False).manifest == other.manifest  # recorded once
    forced = build_world("tiny", seed=0, out=other.path, progress=False, force=True)
    assert forced.manifest["base"]["source"] == "shipped"
    gone = cached_long_ago("gone", flip=False)
    (gone / "model" / "model.safetensors").unlink()
    with pytest.raises(WorldBuildError, match=r"model/model\.safetensors is missing"):
        build_world("tiny", seed=0, out=gone, progress=False)


@pytest.mark.world
@pytest.mark.slow
def test_a_damaged_world_json_is_refused_by_name(tiny_world, tmp_path) -> None:
    copy = tmp_path / "world"
    shutil.copytree(tiny_world.path, copy)
    manifest = json.loads((copy / "world.json").read_text())
    malformed = "has a malformed model_sha256 or base"
    for text, problem in (("{not json", "does not read as JSON"), ("[1, 2]", "is not a JSON object"),
                          (json.dumps({**manifest, "model_sha256": ["x"]}), malformed),
                          (json.dumps({**manifest, "base": {"source": "stolen"}}), malformed)):
        (copy / "world.json").write_text(text)
        with pytest.raises(WorldBuildError, match=rf"world\.json {problem}.*delete it"):
            build_world("tiny", seed=0, out=copy, progress=False)
    assert (copy / "model" / "model.safetensors").exists()  # nothing deleted


@pytest.fixture
def bases_copy(tmp_path, monkeypatch) -> Path:
    """A writable copy of the shipped tiny base, which builds then read."""
    key = cache_key(get_preset("tiny"), 0)
    root = tmp_path / "bases"
    shutil.copytree(bases_root() / key, root / key)
    monkeypatch.setenv(BASES_ENV_VAR, str(root))
    return root / key


def test_a_damaged_shipped_base_is_refused_by_name(bases_copy, tmp_path) -> None:
    weights = bases_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ShippedBaseError, match=r"model\.safetensors has sha256 .*base\.json records .*git checkout"):
        build_world("tiny", seed=0, out=tmp_path / "a", progress=False)
    weights.unlink()
    with pytest.raises(ShippedBaseError, match=r"file 'model\.safetensors' is missing"):
        build_world("tiny", seed=0, out=tmp_path / "b", progress=False)
    manifest = json.loads((bases_copy / SHIPPED_MANIFEST).read_text())
    (bases_copy / SHIPPED_MANIFEST).write_text(json.dumps({**manifest, "kernels": None, "loss_last": "low"}))
    with pytest.raises(ShippedBaseError, match=r"base\.json lacks kernels, loss_last"):
        build_world("tiny", seed=0, out=tmp_path / "c", progress=False)
    (bases_copy / SHIPPED_MANIFEST).write_text("{not json")
    with pytest.raises(ShippedBaseError, match="does not read as JSON"):
        build_world("tiny", seed=0, out=tmp_path / "d", progress=False)


def test_a_base_trained_on_other_data_is_refused(bases_copy, tmp_path) -> None:
    manifest = json.loads((bases_copy / SHIPPED_MANIFEST).read_text())
    manifest["data_sha256"]["corpus.jsonl"] = "0" * 64
    (bases_copy / SHIPPED_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ShippedBaseError, match=r"trained on other data .*\(corpus\.jsonl differ\)"):
        build_world("tiny", seed=0, out=tmp_path / "world", progress=False)


def test_train_ship_install_round_trip_gives_the_same_bits_and_metrics(tmp_path, monkeypatch) -> None:
    from meta_spider.loom.world.cache import describe_base

    monkeypatch.setenv(BASES_ENV_VAR, str(tmp_path / "bases"))
    tiny = get_preset("tiny")
    micro = dataclasses.replace(
        tiny, name="micro",
        model=ModelSpec(vocab_size=400, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                        intermediate_size=64, max_positions=512),
        train=TrainSpec(steps=12, batch_size=2, seq_len=64, warmup_steps=2, lr=1e-2))
    key = cache_key(micro, 0)
    trained = build_world(micro, out=tmp_path / "trained", progress=False)  # nothing shipped: trains
    assert trained.manifest["base"] == {"source": "trained", "shipped_sha256": None}
    assert "none is shipped" in describe_base(trained.manifest)
    ship(key, trained.model_dir, trained.manifest, command="metaloom world build --preset micro --seed 0 --train")

    installed = build_world(micro, out=tmp_path / "installed", progress=False)
    assert installed.manifest["base"]["source"] == "shipped"
    assert installed.manifest["model_sha256"] == trained.manifest["model_sha256"]
    assert installed.manifest["metrics"] == trained.manifest["metrics"]  # loaded from disk, evaluated alike
    assert "train_s" not in installed.manifest["timings"]
    assert describe_base(installed.manifest).startswith("shipped (sha256")
    again = build_world(micro, out=tmp_path / "installed", progress=False, train=True)  # a shipped folder is retrained
    assert again.manifest["base"]["source"] == "trained"
    assert "bit-identical to the shipped base" in describe_base(again.manifest)
    assert build_world(micro, out=tmp_path / "installed", progress=False, train=True).manifest == again.manifest

    blocked = tmp_path / "blocked"  # where an installed package's folder would be read-only
    blocked.write_text("a file where the folder of shipped bases should be")
    with pytest.raises(ShipError, match="cannot ship a base to .*blocked.*editable install"):
        ship(key, trained.model_dir, trained.manifest, command="-", root=blocked)
    other = {**again.manifest, "base": {"source": "trained", "shipped_sha256": "f" * 64}}
    assert "not the shipped base (ffffffff…): another kind of CPU" in describe_base(other)


def test_world_info_names_the_shipped_base(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from meta_spider.loom.cli.world import world

    monkeypatch.setenv("META_SPIDER_WORLD_CACHE", str(tmp_path))
    result = CliRunner().invoke(world, ["info", "--preset", "small"])
    shipped = ShippedBase.find(cache_key(get_preset("small"), 0))
    assert result.exit_code == 0, result.output
    assert "(not built)" in result.output and f"sha256 {shipped.model_sha256[:8]}" in result.output
    monkeypatch.setenv(BASES_ENV_VAR, str(tmp_path / "none"))
    assert "shipped base: none" in CliRunner().invoke(world, ["info", "--preset", "small"]).output
