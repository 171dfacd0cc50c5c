"""Next-token agreement between transformers and llama-cpp-python on the
embedded world's own base, exported to GGUF (f16, Q8_0 and 4-bit).

The 200 prompts are held-out test questions in chat format, each followed by
a prefix of its gold answer of a seeded random length, so the next token
ranges over pronouns, verbs, names, values and the final stop. The reference
is the transformers model in float32; each GGUF runs under llama.cpp's
default settings (f16 KV cache). Prints one line per file and writes the
table to ``--output``.

    python benchmarks/world_gguf_parity.py --preset small --output benchmarks/results/world_gguf_parity.txt
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_report import emit


def parity_prompts(world, tokenizer, count: int, seed: int) -> list[list[int]]:
    """Token ids of ``count`` test prompts, each with a random prefix of its answer."""
    from meta_spider.loom.world.evaluate import qa_prompt

    rng = random.Random(seed)
    items = world.qa("test")
    prompts = []
    for item in rng.sample(items, min(count, len(items))):
        prompt = tokenizer(qa_prompt(item.question), add_special_tokens=False)["input_ids"]
        answer = tokenizer(item.answer, add_special_tokens=False)["input_ids"]
        prompts.append(prompt + answer[:rng.randrange(len(answer) + 1)])
    return prompts


def transformers_top1(model, prompts: list[list[int]]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return np.array([int(model(input_ids=torch.tensor([p])).logits[0, -1].argmax()) for p in prompts])


def llamacpp_top1(path: Path, prompts: list[list[int]]) -> np.ndarray:
    import llama_cpp

    # logits_all: without it llama-cpp-python keeps no row per position in `scores`.
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_batch=512, n_threads=1, logits_all=True, verbose=False)
    tops = []
    for prompt in prompts:
        llm.reset()
        llm.eval(prompt)
        tops.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
    return np.array(tops)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seed", type=int, default=0, help="world seed")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--quants", default="Q8_0,Q4_0,Q4_K_M", help="comma-separated llama.cpp file types")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from meta_spider.loom.gguf import export_base_gguf, quantize_gguf, tensor_type_counts
    from meta_spider.loom.world import build_world

    torch.set_num_threads(1)
    world = build_world(args.preset, seed=args.seed)
    model, tokenizer = world.load_model()
    model.eval()
    prompts = parity_prompts(world, tokenizer, args.prompts, seed=args.seed)
    reference = transformers_top1(model, prompts)
    lines = [
        f"# world GGUF parity: preset {args.preset}, seed {args.seed}, {len(prompts)} prompts "
        f"(test questions + random answer prefix, {min(map(len, prompts))}-{max(map(len, prompts))} tokens)",
        f"# command: python benchmarks/world_gguf_parity.py --preset {args.preset} --seed {args.seed} "
        f"--prompts {args.prompts}",
        "# reference: transformers float32; llama-cpp-python defaults (f16 KV cache), 1 thread",
        f"{'file':<8} {'MiB':>7} {'top-1 agreement':>16}  tensor types",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        files = {"f16": export_base_gguf(world.model_dir, Path(tmp) / "base-f16.gguf")}
        for kind in filter(None, args.quants.split(",")):
            files[kind] = quantize_gguf(files["f16"], Path(tmp) / f"base-{kind}.gguf", kind)
        for kind, path in files.items():
            started = time.perf_counter()
            agreement = float(np.mean(llamacpp_top1(path, prompts) == reference))
            types = ", ".join(f"{t} x{n}" for t, n in sorted(tensor_type_counts(path).items()))
            lines.append(f"{kind:<8} {path.stat().st_size / 2**20:>7.2f} {agreement:>16.3f}  {types}")
            print(lines[-1], f"({time.perf_counter() - started:.1f} s)", flush=True)
    return emit(lines, args.output)


if __name__ == "__main__":
    sys.exit(main())
