"""``metaloom eval``: evaluate a trained run on held-out questions.

Reads ``<run-dir>/run.json`` (base, layers, dataset, checkpoint), loads the
pipeline with the Doubter checkpoint attached and the activation dataset
from ``<run-dir>/activations/``, runs
:class:`~meta_spider.loom.evaluate.comparison.BaselineComparison`, and writes
``<run-dir>/report.json`` (``report_<split>.json`` for a split other than
``test``), ``<run-dir>/risk_coverage.png`` (likewise; unless ``--no-plot``)
and the Doubter's answer threshold (chosen on the validation split, or with
``--keep-threshold`` the one the checkpoint carries; the evaluated text is
generated under it unless ``--no-answer-gate``). A threshold chosen for a
checkpoint inside the run folder goes into run.json's ``calibration.doubter``
and into the checkpoint; one chosen for another run's ``--checkpoint`` goes
into run.json only when the run has no checkpoint of its own, and that
checkpoint is never written to (:func:`_record_calibration`). When the
activations hold the questions asked with their lookup (``train_lookup``,
``validation_lookup``), the gate after a lookup is fitted there
(:mod:`meta_spider.loom.evaluate.after_lookup`) and kept in the same
calibration entry (``after_lookup``). ``--shifts`` evaluates
``test`` and every shift split (:mod:`meta_spider.loom.evaluate.shifts`) the same
way and writes their side-by-side table to ``shifts.json``; questions
without a true answer are counted as refused or invented (``--split S``
alone writes those of S to ``outside_<S>.json``). ``--agentic`` also
runs the agent comparison (``meta_spider.loom.evaluate.agentic.run_agentic_eval``) on
the evaluated split and writes ``<run-dir>/agentic_report.json``
(``agentic_report_<split>.json`` for another split); with ``--shifts`` on
each split, and their side-by-side table
(:mod:`meta_spider.loom.evaluate.agentic_shifts`) to ``agentic_shifts.json``.
This module knows only options and files; the measuring is the comparison's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import click

from meta_spider.loom.collect.activations import atomic_write_text
from meta_spider.loom.cli.errors import CommandError
from meta_spider.agentcore.runfile import path_is_inside
from meta_spider.loom.manifest import RunManifest

__all__ = ["AGENTIC_REPORT_FILE", "AGENTIC_SHIFTS_FILE", "PLOT_FILE", "REPORT_FILE", "SHIFTS_FILE",
           "agentic_file", "eval_command", "outside_file", "plot_file", "report_file"]

REPORT_FILE = "report.json"
PLOT_FILE = "risk_coverage.png"
AGENTIC_REPORT_FILE = "agentic_report.json"
SHIFTS_FILE = "shifts.json"
AGENTIC_SHIFTS_FILE = "agentic_shifts.json"


def report_file(split: str) -> str:
    """``report.json`` for ``test``, ``report_<split>.json`` for any other split."""
    return REPORT_FILE if split == "test" else f"report_{split}.json"


def agentic_file(split: str) -> str:
    """``agentic_report.json`` for ``test``, ``agentic_report_<split>.json`` for any other split."""
    return AGENTIC_REPORT_FILE if split == "test" else f"agentic_report_{split}.json"


def plot_file(split: str) -> str:
    """``risk_coverage.png`` for ``test``, ``risk_coverage_<split>.png`` otherwise."""
    return PLOT_FILE if split == "test" else f"risk_coverage_{split}.png"


def outside_file(split: str) -> str:
    """Where ``--split S`` writes the figures of S's questions without a true answer."""
    return f"outside_{split}.json"


