"""Benchmark: two-pass generation against plain greedy generation.

For a tiny Qwen2 (hidden 32) and a Qwen2-shaped random model of about 0.5B
parameters (Qwen2-0.5B: hidden 896, 24 layers, 14/2 heads, vocab 151936),
float32 on CPU, batch 1, the same prompts for every variant, greedy
``--new-tokens`` tokens (no early stop: the end-of-turn id is switched off),
this prints the median wall time of

- ``hf-generate``: the base's own ``model.generate(do_sample=False)``,
- ``plain-loop``: the wrapper's cached greedy loop without a Doubter,
- ``two-pass``: pass 1 (read + encode) + pass 2 (injected generation) for
  ``inject_positions`` in {generation, all} x ``read_position`` in
  {prompt, draft},

each as the median of per-round ratios to ``hf-generate`` and to
``plain-loop`` (paired: the same prompt, timed back to back), plus the
Doubter's share of parameters at default sizes. All variants are timed
interleaved in one process. Run: ``python benchmarks/two_pass.py --output
benchmarks/results/two_pass.txt``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

import torch

from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline

MODELS = {
    "tiny-qwen2": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=320),
    "qwen2-0.5b-shape": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                             num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
}
TINY_DOUBTER = {"encoder_dim": 16, "ca_bottleneck_dim": 16, "ca_num_heads": 2}


def build_model(name: str, vocab_size: int | None) -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    shape = dict(MODELS[name])
    if vocab_size is not None and name != "tiny-qwen2":
        shape["vocab_size"] = vocab_size
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**shape, max_position_embeddings=4096)).eval()
    # No end-of-turn token: every variant generates exactly --new-tokens tokens.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_model(name: str, args: argparse.Namespace, out: Callable[[str], None]) -> None:
    model = build_model(name, args.vocab_size)
    base_params = sum(p.numel() for p in model.parameters())
    generator = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    prompts = [torch.randint(10, vocab, (1, args.prompt_tokens), generator=generator) for _ in range(args.prompts)]
    n = args.new_tokens
    overrides = TINY_DOUBTER if name == "tiny-qwen2" else {}

    pipelines = {}
    for inject in ("generation", "all"):
        for read in ("prompt", "draft"):
            pipe = MetaSpiderPipeline(model, None, MetaSpiderConfig(model_name=name, inject_positions=inject,
                                                                    read_position=read))
            pipe.attach(pipe.new_doubter(**overrides))
            pipelines[f"two-pass {inject}/{read}"] = pipe
    bare = MetaSpiderPipeline(model, None, MetaSpiderConfig(model_name=name))
    doubter = next(iter(pipelines.values())).doubter

    def hf(ids: torch.Tensor, new: int) -> None:
        with torch.no_grad():
            model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)

    def loop(ids: torch.Tensor, new: int) -> None:
        assert len(list(bare.stream_ids(ids, max_new_tokens=new))) == new

    def two_pass(pipe: MetaSpiderPipeline) -> Callable[[torch.Tensor, int], None]:
        def run(ids: torch.Tensor, new: int) -> None:
            pass1 = pipe.read_ids(ids, max_draft_tokens=new)
            assert len(list(pipe.stream_ids(ids, max_new_tokens=new, pass1=pass1))) == new

        return run

    variants: dict[str, Callable[[torch.Tensor, int], None]] = {"hf-generate": hf, "plain-loop": loop}
    variants.update({label: two_pass(pipe) for label, pipe in pipelines.items()})
    times: dict[str, list[float]] = {label: [] for label in variants}
    for fn in variants.values():  # warm-up: allocator, lazy initialisation
        fn(prompts[0][:, :8], 4)
    for _ in range(args.runs):
        for ids in prompts:
            for label, fn in variants.items():
                times[label].append(timed(lambda: fn(ids, n)))

    # Ratios are paired per round (same prompt, back to back) before the
    # median, so load drift on a shared machine cancels instead of adding up.
    median = {label: statistics.median(values) for label, values in times.items()}
    paired = {
        label: (
            statistics.median(t / h for t, h in zip(values, times["hf-generate"])),
            statistics.median(t / p for t, p in zip(values, times["plain-loop"])),
        )
        for label, values in times.items()
    }
    out(f"\n## {name}: {base_params / 1e6:.1f}M base parameters, vocab {vocab}, "
        f"{args.prompts} prompts x {args.prompt_tokens} tokens, {n} new tokens, {args.runs * args.prompts} timed rounds")
    out(f"doubter: {doubter.config.encoder_type}, target/cross layers {list(doubter.config.target_layers)}, "
        f"encoder_dim {doubter.config.encoder_dim}, bottleneck {doubter.config.ca_bottleneck_dim}: "
        f"{doubter.num_parameters() / 1e6:.2f}M parameters = {100 * doubter.num_parameters() / base_params:.2f}% of the base")
    out(f"{'variant':<28}{'median s':>10}{'median ratio vs hf-generate':>30}{'vs plain-loop':>15}")
    for label, seconds in median.items():
        vs_hf, vs_loop = paired[label]
        out(f"{label:<28}{seconds:>10.3f}{vs_hf:>29.3f}x{vs_loop:>14.3f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--runs", type=int, default=3, help="timed rounds over all prompts")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=96)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=None, help="shrink the large model's vocabulary")
    parser.add_argument("--output", default=None, help="also write the report here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines: list[str] = []

    def out(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    out(f"# two-pass benchmark: torch {torch.__version__}, {args.threads} threads, float32, CPU, batch 1, greedy")
    out(f"# command: python benchmarks/two_pass.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    for name in args.models:
        run_model(name, args, out)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
