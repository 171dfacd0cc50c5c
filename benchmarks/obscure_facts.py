"""Does the Doubter know a fact the base never read about a person it knows?

The embedded world leaves one attribute of a third of the mentioned people
out of every biography and chat (docs/world.md, "obscure attributes"): a
familiar name with a fact the base never read, the case a reader of the
name's familiarity cannot tell from a known fact. This script splits an
evaluated run's questions about people the base read about (one mention or
more) into those asking such a never-read fact and the rest, and prints per
split: how many, how often the base is right, how many the Doubter system
answered and how many of those answers are wrong, the mean P(correct) of
the base's wrong drafts, and the share of all the wrong answers the system
gave that are never-read facts. Then whether any reader of the Doubter's
inputs could tell: logistic regressions fitted on the training split's
questions about known people for "this fact was never read", on the
collected states (each read position and layer), the Doubter's signals and
both, scored by AUROC on validation and the test splits. And what knowing
would be worth: the AUROC of the Doubter's P(correct) with the base's wrong
drafts of never-read facts ranked last, against the best baseline as it
is. No model runs: seconds.

``--name-swap`` adds one more reader (one forward of the base per prompt
and per invented name, about 40 s): how much less likely the base's draft
becomes when the name is replaced by an invented one (the name where the
world put it), on the idea that a fact never read is a guess the base
would make about anyone.

    python benchmarks/obscure_facts.py --run-dir RUN --output benchmarks/results/obscure_facts.txt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from report import Report

SPLITS = ("test", "test_paraphrase", "test_misspelt")
BASELINES = ("signals_score", "probe_signals_score", "answer_mean_logprob", "probe_score", "first_token_max_prob")
"""The per-question scores of the report's baselines."""
INVENTED = ("Qerlin Vostrapek", "Amdo Fiskelwyn", "Turi Belmanox")
"""Names no world generates (its syllables differ), put in place of the question's name by ``--name-swap``."""


def summary(questions: list[dict[str, Any]]) -> dict[str, Any]:
    wrong_drafts = [q["p_correct"] for q in questions if not q["pass1_correct"]]
    answered = [q for q in questions if q["action"] != "refuse"]
    return {"n": len(questions), "base_right": sum(q["pass1_correct"] for q in questions),
            "answered": len(answered), "answered_wrong": sum(not q["correct"] for q in answered),
            "p_wrong": sum(wrong_drafts) / len(wrong_drafts) if wrong_drafts else float("nan")}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a run of the embedded world, evaluated")
    parser.add_argument("--name-swap", action="store_true",
                        help="also read the draft's log-prob with the name swapped for invented ones (runs the base)")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    from meta_spider.loom.cli.eval import report_file
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.world.dataset import WorldDataset

    manifest = RunManifest.load(args.run_dir)
    if manifest.dataset.name != "world":
        print(f"{args.run_dir}: the run's dataset is {manifest.dataset.name!r}, not the embedded world",
              file=sys.stderr)
        return 2
    meta = meta_of(WorldDataset(**manifest.dataset.options))
    out = Report()
    out.say(f"# python benchmarks/obscure_facts.py --run-dir RUN   (RUN: {manifest.dataset.options})")
    out.say("questions about people the base read about (one mention or more); 'never read': the attribute was "
            "left out of every text")
    out.say(f"{'split':<17}{'fact':<12}{'n':>6}{'base right':>12}{'answered':>10}{'of them wrong':>15}"
            f"{'P(correct), wrong drafts':>26}")
    evaluated = {}
    for split in SPLITS:
        name = report_file(split)
        path = args.run_dir / name
        if not path.is_file():
            out.say(f"{split:<17}(no {name}: run `metaloom eval --shifts` first)")
            continue
        evaluated[split] = json.loads(path.read_text())["questions"]
        questions = [q for q in evaluated[split] if meta[q["id"]].get("mentions", 0) > 0]
        groups = {"never read": [q for q in questions if meta[q["id"]].get("obscure")],
                  "read": [q for q in questions if not meta[q["id"]].get("obscure")]}
        rows = {kind: summary(group) for kind, group in groups.items()}
        for kind, row in rows.items():
            out.say(f"{split:<17}{kind:<12}{row['n']:>6}{row['base_right']:>12}{row['answered']:>10}"
                    f"{row['answered_wrong']:>15}{row['p_wrong']:>26.3f}")
        wrong = rows["never read"]["answered_wrong"] + rows["read"]["answered_wrong"]
        if wrong:
            out.say(f"{split:<17}never-read facts: {rows['never read']['answered_wrong']} of the {wrong} wrong answers "
                    f"given about people the base read about")
    ceiling(evaluated, meta, out)
    readers(args.run_dir, manifest, meta, out, name_swap=args.name_swap)
    out.write(args.output)
    return 0


