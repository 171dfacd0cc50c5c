"""Benchmark: two-pass generation on llama.cpp against plain llama-cpp-python generation.

A Qwen2-shaped random model (default: hidden 768, 12 layers, 12/2 heads,
FFN 2048, vocabulary padded to 32000, untied head; 122M parameters) is built in
process, exported to an f16 GGUF, and given a random Doubter at default
sizes (selective encoder, ``late`` layers, bottleneck 256) exported as the
sidecar. For the same rendered prompts, in one process and interleaved
prompt by prompt, it times greedy generation of exactly ``--new-tokens``
tokens (end-of-generation ignored) by

- ``llama-cpp-python``: ``llama_cpp.Llama.generate`` with ``top_k=1`` (the
  library's own greedy loop; cache reset per prompt),
- ``llamacpp plain``: :class:`LlamaCppBackend` without a Doubter,
- ``llamacpp two-pass``: ``read`` (pass 1: prefill + read + numpy encoder)
  then ``generate(inject=...)`` (pass 2: the last prompt token re-decoded
  with injection, then injected decoding), cache reset per prompt,

and reports tokens per second (new tokens / time including the prompt),
the two-pass/plain-library ratio (paired per prompt, median; goal >= 0.95)
and the sidecar size as a share of the base GGUF. ``--clock cpu`` times the
calling thread's CPU time instead of wall time: with ``--threads 1``
llama.cpp computes on that thread, so processes sharing the machine stay out
of the ratio. Run:
``python benchmarks/llamacpp_two_pass.py --runs 4 --clock cpu --output benchmarks/results/llamacpp_two_pass.txt``;
the 0.5B shape (untied head, so 630M parameters): ``--hidden 896 --layers 24
--heads 14 --ffn 4864 --vocab-size 151936``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]


def build(args: argparse.Namespace, folder: Path) -> tuple[Path, Path, list[str], str]:
    """(base f16 GGUF, sidecar, rendered prompts, description) for the benchmark model."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    sys.path.insert(0, str(REPO / "tests"))
    from gguf_helpers import build_tokenizer, training_sentences  # the test suite's seeded tokenizer

    from meta_spider.loom.gguf import export_base_gguf
    from meta_spider.loom.gguf.sidecar import export_sidecar
    from meta_spider.wrapper import Doubter, DoubterConfig, MetaSpiderConfig

    tokenizer = build_tokenizer(split="qwen2")
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=args.vocab_size, hidden_size=args.hidden, num_hidden_layers=args.layers,
                         num_attention_heads=args.heads, num_key_value_heads=2, intermediate_size=args.ffn,
                         max_position_embeddings=4096, tie_word_embeddings=False, rms_norm_eps=1e-6)
    model = Qwen2ForCausalLM(config).eval()
    base_params = sum(p.numel() for p in model.parameters())
    base = export_base_gguf((model, tokenizer), folder / "base-f16.gguf", dtype="f16")
    doubter_config = DoubterConfig.for_base(args.hidden, args.layers, MetaSpiderConfig(target_layers="late"))
    doubter = Doubter(doubter_config, model_id="qwen2-shape-random")
    sidecar = export_sidecar(doubter, folder / "doubter_sidecar.gguf")
    del model
    sentences = training_sentences(n=args.prompts * 4, seed=3)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": " ".join(sentences[4 * i: 4 * i + 4])}],
                                             tokenize=False, add_generation_prompt=True) for i in range(args.prompts)]
    description = (f"Qwen2-shaped random model: {base_params / 1e6:.1f}M parameters (hidden {args.hidden}, "
                   f"{args.layers} layers, FFN {args.ffn}, vocab {args.vocab_size}); Doubter "
                   f"{doubter_config.encoder_type}, target/cross layers {list(doubter_config.target_layers)}, "
                   f"encoder_dim {doubter_config.encoder_dim}, bottleneck {doubter_config.ca_bottleneck_dim}: "
                   f"{doubter.num_parameters() / 1e6:.2f}M parameters")
    return base, sidecar, prompts, description


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
"""``wall``: elapsed time; ``cpu``: CPU time of the calling thread, where llama.cpp computes with one
thread (``--threads 1``), so that other processes on a shared machine do not enter the ratio."""


