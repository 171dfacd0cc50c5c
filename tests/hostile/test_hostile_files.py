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


# ---------------------------------------------------------------- run.json

from meta_spider.agentcore.rundir import RunFileError, read_run_settings  # noqa: E402
from meta_spider.loom.manifest import ManifestError, RunManifest  # noqa: E402
from test_hostile_agent import run_cli  # noqa: E402

RUN = {"format_version": 1, "model": {"name": "tiny"}, "dataset": {"name": "jsonl", "options": {}}}


def _run_dir(tmp_path: Path, content: bytes | dict) -> Path:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    data = content if isinstance(content, bytes) else json.dumps(content).encode()
    (run / "run.json").write_bytes(data)
    return run


HOSTILE_RUN_FILES = {
    "not-utf8": (b'{"model": "\xff\xfe"}', "not UTF-8"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    "facts-path-int": ({**RUN, "knowledge_base": {"facts_path": 5}}, "knowledge_base.facts_path"),
    "checkpoint-int": ({**RUN, "checkpoint": 5}, "checkpoint"),
    "policy-path-list": ({**RUN, "policy": {"name": "doubter", "settings": {"checkpoint": [1]}}},
                         "policy.settings.checkpoint"),
    "external-paths-junk": ({**RUN, "external_paths": "everywhere"}, "external_paths"),
    "array": (b"[]", "expected a JSON object"),
    "calibration-threshold-text": ({**RUN, "calibration": {"doubter": {"threshold": "high"}}},
                                   "field 'calibration.doubter': calibration['doubter']['threshold'] must be a number"),
    "calibration-entry-list": ({**RUN, "calibration": {"doubter": [0.5]}},
                               "field 'calibration.doubter': calibration['doubter'] must be an object"),
    "after-lookup-scale": ({**RUN, "calibration": {"doubter": {"threshold": 0.5, "after_lookup": {
        "tool": "lookup", "signals": [], "layer_index": None, "mean": [0], "scale": [0], "weight": [1], "bias": 0,
        "threshold": 0}}}}, "field 'calibration.doubter': 'after_lookup.scale' holds a number that is not positive"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_RUN_FILES))
def test_a_hostile_run_json_is_a_run_file_error(tmp_path: Path, name: str) -> None:
    content, complaint = HOSTILE_RUN_FILES[name]
    with pytest.raises(RunFileError) as info:
        read_run_settings(_run_dir(tmp_path, content))
    assert complaint in str(info.value)


@pytest.mark.parametrize("name", sorted(HOSTILE_RUN_FILES))
def test_meta_agent_run_reports_a_hostile_run_json_in_one_line(tmp_path: Path, name: str) -> None:
    content, complaint = HOSTILE_RUN_FILES[name]
    result = run_cli(["run", "--run-dir", str(_run_dir(tmp_path, content)), "What?"], tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and complaint in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("content", [b'{"model": "\xff"}', b"[" * 100_000, b"[]", b'{"format_version": "x"}'])
def test_the_manifest_reader_types_the_same_files(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(ManifestError):
        RunManifest.load(_run_dir(tmp_path, content))


def test_paths_outside_the_run_directory_are_warned_about_unless_a_command_wrote_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = _run_dir(tmp_path, {**RUN, "checkpoint": "../elsewhere/doubter",
                              "backends": {"llamacpp": {"model_path": "/etc/hostname", "sidecar_path": "s.gguf"}}})
    with caplog.at_level("WARNING"):
        settings = read_run_settings(run)
    assert settings.backends["transformers"]["checkpoint"] == str(run.resolve() / "../elsewhere/doubter")
    assert settings.backends["llamacpp"]["sidecar_path"] == str(run.resolve() / "s.gguf")
    warned = caplog.text
    assert "checkpoint points outside the run directory" in warned
    assert "backends.llamacpp.model_path points outside the run directory" in warned
    assert "sidecar_path" not in warned

    manifest = RunManifest.load(run)
    with caplog.at_level("WARNING"):
        caplog.clear()
        manifest.resolve(run, manifest.checkpoint, "checkpoint")
    assert "checkpoint points outside" in caplog.text

    # A command that records an outside path on purpose lists it: no warning then.
    RunManifest.update_file(run, checkpoint=str(tmp_path / "trained"), gguf={"base_f16": "/models/base.gguf"})
    recorded = json.loads((run / "run.json").read_text())
    assert recorded["external_paths"] == sorted([str(tmp_path / "trained"), "/models/base.gguf"])
    caplog.clear()
    with caplog.at_level("WARNING"):
        settings = read_run_settings(run)
        RunManifest.load(run).resolve(run, str(tmp_path / "trained"), "checkpoint")
    assert "checkpoint points outside" not in caplog.text
    assert "model_path points outside" in caplog.text  # still hand-written


# ---------------------------------------------------------------- GGUF sidecar


@pytest.mark.parametrize(
    "module_path, shape",
    [("cross_attn.4.o_proj", (32, 19)), ("cross_attn.5.q_proj", (16, 31)), ("encoder.projectors.1.2", (30, 16))],
)
def test_a_sidecar_with_a_wrongly_shaped_tensor_fails_at_load(tmp_path: Path, module_path: str, shape) -> None:
    import torch
    from test_deploy_sidecar import random_doubter

    from meta_spider.backends.llamacpp.numpy_doubter import SidecarError
    from meta_spider.loom.gguf.sidecar import SIDECAR_FILE, export_sidecar, load_sidecar

    doubter = random_doubter()
    module = doubter.get_submodule(module_path)
    module.weight = torch.nn.Parameter(torch.zeros(shape))  # what a hand-edited file would hold
    path = export_sidecar(doubter, tmp_path / SIDECAR_FILE)
    with pytest.raises(SidecarError, match="tensor shapes that do not fit its config") as info:
        load_sidecar(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("change, complaint", [
    ({"target_layers": ["a"]}, "positive whole numbers"),
    ({"target_layers": 5}, "positive whole numbers"),
    ({"num_layers": "x"}, "positive whole numbers"),
    ({"ca_num_heads": 0}, "positive whole numbers"),
    ({"cross_attn_layers": [1.5]}, "positive whole numbers"),
])
def test_a_sidecar_config_with_values_of_the_wrong_kind_is_a_sidecar_error(tmp_path: Path, change, complaint) -> None:
    import dataclasses

    from test_deploy_sidecar import random_doubter

    from meta_spider.backends.llamacpp.sidecar_format import SidecarError, check_sidecar_structure
    from meta_spider.loom.gguf.sidecar import SIDECAR_FILE, export_sidecar, load_sidecar

    good = load_sidecar(export_sidecar(random_doubter(), tmp_path / SIDECAR_FILE))
    with pytest.raises(SidecarError, match=complaint):
        check_sidecar_structure(dataclasses.replace(good, config={**good.config, **change}))


@pytest.mark.parametrize("reference", ["column", "nan", "empty"])
def test_a_sidecar_pmi_reference_that_is_not_one_finite_vector_is_a_sidecar_error(tmp_path: Path,
                                                                                   reference: str) -> None:
    import dataclasses

    import numpy as np
    import torch
    from test_deploy_sidecar import random_doubter

    from meta_spider.backends.llamacpp.sidecar_format import SidecarError, check_sidecar_structure
    from meta_spider.loom.gguf.sidecar import SIDECAR_FILE, export_sidecar, load_sidecar

    doubter = random_doubter(signals=["draft_logprob_mean", "prompt_pmi_top4"])
    doubter.set_log_reference(torch.log_softmax(torch.randn(50), 0))
    good = load_sidecar(export_sidecar(doubter, tmp_path / SIDECAR_FILE))
    values = good.tensors["log_reference"]
    spoilt = {"column": values.reshape(-1, 1), "nan": np.full_like(values, np.nan), "empty": values[:0]}[reference]
    with pytest.raises(SidecarError, match="one finite, non-empty vector"):
        check_sidecar_structure(dataclasses.replace(good, tensors={**good.tensors, "log_reference": spoilt}))


@pytest.mark.parametrize("threshold", ["high", True, float("nan")])
def test_a_calibration_threshold_that_is_not_a_number_is_refused_where_it_is_read(saved, tmp_path: Path,
                                                                                  threshold) -> None:
    from test_deploy_sidecar import random_doubter

    from meta_spider.backends.llamacpp.sidecar_format import SidecarError
    from meta_spider.loom.gguf.sidecar import SIDECAR_FILE, export_sidecar, load_sidecar
    from meta_spider.wrapper.checkpoint import write_calibration

    folder = Path(shutil.copytree(saved[0], tmp_path / "checkpoint"))
    write_calibration(folder, {"threshold": threshold})
    with pytest.raises(CheckpointError, match="which must be a number or null"):
        Doubter.from_checkpoint(folder)
    doubter = random_doubter()
    doubter.calibration = {"threshold": threshold}
    with pytest.raises(SidecarError, match="which must be a number or null"):
        load_sidecar(export_sidecar(doubter, tmp_path / SIDECAR_FILE))


def test_an_unusable_gate_after_a_lookup_is_refused_where_it_is_read(saved, tmp_path: Path) -> None:
    from test_deploy_sidecar import random_doubter

    from meta_spider.backends.llamacpp.sidecar_format import SidecarError
    from meta_spider.loom.gguf.sidecar import SIDECAR_FILE, export_sidecar, load_sidecar
    from meta_spider.wrapper.checkpoint import write_calibration

    entry = {"threshold": 0.5, "after_lookup": {"tool": "lookup", "signals": [], "layer_index": None, "mean": [0.0],
                                                "scale": [1.0], "weight": [float("nan")], "bias": 0.0, "threshold": 0}}
    folder = Path(shutil.copytree(saved[0], tmp_path / "checkpoint"))
    write_calibration(folder, entry)
    with pytest.raises(CheckpointError, match="unusable gate after a lookup .'after_lookup.weight' holds a number"):
        Doubter.from_checkpoint(folder)
    doubter = random_doubter()
    doubter.calibration = entry
    with pytest.raises(SidecarError, match="unusable gate after a lookup"):
        load_sidecar(export_sidecar(doubter, tmp_path / SIDECAR_FILE))


# ---------------------------------------------------------------- activation datasets


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from activation_fixtures import tiny_pipeline, write_activation_fixture

    folder = tmp_path_factory.mktemp("activations") / "collection"
    write_activation_fixture(folder, tiny_pipeline(), count=6)
    return folder


def _spoil_collection(collection: Path, target: Path, name: str) -> Path:
    shutil.copytree(collection, target)
    info_path = target / "collection.json"
    info = json.loads(info_path.read_text())
    if name == "collection-not-utf8":
        info_path.write_bytes(b'{"format_version": \xff}')
    elif name == "collection-deep":
        info_path.write_bytes(b"[" * 100_000)
    elif name == "shards-outside":
        info_path.write_text(json.dumps({**info, "shards": ["../../etc/passwd"]}))
    elif name == "count-string":
        info_path.write_text(json.dumps({**info, "num_examples": "6"}))
    elif name == "examples-binary":
        (target / "examples.jsonl").write_bytes(b"\xff\xfe\x00\n" * 6)
    elif name == "examples-list":
        (target / "examples.jsonl").write_text("[1]\n" * 6)
    elif name == "shard-garbage":
        (target / info["shards"][0]).write_bytes(b"garbage" * 50)
    return target


@pytest.mark.parametrize("name", ["collection-not-utf8", "collection-deep", "shards-outside", "count-string",
                                  "examples-binary", "examples-list", "shard-garbage"])
def test_a_spoilt_activation_dataset_is_an_activation_format_error(collection: Path, tmp_path: Path,
                                                                   name: str) -> None:
    from meta_spider.loom.collect.activations import ActivationDataset, ActivationFormatError

    target = _spoil_collection(collection, tmp_path / name, name)
    with pytest.raises(ActivationFormatError) as info:
        dataset = ActivationDataset.load(target)
        dataset.tensor("prompt_ids")
    assert str(target) in str(info.value)
