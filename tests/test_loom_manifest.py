"""run.json: round trip, atomic save, update, unknown fields kept, the
format-0 upgrade, and one error test per kind of malformation."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from meta_spider.loom import manifest as manifest_module
from meta_spider.loom.datasets import MMLUDataset
from meta_spider.loom.manifest import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    DatasetSection,
    GGUFSection,
    LayersSection,
    ManifestError,
    ModelSection,
    PromptSection,
    RunManifest,
)
from meta_spider.loom.evaluate.metrics import choose_threshold

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mmlu"


def full_manifest() -> RunManifest:
    calibration = choose_threshold([0.9, 0.8, 0.3, 0.1], [True, True, False, False], target_coverage=0.5)
    return RunManifest(
        model=ModelSection(name="Qwen/Qwen3-0.6B", revision="main", dtype="bfloat16", quantization="nf4",
                           device="cuda:0"),
        dataset=DatasetSection.from_dataset(MMLUDataset.from_options(path=FIXTURES / "csv", mcq_direct=True)),
        layers=LayersSection(target_layers=[18, 20, 22], cross_attn_layers="late"),
        read_position="draft",
        inject_positions="all",
        encoder_type="multi_token",
        prompt=PromptSection(use_chat_template=True, mcq_direct=True, system_prompt="Be careful.",
                             template_kwargs={"enable_thinking": False, "thinking": False}),
        checkpoint="checkpoint",
        calibration={"doubter": calibration.to_dict()},
        gguf=GGUFSection(base_f16="gguf/base-f16.gguf", base_q8="gguf/base-q8_0.gguf", sidecar="gguf/doubter.gguf"),
        backends={"llamacpp": {"n_ctx": 4096, "n_threads": 2}, "transformers": {"device": "cpu"}},
    )


def write(run_dir: Path, document: object) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / MANIFEST_FILE
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


def minimal() -> dict:
    return {"format_version": FORMAT_VERSION, "model": {"name": "tiny"}, "dataset": {"name": "world"}}


def test_round_trip(tmp_path: Path) -> None:
    original = full_manifest()
    path = original.save(tmp_path / "run")
    assert path == tmp_path / "run" / MANIFEST_FILE
    loaded = RunManifest.load(tmp_path / "run")
    assert loaded == original
    document = json.loads(path.read_text())
    assert list(document)[:2] == ["model", "dataset"] and document["format_version"] == FORMAT_VERSION
    assert document["dataset"]["sizes"] == {"test": 8, "validation": 4, "dev": 2}
    assert document["calibration"]["doubter"]["threshold"] == 0.8
    assert [p.name for p in path.parent.iterdir()] == [MANIFEST_FILE]  # no temporary left behind
    assert loaded.resolve(tmp_path / "run", loaded.checkpoint) == tmp_path / "run" / "checkpoint"
    assert loaded.resolve(tmp_path, "/abs/x.gguf") == Path("/abs/x.gguf")


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    write(tmp_path, minimal())
    loaded = RunManifest.load(tmp_path)
    assert loaded.layers.target_layers == "late" and loaded.read_position == "prompt"
    assert loaded.encoder_type == "selective" and loaded.gguf.sidecar is None and loaded.prompt.use_chat_template


def test_update_merges_sections_and_validates(tmp_path: Path) -> None:
    manifest = full_manifest()
    manifest.save(tmp_path)
    stamped = manifest.updated_at
    manifest.update(gguf={"base_q4": "gguf/base-q4_k_m.gguf"}, checkpoint=tmp_path / "ckpt",
                    backends={"llamacpp": {"n_ctx": 8192}})
    assert manifest.gguf.base_f16 == "gguf/base-f16.gguf" and manifest.gguf.base_q4 == "gguf/base-q4_k_m.gguf"
    assert manifest.checkpoint == str(tmp_path / "ckpt")
    assert manifest.backends == {"llamacpp": {"n_ctx": 8192}, "transformers": {"device": "cpu"}}
    assert manifest.updated_at >= stamped
    with pytest.raises(ManifestError, match="field 'model.dtype'") as caught:
        manifest.update(model={"dtype": "fp13"})
    assert str(caught.value.path) == "update()"
    assert manifest.model.dtype == "bfloat16"  # a rejected update changes nothing
    with pytest.raises(ValueError, match="no fields \\['colour'\\]"):
        manifest.update(colour="red")
    saved = RunManifest.update_file(tmp_path, encoder_type="transformer")
    assert RunManifest.load(tmp_path).encoder_type == "transformer" == saved.encoder_type


def test_unknown_fields_are_kept_and_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    document = minimal()
    document["future_feature"] = {"x": 1}
    document["model"]["tokenizer_hash"] = "abc"
    write(tmp_path, document)
    with caplog.at_level(logging.WARNING, logger="meta_spider.loom.manifest"):
        loaded = RunManifest.load(tmp_path)
    assert "future_feature" in caplog.text and "model.tokenizer_hash" in caplog.text
    assert loaded.extra == {"future_feature": {"x": 1}} and loaded.model.extra == {"tokenizer_hash": "abc"}
    loaded.update(checkpoint="ckpt")
    loaded.save(tmp_path)
    saved = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert saved["future_feature"] == {"x": 1} and saved["model"]["tokenizer_hash"] == "abc"


def test_format_0_is_upgraded_with_a_log_line_per_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, {"model_name": "tiny", "dtype": "float32", "target_layers": [1, 2], "dataset": "world",
                     "checkpoint_path": "ckpt", "mcq_direct": False, "encoder_type": "selective"})
    with caplog.at_level(logging.INFO, logger="meta_spider.loom.manifest"):
        loaded = RunManifest.load(tmp_path)
    assert loaded.format_version == FORMAT_VERSION
    assert (loaded.model.name, loaded.model.dtype, loaded.layers.target_layers) == ("tiny", "float32", [1, 2])
    assert loaded.dataset.name == "world" and loaded.checkpoint == "ckpt" and loaded.prompt.mcq_direct is False
    lines = [r.getMessage() for r in caplog.records if "upgrading format 0 -> 1" in r.getMessage()]
    assert len(lines) == 6 and any("'model_name' to 'model.name'" in line for line in lines)
    assert "format_version" not in json.loads((tmp_path / MANIFEST_FILE).read_text())  # load never rewrites


def test_missing_file_and_directory_say_run_collect_first(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="run.json is missing.*metaloom collect --run-dir") as caught:
        RunManifest.load(tmp_path)
    assert caught.value.field is None and caught.value.path == tmp_path / MANIFEST_FILE
    with pytest.raises(ManifestError, match="run directory does not exist"):
        RunManifest.load(tmp_path / "absent")


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    write(tmp_path, '{\n  "model": {"name": "tiny"},\n  "dataset": \n}')
    with pytest.raises(ManifestError, match="not valid JSON .* line 4, column 1"):
        RunManifest.load(tmp_path)
    (tmp_path / MANIFEST_FILE).write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ManifestError, match="not UTF-8"):
        RunManifest.load(tmp_path)


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (lambda d: d.pop("model"), "model", "is missing"),
        (lambda d: d["model"].pop("name"), "model.name", "is missing"),
        (lambda d: d.update(model="tiny"), "model", "must be a JSON object"),
        (lambda d: d["model"].update(dtype="fp13"), "model.dtype", "one of 'auto'"),
        (lambda d: d["model"].update(quantization="q4"), "model.quantization", "null, 'int8'"),
        (lambda d: d.update(layers={"target_layers": [1, -2]}), "layers.target_layers", "layer indices"),
        (lambda d: d.update(read_position="middle"), "read_position", "'prompt', 'draft'"),
        (lambda d: d.update(inject_positions=True), "inject_positions", "'generation', 'all'"),
        (lambda d: d.update(encoder_type="mlp"), "encoder_type", "'selective'"),
        (lambda d: d["dataset"].update(sizes={"test": -1}), "dataset.sizes", "example count"),
        (lambda d: d["dataset"].update(splits="test"), "dataset.splits", "list of non-empty strings"),
        (lambda d: d.update(prompt={"mcq_direct": "yes"}), "prompt.mcq_direct", "true or false"),
        (lambda d: d.update(checkpoint=""), "checkpoint", "non-empty string"),
        (lambda d: d.update(calibration={"doubter": {"coverage": 0.5}}), "calibration", "numeric 'threshold'"),
        (lambda d: d.update(gguf={"sidecar": 3}), "gguf.sidecar", "non-empty string"),
        (lambda d: d.update(backends={"llamacpp": "fast"}), "backends", "settings object"),
        (lambda d: d.update(created_at="yesterday"), "created_at", "ISO-8601"),
        (lambda d: d.update(format_version="1"), "format_version", "int >= 0"),
        (lambda d: d.update(format_version=FORMAT_VERSION + 1), "format_version", "upgrade meta-spider"),
    ],
)
def test_each_malformation_names_its_field(tmp_path: Path, change, field: str, problem: str) -> None:
    document = minimal()
    change(document)
    path = write(tmp_path, document)
    with pytest.raises(ManifestError) as caught:
        RunManifest.load(tmp_path)
    error = caught.value
    assert error.field == field and error.path == path
    message = str(error)
    assert problem in message and f"field {field!r}" in message and str(path) in message and error.fix


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    write(tmp_path, "[1, 2]")
    with pytest.raises(ManifestError, match="expected a JSON object, got list"):
        RunManifest.load(tmp_path)


def test_importing_the_manifest_does_not_import_torch() -> None:
    code = "import sys, meta_spider.loom.manifest, meta_spider.loom.datasets; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = full_manifest()
    manifest.save(tmp_path)
    before = (tmp_path / MANIFEST_FILE).read_bytes()

    def refuse(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(manifest_module.os, "replace", refuse)
    manifest.update(checkpoint="elsewhere")
    with pytest.raises(OSError, match="disk full"):
        manifest.save(tmp_path)
    assert (tmp_path / MANIFEST_FILE).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_FILE]


def test_pipeline_config_round_trip() -> None:
    from meta_spider.wrapper.config import MetaSpiderConfig

    config = MetaSpiderConfig(model_name="tiny-base", dtype="float32", target_layers=[2, 3],
                              cross_attn_layers="late", read_position="draft", inject_positions="all")
    manifest = RunManifest.from_pipeline_config(config, DatasetSection(name="world"), encoder_type="transformer")
    assert manifest.layers.target_layers == [2, 3] and manifest.encoder_type == "transformer"
    assert MetaSpiderConfig(**manifest.pipeline_settings()) == config
    reloaded = RunManifest.from_dict(json.loads(json.dumps(manifest.to_dict())))
    assert MetaSpiderConfig(**reloaded.pipeline_settings()) == config
