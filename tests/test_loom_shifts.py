"""Shift evaluation on a tiny real run: a JSONL dataset with the ordinary
splits plus ``test_paraphrase`` (the test questions reworded, answerable)
and ``test_outside`` (questions without a true answer), collected by the
real ``metaloom collect`` (which takes the shift splits by default), a
Doubter whose injection gates are 0 (pass 2 says what the base said), then
``metaloom eval --shifts`` and the API under it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from test_loom_evaluation import MAX_NEW_TOKENS, SPLITS, collected_run
from wrapper_helpers import PROMPTS

from meta_spider.loom.evaluate.evaluation import QuestionOutcome
from meta_spider.loom.manifest import RunManifest
from meta_spider.loom.evaluate.shifts import OutsideMetrics, ShiftRow, ShiftTable, outside_metrics, shift_splits
from meta_spider.policies.actions import REFUSAL_SENTENCE

LENIENT = ("--target-coverage", "0.5")
"""Eight validation questions cannot meet the behaviour goals; a coverage target keeps the rule explicit."""


def write_shift_splits(folder: Path, pipe: Any) -> None:
    """``test_paraphrase``: each test prompt reworded, the reference the base's
    own answer for even questions (so the oracle is mixed); ``test_outside``:
    four questions whose reference is the refusal sentence, marked unanswerable."""
    lines = []
    for i in SPLITS["test"]:
        question = f"Please, {PROMPTS[i].lower()}"
        answer = pipe.generate(question, max_new_tokens=MAX_NEW_TOKENS) if i % 2 == 0 else f"zebra number {i}"
        lines.append(json.dumps({"id": f"p{i}", "question": question, "answer": answer}) + "\n")
    (folder / "test_paraphrase.jsonl").write_text("".join(lines), encoding="utf-8")
    outside = [json.dumps({"id": f"o{i}", "question": f"What is the favourite colour of person {i}?",
                           "answer": REFUSAL_SENTENCE, "meta": {"answerable": False}}) + "\n" for i in range(4)]
    (folder / "test_outside.jsonl").write_text("".join(outside), encoding="utf-8")


@pytest.fixture(scope="module")
def shift_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return collected_run(tmp_path_factory.mktemp("shift-run"), add_splits=write_shift_splits)


@pytest.fixture
def fresh_run(shift_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(shift_run, tmp_path / "run"))


def invoke(*args: str) -> Any:
    from meta_spider.loom.cli.eval import eval_command

    return CliRunner().invoke(eval_command, list(args))


def p_correct(run: Path, split: str) -> np.ndarray:
    """The Doubter's P(correct) on the collected states of ``split``."""
    import torch

    from meta_spider.loom.collect.activations import ActivationDataset
    from meta_spider.wrapper import Doubter

    activations = ActivationDataset.load(run / "activations")
    doubter = Doubter.from_checkpoint(run / "checkpoints" / "best")
    states = activations.states("prompt")[activations.split_indices(split)]
    picked = states[:, [activations.target_layers.index(layer) for layer in doubter.config.target_layers]]
    with torch.no_grad():
        return torch.sigmoid(doubter.encode(picked).p_correct_logit.double()).numpy()


def test_shift_splits_and_outside_metrics_by_hand() -> None:
    assert shift_splits(["train", "test_outside", "validation", "test", "test_misspelt"]) == [
        "test", "test_outside", "test_misspelt"]
    assert shift_splits(["train", "validation"]) == []
    outcomes = [QuestionOutcome("o1", "?", REFUSAL_SENTENCE, True, REFUSAL_SENTENCE, "refuse", False),
                QuestionOutcome("o2", "?", "Paris", False, REFUSAL_SENTENCE, "refuse", False),
                QuestionOutcome("o3", "?", "Paris", False, "Paris", "confirm", False),
                QuestionOutcome("o4", "?", "Rome", False, "Lyon", "correct", False)]
    metrics = outside_metrics(outcomes)
    assert (metrics.n, metrics.refused, metrics.invented) == (4, 2, 2)
    assert metrics.refused_share == 0.5 and metrics.base_refused_share == 0.25
    with pytest.raises(ValueError, match="at least one"):
        outside_metrics([])


def test_shift_table_read_back_refuses_a_figure_of_the_wrong_kind() -> None:
    row = {"split": "test", "n": 4, "seconds": 0.5, "auroc": 0.75, "best_baseline": "signals_logistic",
           "best_baseline_coverage": 0.5, "best_baseline_knowledge_loss": 0.25}
    outside = {"split": "test_outside", "n": 2, "seconds": 0.1,
               "outside": {"n": 2, "refused": 2, "invented": 0, "refused_share": 1.0, "base_refused_share": 0.5}}
    table = ShiftTable.from_dict({"splits": [row, outside], "threshold": 0.4})
    assert table.row("test").best_baseline_knowledge_loss == 0.25 and table.row("test_outside").outside.refused == 2
    for bad, field in (({**row, "auroc": "high"}, "'auroc'"), ({**row, "best_baseline_coverage": True},
                       "'best_baseline_coverage'"), ({**row, "split": None}, "'split'"), ({**row, "n": None}, "'n'"),
                       ({**outside, "outside": {**outside["outside"], "refused_share": "all"}},
                        "'outside.refused_share'")):
        with pytest.raises(TypeError, match=field):
            ShiftTable.from_dict({"splits": [bad], "threshold": 0.4})