def load_pipeline(manifest: "RunManifest | str | Path", run_dir: Optional[Path] = None,
                  checkpoint: Optional[Path] = None, device: Optional[str] = None) -> Any:
    """The run's base with its trained Doubter (``checkpoint``, else run.json's)
    and, once ``metaloom eval`` has calibrated the run, its answer gate:
    ``load_pipeline("RUN")``, or a loaded manifest with its ``run_dir``. A
    missing checkpoint is a ``ClickException`` saying what to do, a base or
    calibration that cannot load a :class:`CommandError`."""
    from meta_spider.loom.evaluate.evaluation import calibrated_answer_gate
    from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline

    if not isinstance(manifest, RunManifest):
        run_dir = Path(manifest) if run_dir is None else Path(run_dir)
        manifest = RunManifest.load(run_dir)
    elif run_dir is None:
        raise TypeError("load_pipeline(manifest, run_dir): a loaded manifest needs its run folder; "
                        "or call load_pipeline(run_dir)")
    run_dir = Path(run_dir)

    path = checkpoint or manifest.resolve(run_dir, manifest.checkpoint, "checkpoint")
    if path is None:
        raise click.ClickException(f"{RunManifest.path_in(run_dir)} has no checkpoint (field 'checkpoint'): "
                                   f"run `metaloom train --run-dir {run_dir}` first, or pass --checkpoint")
    if not path.exists():
        raise click.ClickException(f"checkpoint {path} (field 'checkpoint' of {RunManifest.path_in(run_dir)}) "
                                   "does not exist: train again, or pass --checkpoint")
    settings = manifest.pipeline_settings()
    if device is not None:
        settings["device"] = device
    try:
        gate = calibrated_answer_gate(manifest.calibration)
    except ValueError as error:
        raise CommandError(f"{RunManifest.path_in(run_dir)}, field 'calibration': {error}",
                           "run `metaloom eval` again to rewrite it") from error
    try:
        pipe = MetaSpiderPipeline.from_pretrained(MetaSpiderConfig(**settings), doubter=path)
    except (ValueError, OSError) as error:  # a project error goes to the host CLI as it is
        raise CommandError(f"cannot load the run's base with its Doubter: {error}",
                           "check run.json's model section and the checkpoint folder") from error
    pipe.answer_gate = gate
    return pipe


def _calibrate_checkpoint(path: Optional[Path], entry: dict[str, Any]) -> None:
    """Write the calibration into the checkpoint too, so
    ``MetaSpiderPipeline.from_pretrained(...).attach(path)`` (and the sidecar
    exported from it) gates as ``load_pipeline`` does, without run.json."""
    from meta_spider.policies.actions import REFUSAL_SENTENCE
    from meta_spider.wrapper.checkpoint import write_calibration

    if path is not None:
        write_calibration(path, {**entry, "refusal": entry.get("refusal", REFUSAL_SENTENCE)})


def _kept_threshold(path: Optional[Path]) -> Optional[float]:
    """The threshold the checkpoint at ``path`` carries (``inf``: its
    calibration answers nothing), for ``--keep-threshold``; a checkpoint
    without one is a :class:`CommandError`. None when there is no checkpoint
    to read (loading the pipeline then says why)."""
    from meta_spider.wrapper.checkpoint import CheckpointError, read_checkpoint_document

    if path is None:
        return None
    try:
        carried = read_checkpoint_document(path)[0].get("calibration")
    except CheckpointError:
        return None  # loading it says what is wrong
    if not carried or "threshold" not in carried:
        raise CommandError(f"--keep-threshold: the checkpoint {path} carries no calibrated threshold",
                           "run `metaloom eval` on the run it was trained in first, or leave out --keep-threshold "
                           "to choose one on this run's validation split")
    return math.inf if carried["threshold"] is None else float(carried["threshold"])  # None: answer nothing


def _record_calibration(run_dir: Path, manifest: RunManifest, given: Optional[Path], evaluated: Optional[Path],
                        entry: dict[str, Any], console: Any) -> None:
    """Where the threshold just chosen goes: run.json and the checkpoint
    when the checkpoint is this run's; run.json only when the run has none
    of its own (questions of one's own for another run's Doubter); nowhere
    but report.json when it was the checkpoint's own (``--keep-threshold``)
    or when run.json's calibration belongs to this run's own checkpoint."""
    where = RunManifest.path_in(run_dir)
    if entry.get("rule") == "fixed":
        console.print(f"the checkpoint's threshold was kept: {where} and {evaluated} are unchanged")
        return
    if given is None or path_is_inside(run_dir, str(Path(given).resolve())):  # a given path is the shell's
        RunManifest.update_file(run_dir, calibration={"doubter": entry})
        _calibrate_checkpoint(evaluated, entry)
        return
    own = manifest.resolve(run_dir, manifest.checkpoint) if manifest.checkpoint is not None else None
    if own is not None:
        console.print(f"the threshold chosen for {given} is in the report only: {where}'s calibration is for this "
                      f"run's own checkpoint {own}, and {given} (another run's) keeps its own")
        return
    RunManifest.update_file(run_dir, calibration={"doubter": entry})
    console.print(f"calibration recorded in {where} only: the checkpoint {given} is another run's and keeps its own")


def _fit_after_lookup(pipe: Any, activations: Any, console: Any) -> Optional[dict[str, Any]]:
    """The gate after a lookup fitted on the collected lookup splits, as its
    calibration entry; None (with a note when the rows could not teach it)
    when there is none to fit."""
    from meta_spider.loom.evaluate.after_lookup import fit_after_lookup_gate

    try:
        fit = fit_after_lookup_gate(pipe.doubter, activations)
    except ValueError as error:
        console.print(f"note: no gate after a lookup: {error}")
        return None
    if fit is None:
        return None
    console.print(fit.summary())
    return fit.to_entry()


