"""Do the hidden states move more, when the question's subject is left out,
for a person the base knows? A state-side twin of the occluded name.

For every collected question of a run that records ``occluded_name_logprob``
(train, validation and the test splits), pass 1 drafts and finds, as the
signal does, the two words of the question whose absence lowers the draft's
log-prob most; the base then reads the prompt with and without those words,
and the state at the last prompt token of every layer is compared: the
relative distance ``|h - h'| / |h|`` and the cosine. If knowing the person
is a retrieval the last token's state carries, leaving the name out should
move it more for a known person than for an unknown one, which no pass-1
log-prob reads.

The draft is made again as the collection made it (greedy, the demo's
24 tokens at most); a question without words (none in the world) is left
out. Printed: each feature's AUROC alone against the base's correctness, and a
logistic regression fitted on the training split's answerable questions
(as the Doubter's signal mix is) on the demo's four signals, with the
distances, with distances and cosines, and with the draft's summed log-prob
drop when the two words are left out one at a time (the output-side
counterpart). Validation columns are printed so that a choice could be made
without the test ones. About 100 s on two cores for the demo run.

    python benchmarks/occlusion_states.py --run-dir RUN --output benchmarks/results/occlusion_states.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from report import Report

SIGNALS = ("draft_logprob_mean", "draft_logprob_min", "prompt_pmi_top4", "occluded_name_logprob")
SPLITS = ("train", "validation", "test", "test_paraphrase", "test_misspelt")
SCORED = SPLITS[1:]
MAX_DRAFT_TOKENS = 24


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a trained world run that records the occlusion")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from meta_spider.loom.cli.eval import load_pipeline
    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.evaluate.ranking import auroc
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.train.data import unanswerable_examples
    from meta_spider.wrapper.signals import OCCLUDED_WORDS, without_word

    torch.set_num_threads(2)
    data = ActivationDataset.load(args.run_dir / ACTIVATIONS_DIR)
    missing = [name for name in SIGNALS if name not in data.recorded_signals]
    if missing or any(split not in data.splits for split in SPLITS):
        print(f"{args.run_dir}: needs a collection with {', '.join(SIGNALS)} and the splits {', '.join(SPLITS)} "
              "(the demo's default run)", file=sys.stderr)
        return 2
    manifest = RunManifest.load(args.run_dir)
    pipe = load_pipeline(manifest, args.run_dir, None, None)
    model = pipe.model
    layers = pipe.structure.num_layers
    correct = data.tensor("pass1_correct").numpy().astype(bool)
    signals = data.signals(list(SIGNALS)).numpy().astype(np.float64)
    rows = {split: np.array(data.split_indices(split)) for split in SPLITS}
    distance = np.zeros((len(data.examples), layers))
    cosine = np.ones((len(data.examples), layers))
    drop = np.zeros(len(data.examples))
    read = np.zeros(len(data.examples), dtype=bool)  # questions with words to occlude

    def last_states(ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[1:]
        return torch.stack([layer[0, -1] for layer in hidden]).double()

    for count, index in enumerate(k for split in SPLITS for k in rows[split]):
        example = data.examples[index]
        prompt = data.prompt_ids(int(index))
        words = pipe.question_words(example["prompt_text"], example["question"])
        if not words:
            continue
        read[index] = True
        draft = list(pipe.read_ids(torch.tensor([prompt]), max_draft_tokens=MAX_DRAFT_TOKENS, words=words).draft_ids)
        occlusion = pipe.collect_occlusions([example["prompt_text"]], [example["question"]], [prompt], [draft])[0]
        with torch.no_grad():
            logprobs = model(torch.tensor([prompt + draft])).logits[0, len(prompt) - 1:-1].double().log_softmax(-1)
        total = float(logprobs[torch.arange(len(draft)), torch.tensor(draft)].sum())
        drops = total - np.asarray(occlusion.draft_logprob_sums)
        chosen = np.argsort(-drops, kind="stable")[:OCCLUDED_WORDS]
        positions = sorted({k for word in chosen for k in occlusion.words[word]})
        full, without = last_states(prompt), last_states(without_word(prompt, positions))
        distance[index] = ((full - without).norm(dim=-1) / full.norm(dim=-1)).numpy()
        cosine[index] = torch.nn.functional.cosine_similarity(full, without, dim=-1).numpy()
        drop[index] = float(drops[chosen].sum())
        if count % 500 == 0:
            print(f"  {count} questions read", file=sys.stderr, flush=True)

    unanswerable = np.array(unanswerable_examples(data.examples), dtype=bool)
    left_out = sum(int((~read[index]).sum()) for index in rows.values())
    rows = {split: index[read[index]] for split, index in rows.items()}  # questions without words: nothing read
    fit = rows["train"][~unanswerable[rows["train"]]]
    output = Report()
    say = output.say
    say(f"# python benchmarks/occlusion_states.py --run-dir {args.run_dir.name}")
    say(f"left out, no words to occlude: {left_out}")
    say(f"fitted on {len(fit)} answerable train questions; scored: "
        + ", ".join(f"{split} {len(rows[split])}" for split in SCORED))
    say(f"{'AUROC':<52}" + "".join(f"{split:>17}" for split in SCORED))
    features = {f"state distance, layer {layer + 1}": distance[:, layer] for layer in range(layers)}
    features.update({f"state cosine, layer {layer + 1}": cosine[:, layer] for layer in range(layers)})
    features["draft log-prob drop without the two words"] = drop
    for label, values in features.items():
        say(f"{label + ' (alone)':<52}"
            + "".join(f"{auroc(values[rows[s]], correct[rows[s]]):>17.3f}" for s in SCORED))
    sets = {"the four signals (logistic)": signals,
            "+ state distances": np.column_stack([signals, distance]),
            "+ state distances and cosines": np.column_stack([signals, distance, cosine]),
            "+ the draft's drop": np.column_stack([signals, drop]),
            "+ distances, cosines and the drop": np.column_stack([signals, distance, cosine, drop])}
    for label, values in sets.items():
        scaled = StandardScaler().fit(values[fit]).transform(values)
        score = LogisticRegression(max_iter=5000).fit(scaled[fit], correct[fit]).predict_proba(scaled)[:, 1]
        say(f"{label:<52}" + "".join(f"{auroc(score[rows[s]], correct[rows[s]]):>17.3f}" for s in SCORED))
    output.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
