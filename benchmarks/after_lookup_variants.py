"""The gate after a lookup, read by read: how each way of fitting it fares under shift.

``metaloom eval`` fits the gate after a lookup on the run's ``train_lookup``
rows (each chosen train question asked with its lookup as asked, in another
training frame and with the name misspelt) and sets its threshold at the 1 %
quantile of the right answers of ``validation_lookup`` (the chosen
validation questions in every validation frame). This script collects the
held-out test splits asked the same way -- every question of ``test``,
``test_paraphrase``, ``test_misspelt`` and ``test_outside`` about someone the
lookup finds, with the record it finds (a misspelt name looked up as
written) -- read by the run's own base and Doubter, and scores the shipped
fit against the others tried: fitted on the questions as asked only, with
the threshold on their first frame only, without the layer state or the
signals, P(correct) alone, at the 2 % quantile. Per split: the share of the right answers after
the lookup each would refuse, and the share of the wrong ones it would
catch (``test_outside``: every answer from a record is wrong).

    python benchmarks/after_lookup_variants.py --run-dir RUN --output FILE
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from report import Report
from world_run import world_agent_or_say_why

HELD_OUT = ("test", "test_paraphrase", "test_misspelt", "test_outside")
ASKED = re.compile(r"-(f|m)-lookup$")
"""The id suffix of a train question asked in another frame or misspelt."""
FIRST_FRAME = re.compile(r"-v\d+-lookup$")
"""The id suffix of a validation question in another of its frames."""


def held_out_with_lookup(dataset: Any) -> dict[str, list[Any]]:
    """Each held-out split's questions about someone the lookup finds, asked with that lookup."""
    from meta_spider.loom.world.dataset import with_lookup

    knowledge = dataset.knowledge_base()
    splits = {}
    for split in HELD_OUT:
        asked = []
        for example in dataset.split(split):
            name = example.meta.get("entity")
            record = knowledge.lookup(name) if name and name in example.question else None
            if record is not None:
                asked.append(with_lookup(example, name, record))
        splits[f"{split}_lookup"] = asked
    return splits


