"""What does the scope gate cost in wordings nothing was tuned on?

Loads a trained run (its base, Doubter and calibrated answer gate, as
``metaloom eval`` leaves them) and asks its test questions once more, each
in a frame of ``shift_own_frames.json`` (frames written for the benchmarks
outside the world's grammar: new words, dashes, contractions; the frame per
question drawn as ``benchmarks/shift_signals.py`` draws it). Per question:
whether the base's own draft is right, and the gated decision with the
Doubter's scope gate and with its veto switched off. Printed: base
accuracy, the Doubter's P(correct) AUROC, coverage and knowledge loss
(share of the base-right answers refused) both ways, and how many
questions the gate vetoed.

    python benchmarks/scope_own_words.py --run-dir RUN --output benchmarks/results/scope_own_words.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from own_frames import own_question
from report import Report


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a run trained with --scope-layer and evaluated")
    parser.add_argument("--quantile", type=float, default=None,
                        help="veto below this quantile of the run's validation scores instead of the trained threshold")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch

    from meta_spider.loom.cli.eval import load_pipeline
    from meta_spider.loom.datasets import create_dataset
    from meta_spider.loom.evaluate.ranking import auroc
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.plugins import make_plugin_manager
    from meta_spider.policies.actions import is_refusal

    torch.set_num_threads(1)
    manifest = RunManifest.load(args.run_dir)
    pipe = load_pipeline(manifest, args.run_dir, None, None)
    gate = pipe.doubter.scope_gate
    if (gate is None or not gate.fitted) and args.quantile is not None:
        print(f"{args.run_dir}: --quantile needs a Doubter with a fitted scope gate (train with --scope-layer)",
              file=sys.stderr)
        return 2
    if args.quantile is not None:  # the trainer's rule at another quantile
        from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset

        activations = ActivationDataset.load(args.run_dir / ACTIVATIONS_DIR)
        rows = activations.split_indices("validation")
        states = activations.states(pipe.doubter.config.read_position)[rows]
        signals = activations.signals(pipe.doubter.config.signals)[rows] if pipe.doubter.config.signals else None
        with torch.no_grad():
            gate.threshold.fill_(float(torch.quantile(gate.logit(states, signals).double(), args.quantile)))
    dataset = create_dataset(make_plugin_manager(), manifest.dataset.name, **manifest.dataset.options)
    rows = []
    threshold = gate.threshold.clone() if gate is not None else None

    def set_veto(on: bool) -> None:  # a run without a gate: both rows are the same Doubter
        if gate is not None:
            gate.threshold.fill_(float(threshold) if on else float("-inf"))

    for example in dataset.split("test"):
        question = own_question(example)
        prompt = dataset.prompt(example)
        messages = [dict(message) for message in prompt.messages]
        messages[-1]["content"] = question
        decisions, scores = [], []
        for veto in (True, False):
            set_veto(veto)
            result = pipe.generate(messages, max_new_tokens=24, return_result=True)
            decisions.append(not is_refusal(result.text))
            scores.append(result.p_correct)
        right = dataset.check_fn(result.draft_text or "", example)
        rows.append((right, *decisions, *scores))
    set_veto(True)
    n = len(rows)
    right = [row for row in rows if row[0]]
    option = "" if args.quantile is None else f" --quantile {args.quantile}"
    out = Report()
    out.say(f"# python benchmarks/scope_own_words.py --run-dir {args.run_dir.name}{option} "
            f"(veto below {float(threshold) if threshold is not None else float('-inf'):.3f})")
    out.say(f"{n} test questions in the benchmarks' own frames; base accuracy {len(right) / n:.3f}")
    out.say(f"{'':<28}{'AUROC':>8}{'coverage':>10}{'knowledge loss':>16}")
    labels = [bool(row[0]) for row in rows]
    for index, label in ((1, "with the scope gate"), (2, "its veto switched off")):
        coverage = sum(row[index] for row in rows) / n
        loss = sum(not row[index] for row in right) / max(1, len(right))
        score = auroc([row[index + 2] for row in rows], labels)
        out.say(f"{label:<28}{score:>8.3f}{coverage:>10.3f}{loss:>16.3f}")
    vetoed = sum(row[2] and not row[1] for row in rows)
    vetoed_right = sum(row[2] and not row[1] for row in right)
    out.say(f"answered without the veto, refused with it: {vetoed} questions, {vetoed_right} of them base-right")
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