def _agentic(ctx: click.Context, run_dir: Path, splits: list[str], dataset: Any, max_examples: Optional[int],
             closed_book: tuple[str, ...], shifts: bool, console: Any) -> list[str]:
    """The agent comparison on each of ``splits`` (its report per split; with
    ``shifts`` the side-by-side table too); the names of the files written."""
    from meta_spider.agentcore.cli import plugin_manager
    from meta_spider.loom.evaluate.agentic import run_agentic_eval
    from meta_spider.loom.evaluate.agentic_shifts import agent_shift_rows, agent_shift_table

    reports, written = {}, []
    for name in splits:
        console.print(f"agent comparison on {name}")
        try:  # it prints its own summary to the console
            reports[name] = run_agentic_eval(run_dir, console=console, split=name, max_tasks=max_examples,
                                             closed_book=closed_book, dataset=dataset,
                                             plugin_manager=plugin_manager(ctx))
        except ValueError as error:  # e.g. --closed-book naming a policy the comparison does not run
            raise CommandError(str(error), "name a policy the agent comparison runs") from error
        atomic_write_text(run_dir / agentic_file(name), reports[name].to_json() + "\n")
        written.append(agentic_file(name))
    if shifts:
        rows = agent_shift_rows(reports)
        console.print(agent_shift_table(rows))
        atomic_write_text(run_dir / AGENTIC_SHIFTS_FILE, json.dumps({"splits": rows}, indent=2) + "\n")
        written.append(AGENTIC_SHIFTS_FILE)
    return written


def _load_dataset(ctx: click.Context, manifest: RunManifest) -> Any:
    from meta_spider.agentcore.cli import plugin_manager
    from meta_spider.loom.datasets import DatasetError, create_dataset
    from meta_spider.plugins import PluginError

    try:
        return create_dataset(plugin_manager(ctx), manifest.dataset.name, **manifest.dataset.options)
    except (PluginError, DatasetError, ValueError, TypeError) as error:
        raise CommandError(f"dataset {manifest.dataset.name!r} of run.json (field 'dataset'): {error}",
                           "correct the dataset section of run.json") from error


@click.command("eval")
@click.option("--run-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="run directory written by collect and train")
@click.option("--split", default="test", show_default=True, help="held-out split to evaluate")
@click.option("--shifts", is_flag=True,
              help="evaluate test and every shift split (test_*) side by side; writes shifts.json")
@click.option("--max-examples", type=click.IntRange(min=1), default=None, help="evaluate at most N questions")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="generation limit (default: the collection's max_new_tokens)")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="questions answered as one batch: pass 1 read together (as `metaloom collect --batch-size` "
                   "reads), pass 2 of those the gate answers decoded together; faster, equal to one at a time "
                   "up to float rounding")
@click.option("--target-coverage", type=click.FloatRange(0.0, 1.0), default=None,
              help="calibrate the answer threshold for this validation coverage (default: the largest coverage "
                   "meeting the behaviour goals on validation)")
@click.option("--target-risk", type=click.FloatRange(0.0, 1.0), default=None,
              help="calibrate the answer threshold for this validation risk instead")
@click.option("--keep-threshold", is_flag=True,
              help="gate at the threshold the Doubter's checkpoint carries (its own run's calibration, what chat "
                   "and the llama.cpp export gate on) instead of choosing one on this run's validation split")
@click.option("--no-answer-gate", is_flag=True,
              help="judge pass 2's own text instead of generating under the calibrated answer threshold")
@click.option("--checkpoint", type=click.Path(exists=True, path_type=Path), default=None,
              help="Doubter checkpoint (default: run.json's 'checkpoint')")
@click.option("--device", default=None, help="torch device (default: run.json's model.device)")
@click.option("--agentic", is_flag=True,
              help="also run the agent comparison (agentic_report.json; with --shifts on every split, side by "
                   "side in agentic_shifts.json)")
@click.option("--closed-book", "closed_book", multiple=True, metavar="POLICY",
              help="with --agentic: run POLICY without tools (repeatable), e.g. --closed-book direct")
