"""Which confidence signals does the embedded world's base give, and could a
reader of its hidden states beat the answer's own log-probability?

For a run directory made on the world (the demo's run): the collected
activations, the base and the world's people. It prints

1. AUROC on the test split of token-level signals of the base's greedy
   answer (mean / minimum log-prob, largest entropy, smallest top-2 margin)
   and of the question itself (the log-prob the base gives the prompt's
   tokens: the pass-1 signals ``prompt_logprob_sum`` / ``_mean``);
2. five-fold cross-validation over the held-out (validation + test) people,
   so the reader is trained on people like the ones it is judged on:
   logistic regression and gradient-boosted trees on the answer's log-prob
   features, with the states at the last prompt token, with the prompt's
   log-prob, and with the person's mention bucket (an oracle no Doubter
   sees);
3. per mention bucket: accuracy and mean answer log-prob of the held-out
   questions;
4. how well the states tell people the corpus never mentions from the others
   (probes fitted on the train split, AUROC on test) at the last prompt
   token, the name's last token, the mean over the name's tokens and the
   token after the name, in every layer, next to the prompt's log-prob.

    python benchmarks/confidence_signals.py --run-dir RUN --output benchmarks/results/confidence_signals.txt

Needs the ``dev`` extra (scikit-learn). Runs in about a minute on one core.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

BUCKETS = ("frequent", "occasional", "rare", "unseen")


def token_signals(model: Any, prompt_ids: list[int], answer_ids: list[int]) -> tuple[list[float], np.ndarray]:
    """Signals of one greedy answer and the residual states of every prompt
    position (``[layers, positions, d]``)."""
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    start = len(prompt_ids) - 1
    logp = out.logits[0, start:start + len(answer_ids)].float().log_softmax(-1)
    chosen = logp[torch.arange(len(answer_ids)), torch.tensor(answer_ids)]
    entropy = -(logp.exp() * logp).sum(-1)
    top2 = logp.topk(2, -1).values
    signals = [chosen.mean().item(), chosen.min().item(), -entropy.max().item(), (top2[:, 0] - top2[:, 1]).min().item()]
    states = torch.stack(out.hidden_states[1:])[:, 0, :len(prompt_ids)].numpy()
    return signals, states


def cross_validated_auroc(make: Callable[[], Any], x: np.ndarray, y: np.ndarray, groups: np.ndarray,
                          folds: int = 5, seed: int = 0) -> float:
    """AUROC of out-of-fold scores, folds by person."""
    from sklearn.metrics import roc_auc_score

    people = np.unique(groups)
    np.random.default_rng(seed).shuffle(people)
    scores = np.zeros(len(y))
    for fold in np.array_split(people, folds):
        held = np.isin(groups, fold)
        scores[held] = make().fit(x[~held], y[~held]).predict_proba(x[held])[:, 1]
    return float(roc_auc_score(y, scores))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a run directory collected on the world")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.world import build_world
    from meta_spider.wrapper.signals import PROMPT_SIGNALS

    torch.set_num_threads(1)
    manifest = RunManifest.load(args.run_dir)
    if manifest.dataset.name != "world":
        parser.error(f"{args.run_dir} was collected on {manifest.dataset.name!r}, not on the embedded world")
    options = manifest.dataset.options
    world = build_world(options.get("preset", "small"), seed=int(options.get("seed", 0)))
    people = {person.id: person for person in world.world().people}
    data = ActivationDataset.load(args.run_dir / ACTIVATIONS_DIR)
    model = AutoModelForCausalLM.from_pretrained(str(world.model_dir), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(world.model_dir))

    examples = data.examples
    split = np.array([e["split"] for e in examples])
    person = np.array([int(e["id"].split("-")[1]) for e in examples])
    bucket = np.array([BUCKETS.index(people[p].bucket) for p in person])
    y = data.tensor("pass1_correct").numpy().astype(int)
    prompt_states = data.states("prompt").numpy().reshape(len(y), -1)
    signals, positions = [], {"last prompt token": [], "name, last token": [], "name, mean": [], "after the name": []}
    for i, example in enumerate(examples):
        prompt_ids = data.prompt_ids(i)
        row, states = token_signals(model, prompt_ids, data.answer_ids(i))
        signals.append(row)
        text = example["prompt_text"]
        name = people[person[i]].name
        offsets = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
        if len(offsets) != len(prompt_ids):
            raise SystemExit(f"{example['id']}: the prompt text re-tokenizes to {len(offsets)} tokens, "
                             f"the collection holds {len(prompt_ids)}")
        begin = text.index(name)
        span = [k for k, (a, b) in enumerate(offsets) if a < begin + len(name) and b > begin]
        positions["last prompt token"].append(states[:, -1])
        positions["name, last token"].append(states[:, span[-1]])
        positions["name, mean"].append(states[:, span].mean(axis=1))
        positions["after the name"].append(states[:, span[-1] + 1])
    signals = np.array(signals)
    prompt_names = [name for name in PROMPT_SIGNALS if name in data.recorded_signals]
    prompt_signals = data.signals(prompt_names).double().numpy()  # recorded by the collector

    lines = [f"# confidence signals: run {args.run_dir.name}, world {world.path.name}",
             "# command: python benchmarks/confidence_signals.py --run-dir RUN"]
    test, held, train = split == "test", split != "train", split == "train"
    lines.append(f"\n1. token signals of the greedy answer, test split (n={test.sum()}, AUROC)")
    for k, name in enumerate(("mean log-prob", "min log-prob", "-max entropy", "min top-2 margin")):
        lines.append(f"   {name:<28} {roc_auc_score(y[test], signals[test, k]):.3f}")
    for k, name in enumerate(prompt_names):
        lines.append(f"   {name:<28} {roc_auc_score(y[test], prompt_signals[test, k]):.3f}  (the question, not the answer)")

    lines.append(f"\n2. cross-validated over the held-out people (n={held.sum()} questions, 5 folds by person, AUROC)")
    lines.append(f"   {'mean log-prob itself':<48} {roc_auc_score(y[held], signals[held, 0]):.3f}")
    onehot = np.eye(len(BUCKETS))[bucket]
    sets = {"log-prob features": signals, "log-prob features + prompt states": np.c_[signals, prompt_states],
            "log-prob features + prompt log-prob": np.c_[signals, prompt_signals],
            "log-prob features + mention bucket (oracle)": np.c_[signals, onehot]}
    readers = {"logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000)),
               "trees": lambda: HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, max_leaf_nodes=8,
                                                               random_state=0)}
    for name, x in sets.items():
        cells = "  ".join(f"{reader} {cross_validated_auroc(make, x[held], y[held], person[held]):.3f}"
                          for reader, make in readers.items())
        lines.append(f"   {name:<48} {cells}")

    lines.append("\n3. held-out questions by mention bucket")
    for b, name in enumerate(BUCKETS):
        rows = held & (bucket == b)
        lines.append(f"   {name:<11} n={rows.sum():<4} accuracy {y[rows].mean():.3f}  mean answer log-prob "
                     f"{signals[rows, 0].mean():.3f}")

    lines.append("\n4. unseen vs mentioned people from the states (probe fitted on train, AUROC on test)")
    unseen = bucket == BUCKETS.index("unseen")
    for name, rows in positions.items():
        states = np.array(rows)
        cells = []
        for layer in range(states.shape[1]):
            probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000))
            probe.fit(states[train, layer], unseen[train])
            cells.append(f"L{layer} {roc_auc_score(unseen[test], probe.decision_function(states[test, layer])):.3f}")
        lines.append(f"   {name:<20} " + "  ".join(cells))
    lines.append(f"   {'prompt log-prob sum':<20} {roc_auc_score(~unseen[test], prompt_signals[test, 0]):.3f} "
                 "(no fitting: higher = mentioned)")

    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