def rows_of(doubter: Any, activations: Any, splits: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each split's reads: ids, right or not, P(correct), the signals and the gate layer's state."""
    from meta_spider.loom.evaluate.comparison import doubter_p_correct

    config = doubter.config
    states = activations.states(config.read_position).numpy()
    signals = activations.signals(config.signals).numpy()
    right = activations.tensor("pass1_correct").numpy().astype(bool)
    layer = list(activations.target_layers).index(config.target_layers[doubter.scope_gate.layer_index])
    rows = {}
    for split in splits:
        indices = activations.split_indices(split)
        rows[split] = {"id": np.array([activations.examples[i]["id"] for i in indices]), "right": right[indices],
                       "p": doubter_p_correct(doubter, activations, states, indices), "signals": signals[indices],
                       "state": states[indices][:, layer]}
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a world run evaluated by `metaloom eval`")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch

    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.collect.collector import ActivationDatasetCollector
    from meta_spider.loom.datasets import create_dataset
    from meta_spider.loom.evaluate.after_lookup import FIT_SPLIT, L2, THRESHOLD_SPLIT
    from meta_spider.loom.evaluate.probe import LogisticProbe
    from meta_spider.wrapper.after_lookup import gate_features

    torch.set_num_threads(2)
    agent = world_agent_or_say_why(args.run_dir)
    if agent is None:
        return 2
    pipe = agent.backend.pipeline
    doubter = pipe.doubter
    collected = ActivationDataset.load(args.run_dir / ACTIVATIONS_DIR)
    if doubter is None or doubter.scope_gate is None or not collected.split_indices(FIT_SPLIT):
        print(f"{args.run_dir}: needs a run of the demo's recipe that collected {FIT_SPLIT}", file=sys.stderr)
        return 2
    dataset = create_dataset(agent.plugin_manager, agent.manifest.dataset.name, **agent.manifest.dataset.options)
    extra = held_out_with_lookup(dataset)
    for name, examples in extra.items():  # asked as any split is: the collector renders dataset.prompt(example)
        dataset.add_split(name, examples)
    start = time.perf_counter()
    collector = ActivationDatasetCollector(
        pipe, max_new_tokens=collected.info["max_new_tokens"], target_layers=collected.target_layers, batch_size=16,
        signals=collected.recorded_signals, log_reference=doubter.log_reference.numpy(), show_progress=False)
    with tempfile.TemporaryDirectory() as folder:
        read = collector.collect_dataset(dataset, list(extra), output_dir=folder)
        held_out = rows_of(doubter, read, list(extra))
    seconds = time.perf_counter() - start
    fit, calibrate = rows_of(doubter, collected, (FIT_SPLIT, THRESHOLD_SPLIT)).values()

    def features(rows: dict[str, Any], signals: bool, state: bool) -> np.ndarray:
        return gate_features(rows["p"], rows["signals"] if signals else np.zeros((len(rows["p"]), 0)),
                             rows["state"] if state else None)

    def variant(as_asked_only: bool = False, first_frame_only: bool = False, signals: bool = True,
                state: bool = True, quantile: float = 0.01) -> dict[str, tuple[float, float]]:
        fit_rows = np.array([not (as_asked_only and ASKED.search(i)) for i in fit["id"]])
        threshold_rows = np.array([not (first_frame_only and FIRST_FRAME.search(i)) for i in calibrate["id"]])
        probe = LogisticProbe(L2 / int(fit_rows.sum())).fit(features(fit, signals, state)[fit_rows],
                                                             fit["right"][fit_rows])
        right = calibrate["right"] & threshold_rows
        threshold = np.quantile(probe.decision_function(features(calibrate, signals, state))[right], quantile)
        cells = {}
        for split, rows in held_out.items():
            below = probe.decision_function(features(rows, signals, state)) < threshold
            cells[split] = (below[rows["right"]].mean() if rows["right"].any() else float("nan"),
                            below[~rows["right"]].mean() if (~rows["right"]).any() else float("nan"))
        return cells

    def p_correct_alone(quantile: float = 0.01) -> dict[str, tuple[float, float]]:
        threshold = np.quantile(calibrate["p"][calibrate["right"]], quantile)
        return {split: ((rows["p"] < threshold)[rows["right"]].mean() if rows["right"].any() else float("nan"),
                        (rows["p"] < threshold)[~rows["right"]].mean() if (~rows["right"]).any() else float("nan"))
                for split, rows in held_out.items()}

    variants = {
        "shipped: all three ways, every frame, 1 %": variant(),
        "fitted on the questions as asked only": variant(as_asked_only=True),
        "threshold on validation's first frame only": variant(first_frame_only=True),
        "as asked only, first frame only": variant(as_asked_only=True, first_frame_only=True),
        "without the layer state": variant(state=False),
        "without the signals": variant(signals=False),
        "at the 2 % quantile": variant(quantile=0.02),
        "P(correct) re-read alone, 1 %": p_correct_alone(),
    }
    out = Report()
    out.say(f"# python benchmarks/after_lookup_variants.py --run-dir RUN   (RUN: {agent.manifest.dataset.options})")
    out.say(f"# {FIT_SPLIT}: {len(fit['id'])} reads ({int((~fit['right']).sum())} wrong); {THRESHOLD_SPLIT}: "
            f"{len(calibrate['id'])} ({int(calibrate['right'].sum())} right); held out, read in {seconds:.0f} s: "
            + ", ".join(f"{split} {len(rows['id'])} ({int((~rows['right']).sum())} wrong)"
                        for split, rows in held_out.items()))
    out.say()
    out.say(f"{'fit':<44}" + "".join(f"{split.removesuffix('_lookup'):>22}" for split in held_out))
    for label, cells in variants.items():
        out.say(f"{label:<44}" + "".join(
            f"{'-' if np.isnan(lost) else f'{lost:.3f}':>13} / {'-' if np.isnan(caught) else f'{caught:.3f}':<6}"
            for lost, caught in cells.values()))
    out.say()
    out.say("Each cell: the share of the split's right answers after the lookup below the threshold (refused) / "
            "the share of its wrong ones below it (caught).")
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