def ceiling(evaluated: dict[str, list[dict[str, Any]]], meta: dict[str, Any], out: Report) -> None:
    """AUROC of P(correct) as it is and with the base's wrong drafts of
    never-read facts ranked last (a Doubter that knew them), beside the best
    baseline as it is, on the answerable questions."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    out.say()
    out.say("if the Doubter alone knew the never-read facts: AUROC of P(correct) with the base's wrong drafts of "
            "them ranked last, against the best baseline as it is")
    out.say(f"{'split':<17}{'wrong, never read':>19}{'Doubter':>9}{'knowing':>9}{'best baseline':>15}"
            f"{'margin':>8}{'knowing':>9}")
    for split, questions in evaluated.items():
        questions = [q for q in questions if meta[q["id"]].get("answerable", True)]
        right = np.array([bool(q["pass1_correct"]) for q in questions])
        p_correct = np.array([q["p_correct"] for q in questions], dtype=float)
        unread = np.array([bool(meta[q["id"]].get("obscure")) for q in questions]) & ~right
        knowing = np.where(unread, p_correct.min() - 1.0, p_correct)
        best = max(roc_auc_score(right, [q[name] for q in questions]) for name in BASELINES
                   if all(q.get(name) is not None for q in questions))
        doubter, known = roc_auc_score(right, p_correct), roc_auc_score(right, knowing)
        out.say(f"{split:<17}{int(unread.sum()):>19}{doubter:>9.3f}{known:>9.3f}{best:>15.3f}"
                f"{doubter - best:>+8.3f}{known - best:>+9.3f}")


def meta_of(dataset: Any) -> dict[str, Any]:
    """Every question's world metadata by id."""
    return {example.id: example.meta for split in dataset.splits for example in dataset.split(split)}


def name_swap_drops(manifest: Any, data: Any, meta: dict[str, Any], indices: Any) -> Any:
    """``[N, 2]``: how much the draft's summed and least log-prob fall, on
    average over :data:`INVENTED`, with the question's name (as the world
    wrote it into the prompt) swapped for an invented one; NaN elsewhere."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(manifest.model.name).eval()
    tokenizer = AutoTokenizer.from_pretrained(manifest.model.name)

    def draft_logprobs(prompt: str, draft: list[int]) -> Any:
        prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
        ids = torch.tensor([prompt_ids + draft])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(ids).logits[0, len(prompt_ids) - 1:-1].double(), -1)
        return logprobs.gather(1, ids[0, len(prompt_ids):, None])[:, 0].numpy()

    drops = np.full((len(data.examples), 2), np.nan)
    for index in indices:
        example = data.examples[index]
        name, prompt = str(meta[example["id"]].get("entity", "")), example["prompt_text"]
        draft = tokenizer(example["answer_text"], add_special_tokens=False).input_ids
        if not name or name not in prompt or not draft:
            continue
        own = draft_logprobs(prompt, draft)
        swapped = np.mean([draft_logprobs(prompt.replace(name, other), draft) for other in INVENTED], axis=0)
        drops[index] = (own.sum() - swapped.sum(), own.min() - swapped.min())
    return drops


def readers(run_dir: Path, manifest: Any, meta: dict[str, Any], out: Report, *, name_swap: bool = False) -> None:
    """AUROC of logistic regressions for "the fact was never read" among
    questions about people the base read about."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.wrapper.checkpoint import read_checkpoint_document

    data = ActivationDataset.load(run_dir / ACTIVATIONS_DIR)
    document, _ = read_checkpoint_document(manifest.resolve(run_dir, manifest.checkpoint))
    signals = data.signals(list(document["config"]["signals"])).numpy()
    reads = [("the Doubter's signals", signals)]
    for position in ("prompt", "draft"):
        states = data.states(position).numpy()
        for index, layer in enumerate(data.target_layers):
            reads.append((f"{position} state, layer {layer}", states[:, index]))
            reads.append((f"{position} state, layer {layer} + signals", np.column_stack([states[:, index], signals])))
    scored = [split for split in ("validation", "test", "test_paraphrase", "test_misspelt") if split in data.splits]
    rows, labels = {}, {}
    for split in ("train", *scored):
        rows[split] = np.array([i for i in data.split_indices(split)
                                if meta.get(data.examples[i]["id"], {}).get("mentions", 0) > 0])
        labels[split] = np.array([bool(meta[data.examples[i]["id"]].get("obscure")) for i in rows[split]])
    if name_swap:
        drops = name_swap_drops(manifest, data, meta, np.concatenate(list(rows.values())))
        reads.append(("the draft's drop with the name swapped", drops))
        reads.append(("that drop + signals", np.column_stack([drops, signals])))
    out.say()
    out.say(f"can a reader tell? 'never read' among questions about known people, logistic regressions fitted on "
            f"train ({int(labels['train'].sum())} of {len(rows['train'])}; C = 0.1), AUROC")
    out.say(f"{'reads':<40}" + "".join(f"{split:>17}" for split in scored))
    for name, features in reads:
        features = np.nan_to_num(features)
        scaler = StandardScaler().fit(features[rows["train"]])
        fitted = LogisticRegression(C=0.1, max_iter=3000).fit(scaler.transform(features[rows["train"]]),
                                                              labels["train"])
        scores = {split: fitted.decision_function(scaler.transform(features[rows[split]])) for split in scored}
        cells = "".join(f"{roc_auc_score(labels[split], scores[split]):>17.3f}" for split in scored)
        out.say(f"{name:<40}{cells}")


if __name__ == "__main__":
    sys.exit(main())
