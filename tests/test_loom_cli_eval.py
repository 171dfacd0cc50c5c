"""``metaloom eval`` on a tiny run directory made by the real ``collect``
command: a saved tiny Qwen2, a JSONL dataset, and a Doubter checkpoint whose
injection gates are 0 (so its behaviour is known: it says what the base
said). Checks the files it writes, run.json's calibration, and its errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import metaloom
from click.testing import CliRunner
from test_loom_evaluation import MAX_NEW_TOKENS, collected_run, expected_oracle

from meta_spider.loom.cli.errors import CommandError
from meta_spider.loom.cli.eval import eval_command
from meta_spider.loom.manifest import RunManifest


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return collected_run(tmp_path_factory.mktemp("cli-eval"))


@pytest.fixture
def fresh_run(run_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the run directory (commands write into it)."""
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def invoke(*args: str) -> Any:
    return CliRunner().invoke(eval_command, list(args))


def test_eval_writes_report_plot_and_calibration(fresh_run: Path) -> None:
    result = invoke("--run-dir", str(fresh_run))
    assert result.exit_code == 0, result.output
    report = json.loads((fresh_run / "report.json").read_text())
    assert report["benchmark"]["split"] == "test" and report["benchmark"]["n"] == 6
    assert report["benchmark"]["max_tokens"] == MAX_NEW_TOKENS  # the collection's
    assert [q["pass1_correct"] for q in report["questions"]] == expected_oracle("test")
    # generated under the calibrated gate: refused exactly below the threshold, else the base's answer
    threshold = report["calibration"]["threshold"]
    assert report["calibration"]["gated_generation"] is True
    for question in report["questions"]:
        below = threshold is None or question["p_correct"] < threshold
        assert question["decision"] == ("gate_refused" if below else "pass2")
        assert question["action"] == ("refuse" if below else "confirm")
    refused = sum(q["decision"] == "gate_refused" for q in report["questions"])
    assert report["doubter"]["decisions"] == {"pass2": 6 - refused, "gate_refused": refused, "base_answer": 0}
    assert report["doubter"]["actions"] == {"confirm": 6 - refused, "correct": 0, "refuse": refused}
    assert [b["name"] for b in report["baselines"]] == ["always_answer", "first_token_max_prob", "answer_mean_logprob",
                                                         "linear_probe", "signals_logistic", "probe_signals_logistic"]
    assert (fresh_run / "risk_coverage.png").read_bytes()[:4] == b"\x89PNG"
    calibration = RunManifest.load(fresh_run).calibration["doubter"]
    assert calibration["threshold"] == report["calibration"]["threshold"]
    assert calibration["split"] == "validation" and "evaluated" not in calibration
    # ... and into the checkpoint, so the Doubter loaded alone gates the same way
    document = json.loads((fresh_run / "checkpoints" / "best" / "doubter_config.json").read_text())
    assert document["calibration"] == {**calibration, "refusal": "I don't know."}
    assert "Doubter vs baselines: jsonl / test, n=6" in result.output and "Acceptance" in result.output


