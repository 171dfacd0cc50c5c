"""`metaloom eval --shifts` with the two passes run one question at a time
and in batches, side by side on one trained run: seconds, and whether the two give
the same table and the same per-question decisions.

    python benchmarks/eval_batch.py --run-dir RUN [--batch-size 16] [--rounds 2]

Each round evaluates a fresh copy of RUN (its activations, checkpoint and
run.json; the reports it holds are not read) once per batch size, the two
interleaved, each in a process of its own (model loading included), and
keeps the last round's reports to compare: every cell of the shift table and
goals, and per question of each answerable split the action taken, the text
generated and P(correct). Batched passes equal the batch-1 ones up to float
rounding (left padding changes the order of some sums), so a P(correct) at
the threshold or a token at a near tie could come out the other way; the
script counts such questions rather than assuming there are none. Set ``META_SPIDER_WORLD_CACHE`` as the
run was built with.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

from metaloom_process import run_metaloom
from report import Report

KEPT = ("activations", "checkpoints", "run.json", "training.json")
"""What a copied run keeps: everything eval reads, none of its reports."""


def copy_run(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for name in KEPT:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, target / name)
        elif path.exists():
            shutil.copy2(path, target / name)
    return target


def shift_cells(shifts: dict[str, Any]) -> dict[str, Any]:
    """Every cell of shifts.json but the seconds each split took."""
    cells: dict[str, Any] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key != "seconds":
                    walk(item, f"{path}/{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")
        else:
            cells[path] = value

    walk(shifts, "")
    return cells


def question_rows(run: Path) -> dict[str, dict[str, Any]]:
    """Per evaluated question (split/id): its action, text and P(correct)."""
    rows: dict[str, dict[str, Any]] = {}
    for path in sorted(run.glob("report*.json")):
        report = json.loads(path.read_text())
        split = report["benchmark"]["split"]
        for question in report["questions"]:
            rows[f"{split}/{question['id']}"] = {key: question[key] for key in ("action", "text", "p_correct")}
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a trained run (the demo's)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    if args.batch_size < 2 or args.rounds < 1:
        parser.error("--batch-size must be >= 2 and --rounds >= 1")
    from meta_spider.loom.manifest import ManifestError, RunManifest

    try:
        options = RunManifest.load(args.run_dir).dataset.options
    except ManifestError as error:
        parser.error(f"{error} (give a trained run directory)")

    sizes = (1, args.batch_size)
    seconds: dict[int, list[float]] = {size: [] for size in sizes}
    with tempfile.TemporaryDirectory(prefix="eval-batch-") as scratch:
        for round_index in range(args.rounds):
            for size in sizes:
                run = Path(scratch) / f"round{round_index}-batch{size}"
                copy_run(args.run_dir, run)
                spent, status = run_metaloom("eval", "--run-dir", run, "--shifts", "--batch-size", size,
                                             "--no-plot", "--quiet")
                if status:
                    print(f"(batch size {size})", file=sys.stderr)
                    return status
                seconds[size].append(spent)
        last = {size: Path(scratch) / f"round{args.rounds - 1}-batch{size}" for size in sizes}
        shifts = {size: json.loads((last[size] / "shifts.json").read_text()) for size in sizes}
        cells = {size: shift_cells(shifts[size]) for size in sizes}
        rows = {size: question_rows(last[size]) for size in sizes}

    one, many = sizes
    differing_cells = sorted(path for path in set(cells[one]) | set(cells[many])
                             if cells[one].get(path) != cells[many].get(path))
    common = sorted(set(rows[one]) & set(rows[many]))
    flipped = [key for key in common if rows[one][key]["action"] != rows[many][key]["action"]]
    reworded = [key for key in common if rows[one][key]["text"] != rows[many][key]["text"]]
    largest = max(abs(rows[one][key]["p_correct"] - rows[many][key]["p_correct"]) for key in common)

    out = Report()
    out.say(f"# python benchmarks/eval_batch.py --run-dir RUN --batch-size {args.batch_size} --rounds {args.rounds}"
            f"   (RUN: {options}; two cores)")
    out.say(f"{'metaloom eval --shifts':<28}{'median s':>10}   every round's seconds")
    for size in sizes:
        out.say(f"{'--batch-size ' + str(size):<28}{statistics.median(seconds[size]):>10.1f}   "
                + " ".join(f"{value:.1f}" for value in seconds[size]))
    out.say(f"batch 1 / batch {many}: {statistics.median(seconds[one]) / statistics.median(seconds[many]):.2f}x "
            "(each a process of its own, model loading included; the rounds interleave the two)")
    out.say(f"shift table and goals: {'identical' if not differing_cells else f'{len(differing_cells)} cells differ'}"
            f" ({len(cells[one])} cells, seconds left out)")
    for path in differing_cells[:10]:
        out.say(f"  {path}: {cells[one].get(path)!r} -> {cells[many].get(path)!r}")
    out.say(f"questions of the answerable splits: {len(common)}; action differs in {len(flipped)}, generated text in "
            f"{len(reworded)}; largest |P(correct) difference| {largest:.2e}")
    for key in sorted(set(flipped) | set(reworded))[:10]:
        out.say(f"  {key}: {rows[one][key]} -> {rows[many][key]}")
    out.write(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
