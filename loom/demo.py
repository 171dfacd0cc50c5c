"""The demo on the embedded default: the whole loom pipeline on the world's
own base, then three questions through ``pipe.generate``.

1. build (or reuse) the embedded world and its trained base,
2. ``metaloom collect``: pass-1 activations with the base's own correctness,
3. ``metaloom train``: the Doubter through the frozen base,
4. ``metaloom eval``: the comparison report against baselines (with
   ``--shifts`` when the world has shift splits: the same on new phrasings,
   misspelt names and questions outside the world, side by side),
5. three held-out questions through ``pipe.generate`` (with the answer gate
   eval calibrated): answers where the base knows, refusals where it does
   not; then how many of its goals the run met, on test and under shift.

Every step keeps its output in the run directory and is skipped when that
output is already there, so a second run takes seconds plus model loading.
Run with ``python -m meta_spider.loom.demo`` (``scripts/demo.sh``); this
module only strings the public commands together.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table

from meta_spider.plugins.errors import MetaSpiderError

DEMO_EPOCHS = 4
"""Doubter training epochs of the demo run."""
DEMO_COLLECT_ARGS: tuple[str, ...] = ("--dtype", "float32", "--batch-size", "16", "--max-new-tokens", "24")
"""Collection settings: the world's answers are short sentences."""
DEMO_EVAL_ARGS: tuple[str, ...] = ("--batch-size", "16")
"""Evaluation settings: 16 questions answered as one batch, both passes
(the collection reads 16 at a time too); the demo's table is the same as
one question at a time (``benchmarks/eval_batch.py``)."""
DEMO_TRAIN_ARGS: tuple[str, ...] = ("--answer-loss-weight", "1.25",
                                     "--logprob-signals", "draft_logprob_mean,draft_logprob_min")
"""``metaloom train`` options of the ``draft`` recipe, the others' starting
point: answer targets weigh 1.25x (every recipe), the weight that met the
behaviour targets on the validation split, and P(correct) reads the log-probs
of the base's own draft answer (the others add the PMI). Not the prompt's:
those fall for any wording the base has not read, and the demo is judged in
new wordings too (docs/loom.md)."""
PMI_SIGNALS_ARG = "draft_logprob_mean,draft_logprob_min,prompt_pmi_top4"
"""The draft's log-probs and the prompt's highest PMIs
(:mod:`meta_spider.wrapper.signals`; collected with ``--pmi-signals``)."""
OCCLUSION_SIGNALS_ARG = PMI_SIGNALS_ARG + ",occluded_name_logprob"
"""The PMI recipe's signals and the question's subject found by occlusion
(collected with ``--occlusion-signals``)."""
OUTSIDE_TRAIN_QUESTIONS = 240
"""Unanswerable train questions the scope gate learns from (the world's
``train_outside`` dataset option)."""
VALIDATION_FRAMES = 3
"""Training frames each validation question of the default recipe is asked
in (the world's ``validation_frames`` dataset option): the answer threshold
and the scope gate's veto are calibrated on wordings that vary, so that a
new wording falls below them no more often than a trained one (docs/loom.md,
finding 19)."""
RECIPES = ("occlusion", "scope", "pmi", "draft")
"""The demo's recipes, the default first: ``occlusion`` (``scope`` with the
question's subject found by occlusion as a fourth signal), ``scope``
(P(correct) from the draft's log-probs and the PMI alone, the states reading
only whether the question is one the world can answer: a scope gate learnt
from unanswerable train questions), ``pmi`` (P(correct) from the states, the
draft and the PMI; no gate, no such questions) and ``draft`` (P(correct) from
the states and the draft's log-probs). docs/loom.md compares them; the
default was chosen after seeing their test and shift numbers."""
GATED_RECIPES = ("occlusion", "scope")
"""Recipes with a scope gate (trained with ``--scope-layer``)."""


