"""New questions for a Doubter that reads the PMI signal: ``metaloom collect
--pmi-reference CHECKPOINT`` reads the signal against the Doubter's own
distribution, and ``metaloom eval --checkpoint`` on a collection that
computed its own says why its collected P(correct) differs from generation
and how to collect instead."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import metaloom
from test_loom_evaluation import MAX_NEW_TOKENS, shared_model, tiny_pipe, write_qa_folder
from wrapper_helpers import save_tiny_model, shared_tokenizer

from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
from meta_spider.wrapper.checkpoint import read_checkpoint


def collect_args(run_dir: Path, base: Path, qa: Path, *extra: object) -> list[object]:
    return ["collect", "--run-dir", run_dir, "--model-name", base, "--dataset", "jsonl", "--dataset-option",
            f"path={qa}", "--max-new-tokens", MAX_NEW_TOKENS, "--quiet", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A base, its QA folder, a collection with the PMI signal and a Doubter
    that reads it (the collection's p_ref in its checkpoint, as training copies it)."""
    from click.testing import CliRunner

    from meta_spider.loom.cli.collect import collect

    root = tmp_path_factory.mktemp("pmi-reference")
    base = save_tiny_model(shared_model("qwen2"), shared_tokenizer(), root / "base")
    qa = write_qa_folder(root / "qa", tiny_pipe())
    run = root / "run"
    result = CliRunner().invoke(collect, [str(a) for a in collect_args(run, base, qa, "--pmi-signals")[1:]])
    assert result.exit_code == 0, result.output
    doubter = tiny_pipe(str(base)).new_doubter(encoder_dim=16, ca_bottleneck_dim=16,
                                               signals=["draft_logprob_mean", "prompt_pmi_top4"])
    doubter.set_log_reference(ActivationDataset.load(run / ACTIVATIONS_DIR).log_reference())
    doubter.set_injection_gates(0.0)
    with torch.no_grad():  # P(correct) reads the signals (an untrained mix gives them no weight)
        doubter.signal_mix.linear.weight.fill_(0.5)
        doubter.signal_mix.linear.weight[0, -1] = 20.0  # the PMI, strongly
    checkpoint = doubter.save_checkpoint(run / "checkpoints" / "best")
    return {"base": base, "qa": qa, "checkpoint": checkpoint, "root": root}


def test_new_questions_are_read_against_the_doubters_own_reference(trained: dict[str, Path], tmp_path: Path,
                                                                   capsys) -> None:
    base, checkpoint = trained["base"], trained["checkpoint"]
    own = read_checkpoint(checkpoint)[1]["log_reference"].numpy()
    qa = Path(shutil.copytree(trained["qa"], tmp_path / "qa"))  # new questions: other train prompts
    train = (qa / "train.jsonl").read_text().splitlines()
    (qa / "train.jsonl").write_text(train[1] + "\n")

    given, computed = tmp_path / "given", tmp_path / "computed"
    result = metaloom(capsys, *collect_args(given, base, qa, "--pmi-signals", "--pmi-reference", checkpoint))
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(ActivationDataset.load(given / ACTIVATIONS_DIR).log_reference().numpy(), own)
    assert metaloom(capsys, *collect_args(computed, base, qa, "--pmi-signals")).exit_code == 0
    assert not np.array_equal(ActivationDataset.load(computed / ACTIVATIONS_DIR).log_reference().numpy(), own)

    def evaluated(run_dir: Path) -> dict:
        before = {path.name: path.read_bytes() for path in Path(checkpoint).iterdir()}
        result = metaloom(capsys, "eval", "--run-dir", run_dir, "--checkpoint", checkpoint, "--no-plot", "--quiet")
        assert result.exit_code == 0, result.output
        # The threshold chosen on these questions is this run's; the checkpoint, another run's, is left as it was.
        assert json.loads((run_dir / "run.json").read_text())["calibration"]["doubter"]["threshold"] is not None
        assert {path.name: path.read_bytes() for path in Path(checkpoint).iterdir()} == before
        return json.loads((run_dir / "report.json").read_text())

    report = evaluated(given)
    assert report["benchmark"]["p_correct_max_abs_diff_vs_collected_states"] <= 1e-3
    report = evaluated(computed)
    assert report["benchmark"]["p_correct_max_abs_diff_vs_collected_states"] > 1e-3
    assert any("another reference distribution" in note and "--pmi-reference CHECKPOINT" in note
               for note in report["notes"])


