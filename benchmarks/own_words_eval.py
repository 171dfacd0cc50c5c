"""A trained Doubter evaluated on questions of one's own, by the README's flow.

Writes the run's questions as JSONL (train and validation as the world asks
them, its unanswerable train bank left out; the test questions each in a
frame of ``shift_own_frames.json``, drawn as ``benchmarks/shift_signals.py``
and ``benchmarks/scope_own_words.py`` draw it), collects them over the run's
base against the Doubter's own PMI distribution (``metaloom collect
--pmi-signals --pmi-reference CHECKPOINT``, with ``--occlusion-signals``
when the Doubter reads that signal) and evaluates the checkpoint
there (``metaloom eval --checkpoint``). Printed from the report: the
Doubter and every baseline, by AUROC, at the Doubter's coverage and gated
at their own threshold from the same validation questions.
``--own-validation`` asks the validation questions in those frames too (a
user whose every question is in their own wording), and
``--keep-threshold`` gates at the checkpoint's own threshold instead of
choosing one on them (``metaloom eval --keep-threshold``).

    python benchmarks/own_words_eval.py --run-dir RUN --work /tmp/own-words \\
        --output benchmarks/results/own_words_eval.txt
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional

from metaloom_process import run_metaloom
from own_frames import own_question
from report import Report

COLLECT = ("--dtype", "float32", "--batch-size", "16", "--max-new-tokens", "24", "--pmi-signals")


def row(example: Any, question: str) -> dict[str, Any]:
    answer, *aliases = example.ground_truths
    return {"id": example.id, "question": question, "answer": answer, "aliases": aliases}


def write_questions(dataset: Any, folder: Path, own_splits: tuple[str, ...] = ("test",)) -> dict[str, int]:
    """The three JSONL files, ``own_splits`` in the benchmarks' own frames;
    how many questions each holds."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split in ("train", "validation", "test"):
        rows = []
        for example in dataset.split(split):
            if example.meta.get("answerable", True) is False:
                continue  # the unanswerable train bank: no answer a JSONL row could hold
            question = example.question
            if split in own_splits:
                question = own_question(example)
            rows.append(json.dumps(row(example, question)))
        (folder / f"{split}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
        sizes[split] = len(rows)
    return sizes


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a trained and evaluated world run (the demo's)")
    parser.add_argument("--work", type=Path, required=True,
                        help="a folder for the questions and the new collection (its questions/ and run/ "
                             "are replaced)")
    parser.add_argument("--own-validation", action="store_true",
                        help="ask the validation questions in the benchmarks' own frames too")
    parser.add_argument("--keep-threshold", action="store_true",
                        help="gate at the checkpoint's own threshold (metaloom eval --keep-threshold)")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    from meta_spider.agentcore.runfile import RunFileError
    from meta_spider.loom.datasets import create_dataset
    from meta_spider.loom.evaluate.comparison import ComparisonReport
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.plugins import make_plugin_manager

    try:
        manifest = RunManifest.load(args.run_dir)
    except RunFileError as error:
        print(error, file=sys.stderr)
        return 2
    if manifest.checkpoint is None or manifest.dataset.name != "world":
        print(f"{args.run_dir}: needs a trained world run (run ./scripts/demo.sh first)", file=sys.stderr)
        return 2
    checkpoint = str((args.run_dir / manifest.checkpoint).resolve())
    from meta_spider.wrapper.checkpoint import read_checkpoint_document
    from meta_spider.wrapper.signals import reads_occlusion

    occlusion = reads_occlusion(read_checkpoint_document(checkpoint)[0]["config"].get("signals", ()))
    dataset = create_dataset(make_plugin_manager(), "world", **manifest.dataset.options)
    run = args.work / "run"
    for folder in (args.work / "questions", run):  # this script's own two folders, nothing else there
        shutil.rmtree(folder, ignore_errors=True)
    own_splits = ("validation", "test") if args.own_validation else ("test",)
    sizes = write_questions(dataset, args.work / "questions", own_splits)
    started = time.perf_counter()
    for command, options in (
        ("collect", ["--run-dir", str(run), "--model-name", manifest.model.name, "--dataset", "jsonl",
                     "--dataset-option", f"path={args.work / 'questions'}", *COLLECT,
                     *(["--occlusion-signals"] if occlusion else []), "--pmi-reference", checkpoint,
                     "--quiet"]),
        ("eval", ["--run-dir", str(run), "--checkpoint", checkpoint, "--no-plot",
                  *(["--keep-threshold"] if args.keep_threshold else [])]),
    ):
        status = run_metaloom(command, *options)[1]
        if status:
            return status
    seconds = time.perf_counter() - started
    report = ComparisonReport.from_json((run / "report.json").read_text("utf-8"))

    out = Report()
    flags = "".join(f" --{name.replace('_', '-')}" for name in ("own_validation", "keep_threshold")
                    if getattr(args, name))
    out.say(f"# python benchmarks/own_words_eval.py --run-dir {args.run_dir.name}{flags} "
            f"(collect + eval {seconds:.0f} s)")
    out.say(f"questions: {sizes} ({' and '.join(own_splits)} in the benchmarks' own frames); base accuracy on test "
            f"{report.behaviour.base_accuracy:.3f}; answer threshold {report.calibration['threshold']:.3f} "
            + ("(the checkpoint's own)" if report.calibration["rule"] == "fixed"
               else f"({report.calibration['rule']}, validation)"))
    out.say(f"{'':<26}{'AUROC':>7} | {'at the Doubter coverage':^25} | {'at its own threshold':^33}".rstrip())
    out.say(f"{'':<26}{'':>7} | {'coverage':>9}{'know. loss':>12}    | {'threshold':>10}{'coverage':>10}"
            f"{'know. loss':>12}")
    behaviour = report.behaviour
    out.say(f"{'Doubter (generated text)':<26}{report.doubter_scores.auroc:>7.3f} | {behaviour.coverage:>9.3f}"
            f"{behaviour.knowledge_loss:>12.3f}    | {report.calibration['threshold']:>10.3f}"
            f"{behaviour.coverage:>10.3f}{behaviour.knowledge_loss:>12.3f}")
    for baseline in report.baselines:
        matched, own = baseline.matched.metrics, baseline.own_threshold
        gated = " " * 32 + "-" if own is None else (
            f"{'-' if own.threshold is None else format(own.threshold, '.3f'):>10}{own.metrics.coverage:>10.3f}"
            f"{own.metrics.knowledge_loss:>12.3f}")
        out.say(f"{baseline.name:<26}{baseline.scores.auroc:>7.3f} | {matched.coverage:>9.3f}"
                f"{matched.knowledge_loss:>12.3f}    | {gated}")
    for note in report.notes:
        out.say(f"note: {note}")
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