def recipe_args(recipe: str, preset: str = "small", seed: int = 0, validation_frames: int = VALIDATION_FRAMES
                ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(dataset, collect, train)`` options of a recipe (:data:`RECIPES`) on
    the world ``preset`` / ``seed``; the default recipe asks validation in
    ``validation_frames`` training frames (1: as generated). The gated ones
    also need :func:`scope_layer_args`."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {RECIPES}")
    dataset: tuple[str, ...] = ("--dataset", "world", "--dataset-option", f"preset={preset}",
                                "--dataset-option", f"seed={seed}")
    if recipe == "draft":
        return dataset, DEMO_COLLECT_ARGS, DEMO_TRAIN_ARGS
    train = DEMO_TRAIN_ARGS[:DEMO_TRAIN_ARGS.index("--logprob-signals")]
    if recipe == "pmi":
        return dataset, DEMO_COLLECT_ARGS + ("--pmi-signals",), train + ("--logprob-signals", PMI_SIGNALS_ARG)
    dataset += ("--dataset-option", f"train_outside={OUTSIDE_TRAIN_QUESTIONS}")
    if recipe == "scope":
        collect, signals = DEMO_COLLECT_ARGS + ("--pmi-signals",), PMI_SIGNALS_ARG
    else:
        collect, signals = DEMO_COLLECT_ARGS + ("--pmi-signals", "--occlusion-signals"), OCCLUSION_SIGNALS_ARG
        if validation_frames > 1:
            dataset += ("--dataset-option", f"validation_frames={validation_frames}")
    return dataset, collect, train + ("--logprob-signals", signals, "--p-correct-from", "signals")


def scope_layer_args(run_dir: Path, recipe: str) -> tuple[str, ...]:
    """``metaloom train``'s ``--scope-layer`` for a gated recipe (the first
    layer the run's collection holds, which the gate reads); nothing for the others."""
    if recipe not in GATED_RECIPES:
        return ()
    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset

    return ("--scope-layer", str(ActivationDataset.load(Path(run_dir) / ACTIVATIONS_DIR).target_layers[0]))


class DemoError(MetaSpiderError, RuntimeError, fields=("step", "message", "run_dir")):
    """A demo step failed; ``run_dir`` is the run directory it works in."""

    template = "{step} failed: {message}"


def default_run_dir(world_path: Path, recipe: str = RECIPES[0]) -> Path:
    """The demo's run directory: beside the world it was made from, one per
    recipe (``demo-run`` for the default, ``demo-run-<recipe>`` otherwise)."""
    return world_path / ("demo-run" if recipe == RECIPES[0] else f"demo-run-{recipe}")


def _loom_command(args: Sequence[str], run_dir: Path) -> None:
    """Run ``metaloom ARGS`` in this process; a failure raises :class:`DemoError`."""
    import click

    from meta_spider.agentcore.cli import CliState, build_cli
    from meta_spider.plugins import make_plugin_manager

    pm = make_plugin_manager()
    try:
        build_cli(pm).commands["loom"].main(args=list(args), prog_name="metaloom", standalone_mode=False,
                                            obj=CliState(pm))
    except click.ClickException as error:
        raise DemoError(f"metaloom {args[0]}", error.format_message(), run_dir) from error


def pick_questions(report: dict[str, Any], count: int = 3) -> list[dict[str, Any]]:
    """Held-out questions that show both behaviours: first one the Doubter
    answered and the base got right, then one it refused where the base was
    wrong, then the next most confident answer. Outcomes are the report's
    per-question records."""
    outcomes = report["questions"]
    answered = sorted((o for o in outcomes if o["action"] != "refuse" and o["pass1_correct"]),
                      key=lambda o: -(o.get("p_correct") or 0.0))
    refused = sorted((o for o in outcomes if o["action"] == "refuse" and not o["pass1_correct"]),
                     key=lambda o: o.get("p_correct") or 0.0)
    return (answered[:1] + refused[:1] + answered[1:2] + refused[1:2])[:count]


