"""``metaloom collect`` (the click command, run through click's CliRunner):
it resolves a dataset through the plugins, collects into
``<run-dir>/activations/``, writes a valid ``run.json``, resumes, and
refuses to mix bases or settings with errors that say what to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import metaloom
from click.testing import CliRunner
from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
from meta_spider.loom.cli.collect import collect, default_splits, parse_dataset_options
from meta_spider.loom.manifest import RunManifest
from meta_spider.plugins import PLUGINS_ENV_VAR
from wrapper_helpers import PROMPTS, make_tiny_model, save_tiny_model, shared_tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = shared_tokenizer()
    return save_tiny_model(make_tiny_model("qwen2", tokenizer), tokenizer, tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="module")
def qa_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("qa")
    for split, questions in {"train": PROMPTS[:4], "validation": PROMPTS[4:6], "test": PROMPTS[6:8]}.items():
        lines = [json.dumps({"id": f"{split}{i}", "question": q, "answer": "Paris"}) for i, q in enumerate(questions)]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(PLUGINS_ENV_VAR, raising=False)

    def invoke(*args: str) -> object:
        return CliRunner().invoke(collect, [str(a) for a in args], catch_exceptions=False)

    return invoke


def base_args(run_dir: Path, model_dir: Path, qa_dir: Path) -> list[str]:
    return ["--run-dir", str(run_dir), "--model-name", str(model_dir), "--dataset", "jsonl",
            "--dataset-option", f"path={qa_dir}", "--target-layers", "3,5", "--max-new-tokens", "3",
            "--shard-size", "2", "--quiet"]


def test_collect_writes_activations_and_a_valid_run_json(run, model_dir: Path, qa_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run(*base_args(run_dir, model_dir, qa_dir), "--encoder-type", "multi_token", "--read-position", "draft")
    assert result.exit_code == 0, result.output

    manifest = RunManifest.load(run_dir)
    assert manifest.model.name == str(model_dir)
    assert manifest.layers.target_layers == [3, 5]
    assert manifest.encoder_type == "multi_token" and manifest.read_position == "draft"
    assert manifest.dataset.name == "jsonl" and manifest.dataset.options == {"path": str(qa_dir)}
    assert manifest.dataset.sizes == {"test": 2, "train": 4, "validation": 2}
    assert manifest.prompt.use_chat_template is True and manifest.prompt.mcq_direct is False
    assert manifest.pipeline_settings()["target_layers"] == [3, 5]

    activations = ActivationDataset.load(run_dir / ACTIVATIONS_DIR)
    assert activations.complete and len(activations) == 8
    assert activations.splits == ["train", "validation", "test"]
    assert activations.target_layers == [3, 5] and activations.max_new_tokens == 3
    assert tuple(activations.states("draft").shape) == (8, 2, 32)

    # The same command again (the base now taken from run.json) resumes a
    # finished collection: nothing changes.
    before = {p.name: p.read_bytes() for p in (run_dir / ACTIVATIONS_DIR).iterdir()}
    args = base_args(run_dir, model_dir, qa_dir)
    del args[2:4]  # --model-name
    assert run(*args).exit_code == 0
    assert {p.name: p.read_bytes() for p in (run_dir / ACTIVATIONS_DIR).iterdir()} == before


def test_max_examples_and_splits(run, model_dir: Path, qa_dir: Path, tmp_path: Path) -> None:
    result = run(*base_args(tmp_path, model_dir, qa_dir), "--max-examples", "1", "--splits", "train,test")
    assert result.exit_code == 0, result.output
    activations = ActivationDataset.load(tmp_path / ACTIVATIONS_DIR)
    assert [e["id"] for e in activations.examples] == ["train0", "test0"]


def test_mcq_direct_is_recorded_with_its_template_switches(run, model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "mcq.jsonl").write_text(json.dumps(
        {"id": "m1", "question": "Which is a colour?", "choices": ["red", "dog"], "answer": "red"}) + "\n")
    result = run("--run-dir", tmp_path / "run", "--model-name", model_dir, "--dataset", "jsonl",
                 "--dataset-option", f"train={tmp_path / 'mcq.jsonl'}", "--mcq-direct", "--max-new-tokens", "2",
                 "--quiet")
    assert result.exit_code == 0, result.output
    manifest = RunManifest.load(tmp_path / "run")
    assert manifest.prompt.mcq_direct is True and manifest.dataset.options["mcq_direct"] is True
    assert manifest.prompt.template_kwargs == {"enable_thinking": False, "thinking": False}
    activations = ActivationDataset.load(tmp_path / "run" / ACTIVATIONS_DIR)
    assert "Answer with the letter of the correct choice only." in activations.examples[0]["prompt_text"]


def test_collect_keeps_what_later_commands_wrote(run, model_dir: Path, qa_dir: Path, tmp_path: Path) -> None:
    assert run(*base_args(tmp_path, model_dir, qa_dir)).exit_code == 0
    RunManifest.update_file(tmp_path, checkpoint="checkpoints/best")
    assert run(*base_args(tmp_path, model_dir, qa_dir)).exit_code == 0
    assert RunManifest.load(tmp_path).checkpoint == "checkpoints/best"


def test_unknown_dataset_lists_the_choices(run, model_dir: Path, tmp_path: Path, capsys) -> None:
    result = metaloom(capsys, "collect", "--run-dir", tmp_path, "--model-name", model_dir, "--dataset", "nope",
                      "--quiet")
    assert result.exit_code != 0
    assert "nope" in result.output and "jsonl" in result.output and "mmlu" in result.output
    assert not (tmp_path / "run.json").exists()


def test_bad_dataset_option_is_a_clear_error(run, model_dir: Path, qa_dir: Path, tmp_path: Path, capsys) -> None:
    result = metaloom(capsys, "collect", *base_args(tmp_path, model_dir, qa_dir), "--dataset-option", "colour=red")
    assert result.exit_code != 0 and "colour" in result.output and "pass only the options" in result.output
    result = CliRunner().invoke(collect, [*base_args(tmp_path, model_dir, qa_dir), "--dataset-option", "novalue"])
    assert result.exit_code != 0 and "key=value" in result.output


def test_another_model_is_refused_unless_forced(run, model_dir: Path, qa_dir: Path, tmp_path: Path) -> None:
    tokenizer = shared_tokenizer()
    other = save_tiny_model(make_tiny_model("llama", tokenizer), tokenizer, tmp_path / "other-base")
    run_dir = tmp_path / "run"
    assert run(*base_args(run_dir, model_dir, qa_dir)).exit_code == 0

    args = base_args(run_dir, other, qa_dir)
    result = CliRunner().invoke(collect, args)
    assert result.exit_code != 0
    assert str(model_dir) in result.output and "--force" in result.output
    assert RunManifest.load(run_dir).model.name == str(model_dir)

    assert run(*args, "--force").exit_code == 0
    assert RunManifest.load(run_dir).model.name == str(other)
    assert ActivationDataset.load(run_dir / ACTIVATIONS_DIR).model["model_id"] == str(other)


def test_changed_settings_on_resume_are_refused(run, model_dir: Path, qa_dir: Path, tmp_path: Path) -> None:
    assert run(*base_args(tmp_path, model_dir, qa_dir)).exit_code == 0
    result = CliRunner().invoke(collect, [*base_args(tmp_path, model_dir, qa_dir), "--max-new-tokens", "5"])
    assert result.exit_code != 0
    assert "max_new_tokens" in result.output and "--force" in result.output
    result = run(*base_args(tmp_path, model_dir, qa_dir), "--max-new-tokens", "5", "--force")
    assert result.exit_code == 0, result.output
    assert ActivationDataset.load(tmp_path / ACTIVATIONS_DIR).max_new_tokens == 5


def test_a_write_the_machine_refuses_is_one_line_and_the_rerun_collects_everything(
        model_dir: Path, qa_dir: Path, tmp_path: Path) -> None:
    # A real refused write: a file size limit (Python ignores SIGXFSZ, so the write fails with EFBIG, as a
    # full disk fails with ENOSPC). It is the machine's problem, not a bug: status 1, what to do, no traceback.
    import resource

    run_dir = tmp_path / "run"
    args = [str(Path(sys.executable).parent / "metaloom"), "collect", *base_args(run_dir, model_dir, qa_dir)]
    env = {key: value for key, value in os.environ.items() if key != PLUGINS_ENV_VAR}

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, resource.RLIM_INFINITY))

    refused = subprocess.run(args, capture_output=True, text=True, env=env, preexec_fn=small_files, timeout=300)
    assert refused.returncode == 1, refused.stderr
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith("metaloom: error: a file outgrew this process's file size limit (ulimit -f)"), error
    assert "run the same command again" in error and "Traceback" not in refused.stderr
    resumed = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    dataset = ActivationDataset.load(run_dir / ACTIVATIONS_DIR)
    assert dataset.complete and len(dataset.examples) == 8


def test_storage_problems_by_errno() -> None:
    import errno

    from meta_spider.agentcore.cli import storage_problem

    full = storage_problem(OSError(errno.ENOSPC, "No space left on device", "/data/run/shard-00003.safetensors"))
    assert full.startswith("no space left on the device writing /data/run/shard-00003.safetensors. Make room")
    assert storage_problem(OSError(errno.EDQUOT, "Disk quota exceeded")).startswith("the disk quota is used up. ")
    assert storage_problem(OSError(errno.ENOENT, "No such file or directory", "x")) is None
    assert storage_problem(ValueError("no space")) is None


def test_out_of_range_layers_are_a_clear_error(run, model_dir: Path, qa_dir: Path, tmp_path: Path, capsys) -> None:
    result = metaloom(capsys, "collect", *base_args(tmp_path, model_dir, qa_dir), "--target-layers", "2,9")
    assert result.exit_code != 0 and "out of range" in result.output and "--target-layers" in result.output


def test_model_name_is_required_without_a_default(model_dir: Path, qa_dir: Path, tmp_path: Path) -> None:
    args = base_args(tmp_path, model_dir, qa_dir)
    del args[2:4]
    result = CliRunner().invoke(collect, args)
    assert result.exit_code != 0 and "--model-name is required" in result.output


def test_option_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qa.jsonl").write_text("")
    assert parse_dataset_options(["path=qa.jsonl"]) == {"path": str(tmp_path.resolve() / "qa.jsonl")}
    assert parse_dataset_options(["seed=3", "build=true", "preset=tiny", "path=/a=b"]) == {
        "seed": 3, "build": True, "preset": "tiny", "path": "/a=b"}
    assert default_splits(["test", "train", "extra"]) == ["train", "test"]
    # shift splits come after the ordinary ones, for `metaloom eval --shifts`
    assert default_splits(["test_misspelt", "test", "validation", "train", "test_outside"]) == [
        "train", "validation", "test", "test_misspelt", "test_outside"]
    assert default_splits(["dev", "auxiliary_train"]) == ["dev", "auxiliary_train"]
    # then the questions asked with their lookup, which eval fits the gate after a lookup on
    assert default_splits(["validation_lookup", "test_outside", "train_lookup", "test", "train", "x_lookup"]) == [
        "train", "test", "test_outside", "train_lookup", "validation_lookup"]


def test_importing_the_command_stays_light() -> None:
    """The loom plugin registers this command at start-up: no torch then."""
    code = ("import sys, meta_spider.loom.cli.collect, meta_spider.loom.collect.activations; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