def timed(fn: Callable[[], int], clock: Callable[[], float] = time.perf_counter) -> tuple[float, int]:
    start = clock()
    count = fn()
    return clock() - start, count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--ffn", type=int, default=2048)
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2, help="timed rounds over all prompts")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: elapsed time; cpu: the calling thread's CPU time (only with --threads 1)")
    parser.add_argument("--output", default=None, help="also write the report here")
    args = parser.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu measures the calling thread only: use it with --threads 1")
    clock = CLOCKS[args.clock]
    lines: list[str] = []

    def out(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    with tempfile.TemporaryDirectory() as tmp:
        base, sidecar, prompts, description = build(args, Path(tmp))
        import llama_cpp

        from meta_spider.backends.llamacpp import LlamaCppBackend

        n = args.new_tokens
        library = llama_cpp.Llama(str(base), n_ctx=1024, n_batch=512, n_threads=args.threads,
                                  n_threads_batch=args.threads, verbose=False)
        plain = LlamaCppBackend.from_settings(base, None, n_ctx=1024, n_threads=args.threads, ignore_eos=True)
        two_pass = LlamaCppBackend.from_settings(base, sidecar, n_ctx=1024, n_threads=args.threads, ignore_eos=True)

        def run_library(prompt: str) -> int:
            library.reset()
            tokens = library.tokenize(prompt.encode(), add_bos=False, special=True)
            count = 0
            for _token in library.generate(tokens, top_k=1, temp=0.0, reset=True):
                count += 1
                if count == n:
                    break
            return count

        def run_plain(prompt: str) -> int:
            plain.context.reset()
            return plain.generate(prompt, max_new_tokens=n).num_tokens

        def run_two_pass(prompt: str) -> int:
            two_pass.context.reset()
            introspection = two_pass.read(prompt)
            return two_pass.generate(prompt, max_new_tokens=n, inject=introspection).num_tokens

        variants = {"llama-cpp-python": run_library, "llamacpp plain": run_plain, "llamacpp two-pass": run_two_pass}
        for run in variants.values():  # warm-up
            run(prompts[0])
        seconds: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.runs):
            for prompt in prompts:
                for label, run in variants.items():
                    elapsed, count = timed(lambda run=run, prompt=prompt: run(prompt), clock)
                    assert count == n, (label, count)
                    seconds[label].append(elapsed)
        prompt_tokens = [len(plain.encode(p)) for p in prompts]
        base_size, sidecar_size = base.stat().st_size, sidecar.stat().st_size

    out(f"# llama.cpp two-pass benchmark: llama-cpp-python {llama_cpp.__version__}, {args.threads} thread(s), "
        f"f16 GGUF, f16 KV cache, CPU, batch 1, greedy, {args.clock} clock")
    out(f"# command: python benchmarks/llamacpp_two_pass.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    out(f"# {description}")
    out(f"# {len(prompts)} prompts of {min(prompt_tokens)}-{max(prompt_tokens)} tokens, {n} new tokens each, "
        f"{args.runs * len(prompts)} timed rounds per variant, interleaved")
    out(f"sidecar {sidecar_size / 2**20:.2f} MiB (float32) = {100 * sidecar_size / base_size:.1f}% of the "
        f"base GGUF ({base_size / 2**20:.1f} MiB, f16)")
    out(f"{'variant':<22}{'median s':>10}{'tokens/s':>10}{'ratio vs llama-cpp-python (paired median)':>44}")
    for label, values in seconds.items():
        ratio = statistics.median(ref / own for own, ref in zip(values, seconds["llama-cpp-python"], strict=True))
        median = statistics.median(values)
        out(f"{label:<22}{median:>10.3f}{n / median:>10.1f}{ratio:>43.3f}x")
    goal = statistics.median(ref / own for own, ref in zip(seconds["llamacpp two-pass"], seconds["llama-cpp-python"],
                                                              strict=True))
    out(f"two-pass throughput / plain llama-cpp-python throughput = {goal:.3f} (goal >= 0.95)")
    if args.output:
        Path(args.output).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