def show_questions(pipe: Any, questions: list[dict[str, Any]], dataset: Any, console: Console) -> list[dict[str, Any]]:
    """Ask ``questions`` through ``pipe.generate`` and print what came back."""
    examples = {example.id: example for example in dataset.split("test")}
    table = Table(title="three held-out questions through pipe.generate", show_lines=True)
    for column in ("question", "P(correct)", "generated (with the Doubter)", "truth"):
        table.add_column(column)
    shown = []
    for outcome in questions:
        example = examples[outcome["id"]]
        prompt = dataset.prompt(example)
        result = pipe.generate(prompt.messages, max_new_tokens=24, return_result=True)
        table.add_row(example.question, f"{result.p_correct:.2f}", result.text, example.answer)
        shown.append({"id": example.id, "question": example.question, "p_correct": result.p_correct, "text": result.text,
                      "truth": example.answer, "decision": result.decision})
    gate = pipe.answer_gate
    if gate is not None:
        table.caption = (f"answer gate calibrated on validation: answer at P(correct) >= {gate.threshold:.3f}, "
                         "refuse below")
    console.print(table)
    return shown


def run_demo(preset: str = "small", seed: int = 0, run_dir: Path | None = None, console: Console | None = None,
             epochs: int = DEMO_EPOCHS, recipe: str = RECIPES[0]) -> dict[str, Any]:
    """Run (or resume) the demo with one of :data:`RECIPES`; returns the
    report and the questions shown."""
    from meta_spider.loom.cli.eval import REPORT_FILE, SHIFTS_FILE
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.evaluate.shifts import shift_splits
    from meta_spider.loom.world import build_world
    from meta_spider.loom.world.cache import describe_base
    from meta_spider.loom.world.dataset import WorldDataset

    console = console or Console()
    started = time.perf_counter()
    console.print(Rule(f"1/5 embedded world ({preset}, seed {seed})"))
    world = build_world(preset, seed=seed)
    metrics = world.metrics["qa"]["test"]
    console.print(f"base at {world.model_dir} ({describe_base(world.manifest)}): "
                  f"test QA exact match {metrics['accuracy']:.3f}")
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(world.path, recipe)
    console.print(f"run directory: {run_dir}")
    dataset_args, collect_args, train_args = recipe_args(recipe, preset, seed)
    console.print(Rule("2/5 metaloom collect"))
    steps: dict[str, float] = {}
    lap = _stopwatch()
    _loom_command(["collect", "--run-dir", str(run_dir), "--model-name", str(world.model_dir), *dataset_args,
                   *collect_args], run_dir)
    steps["collect"] = lap()
    console.print(Rule("3/5 metaloom train"))
    if RunManifest.load(run_dir).checkpoint is None:
        _loom_command(["train", "--run-dir", str(run_dir), "--epochs", str(epochs), *train_args,
                       *scope_layer_args(run_dir, recipe)], run_dir)
    else:
        console.print("trained Doubter found in run.json: skipped (delete the run directory to train again)")
    steps["train"] = lap()
    console.print(Rule("4/5 metaloom eval"))
    report_path, shifts_path = run_dir / REPORT_FILE, run_dir / SHIFTS_FILE
    dataset = WorldDataset(preset, seed, world.model_dir)
    shifted = len(shift_splits(dataset.splits)) > 1  # test and at least one shift split
    found = _read_reports(report_path, shifts_path if shifted else None, console)
    if found is None:
        _loom_command(["eval", "--run-dir", str(run_dir), *DEMO_EVAL_ARGS, *(["--shifts"] if shifted else [])],
                      run_dir)
        report_data = json.loads(report_path.read_text())
        shift_data = json.loads(shifts_path.read_text()) if shifted else None
    else:
        (report, report_data), shown_shifts = found
        console.print(f"report found at {report_path}: shown, not recomputed")
        console.print(report.summary())
        console.print(report.acceptance_table())
        shift_data = None
        if shown_shifts is not None:
            table, shift_data = shown_shifts
            console.print(table.table())
            console.print(table.goals_table())

    steps["eval"] = lap()
    console.print(Rule("5/5 three questions"))
    from meta_spider.loom.cli.eval import load_pipeline

    manifest = RunManifest.load(run_dir)
    pipe = load_pipeline(manifest, run_dir, None, None)
    shown = show_questions(pipe, pick_questions(report_data), dataset, console)
    goals = [check["passed"] for check in report_data["acceptance"]]
    summary = f"goals met on test: {sum(1 for met in goals if met)}/{len(goals)}"
    if shift_data is not None:
        met = [check["passed"] for check in shift_data["goals"]]
        summary += f"; under shift: {sum(1 for value in met if value)}/{len(met)}"
    console.print(summary)
    console.print(f"demo finished in {time.perf_counter() - started:.0f} s ("
                  + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in steps.items()) + ")")
    return {"report": report_data, "questions": shown, "run_dir": str(run_dir), "shifts": shift_data,
            "seconds": steps}


