"""What the demo's run costs once the world is built, with validation asked
as generated and in the default recipe's three frames, and without the
questions asked with their lookup, side by side in one run.

The demo's three loom steps (`metaloom collect`, `metaloom train`, `metaloom
eval --shifts`) run for three variants of its default recipe: validation as
generated, validation in three frames (the default), and the default
collected without ``train_lookup`` and ``validation_lookup`` (no gate after
a lookup is then fitted), each into a
fresh temporary folder and in a process of its own (model loading included,
as a user runs it); the steps are interleaved (both collections, then both
trainings, then both evaluations) so that a machine slowing down during the
run costs both alike. Printed: each step's wall-clock seconds, the totals,
their ratio, and what each variant's evaluation found (answer threshold,
goals under shift).

    python benchmarks/demo_cost.py --output benchmarks/results/demo_cost.txt
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Optional

from metaloom_process import run_metaloom
from report import Report

STEPS = ("collect", "train", "eval")
BUDGET_S = 120
"""What the demo's collection, training and evaluation should stay under on two cores."""


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    from meta_spider.loom.demo import (DEMO_EPOCHS, DEMO_EVAL_ARGS, RECIPES, VALIDATION_FRAMES, recipe_args,
                                       scope_layer_args)
    from meta_spider.loom.cli.collect import default_splits
    from meta_spider.loom.evaluate.after_lookup import LOOKUP_SPLITS
    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.world import build_world
    from meta_spider.loom.world.dataset import world_dataset

    world = build_world(args.preset, seed=args.seed)
    recipe = RECIPES[0]
    dataset, collect, train = recipe_args(recipe, args.preset, args.seed)
    collected = default_splits(world_dataset(args.preset, args.seed).splits)
    without_lookup = ("--splits", ",".join(split for split in collected if split not in LOOKUP_SPLITS))
    variants = {"validation as generated": recipe_args(recipe, args.preset, args.seed, validation_frames=1),
                f"validation in {VALIDATION_FRAMES} frames, no lookup qs": (dataset, collect + without_lookup, train),
                f"validation in {VALIDATION_FRAMES} frames (default)": (dataset, collect, train)}
    seconds: dict[str, dict[str, float]] = {label: {} for label in variants}
    found: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="demo-cost-") as scratch:
        runs = {label: Path(scratch) / f"run{index}" for index, label in enumerate(variants)}
        for step in STEPS:
            for label, (dataset, collect, train) in variants.items():
                run = runs[label]
                if step == "collect":
                    options = ["--run-dir", run, "--model-name", world.model_dir, *dataset, *collect, "--quiet"]
                elif step == "train":
                    options = ["--run-dir", run, "--epochs", DEMO_EPOCHS, *train, *scope_layer_args(run, recipe)]
                else:
                    options = ["--run-dir", run, *DEMO_EVAL_ARGS, "--shifts"]
                seconds[label][step], status = run_metaloom(step, *options)
                if status:
                    print(f"({label})", file=sys.stderr)
                    return status
        for label, run in runs.items():
            shifts = json.loads((run / "shifts.json").read_text())
            collected = ActivationDataset.load(run / ACTIVATIONS_DIR)
            found[label] = {"threshold": shifts["threshold"], "questions": len(collected),
                            "goals": sum(1 for goal in shifts["goals"] if goal["passed"]), "of": len(shifts["goals"])}

    out = Report()
    out.say(f"# python benchmarks/demo_cost.py --preset {args.preset}   (world {args.preset}, seed {args.seed}; the "
            f"demo's default recipe, `{RECIPES[0]}`; two cores)")
    out.say(f"{'seconds':<40}" + "".join(f"{step:>10}" for step in STEPS) + f"{'total':>10}{'questions':>11}"
            f"{'threshold':>11}{'goals':>8}")
    for label in variants:
        row = seconds[label]
        info = found[label]
        out.say(f"{label:<40}" + "".join(f"{row[step]:>10.1f}" for step in STEPS) + f"{sum(row.values()):>10.1f}"
                f"{info['questions']:>11}{info['threshold']:>11.3f}{info['goals']:>5}/{info['of']}")
    generated, no_lookup, default = variants
    total = {label: sum(seconds[label].values()) for label in variants}

    def ratio(label: str, over: str, name: str) -> str:
        return f"ratio {name}: {total[label] / total[over]:.2f}x " + " ".join(
            f"({step} {seconds[label][step] / seconds[over][step]:.2f}x)" for step in STEPS)

    out.say(ratio(default, generated, "three frames / as generated"))
    out.say(ratio(default, no_lookup, "with the lookup questions / without"))
    out.say(f"within {BUDGET_S} s on this machine: " + ", ".join(f"{label} {total[label] <= BUDGET_S}"
                                                                   for label in variants))
    out.write(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