def test_eval_without_the_answer_gate_judges_pass2_text(fresh_run: Path) -> None:
    result = invoke("--run-dir", str(fresh_run), "--no-answer-gate", "--no-plot", "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads((fresh_run / "report.json").read_text())
    # the injection gates are 0: pass 2 says what the base said
    assert report["doubter"]["actions"] == {"confirm": 6, "correct": 0, "refuse": 0}
    assert report["doubter"]["decisions"] == {"pass2": 6, "gate_refused": 0, "base_answer": 0}
    assert report["doubter"]["behaviour"]["selective_accuracy"] == 0.5
    assert report["calibration"]["gated_generation"] is False


def test_load_pipeline_takes_the_calibrated_answer_gate(fresh_run: Path) -> None:
    from meta_spider.loom.cli.eval import load_pipeline

    assert load_pipeline(RunManifest.load(fresh_run), fresh_run, None, None).answer_gate is None  # not calibrated
    assert invoke("--run-dir", str(fresh_run), "--no-plot", "--quiet", "--target-coverage", "0.5").exit_code == 0
    manifest = RunManifest.load(fresh_run)
    gate = load_pipeline(manifest, fresh_run, None, None).answer_gate
    assert gate.threshold == manifest.calibration["doubter"]["threshold"] and gate.is_refusal(gate.refusal)
    RunManifest.update_file(fresh_run, calibration={"doubter": {"threshold": -0.5}})
    with pytest.raises(CommandError, match=r"field 'calibration'.*metaloom eval"):
        load_pipeline(RunManifest.load(fresh_run), fresh_run, None, None)


def test_eval_options(fresh_run: Path) -> None:
    result = invoke("--run-dir", str(fresh_run), "--max-examples", "2", "--no-plot", "--target-coverage", "0.25",
                    "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads((fresh_run / "report.json").read_text())
    assert [q["id"] for q in report["questions"]] == ["q14", "q15"]
    assert report["calibration"]["target_coverage"] == 0.25
    assert not (fresh_run / "risk_coverage.png").exists()
    assert "Doubter vs baselines" not in result.output and "wrote" not in result.output  # --quiet


def test_eval_in_batches_writes_the_report_of_one_question_at_a_time(fresh_run: Path, tmp_path: Path) -> None:
    alone = Path(shutil.copytree(fresh_run, tmp_path / "alone"))
    assert invoke("--run-dir", str(alone), "--no-plot", "--quiet").exit_code == 0
    result = invoke("--run-dir", str(fresh_run), "--batch-size", "4", "--no-plot", "--quiet")
    assert result.exit_code == 0, result.output
    one, batched = (json.loads((run / "report.json").read_text()) for run in (alone, fresh_run))
    assert (one["benchmark"]["batch_size"], batched["benchmark"]["batch_size"]) == (1, 4)
    assert [(q["id"], q["text"], q["decision"]) for q in batched["questions"]] == \
        [(q["id"], q["text"], q["decision"]) for q in one["questions"]]
    assert [q["p_correct"] for q in batched["questions"]] == pytest.approx([q["p_correct"] for q in one["questions"]],
                                                                           abs=1e-5)
    refused = invoke("--run-dir", str(fresh_run), "--batch-size", "0")
    assert refused.exit_code == 2 and "--batch-size" in refused.output


def test_eval_agentic_writes_the_agent_report(fresh_run: Path) -> None:
    result = invoke("--run-dir", str(fresh_run), "--agentic", "--no-plot", "--max-examples", "2",
                    "--closed-book", "direct")
    assert result.exit_code == 0, result.output
    agentic = json.loads((fresh_run / "agentic_report.json").read_text())
    # the real agent comparison: the run's test questions (as many as evaluated) through direct and doubter
    assert agentic["baseline"] == "direct" and set(agentic["policies"]) == {"direct", "doubter"}
    assert agentic["num_tasks"] == 2 and agentic["settings"]["closed_book"] == ["direct"]
    assert "agentic comparison" in result.output
    # the agents were built with the calibration this eval just wrote into run.json
    calibration = json.loads((fresh_run / "run.json").read_text())["calibration"]["doubter"]
    assert agentic["settings"]["thresholds"]["doubter"] == {"value": calibration["threshold"],
                                                            "source": "calibration:doubter"}


def test_eval_closed_book_needs_agentic_and_a_known_policy(fresh_run: Path, capsys) -> None:
    result = invoke("--run-dir", str(fresh_run), "--no-plot", "--closed-book", "direct")
    assert result.exit_code == 2 and "--agentic" in result.output
    result = metaloom(capsys, "eval", "--run-dir", fresh_run, "--no-plot", "--agentic", "--closed-book", "oracle",
                      "--max-examples", "1")
    assert result.exit_code == 1 and "closed_book must name policies" in result.output


def test_eval_without_checkpoint_says_to_train(fresh_run: Path) -> None:
    manifest = RunManifest.load(fresh_run)
    manifest.checkpoint = None
    manifest.save(fresh_run)
    result = invoke("--run-dir", str(fresh_run), "--no-plot")
    assert result.exit_code == 1
    assert "no checkpoint" in result.output and "metaloom train" in result.output
    assert not (fresh_run / "report.json").exists()


def test_eval_without_run_json_names_the_file(tmp_path: Path, capsys) -> None:
    result = metaloom(capsys, "eval", "--run-dir", tmp_path / "nowhere")
    assert result.exit_code == 1 and "run.json" in result.output and "metaloom collect" in result.output


def test_eval_of_a_split_that_was_not_collected(fresh_run: Path) -> None:
    result = invoke("--run-dir", str(fresh_run), "--split", "dev")
    assert result.exit_code == 1 and "no 'dev' questions" in result.output