@click.option("--no-plot", is_flag=True, help="do not write risk_coverage.png")
@click.option("--quiet", is_flag=True, help="no progress bars and no summary")
@click.pass_context
def eval_command(ctx: click.Context, run_dir: Path, split: str, shifts: bool, max_examples: Optional[int],
                 max_tokens: Optional[int], batch_size: int,
                 target_coverage: Optional[float], target_risk: Optional[float], keep_threshold: bool,
                 no_answer_gate: bool,
                 checkpoint: Optional[Path],
                 device: Optional[str], agentic: bool, closed_book: tuple[str, ...], no_plot: bool,
                 quiet: bool) -> None:
    """Compare the Doubter with the base and with baselines on held-out questions."""
    from rich.console import Console

    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset, ActivationFormatError
    from meta_spider.loom.evaluate.comparison import BaselineComparison
    from meta_spider.loom.evaluate.shifts import run_shift_evaluation, shift_splits
    from meta_spider.wrapper.after_lookup import ENTRY_KEY

    if target_coverage is not None and target_risk is not None:
        raise click.UsageError("give --target-coverage or --target-risk, not both")
    if keep_threshold and (target_coverage is not None or target_risk is not None):
        raise click.UsageError("--keep-threshold gates at the checkpoint's threshold: leave out --target-coverage "
                               "and --target-risk, which choose one")
    if closed_book and not agentic:
        raise click.UsageError("--closed-book applies to the agent comparison: add --agentic")
    if shifts and split != "test":
        raise click.UsageError("--shifts evaluates test and every test_* split: leave out --split")
    console = Console(stderr=True, quiet=quiet)
    manifest = RunManifest.load(run_dir)
    try:
        activations = ActivationDataset.load(run_dir / ACTIVATIONS_DIR)
    except ActivationFormatError as error:
        raise click.ClickException(f"{error} (`metaloom collect --run-dir {run_dir}` writes the activations)") from error
    dataset = _load_dataset(ctx, manifest)
    splits = shift_splits(dataset.splits) if shifts else [split]
    for name in splits:
        if not activations.split_indices(name):
            raise click.ClickException(f"the activations hold no {name!r} questions (they hold {activations.splits}); "
                                       + ("collect every test_* split (`metaloom collect` into a new run directory)"
                                          if shifts else "pass --split, or collect that split"))
    evaluated_checkpoint = checkpoint or manifest.resolve(run_dir, manifest.checkpoint)
    kept = _kept_threshold(evaluated_checkpoint) if keep_threshold else None  # checked before the base loads
    console.print(f"loading {manifest.model.name} with the Doubter")
    pipe = load_pipeline(manifest, run_dir, checkpoint, device)
    fitted: dict[Any, Any] = {}  # the baselines are fitted once for every split

    def comparison(benchmark: Any) -> Any:
        return BaselineComparison(pipe, benchmark, max_tokens=max_tokens, console=console,
                                  target_coverage=target_coverage, target_risk=target_risk, threshold=kept,
                                  answer_gate=not no_answer_gate, fitted=fitted, batch_size=batch_size)

    evaluated = run_shift_evaluation(pipe, dataset, activations, splits, comparison=comparison,
                                     max_tokens=max_tokens, max_examples=max_examples,
                                     answer_gate_on=not no_answer_gate, console=console, batch_size=batch_size)
    after_lookup = _fit_after_lookup(pipe, activations, console)
    written: list[str] = []
    for name, report in evaluated.reports.items():
        calibrated = report.calibration is not None and name == next(iter(evaluated.reports))
        if calibrated and after_lookup is not None:
            report.calibration[ENTRY_KEY] = after_lookup
        written.append(report_file(name))
        (run_dir / report_file(name)).write_text(report.to_json(), encoding="utf-8")
        if calibrated:
            _record_calibration(run_dir, manifest, checkpoint, evaluated_checkpoint,
                                {k: v for k, v in report.calibration.items() if k != "evaluated"}, console)
        if not no_plot:
            from meta_spider.loom.evaluate.plots import plot_risk_coverage

            plot_risk_coverage(report, run_dir / plot_file(name))
            written.append(plot_file(name))
        if name == splits[0]:
            console.print(report.summary())
            console.print(report.acceptance_table())
            for note in report.notes:
                console.print(f"note: {note}")
    if shifts or split != "test":
        console.print(evaluated.table())
    if shifts:
        console.print(evaluated.goals_table())
    if shifts:
        atomic_write_text(run_dir / SHIFTS_FILE, json.dumps(evaluated.to_dict(), indent=2, sort_keys=True) + "\n")
        written.append(SHIFTS_FILE)
    elif evaluated.rows[0].outside is not None:
        atomic_write_text(run_dir / outside_file(split),
                          json.dumps({"threshold": evaluated.threshold, **evaluated.rows[0].to_dict()}, indent=2,
                                     sort_keys=True) + "\n")
        written.append(outside_file(split))
    if agentic:
        written += _agentic(ctx, run_dir, splits, dataset, max_examples, closed_book, shifts, console)
    console.print(f"wrote {', '.join(str(run_dir / name) for name in written)}")
