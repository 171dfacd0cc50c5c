"""What the occlusion signal costs: the demo's collection with and without it,
side by side in one run.

`metaloom collect` runs twice on the same world with the demo's settings
(`--dtype float32 --batch-size 16 --max-new-tokens 24 --pmi-signals`, the
unanswerable train bank), the second time with `--occlusion-signals`, each
into a fresh temporary folder and in a process of its own (model loading
included, as a user runs it). Printed: the wall-clock seconds of each, their
ratio, the questions' words per question (one more forward each), and
whether every other recorded signal and the states are the same bit for bit.

Then one prompt with a conversation before its question (the world's test
questions asked and answered before it, about LONG_PROMPT_TOKENS tokens):
pass 1's occlusion forwards with the prefix before the question prefilled
once (what one prompt gets) against whole rows in batches (what collection
batches get), median of ROUNDS paired rounds, and the largest difference
between the two's draft log-probs.

    python benchmarks/occlusion_cost.py --output benchmarks/results/occlusion_cost.txt
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from metaloom_process import run_metaloom
from report import Report

LONG_PROMPT_TOKENS = 1500
ROUNDS = 5


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.demo import recipe_args
    from meta_spider.loom.world import build_world
    from meta_spider.wrapper.signals import PMI_SIGNALS, SIGNALS, word_spans

    world = build_world(args.preset, seed=args.seed)
    dataset, collect, _ = recipe_args("scope", args.preset, args.seed)  # the demo's collection, without occlusion
    seconds, runs = {}, {}
    with tempfile.TemporaryDirectory(prefix="occlusion-cost-") as scratch:
        for label, extra in (("without", ()), ("with", ("--occlusion-signals",))):
            run = Path(scratch) / label
            seconds[label], status = run_metaloom("collect", "--run-dir", run, "--model-name", world.model_dir,
                                                  *dataset, *collect, "--quiet", *extra)
            if status:
                return status
            runs[label] = ActivationDataset.load(run / ACTIVATIONS_DIR)
        words = np.array([len(word_spans(record["question"])) for record in runs["with"].examples])
        kept = SIGNALS + PMI_SIGNALS
        same = (torch.equal(runs["with"].signals(kept), runs["without"].signals(kept))
                and torch.equal(runs["with"].tensor("states_prompt"), runs["without"].tensor("states_prompt"))
                and torch.equal(runs["with"].tensor("pass1_correct"), runs["without"].tensor("pass1_correct")))
        count = len(runs["with"])

    long_prompt = shared_prefix_against_whole_rows(world, args.preset, args.seed)

    out = Report()
    out.say(f"# python benchmarks/occlusion_cost.py --preset {args.preset}   (world {args.preset}, seed {args.seed}; "
            f"the demo's collection settings; two cores)")
    out.say(f"{count} questions, {words.mean():.1f} words each on average (most {words.max()}): one more forward "
            "of (prompt without the word + draft) per word")
    out.say(f"{'metaloom collect':<40}{'seconds':>10}")
    out.say(f"{'without --occlusion-signals':<40}{seconds['without']:>10.1f}")
    out.say(f"{'with --occlusion-signals':<40}{seconds['with']:>10.1f}")
    out.say(f"ratio with / without: {seconds['with'] / seconds['without']:.2f}x")
    out.say(f"every other signal, the states and the correctness labels bit for bit the same: {same}")
    out.say()
    tokens, words_n, shared_s, whole_s, diff = long_prompt
    out.say(f"one prompt of {tokens} tokens, its question {words_n} words at the end: occlusion forwards, median of "
            f"{ROUNDS} paired rounds")
    out.say(f"{'prefix before the question prefilled once':<44}{shared_s:>8.3f} s")
    out.say(f"{'whole rows, batched':<44}{whole_s:>8.3f} s")
    out.say(f"ratio whole rows / shared prefix: {whole_s / shared_s:.1f}x; largest difference of a draft log-prob "
            f"{diff:.1e}")
    out.write(args.output)
    return 0


def shared_prefix_against_whole_rows(world, preset: str, seed: int) -> tuple[int, int, float, float, float]:
    """(prompt tokens, question words, seconds shared, seconds whole, largest difference) on one long prompt."""
    import numpy as np
    import torch

    from meta_spider.loom.world.dataset import WorldDataset
    from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline

    torch.set_num_threads(1)
    pipe = MetaSpiderPipeline.from_pretrained(MetaSpiderConfig(model_name=str(world.model_dir), dtype="float32"))
    test = WorldDataset(preset, seed).split("test")
    messages: list[dict] = []
    for example in test:
        messages += [{"role": "user", "content": example.question}, {"role": "assistant", "content": example.answer}]
        if len(pipe.encode(pipe.render(messages))[0]) >= LONG_PROMPT_TOKENS:
            break
    question = test[-1].question
    messages.append({"role": "user", "content": question})
    text = pipe.render(messages)
    ids = pipe.encode(text)[0].tolist()
    words = pipe.question_words(text, question)
    decoder = pipe.decoder
    draft = decoder.read_states(torch.tensor([ids]), [0], max_draft_tokens=24).draft_ids

    def run(copies: int) -> tuple[float, tuple[float, ...]]:
        started = time.perf_counter()
        sums = decoder.occluded_draft_logprobs([ids] * copies, [draft] * copies, [words] * copies,
                                               pad_token_id=pipe.pad_token_id)[0]
        return time.perf_counter() - started, sums

    shared, whole = [], []
    for _ in range(ROUNDS):
        seconds, shared_sums = run(1)
        shared.append(seconds)
        seconds, whole_sums = run(2)  # two copies take the batched path; half its time is one prompt's
        whole.append(seconds / 2)
    diff = float(np.max(np.abs(np.array(shared_sums) - np.array(whole_sums))))
    return len(ids), len(words), float(np.median(shared)), float(np.median(whole)), diff


if __name__ == "__main__":
    sys.exit(main())
