"""The test questions as people type them in a chat: greetings, lower case,
no question mark, thanks and texting abbreviations around the world's own
question.

Each form wraps the test question as generated (its first frame), so a
form's column against the plain one says what the casual wording alone
costs. The forms were written for this script and are used for nothing
else (the first six before any was measured, the last five after seeing
the first six's numbers). The run's base reads each question once (pass
1, as `metaloom eval` reads it: 16 prompts a batch, the run's Doubter, the
draft as long as the collection's), and per form the script prints the
base's accuracy, how often its draft is the refusal sentence (the base
declines: the agent then looks the name up, `metaloom eval` refuses), the
Doubter's AUROC beside the draft's mean log-prob's (the strongest single
baseline under new wording, docs/loom.md), and at the run's answer gate
the answers (drafts that are not the refusal, at or above the threshold),
the wrong ones among them and the base-right questions refused.

About a minute on two cores.

    python benchmarks/casual_frames.py --run-dir RUN --output benchmarks/results/casual_frames.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from report import Report


def _lower(question: str) -> str:
    return question[:1].lower() + question[1:]


FORMS: dict[str, Callable[[str], str]] = {
    "as generated": lambda q: q,
    "hey, ...": lambda q: "hey, " + _lower(q),
    "lower case, no '?'": lambda q: _lower(q).rstrip("?.").rstrip(),
    "quick q: ...": lambda q: "quick q: " + _lower(q),
    "... thx": lambda q: q + " thx",
    "Hi there! ...": lambda q: "Hi there! " + q,
    "... thanks": lambda q: q + " thanks",
    "... ty!": lambda q: q + " ty!",
    "pls ...": lambda q: "pls " + _lower(q),
    "do u know ...": lambda q: "do u know " + _lower(q),
    "btw, ...": lambda q: "btw, " + _lower(q),
}
BATCH = 16


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a trained and evaluated world run")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    import torch
    from sklearn.metrics import roc_auc_score

    from meta_spider.loom.cli.eval import load_pipeline
    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.world.dataset import WorldDataset
    from meta_spider.wrapper.batched import read_pass1
    from meta_spider.wrapper.refusal import is_refusal

    torch.set_num_threads(2)
    manifest = RunManifest.load(args.run_dir)
    pipe = load_pipeline(args.run_dir)
    if pipe.doubter is None or pipe.answer_gate is None:
        print(f"{args.run_dir}: needs a trained and evaluated run (metaloom train, then metaloom eval)",
              file=sys.stderr)
        return 2
    dataset = WorldDataset(**manifest.dataset.options)
    test = dataset.split("test")
    max_draft_tokens = ActivationDataset.load(args.run_dir / ACTIVATIONS_DIR).max_new_tokens
    threshold = pipe.answer_gate.threshold
    mean_index = pipe.doubter.config.signals.index("draft_logprob_mean")
    started = time.perf_counter()
    rows = []
    for form, ask in FORMS.items():
        p, baseline, right, declined = [], [], [], []
        for start in range(0, len(test), BATCH):
            batch = test[start:start + BATCH]
            questions = [ask(example.question) for example in batch]
            texts = [pipe.render(question) for question in questions]
            words = [pipe.question_words(text, question) for text, question in zip(texts, questions)]
            reads = read_pass1(pipe.decoder, pipe.doubter, [pipe.encode(text)[0] for text in texts],
                               read_position=pipe.doubter.config.read_position, max_draft_tokens=max_draft_tokens,
                               pad_token_id=pipe.pad_token_id, words=words)
            for read, example in zip(reads, batch):
                draft = pipe.decode(read.draft_ids)
                p.append(float(read.p_correct))
                baseline.append(float(read.signals[0, mean_index]))
                right.append(bool(dataset.check_fn(draft, example)))
                declined.append(is_refusal(draft))
        p, baseline, right, declined = map(np.asarray, (p, baseline, right, declined))
        answered = (p >= threshold) & ~declined
        rows.append((form, right.mean(), int(declined.sum()), roc_auc_score(right, p),
                     roc_auc_score(right, baseline), int(answered.sum()), int((answered & ~right).sum()),
                     int((~answered & right).sum()), int(right.sum())))

    out = Report()
    out.say(f"# python benchmarks/casual_frames.py --run-dir RUN   (RUN: {dict(manifest.dataset.options)}; "
            f"{len(test)} test questions per form, read in {time.perf_counter() - started:.0f} s; answer gate "
            f"P(correct) >= {threshold:.3f})")
    out.say(f"{'form':<22}{'base accuracy':>14}{'declined':>10}{'Doubter AUROC':>15}{'draft mean lp':>15}"
            f"{'answered':>10}{'wrong':>7}{'right refused':>15}")
    for form, accuracy, declined_n, auroc, base_auroc, answered_n, wrong, refused, right_n in rows:
        out.say(f"{form:<22}{accuracy:>14.3f}{declined_n:>10}{auroc:>15.3f}{base_auroc:>15.3f}{answered_n:>10}"
                f"{wrong:>7}{f'{refused} / {right_n}':>15}")
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
