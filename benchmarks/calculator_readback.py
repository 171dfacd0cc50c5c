"""Handed the calculator's result, does a world base state it?

The chat's "What is 17*23?" calls the calculator, gets 391 and answers
"The answer is 3911." on the shipped `small` base: the call is right, the
copy of the number into the answer is not. This script measures the copy
alone, on any saved world base (a build's ``model`` folder or a trial
saved by ``scripts/world_sweep.py``): the rendered calculator exchange the
world's transcripts train on (both tools offered, the question, the call,
the built-in calculator's result), then the base's greedy answer, which is
right when it is exactly "The answer is RESULT.". "What is 17*23?" comes
first, then COUNT arithmetic questions drawn as the world draws them, from
an RNG of their own. Per base it prints the 17*23 answer, how many are
right, and the wrong ones: how many kept the result's length (a digit
changed) and how many did not (a digit added or dropped). Seconds on one
core.

    python benchmarks/calculator_readback.py MODEL_DIR [MODEL_DIR ...] --output FILE
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Optional

from report import Report

CHAT_QUESTION = ("What is 17*23?", "17*23")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dirs", type=Path, nargs="+", help="saved world bases (folders with config.json)")
    parser.add_argument("--count", type=int, default=200, help="arithmetic questions besides 17*23")
    parser.add_argument("--seed", type=int, default=999, help="the questions' RNG seed")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    missing = [str(path) for path in args.model_dirs if not (path / "config.json").is_file()]
    if missing:
        print(f"not a saved base (no config.json): {', '.join(missing)}", file=sys.stderr)
        return 2

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from meta_spider.loom.world.chat import CALCULATOR_TOOL, LOOKUP_TOOL, calculator_exchange, render_chat
    from meta_spider.loom.world.evaluate import greedy_generate
    from meta_spider.loom.world.frames import arithmetic_question

    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    pairs = [CHAT_QUESTION] + [arithmetic_question(rng) for _ in range(args.count)]
    exchanges = [calculator_exchange(question, expression) for question, expression in pairs]
    prompts = [render_chat(messages, tools=[CALCULATOR_TOOL, LOOKUP_TOOL], add_generation_prompt=True)
               for messages in exchanges]
    results = [messages[-1]["content"] for messages in exchanges]

    out = Report()
    out.say(f"# python benchmarks/calculator_readback.py MODEL_DIR ... --count {args.count} --seed {args.seed}")
    out.say("right: the answer is exactly 'The answer is RESULT.'")
    for model_dir in args.model_dirs:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        texts = [tokenizer.decode(ids, skip_special_tokens=True).strip()
                 for ids in greedy_generate(model, tokenizer, prompts, 16)]
        wrong = [(result, text) for result, text in zip(results[1:], texts[1:])
                 if text != f"The answer is {result}."]
        out.say()
        out.say(f"## {model_dir}")
        out.say(f"17*23 -> {texts[0]!r}")
        out.say(f"read back right: {args.count - len(wrong)} of {args.count}")
        same_length = sum(len(text.removeprefix("The answer is ").removesuffix(".")) == len(result)
                          for result, text in wrong)
        out.say(f"wrong: {len(wrong)} ({same_length} of the result's length, {len(wrong) - same_length} "
                f"a digit longer or shorter or not a number)")
        for result, text in wrong:
            out.say(f"  {result:>8}  {text!r}")
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