def test_a_reference_option_that_cannot_be_used_is_a_clear_error(trained: dict[str, Path], tmp_path: Path,
                                                                  capsys) -> None:
    base, qa = trained["base"], trained["qa"]
    result = metaloom(capsys, *collect_args(tmp_path / "a", base, qa, "--pmi-reference", trained["checkpoint"]))
    assert result.exit_code == 2 and "add --pmi-signals" in result.output
    plain = tiny_pipe(str(base)).new_doubter(encoder_dim=16, ca_bottleneck_dim=16).save_checkpoint(tmp_path / "plain")
    result = metaloom(capsys, *collect_args(tmp_path / "b", base, qa, "--pmi-signals", "--pmi-reference", plain))
    assert result.exit_code != 0 and "carries no PMI reference distribution" in result.output
    result = metaloom(capsys, *collect_args(tmp_path / "c", base, qa, "--pmi-signals", "--pmi-reference", qa))
    assert result.exit_code != 0 and "name a Doubter checkpoint" in result.output and "Traceback" not in result.output
    broken = tmp_path / "broken.safetensors"  # a checkpoint file cut short
    broken.write_bytes((Path(trained["checkpoint"]) / "doubter.safetensors").read_bytes()[:200])
    result = metaloom(capsys, *collect_args(tmp_path / "d", base, qa, "--pmi-signals", "--pmi-reference", broken))
    assert result.exit_code != 0 and "name a Doubter checkpoint" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "d" / "activations").exists()  # refused before anything was collected


def test_keep_threshold_gates_at_the_checkpoints_own_calibration(trained: dict[str, Path], tmp_path: Path,
                                                                  capsys) -> None:
    from meta_spider.wrapper.checkpoint import write_calibration

    base, qa = trained["base"], trained["qa"]
    run_dir = tmp_path / "mine"
    assert metaloom(capsys, *collect_args(run_dir, base, qa, "--pmi-signals", "--pmi-reference",
                                          trained["checkpoint"])).exit_code == 0
    uncalibrated = Path(shutil.copytree(trained["checkpoint"], tmp_path / "uncalibrated"))
    result = metaloom(capsys, "eval", "--run-dir", run_dir, "--checkpoint", uncalibrated, "--keep-threshold",
                      "--no-plot", "--quiet")
    assert result.exit_code != 0 and "carries no calibrated threshold" in result.output
    assert str(uncalibrated) in "".join(result.output.split())
    assert "Traceback" not in result.output and not (run_dir / "report.json").exists()
    result = metaloom(capsys, "eval", "--run-dir", run_dir, "--checkpoint", uncalibrated, "--keep-threshold",
                      "--target-coverage", "0.5", "--no-plot", "--quiet")
    assert result.exit_code == 2 and "leave out --target-coverage" in result.output

    calibrated = write_calibration(Path(shutil.copytree(trained["checkpoint"], tmp_path / "calibrated")),
                                   {"threshold": 0.85, "rule": "goals", "split": "validation"})
    before = {path.name: path.read_bytes() for path in calibrated.iterdir()}
    result = metaloom(capsys, "eval", "--run-dir", run_dir, "--checkpoint", calibrated, "--keep-threshold",
                      "--no-plot", "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["calibration"]["threshold"] == 0.85 and report["calibration"]["rule"] == "fixed"
    answered = [q for q in report["questions"] if q["decision"] != "gate_refused"]
    refused = [q for q in report["questions"] if q["decision"] == "gate_refused"]
    assert answered and refused  # the threshold splits these questions: the gate is the checkpoint's
    assert all(q["p_correct"] >= 0.85 for q in answered) and all(q["p_correct"] < 0.85 for q in refused)
    # Nothing new was chosen: neither run.json nor the checkpoint records anything.
    assert not json.loads((run_dir / "run.json").read_text())["calibration"]
    assert {path.name: path.read_bytes() for path in calibrated.iterdir()} == before

    # A checkpoint calibrated to answer nothing (threshold null) is kept as such.
    nothing = write_calibration(Path(shutil.copytree(trained["checkpoint"], tmp_path / "nothing")),
                                {"threshold": None, "rule": "target_risk", "split": "validation"})
    assert metaloom(capsys, "eval", "--run-dir", run_dir, "--checkpoint", nothing, "--keep-threshold",
                    "--no-plot", "--quiet").exit_code == 0
    report = json.loads((run_dir / "report.json").read_text())
    assert report["calibration"]["threshold"] is None and "answers nothing" in report["calibration"]["note"]
    assert {q["decision"] for q in report["questions"]} == {"gate_refused"}


def test_a_threshold_is_recorded_only_where_it_belongs(trained: dict[str, Path], tmp_path: Path, capsys,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.wrapper.checkpoint import read_checkpoint_document

    base, qa = trained["base"], trained["qa"]
    run_dir = tmp_path / "run"
    assert metaloom(capsys, *collect_args(run_dir, base, qa, "--pmi-signals", "--pmi-reference",
                                          trained["checkpoint"])).exit_code == 0
    own = Path(shutil.copytree(trained["checkpoint"], run_dir / "checkpoints" / "best"))
    RunManifest.update_file(run_dir, checkpoint="checkpoints/best")
    other = Path(shutil.copytree(trained["checkpoint"], tmp_path / "other"))
    before = {path.name: path.read_bytes() for path in other.iterdir()}
    # Its own checkpoint, given by a path relative to the shell: run.json and the checkpoint get the threshold.
    monkeypatch.chdir(run_dir)
    assert metaloom(capsys, "eval", "--run-dir", run_dir, "--checkpoint", "checkpoints/best", "--no-plot",
                    "--quiet").exit_code == 0
    recorded = json.loads((run_dir / "run.json").read_text())["calibration"]["doubter"]
    assert read_checkpoint_document(own)[0]["calibration"]["threshold"] == recorded["threshold"]
    # Another run's checkpoint: run.json keeps its own checkpoint's threshold, the other checkpoint is untouched.
    (run_dir / "run.json").write_text((run_dir / "run.json").read_text().replace(
        json.dumps(recorded["threshold"]), "0.123456"))
    result = metaloom(capsys, "eval", "--run-dir", run_dir, "--checkpoint", other, "--no-plot")
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "run.json").read_text())["calibration"]["doubter"]["threshold"] == 0.123456
    assert {path.name: path.read_bytes() for path in other.iterdir()} == before
    assert "in the report only" in " ".join(result.output.split())