def test_shift_goals_by_hand() -> None:
    table = ShiftTable([
        ShiftRow("test", 100, 1.0, base_accuracy=0.5, auroc=0.90, mean_p_correct=0.45, ece=0.07,
                 best_baseline="signals_logistic", best_baseline_auroc=0.86, coverage=0.5, refusal_precision=0.85,
                 knowledge_loss=0.1),
        ShiftRow("test_paraphrase", 100, 1.0, base_accuracy=0.35, auroc=0.84, best_baseline="signals_logistic",
                 best_baseline_auroc=0.83, coverage=0.4, refusal_precision=0.79, knowledge_loss=0.3),
        ShiftRow("test_outside", 20, 1.0, outside=OutsideMetrics(20, 19, 1, 0.95, 0.5)),
    ], threshold=0.4)
    goals = {check.name: check for check in table.goals()}
    assert list(goals) == [
        "test: doubter_auroc", "test: auroc_margin_over_best_baseline", "test: knowledge_loss",
        "test: refusal_precision", "test_paraphrase: doubter_auroc", "test_paraphrase: auroc_margin_over_best_baseline",
        "test_paraphrase: knowledge_loss", "test_paraphrase: refusal_precision",
        "test_outside: refused_without_true_answer", "test_outside: invented_answers",
        "test_paraphrase: base_accuracy_vs_test"]
    assert [name for name, check in goals.items() if not check.passed] == [
        "test_paraphrase: doubter_auroc", "test_paraphrase: auroc_margin_over_best_baseline",
        "test_paraphrase: knowledge_loss", "test_paraphrase: refusal_precision", "test_outside: invented_answers",
        "test_paraphrase: base_accuracy_vs_test"]
    assert goals["test: auroc_margin_over_best_baseline"].value == pytest.approx(0.04)
    assert goals["test_paraphrase: base_accuracy_vs_test"].value == pytest.approx(0.7)
    assert goals["test_outside: refused_without_true_answer"].passed  # 0.95 is enough
    # shifts.json round trip: the rows and the goals come back
    again = ShiftTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again.rows == table.rows and again.threshold == 0.4 and again.goals() == table.goals()


def test_eval_shifts_writes_the_side_by_side_table(fresh_run: Path) -> None:
    result = invoke("--run-dir", str(fresh_run), "--shifts", "--no-plot", *LENIENT)
    assert result.exit_code == 0, result.output
    assert "Doubter under shift" in result.output and "paraphrase" in result.output and "invented" in result.output
    assert "Goals under shift" in result.output and "calibration error (ECE)" in result.output
    shifts = json.loads((fresh_run / "shifts.json").read_text())
    rows = {row["split"]: row for row in shifts["splits"]}
    assert list(rows) == ["test", "test_outside", "test_paraphrase"]
    test = json.loads((fresh_run / "report.json").read_text())
    paraphrase = json.loads((fresh_run / "report_test_paraphrase.json").read_text())
    assert not (fresh_run / "report_test_outside.json").exists()  # no question there has a true answer
    # every split is calibrated on validation: one threshold for all
    threshold = test["calibration"]["threshold"]
    assert paraphrase["calibration"]["threshold"] == threshold == shifts["threshold"]
    assert RunManifest.load(fresh_run).calibration["doubter"]["threshold"] == threshold
    for name, report in (("test", test), ("test_paraphrase", paraphrase)):
        row, behaviour = rows[name], report["doubter"]["behaviour"]
        assert row["n"] == report["benchmark"]["n"] == 6 and row["outside"] is None
        assert row["coverage"] == behaviour["coverage"] and row["knowledge_loss"] == behaviour["knowledge_loss"]
        assert row["refusal_precision"] == behaviour["refusal_precision"]
        assert row["auroc"] == (report["doubter"]["scores"] or {}).get("auroc")
        # calibration beside ranking: the Doubter's ECE and how sure it is on the whole, against the base's accuracy
        assert row["ece"] == report["doubter"]["scores"]["ece"]
        assert row["mean_p_correct"] == pytest.approx(np.mean([q["p_correct"] for q in report["questions"]]))
        # the best baseline gated at its own threshold (the linear probe, fitted on validation, has none)
        own = next(b for b in report["baselines"] if b["name"] == row["best_baseline"])["own_threshold"]
        assert (own is None) == (row["best_baseline"] == "linear_probe")
        assert row["best_baseline_coverage"] == (None if own is None else own["metrics"]["coverage"])
        assert row["best_baseline_knowledge_loss"] == (None if own is None else own["metrics"]["knowledge_loss"])
    # the unanswerable questions: generated under the same gate, so refused exactly below the threshold
    outside = rows["test_outside"]
    assert outside["auroc"] is None and outside["coverage"] is None and outside["n"] == 4
    refused = int((p_correct(fresh_run, "test_outside") < threshold).sum())
    assert outside["outside"]["refused"] == refused and outside["outside"]["invented"] == 4 - refused
    assert outside["outside"]["refused_share"] == refused / 4
    goals = {check["name"]: check for check in shifts["goals"]}
    assert goals["test_outside: invented_answers"]["value"] == 4 - refused
    assert goals["test_paraphrase: refusal_precision"]["value"] == rows["test_paraphrase"]["refusal_precision"]


