"""What do the hidden states add? The same Doubter trained three ways, with
P(correct) reading the hidden states only, the pass-1 log-prob signals only,
and both (``metaloom train --p-correct-from states|signals|both``), judged
on every collected split next to the baselines that read the same signals.

For a collected run directory (the demo's, or any ``metaloom collect`` run
whose collection holds the shift splits) it trains the three Doubters into
``<run-dir>/doubter_inputs/<way>/`` (the collection is shared, not copied),
then, from the collected states and signals (no generation: every figure is
about P(correct) and the base's own answers),

1. AUROC of P(correct) against the base's correctness on every split, next
   to "pass-1 signals (logistic)" and "probe + signals (logistic)" (fitted on
   the training split) and the answer's mean log-prob;
2. the answer gate of each way, its threshold chosen on validation by the
   behaviour goals (as ``metaloom eval`` does), applied to every split:
   coverage, refusal precision and knowledge loss on the answerable
   questions, and the share refused of the questions without a true answer;
3. each recorded signal alone and logistic regressions on signal sets (the
   draft's, plus the prompt's rarest tokens, plus the whole prompt's),
   fitted on the training split: which signals survive the shifts.

    python benchmarks/doubter_inputs.py --run-dir RUN --output benchmarks/results/doubter_inputs.txt

``--logprob-signals NAMES`` trains the signal-reading ways on those signals
only (to compare signal sets; the baselines always read every recorded one).

Training takes three times one ``metaloom train`` of the run (the demo's
settings: 4 epochs, answer targets weighted 1.25); the scoring seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from report import Report

WAYS = ("states", "signals", "both")


def train_way(run_dir: Path, way: str, epochs: int, extra: list[str], tag: str) -> Path:
    """Train the ``way`` Doubter in its own run directory beside ``run_dir``
    (``doubter_inputs/<way>-<tag>``: run.json copied, activations linked);
    returns its checkpoint."""
    from meta_spider.agentcore.cli import CliState, build_cli
    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.plugins import make_plugin_manager

    folder = run_dir / "doubter_inputs" / f"{way}-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / ACTIVATIONS_DIR).exists():
        os.symlink((run_dir / ACTIVATIONS_DIR).resolve(), folder / ACTIVATIONS_DIR)
    if (folder / "run.json").exists() and RunManifest.load(folder).checkpoint is not None:
        print(f"{way}: trained before, reusing {folder}", flush=True)
    else:
        manifest = RunManifest.load(run_dir)
        manifest.checkpoint = None
        manifest.save(folder)
        pm = make_plugin_manager()
        args = ["train", "--run-dir", str(folder), "--epochs", str(epochs), "--p-correct-from", way, *extra]
        build_cli(pm).commands["loom"].main(args=args, prog_name="metaloom", standalone_mode=False, obj=CliState(pm))
    manifest = RunManifest.load(folder)
    return manifest.resolve(folder, manifest.checkpoint)


def p_correct(checkpoint: Path, activations: Any) -> np.ndarray:
    """P(correct) of every collected question from its collected states (and signals)."""
    import torch

    from meta_spider.wrapper import Doubter

    doubter = Doubter.from_checkpoint(checkpoint)
    config = doubter.config
    states = activations.states(config.read_position)
    picked = states[:, [activations.target_layers.index(layer) for layer in config.target_layers]]
    signals = activations.signals(config.signals) if config.signals else None
    with torch.no_grad():
        return torch.sigmoid(doubter.encode(picked, signals).p_correct_logit.double()).numpy()


def gate_threshold(scores: np.ndarray, correct: np.ndarray) -> tuple[float, str]:
    """The validation threshold ``metaloom eval`` would choose (goals, else the base's accuracy as coverage)."""
    from meta_spider.loom.evaluate.comparison import GOALS
    from meta_spider.loom.evaluate.metrics import choose_threshold, threshold_for_goals

    choice = threshold_for_goals(scores, correct, GOALS)
    if choice is not None:
        return choice.threshold, "goals"
    return choose_threshold(scores, correct, target_coverage=float(correct.mean())).threshold, "coverage"


def fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: Optional[list[str]] = None) -> int:
    import torch

    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.evaluate.baselines import fit_signal_baselines
    from meta_spider.loom.evaluate.probe import LogisticProbe
    from meta_spider.loom.evaluate.metrics import UndefinedMetricError, auroc, selective_metrics
    from meta_spider.loom.evaluate.shifts import shift_splits
    from meta_spider.policies.actions import is_refusal
    from meta_spider.wrapper.signals import PMI_SIGNALS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a collected run directory")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs of each way (the demo's: 4)")
    parser.add_argument("--logprob-signals", default="all",
                        help="the signals the 'signals' and 'both' ways read (metaloom train --logprob-signals)")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    from meta_spider.loom.demo import DEMO_TRAIN_ARGS

    # the demo's options but the signal choice (option and value), which --p-correct-from makes
    signal_option = DEMO_TRAIN_ARGS.index("--logprob-signals")
    extra = list(DEMO_TRAIN_ARGS[:signal_option] + DEMO_TRAIN_ARGS[signal_option + 2:])
    tag = "all" if args.logprob_signals == "all" else str(len(args.logprob_signals.split(","))) + "-signals"
    output = Report()
    say = output.say

    activations = ActivationDataset.load(args.run_dir / ACTIVATIONS_DIR)
    labels = activations.tensor("pass1_correct").numpy().astype(bool)
    unanswerable = np.array([is_refusal(str(record.get("ground_truths", [""])[0])) for record in activations.examples])
    splits = ["validation", *shift_splits(activations.splits)]
    index = {split: np.array(activations.split_indices(split)) for split in splits}
    train = np.array(activations.split_indices("train"))

    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for way in WAYS:
        reads = [] if way == "states" else ["--logprob-signals", args.logprob_signals]
        folder_tag = "no-signals" if way == "states" else tag
        reused = (args.run_dir / "doubter_inputs" / f"{way}-{folder_tag}" / "checkpoints" / "best").exists()
        started = time.perf_counter()
        scores[way] = p_correct(train_way(args.run_dir, way, args.epochs, extra + reads, folder_tag), activations)
        seconds[way] = -1.0 if reused else time.perf_counter() - started
    states = activations.states("prompt").numpy()
    names = activations.recorded_signals
    signals = activations.signals(names).numpy()
    fitted = fit_signal_baselines(states[train], signals[train], labels[train], activations.target_layers, names)
    baseline_scores = fitted.scores(states, signals)
    scores["pass-1 signals (logistic)"] = baseline_scores["signals_score"]
    scores["probe + signals (logistic)"] = baseline_scores["probe_signals_score"]
    scores["answer mean log-prob"] = activations.tensor("answer_mean_logprob").numpy().astype(np.float64)

    say(f"run: {args.run_dir} ({len(activations)} collected questions, layers {activations.target_layers}, "
        f"{args.epochs} epochs each, {' '.join(extra)}; signals: {args.logprob_signals})")
    say("training seconds: " + ", ".join(f"{way} " + ("(trained before)" if seconds[way] < 0 else f"{seconds[way]:.0f}")
                                         for way in WAYS))
    say()
    say("1. AUROC of P(correct) against the base's correctness (questions with a true answer)")
    width = max(len(name) for name in scores) + 2
    say("".ljust(width) + "".join(split.rjust(17) for split in splits))
    for name, values in scores.items():
        row = []
        for split in splits:
            rows = index[split][~unanswerable[index[split]]]
            try:
                row.append(fmt(auroc(values[rows], labels[rows])) if rows.size else "-")
            except UndefinedMetricError:
                row.append("-")
        say(name.ljust(width) + "".join(cell.rjust(17) for cell in row))
    say()
    say("2. each way's answer gate, threshold chosen on validation by the behaviour goals:")
    say("   coverage / refusal precision / knowledge loss; questions without a true answer: share refused")
    for way in WAYS:
        validation = index["validation"]
        threshold, rule = gate_threshold(scores[way][validation], labels[validation])
        say(f"{way} (threshold {threshold:.3f}, {rule})")
        for split in splits:
            rows = index[split]
            answerable = rows[~unanswerable[rows]]
            outside = rows[unanswerable[rows]]
            parts = []
            if answerable.size:
                answered = scores[way][answerable] >= threshold
                metrics = selective_metrics(answered, labels[answerable], labels[answerable])
                parts.append(f"coverage {fmt(metrics.coverage)}, refusal precision {fmt(metrics.refusal_precision)}, "
                             f"knowledge loss {fmt(metrics.knowledge_loss)}")
            if outside.size:
                parts.append(f"no true answer: refused {fmt(float((scores[way][outside] < threshold).mean()))} "
                             f"of {outside.size}")
            say(f"  {split:<17}" + "; ".join(parts))
    say()
    say("3. each recorded pass-1 signal alone, and logistic regressions on signal sets fitted on the training split")
    say("   (AUROC, questions with a true answer): which signals survive new phrasings and misspelt names")
    answerable = {split: index[split][~unanswerable[index[split]]] for split in splits}
    scored = [split for split in splits if answerable[split].size]
    say("".ljust(40) + "".join(split.rjust(17) for split in scored))

    def auroc_cells(values: np.ndarray) -> str:
        cells = []
        for split in scored:
            try:
                cells.append(fmt(auroc(values[answerable[split]], labels[answerable[split]])))
            except UndefinedMetricError:
                cells.append("-")
        return "".join(cell.rjust(17) for cell in cells)

    for column, name in enumerate(names):
        say(name.ljust(40) + auroc_cells(signals[:, column]))
    draft = [name for name in names if name.startswith("draft_")]
    rarest = [name for name in names if name in ("prompt_logprob_min", "prompt_logprob_low_mean",
                                                  "prompt_window_logprob_min")]
    whole = [name for name in names if name in ("prompt_logprob_sum", "prompt_logprob_mean")]
    pmi = [name for name in names if name in PMI_SIGNALS]  # recorded by `metaloom collect --pmi-signals`
    for label, chosen in (("draft", draft), ("draft + rarest prompt tokens", draft + rarest),
                          ("draft + whole prompt", draft + whole), ("draft + prompt PMI", draft + pmi),
                          ("every signal", list(names))):
        if not chosen or (label != "draft" and chosen == draft):
            continue
        columns = [names.index(name) for name in chosen]
        probe = LogisticProbe(1.0 / train.size).fit(signals[train][:, columns], labels[train])
        say(f"logistic: {label}".ljust(40) + auroc_cells(probe.decision_function(signals[:, columns])))
    output.write(args.output)
    if args.output is not None:
        print(json.dumps({"written": str(args.output)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
