"""After a lookup: can pass 1 tell an answer the record holds from one it does not?

Asked about a recorded person's unrecorded attribute ("What is X's shoe
size?"), the agent looks X up, finds X's record, and the base answers
from it with another attribute ("He works as a translator."): it never
read a lookup whose record lacks what was asked. This script asked
whether a read there could tell them apart (it could: the doubter policy
now has a gate after a lookup, measured in ``after_lookup_gate.py``): it
runs the run's agent comparison (the doubter policy with that gate off,
with the world's lookup, as a world run does it) on the train, test and
test_outside splits, and for every question whose lookup found a record,
reads pass 1 once more on the conversation up to the tool result
(rendered as the policy renders pass 1: without tool definitions). Reads
scored:

- P(correct) re-read: the Doubter as it is, on a prompt it was not trained on;
- the scope gate's logit there;
- logistic regressions fitted here on train's reads (the train split's
  in-world questions and its unanswerable ones about recorded people:
  label, the agent's answer was right): on the Doubter's signals and the
  P(correct) logit, and on those and the state of the scope gate's layer.

Per read: AUROC of test's right answers against test_outside's invented
ones, and, at a threshold at train's 2 % and 5 % quantile of right
answers, the share of test's right answers it would refuse and of
test_outside's invented ones it would catch.

    python benchmarks/after_lookup_reads.py --run-dir RUN --output FILE
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np

from report import Report
from world_run import compare_policies, world_agent_or_say_why

SPLITS = ("train", "test", "test_outside")
QUANTILES = (0.02, 0.05)


class Reads(NamedTuple):
    """Per question whose lookup found a record: whether the agent's answer
    after it was right, and pass 1's reads on the conversation up to that
    tool result."""

    right: np.ndarray
    p_correct: np.ndarray
    scope: np.ndarray
    """The scope gate's logit."""
    rows: np.ndarray
    """The signals, then the scope layer's state."""


def reads_after_lookup(report: Any, backend: Any) -> Reads:
    """:class:`Reads` of every doubter result whose first successful lookup found a record."""
    import torch

    from meta_spider.native import ParsedToolCall, assistant_tool_calls_message, tool_result_message

    gate = backend.pipeline.doubter.scope_gate
    right, p_correct, scope, rows = [], [], [], []
    for task, result in zip(report.tasks, report.results["doubter"]):
        found = [step for step in result.steps if step.get("type") == "tool" and step.get("kind") == "result"]
        if not found:
            continue
        call = found[0]["call"]
        messages = [{"role": "user", "content": task.question},
                    assistant_tool_calls_message([ParsedToolCall(call["name"], call["arguments"], "call_0")]),
                    tool_result_message(call["name"], found[0]["observation"], "call_0")]
        prompt = backend.render_prompt(messages, tools=None, add_generation_prompt=True)
        introspection = backend.read(prompt, question=task.question)
        states = introspection.extras["layer_states"].float()
        signals = torch.tensor([list(introspection.extras["signals"].values())], dtype=torch.float32)
        with torch.no_grad():
            scope.append(float(gate.logit(states[None], signals)[0]))
        right.append(bool(result.correct))
        p_correct.append(float(introspection.p_correct))
        rows.append(np.concatenate([signals[0].numpy(), states[gate.layer_index].numpy()]))
    return Reads(np.array(right, dtype=bool), np.array(p_correct), np.array(scope), np.array(rows))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a world run with a scope gate (the demo's)")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    torch.set_num_threads(2)
    agent = world_agent_or_say_why(args.run_dir)
    if agent is None:
        return 2
    manifest, backend = agent.manifest, agent.backend
    doubter = getattr(getattr(backend, "pipeline", None), "doubter", None)
    if "train_outside" not in manifest.dataset.options or doubter is None or doubter.scope_gate is None:
        print(f"{args.run_dir}: needs a world run with unanswerable train questions and a Doubter with a scope "
              "gate (the demo's), on the transformers backend", file=sys.stderr)
        return 2

    ungated = dataclasses.replace(agent.launcher.make_policy("doubter"), gate_after_lookup=False)
    out = Report()
    out.say(f"# python benchmarks/after_lookup_reads.py --run-dir RUN   (RUN: {manifest.dataset.options})")
    reads = {}
    for split in SPLITS:
        start = time.perf_counter()
        report = compare_policies(agent, split, [("doubter", ungated)])
        reads[split] = reads_after_lookup(report, backend)
        out.say(f"{split}: {len(report.tasks)} questions, {len(reads[split].right)} with a record found, the "
                f"answer after it right {int(reads[split].right.sum())} ({time.perf_counter() - start:.0f} s)")

    train_right = reads["train"].right
    right = reads["test"].right
    invented = ~reads["test_outside"].right

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-9, 1 - 1e-9)
        return np.log(p) - np.log1p(-p)

    def fitted(width: int | None):  # the first ``width`` columns of the rows (None: all) and the P(correct) logit
        features = {split: np.column_stack([value.rows[:, :width], logit(value.p_correct)])
                    for split, value in reads.items()}
        scaler = StandardScaler().fit(features["train"])
        model = LogisticRegression(C=0.1, max_iter=5000).fit(scaler.transform(features["train"]), train_right)
        return {split: model.decision_function(scaler.transform(value)) for split, value in features.items()}

    signal_count = len(doubter.config.signals)
    scores = {
        "P(correct) re-read": {split: value.p_correct for split, value in reads.items()},
        "scope gate logit": {split: value.scope for split, value in reads.items()},
        "logistic: signals + P(correct) logit": fitted(signal_count),
        "logistic: those + the scope layer's state": fitted(None),
    }
    out.say()
    header = "".join(f"{f'lost/caught at {q:.0%}':>22}" for q in QUANTILES)
    out.say(f"{'read after the lookup':<44}{'AUROC':>7}{header}")
    for label, score in scores.items():
        test = score["test"][right]
        outside = score["test_outside"][invented]
        auroc = roc_auc_score(np.r_[np.ones(len(test)), np.zeros(len(outside))], np.r_[test, outside])
        cells = []
        for quantile in QUANTILES:
            threshold = np.quantile(score["train"][train_right], quantile)
            cells.append(f"{(test < threshold).mean():>14.3f} / {(outside < threshold).mean():.3f}")
        out.say(f"{label:<44}{auroc:>7.3f}" + "".join(cells))
    out.say()
    out.say(f"AUROC: test's {int(right.sum())} right answers after a lookup against test_outside's "
            f"{int(invented.sum())} invented ones; lost / caught: at a threshold at that quantile of train's "
            f"{int(train_right.sum())} right answers after a lookup, the share of test's right answers below it "
            "and of test_outside's invented ones")
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