def test_load_pipeline_takes_a_run_folder_alone(trained: dict[str, Path]) -> None:
    import click

    from meta_spider import load_pipeline
    from meta_spider.loom.manifest import RunManifest

    run_dir = trained["root"] / "run"
    by_folder = load_pipeline(str(run_dir), checkpoint=trained["checkpoint"])
    by_manifest = load_pipeline(RunManifest.load(run_dir), run_dir, trained["checkpoint"], None)
    question = "What is the capital of France?"
    assert by_folder.generate(question, max_new_tokens=4, return_result=True).p_correct == pytest.approx(
        by_manifest.generate(question, max_new_tokens=4, return_result=True).p_correct)
    with pytest.raises(click.ClickException, match="has no checkpoint"):
        load_pipeline(run_dir)  # run.json names none: the error says to train or pass one
    with pytest.raises(TypeError, match="needs its run folder"):
        load_pipeline(RunManifest.load(run_dir))


def test_keep_threshold_needs_no_validation_questions(trained: dict[str, Path], tmp_path: Path, capsys) -> None:
    from meta_spider.wrapper.checkpoint import write_calibration

    qa = Path(shutil.copytree(trained["qa"], tmp_path / "qa"))
    (qa / "validation.jsonl").unlink()
    run_dir = tmp_path / "no-validation"
    assert metaloom(capsys, *collect_args(run_dir, trained["base"], qa, "--pmi-signals", "--pmi-reference",
                                          trained["checkpoint"])).exit_code == 0
    calibrated = write_calibration(Path(shutil.copytree(trained["checkpoint"], tmp_path / "calibrated")),
                                   {"threshold": 0.85, "rule": "goals", "split": "validation"})
    result = metaloom(capsys, "eval", "--run-dir", run_dir, "--checkpoint", calibrated, "--keep-threshold",
                      "--no-plot", "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["calibration"]["threshold"] == 0.85 and report["calibration"]["split"] is None
    assert any("the given threshold gates" in note for note in report["notes"])
    refused = [q for q in report["questions"] if q["decision"] == "gate_refused"]
    assert refused and all(q["p_correct"] < 0.85 for q in refused)
    assert all(q["p_correct"] >= 0.85 for q in report["questions"] if q["decision"] != "gate_refused")
