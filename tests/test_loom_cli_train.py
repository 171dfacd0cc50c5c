"""``metaloom train`` end to end on a tiny run directory (a saved tiny
model, run.json and an activation dataset in the collector's format):
checkpoints, training.json, the run.json record, resume, and the error
text for a missing or malformed run.json."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from activation_fixtures import write_run_dir
from cli_helpers import metaloom
from click.testing import CliRunner

from meta_spider.loom.cli.train import train
from meta_spider.loom.manifest import RunManifest
from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline

SHAPE = ["--encoder-dim", "16", "--ca-bottleneck-dim", "16", "--ca-num-heads", "2", "--local-files-only"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    return write_run_dir(root / "run", root / "model")


def test_train_writes_checkpoints_and_records_the_best_in_run_json(run_dir: Path, capsys) -> None:
    result = CliRunner().invoke(train, ["--run-dir", str(run_dir), "--epochs", "2", "--batch-size", "8",
                                        "--lr", "3e-3", *SHAPE], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "epoch 1:" in result.output and "epoch 2:" in result.output and "recorded in run.json" in result.output
    manifest = RunManifest.load(run_dir)
    assert manifest.checkpoint == "checkpoints/best"
    summary = json.loads((run_dir / "training.json").read_text())
    assert [h["epoch"] for h in summary["history"]] == [0, 1, 2] and summary["best_epoch"] in (1, 2)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best", "epoch-0001", "epoch-0002"]
    # The recorded checkpoint attaches to the run's base and answers.
    pipe = MetaSpiderPipeline.from_pretrained(MetaSpiderConfig(**manifest.pipeline_settings(), local_files_only=True),
                                              doubter=manifest.resolve(run_dir, manifest.checkpoint))
    assert pipe.doubter.config.encoder_type == manifest.encoder_type == "selective"
    assert pipe.doubter.config.encoder_dim == 16
    generated = pipe.generate("What is the capital of France? Now.", max_new_tokens=3, return_result=True)
    assert 0.0 <= generated.p_correct <= 1.0

    # --resume with the same settings continues from epoch 2 up to 3.
    again = metaloom(capsys, "train", "--run-dir", run_dir, "--epochs", "3", "--batch-size", "8",
                     "--lr", "3e-3", "--resume", *SHAPE)
    assert again.exit_code != 0 and "epochs=2 (now 3)" in again.output  # a longer schedule is a different run
    resumed = CliRunner().invoke(train, ["--run-dir", str(run_dir), "--epochs", "2", "--batch-size", "8",
                                         "--lr", "3e-3", "--resume", *SHAPE], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    assert "epoch 1:" not in resumed.output and json.loads((run_dir / "training.json").read_text())["resumed_from"] == 2


def test_missing_run_json_gives_the_manifest_error(tmp_path: Path, capsys) -> None:
    result = metaloom(capsys, "train", "--run-dir", tmp_path, "--epochs", "1")
    assert result.exit_code == 1
    assert "run.json is missing" in result.output and "metaloom collect" in result.output


def test_malformed_run_json_names_the_field(tmp_path: Path, capsys) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"format_version": 1, "model": {"name": "x"},
                                                    "dataset": {"name": "world"}, "encoder_type": "fancy"}))
    result = metaloom(capsys, "train", "--run-dir", tmp_path, "--epochs", "1")
    assert result.exit_code == 1
    assert "field 'encoder_type'" in result.output and "'fancy'" in result.output


def test_missing_activations_and_bad_options_exit_1(run_dir: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "run.json").write_text((run_dir / "run.json").read_text())
    result = metaloom(capsys, "train", "--run-dir", tmp_path, "--epochs", "1", *SHAPE)
    assert result.exit_code == 1 and "collection.json" in result.output and "metaloom collect" in result.output
    bad = CliRunner().invoke(train, ["--run-dir", str(run_dir), "--lr", "-1"])
    assert bad.exit_code == 2 and "lr must be a positive number, got -1.0" in bad.output


def train_a_copy(run_dir: Path, tmp_path: Path, *options: str) -> tuple[Path, RunManifest]:
    """Train one epoch with ``options`` on a copy of ``run_dir`` without its checkpoints."""
    run = Path(shutil.copytree(run_dir, tmp_path / "run"))
    shutil.rmtree(run / "checkpoints", ignore_errors=True)
    result = CliRunner().invoke(train, ["--run-dir", str(run), "--epochs", "1", "--batch-size", "8", *options, *SHAPE],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return run, RunManifest.load(run)


def test_signals_option_builds_a_doubter_that_reads_them(run_dir: Path, tmp_path: Path) -> None:
    run, manifest = train_a_copy(run_dir, tmp_path, "--logprob-signals", "prompt_logprob_sum, draft_logprob_min")
    pipe = MetaSpiderPipeline.from_pretrained(MetaSpiderConfig(**manifest.pipeline_settings(), local_files_only=True),
                                              doubter=manifest.resolve(run, manifest.checkpoint))
    assert pipe.doubter.config.signals == ("prompt_logprob_sum", "draft_logprob_min")
    generated = pipe.generate("What is the capital of France? Now.", max_new_tokens=3, return_result=True)
    assert 0.0 <= generated.p_correct <= 1.0
    bad = CliRunner().invoke(train, ["--run-dir", str(run), "--logprob-signals", "perplexity"])
    assert bad.exit_code == 2 and "unknown signals ['perplexity']" in bad.output


def test_a_scope_layer_the_doubter_does_not_read_is_a_usage_error(run_dir: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(run_dir, tmp_path / "run"))
    shutil.rmtree(run / "checkpoints", ignore_errors=True)
    bad = CliRunner().invoke(train, ["--run-dir", str(run), "--epochs", "1", "--scope-layer", "99", *SHAPE])
    assert bad.exit_code == 2 and "cannot build the Doubter: scope_layer must be one of the target layers" in bad.output


def test_p_correct_from_signals_trains_the_same_doubter_without_its_states(run_dir: Path, tmp_path: Path) -> None:
    import torch

    from meta_spider.loom.collect.activations import ActivationDataset
    from meta_spider.wrapper import Doubter
    from meta_spider.wrapper.signals import SIGNALS

    run, manifest = train_a_copy(run_dir, tmp_path, "--p-correct-from", "signals")
    doubter = Doubter.from_checkpoint(manifest.resolve(run, manifest.checkpoint))
    assert doubter.config.signals == SIGNALS  # every signal by default
    weights = doubter.signal_mix.linear.weight[0]
    assert weights[0] == 0.0 and torch.count_nonzero(weights[1:]) > 0
    activations = ActivationDataset.load(run / "activations")
    states, signals = activations.states("prompt")[:6], activations.signals(SIGNALS)[:6]
    with torch.no_grad():  # other states, the same P(correct): it reads the signals alone
        first = doubter.encode(states, signals).p_correct_logit
        other = doubter.encode(torch.randn_like(states) * 5, signals).p_correct_logit
    torch.testing.assert_close(first, other)
    bad = CliRunner().invoke(train, ["--run-dir", str(run), "--p-correct-from", "states", "--logprob-signals", "all"])
    assert bad.exit_code == 2 and "leave out --logprob-signals" in bad.output


@pytest.mark.parametrize("command", ["train", "collect"])
def test_the_module_entry_points_fail_in_one_line(command: str, tmp_path: Path) -> None:
    """torchrun / accelerate launch run ``python -m meta_spider.loom.cli.<command>``: an error is one line."""
    completed = subprocess.run([sys.executable, "-m", f"meta_spider.loom.cli.{command}", "--run-dir",
                                str(tmp_path / "absent"), *(["--model-name", "m", "--dataset", "jsonl"]
                                                            if command == "collect" else [])],
                               capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert completed.stderr.startswith("metaloom: error: ") and completed.stderr.count("\n") == 1