def _stopwatch() -> Callable[[], float]:
    """A lap timer: each call returns the seconds since the one before (or since it was made)."""
    last = time.perf_counter()

    def lap() -> float:
        nonlocal last
        now = time.perf_counter()
        elapsed, last = now - last, now
        return elapsed

    return lap


def _read_reports(report_path: Path, shifts_path: Path | None, console: Console) -> Any:
    """``((report, its JSON), (shift table, its JSON) or None)`` from an
    earlier eval, or None when they are missing or unreadable (then the
    demo evaluates again rather than stop on a damaged file)."""
    from meta_spider.loom.evaluate.comparison import ComparisonReport
    from meta_spider.loom.evaluate.shifts import ShiftTable

    if not report_path.is_file() or (shifts_path is not None and not shifts_path.is_file()):
        return None
    try:
        report_data = json.loads(report_path.read_text(encoding="utf-8"))
        report = ComparisonReport.from_dict(report_data)
        if shifts_path is None:
            return (report, report_data), None
        shift_data = json.loads(shifts_path.read_text(encoding="utf-8"))
        table = ShiftTable.from_dict(shift_data)
        if not all("passed" in check for check in shift_data["goals"]):  # the summary counts them
            raise KeyError("goals[].passed")
        return (report, report_data), (table, shift_data)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as error:
        console.print(f"{report_path.name} or its shift table cannot be read ({type(error).__name__}: "
                      f"{str(error)[:120]}): evaluating again")
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meta_spider.loom.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="world preset (default: small)")
    parser.add_argument("--seed", type=int, default=0, help="world seed")
    parser.add_argument("--run-dir", type=Path, default=None, help="run directory (default: beside the world)")
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help="Doubter training epochs")
    parser.add_argument("--recipe", choices=RECIPES, default=RECIPES[0],
                        help="occlusion (default): P(correct) from the draft's log-probs, the prompt's PMI and the "
                             "question's subject found by occlusion alone, and a scope gate on the states learnt from "
                             "unanswerable train questions; scope: the same without the occluded subject; pmi: "
                             "P(correct) from the states, the draft and the PMI, no gate; draft: from the states and "
                             "the draft's log-probs")
    args = parser.parse_args(argv)
    console = Console()
    try:
        run_demo(args.preset, args.seed, args.run_dir, console=console, epochs=args.epochs, recipe=args.recipe)
    except DemoError as error:
        console.print(f"[red]demo stopped[/]: {error}")
        console.print(f"The demo keeps every step in {error.run_dir}; a folder left by another version of "
                      "meta-spider or other settings cannot be resumed. Delete it to start the run over, "
                      "or pass --run-dir NEW_FOLDER.")
        return 1
    except MetaSpiderError as error:  # before any step: the world's cache, a shipped base
        console.print(f"[red]demo stopped[/]: {escape(str(error))}")
        return 1
    except OSError as error:
        from meta_spider.agentcore.cli import storage_problem

        problem = storage_problem(error)
        if problem is None:
            raise
        console.print(f"[red]demo stopped[/]: {escape(problem)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
