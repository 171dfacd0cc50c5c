"""The demo on the tiny world: the whole pipeline through the public
commands, then questions through ``pipe.generate``; a second run reuses every
step's output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from meta_spider.loom.demo import main, run_demo
from meta_spider.loom.world import check_answer
from meta_spider.policies.actions import is_refusal


@pytest.mark.world
@pytest.mark.slow
def test_demo_runs_the_pipeline_then_reuses_it(tiny_world, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "demo-run"
    first = run_demo("tiny", 0, run, console=Console(record=True, width=120))
    for name in ("run.json", "report.json", "activations/collection.json", "checkpoints/best"):
        assert (run / name).exists(), name
    report = json.loads((run / "report.json").read_text())
    assert {row["name"] for row in report["acceptance"]} >= {"doubter_auroc", "refusal_precision", "mcnemar_p"}
    shown = first["questions"]
    assert len(shown) == 3
    # One confident answer that is right, one honest refusal.
    assert check_answer(shown[0]["text"], [shown[0]["truth"]]) and shown[0]["p_correct"] > shown[1]["p_correct"]
    assert is_refusal(shown[1]["text"])
    # pipe.generate from the run directory carries eval's answer gate: it says what the report says
    reported = {q["id"]: q for q in report["questions"]}
    assert [q["text"] for q in shown] == [reported[q["id"]]["text"] for q in shown]
    assert [q["decision"] for q in shown] == [reported[q["id"]]["decision"] for q in shown]
    assert report["calibration"]["gated_generation"] is True
    # the world has shift splits: the demo evaluated them too, under the same threshold
    shifts = json.loads((run / "shifts.json").read_text())
    assert [row["split"] for row in shifts["splits"]] == ["test", "test_paraphrase", "test_misspelt", "test_outside"]
    assert shifts["threshold"] == report["calibration"]["threshold"] and first["shifts"] == shifts
    outside = shifts["splits"][-1]["outside"]
    assert outside["refused"] + outside["invented"] == outside["n"] > 0
    assert {check["name"] for check in shifts["goals"]} >= {"test_paraphrase: doubter_auroc",
                                                           "test_outside: invented_answers"}
    # The calibration travels with the checkpoint: loaded the plain way, with nothing from run.json, the
    # pipeline refuses and answers exactly where the run (load_pipeline, under eval's gate) does.
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.world.dataset import WorldDataset
    from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline

    manifest = RunManifest.load(run)
    plain = MetaSpiderPipeline.from_pretrained(MetaSpiderConfig(model_name=str(tiny_world.model_dir)))
    plain.attach(manifest.resolve(run, manifest.checkpoint))
    assert plain.answer_gate.threshold == manifest.calibration["doubter"]["threshold"]
    # The default recipe: P(correct) from the pass-1 signals alone (the encoder's own logit has weight 0 in the
    # mix), the question's subject found by occlusion among them; the states read for scope by a fitted gate.
    # plain.generate below is told the user's words by the messages it is given.
    doubter = plain.doubter
    assert "occluded_name_logprob" in doubter.config.signals and doubter.signal_mix.linear.weight[0, 0].item() == 0.0
    assert doubter.scope_gate is not None and doubter.scope_gate.fitted
    # ... calibrated on validation asked in several training wordings
    from meta_spider.loom.demo import VALIDATION_FRAMES
    assert manifest.dataset.options["validation_frames"] == VALIDATION_FRAMES > 1
    plain_validation = len(WorldDataset("tiny", 0, tiny_world.model_dir).split("validation"))
    assert manifest.dataset.sizes["validation"] == VALIDATION_FRAMES * plain_validation
    dataset = WorldDataset("tiny", 0, tiny_world.model_dir)
    examples = {example.id: example for example in dataset.split("test")}
    limit = report["benchmark"]["max_tokens"]
    agree = [is_refusal(plain.generate(dataset.prompt(examples[q["id"]]).messages, max_new_tokens=limit))
             == (q["action"] == "refuse") for q in report["questions"]]
    assert len(agree) == report["benchmark"]["n"] and sum(agree) == len(agree)
    # eval fitted the gate after a lookup on the questions asked with their lookup; the checkpoint carries it, and
    # the run's agent judges every record it finds with it before answering from it
    gate = manifest.calibration["doubter"]["after_lookup"]
    assert gate["tool"] == "lookup" and gate["n_fit"] == manifest.dataset.sizes["train_lookup"] > gate["n_wrong"] > 0
    assert report["calibration"]["after_lookup"] == gate and doubter.calibration["after_lookup"] == gate
    from meta_spider.loom.evaluate.agentic import run_agentic_eval

    outside = run_agentic_eval(run, split="test_outside", policies=("doubter",)).results["doubter"]
    judged = [step["decision"]["metadata"] for result in outside for step in result.steps
              if step.get("type") == "model" and "after_lookup" in step["decision"]["metadata"]]
    found = sum(any(step.get("type") == "tool" and step.get("kind") == "result" for step in result.steps)
                for result in outside)
    assert len(judged) == found > 0
    assert all(m["gate"].startswith("refused" if m["after_lookup"]["score"] < gate["threshold"] else "passed")
               for m in judged)

    console = Console(record=True, width=1000)  # the temporary paths are long: no wrapping
    again = run_demo("tiny", 0, run, console=console)
    text = console.export_text()
    assert "skipped" in text and "shown, not recomputed" in text and "Doubter under shift" in text
    assert again["questions"] == shown and again["shifts"] == shifts
    assert "goals met on test:" in text and "under shift:" in text
    # each step's seconds, the skipped ones too (they cost a check of what is there)
    assert list(first["seconds"]) == list(again["seconds"]) == ["collect", "train", "eval"]
    assert "(collect " in text and sum(again["seconds"].values()) < sum(first["seconds"].values())

    # A damaged report (or shift table) from an earlier eval is evaluated again, not a traceback: cut short, or
    # whole JSON with a figure of the wrong kind (a baseline's own threshold, a row's number).
    report_json = json.loads((run / "report.json").read_text())
    shifts_json = json.loads((run / "shifts.json").read_text())
    report_json["baselines"][1]["own_threshold"] = "high"
    shifts_json["splits"][0]["best_baseline_knowledge_loss"] = "low"
    cut = '{"schema_version": 2, "paired"'
    for damaged, content in (("report.json", cut), ("shifts.json", cut), ("report.json", json.dumps(report_json)),
                             ("shifts.json", json.dumps(shifts_json))):
        (run / damaged).write_text(content)
        console = Console(record=True, width=1000)
        rebuilt = run_demo("tiny", 0, run, console=console)
        text = console.export_text()
        assert "cannot be read" in text and "evaluating again" in text
        assert rebuilt["questions"] == shown and rebuilt["shifts"]["goals"] == shifts["goals"]

    # A run directory another version left (collected without pass-1 signals): a clear stop, not a traceback.
    collection = run / "activations" / "collection.json"
    info = json.loads(collection.read_text())
    del info["signals"]
    collection.write_text(json.dumps(info))
    capsys.readouterr()
    assert main(["--preset", "tiny", "--run-dir", str(run)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "demo stopped: metaloom collect failed" in out and "signals" in out
    assert "Delete it to start the run over, or pass --run-dir NEW_FOLDER" in out and str(run) in out.replace(" ", "")


def test_the_help_names_the_default_recipe_and_every_other(capsys: pytest.CaptureFixture) -> None:
    from meta_spider.loom.demo import RECIPES

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{RECIPES[0]} (default):" in text
    assert all(f"{recipe}:" in text for recipe in RECIPES[1:])


def test_a_write_the_machine_refuses_stops_the_demo_with_what_to_do(tmp_path: Path) -> None:
    # A real refused write (a file size limit; Python ignores SIGXFSZ, so the write fails with EFBIG, as a full
    # disk fails with ENOSPC) while the world is installed: one message, status 1, no traceback.
    import os
    import resource
    import subprocess
    import sys

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, resource.RLIM_INFINITY))

    env = {**os.environ, "META_SPIDER_WORLD_CACHE": str(tmp_path / "worlds")}
    result = subprocess.run([sys.executable, "-m", "meta_spider.loom.demo", "--preset", "tiny", "--run-dir",
                             str(tmp_path / "run")], capture_output=True, text=True, env=env,
                            preexec_fn=small_files, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "demo stopped: a file outgrew this process's file size limit (ulimit -f)" in result.stdout
    assert "run the same command again" in " ".join(result.stdout.split())
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.world
def test_a_damaged_world_in_the_cache_stops_the_demo_with_what_to_do(tiny_world, tmp_path: Path, monkeypatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    # The cached base's config edited by hand: the hash check refuses it before any step, in one message that
    # names the file and both ways out, and nothing in the folder is deleted.
    import shutil

    cache = tmp_path / "worlds"
    copy = cache / tiny_world.path.name
    shutil.copytree(tiny_world.path, copy)
    config = copy / "model" / "config.json"
    config.write_text(config.read_text().replace("{", '{"attn_implementation": "eager", ', 1))
    monkeypatch.setenv("META_SPIDER_WORLD_CACHE", str(cache))
    capsys.readouterr()
    assert main(["--preset", "tiny", "--run-dir", str(tmp_path / "run")]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "demo stopped: world folder" in out and "model/config.json has sha256" in out
    assert "delete it (the next use builds it again)" in out and "META_SPIDER_WORLD_CACHE=DIR" in out
    assert "Traceback" not in out and config.exists() and not (tmp_path / "run").exists()