def test_eval_of_one_outside_split(fresh_run: Path) -> None:
    result = invoke("--run-dir", str(fresh_run), "--split", "test_outside", "--no-plot", *LENIENT)
    assert result.exit_code == 0, result.output
    figures = json.loads((fresh_run / "outside_test_outside.json").read_text())
    assert figures["split"] == "test_outside" and figures["outside"]["n"] == 4
    assert not (fresh_run / "report.json").exists() and not (fresh_run / "shifts.json").exists()


def test_eval_of_one_shift_split_writes_its_own_report(fresh_run: Path) -> None:
    result = invoke("--run-dir", str(fresh_run), "--split", "test_paraphrase", *LENIENT)
    assert result.exit_code == 0, result.output
    report = json.loads((fresh_run / "report_test_paraphrase.json").read_text())
    assert report["benchmark"]["split"] == "test_paraphrase" and report["calibration"]["split"] == "validation"
    assert (fresh_run / "risk_coverage_test_paraphrase.png").is_file()
    assert not (fresh_run / "report.json").exists()


def test_eval_shifts_usage_errors(fresh_run: Path) -> None:
    result = invoke("--run-dir", str(fresh_run), "--shifts", "--split", "validation")
    assert result.exit_code == 2 and "--shifts evaluates test and every test_* split" in result.output
    assert result.exit_code == 2 and "leave out --split" in result.output


def test_eval_shifts_with_the_agent_writes_its_table_beside(fresh_run: Path) -> None:
    result = invoke("--run-dir", str(fresh_run), "--shifts", "--agentic", "--no-plot", "--max-examples", "3",
                    "--closed-book", "direct", *LENIENT)
    assert result.exit_code == 0, result.output
    assert "Agent under shift" in result.output
    files = {"test": "agentic_report.json", "test_outside": "agentic_report_test_outside.json",
             "test_paraphrase": "agentic_report_test_paraphrase.json"}
    rows = json.loads((fresh_run / "agentic_shifts.json").read_text())["splits"]
    assert [(row["split"], row["policy"]) for row in rows] == [
        (split, policy) for split in files for policy in ("direct", "doubter")]
    for row in rows:
        report = json.loads((fresh_run / files[row["split"]]).read_text())
        assert report["settings"]["split"] == row["split"] and report["num_tasks"] == row["n"] == 3
        results = [task["results"][row["policy"]] for task in report["tasks"]]
        assert row["right"] == sum(r["correct"] for r in results)
        assert row["refused"] == sum(r["outcome"] == "refuse" for r in results)
        assert row["wrong"] == sum(r["outcome"] == "answer" and not r["correct"] for r in results)
        assert row["right"] + row["refused"] + row["wrong"] + row["max_steps"] == 3
    # the questions of each split, as that split asks them
    paraphrase = json.loads((fresh_run / files["test_paraphrase"]).read_text())
    assert all(task["question"].startswith("Please, ") for task in paraphrase["tasks"])


def test_eval_agentic_on_another_split_keeps_the_test_report(fresh_run: Path) -> None:
    result = invoke("--run-dir", str(fresh_run), "--split", "test_paraphrase", "--agentic", "--no-plot",
                    "--max-examples", "2", *LENIENT)
    assert result.exit_code == 0, result.output
    report = json.loads((fresh_run / "agentic_report_test_paraphrase.json").read_text())
    assert report["settings"]["split"] == "test_paraphrase" and report["num_tasks"] == 2
    assert not (fresh_run / "agentic_report.json").exists() and not (fresh_run / "agentic_shifts.json").exists()


def test_eval_shifts_of_a_run_collected_without_one(fresh_run: Path) -> None:
    # the dataset gained a shift split after collection: the error says to collect it
    copy = Path(shutil.copytree(RunManifest.load(fresh_run).dataset.options["path"], fresh_run / "qa"))
    (copy / "test_misspelt.jsonl").write_text(json.dumps({"id": "m1", "question": "Wat is it?", "answer": "x"}) + "\n")
    RunManifest.update_file(fresh_run, dataset={"options": {"path": str(copy)}})
    result = invoke("--run-dir", str(fresh_run), "--shifts", "--no-plot")
    assert result.exit_code == 1 and "no 'test_misspelt' questions" in result.output and "collect" in result.output
