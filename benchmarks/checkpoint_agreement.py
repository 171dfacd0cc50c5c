"""Does a Doubter loaded the simple way decide like the run it came from?

For a run directory that ``metaloom eval`` has calibrated (and, for the
llama.cpp row, ``metadeploy export`` has filled), every question of the
split is answered three ways and each answer classed as answer or refuse:

* ``load_pipeline`` (run.json's model settings, checkpoint and calibration:
  what ``metaloom eval`` and the demo use), the reference;
* ``MetaSpiderPipeline.from_pretrained(MetaSpiderConfig(model_name=...))
  .attach(checkpoint)`` with nothing else: the gate comes from the
  checkpoint's own calibration;
* llama.cpp given only the base GGUF and the sidecar: the same gate on the
  sidecar's threshold (below it the refusal; above it pass 2, or the base's
  own answer where pass 2 refuses).

It prints the share of questions on which each agrees with the reference.

    python benchmarks/checkpoint_agreement.py --run-dir RUN --output benchmarks/results/checkpoint_agreement.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def llamacpp_refuses(backend: Any, messages: Any, gate: Any, max_tokens: int) -> bool:
    """The answer gate's decision on llama.cpp (see the module docstring)."""
    from meta_spider.wrapper.signals import last_user_text

    prompt = backend.render_prompt(list(messages), tools=None, add_generation_prompt=True)
    introspection = backend.read(prompt, question=last_user_text(messages))
    if not gate.answers(introspection.p_correct):
        return True
    text = backend.generate(prompt, max_new_tokens=max_tokens, inject=introspection).text
    if not gate.is_refusal(text):
        return False
    return gate.is_refusal(backend.generate(prompt, max_new_tokens=max_tokens).text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-questions", type=int, default=None)
    parser.add_argument("--base-gguf", type=Path, default=None, help="default: run.json's f16 export")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from meta_spider.loom.cli.eval import load_pipeline
    from meta_spider.loom.evaluate.evaluation import DEFAULT_MAX_TOKENS
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.wrapper import AnswerGate, MetaSpiderConfig, MetaSpiderPipeline
    from meta_spider.wrapper.refusal import is_refusal

    run_dir = args.run_dir
    manifest = RunManifest.load(run_dir)
    if not manifest.calibration.get("doubter"):
        print(f"{run_dir}: run `metaloom eval --run-dir {run_dir}` first", file=sys.stderr)
        return 2
    from meta_spider.agentcore.run_dataset import load_run_dataset
    from meta_spider.agentcore.rundir import read_run_settings
    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.plugins import make_plugin_manager

    dataset = load_run_dataset(make_plugin_manager(), read_run_settings(run_dir))
    examples = dataset.split(args.split)[: args.max_questions]
    # eval generates as many tokens as collection drafted (the report compares with those answers)
    max_tokens = ActivationDataset.load(run_dir / ACTIVATIONS_DIR).max_new_tokens or DEFAULT_MAX_TOKENS
    checkpoint = manifest.resolve(run_dir, manifest.checkpoint)
    messages = [dataset.prompt(example).messages for example in examples]

    started = time.perf_counter()
    reference = load_pipeline(manifest, run_dir, None, None)
    ref = [is_refusal(reference.generate(m, max_new_tokens=max_tokens)) for m in messages]
    del reference
    plain = MetaSpiderPipeline.from_pretrained(MetaSpiderConfig(model_name=manifest.model.name))
    plain.attach(checkpoint)
    simple = [is_refusal(plain.generate(m, max_new_tokens=max_tokens)) for m in messages]
    rows = [("from_pretrained(...).attach(checkpoint)", simple, f"P(correct) >= {plain.answer_gate.threshold:.4f}")]
    del plain

    gguf = manifest.gguf
    base = args.base_gguf or (manifest.resolve(run_dir, gguf.base_f16) if gguf.base_f16 else None)
    sidecar = manifest.resolve(run_dir, gguf.sidecar) if gguf.sidecar else None
    if base is not None and sidecar is not None:
        from meta_spider.backends.llamacpp import LlamaCppBackend
        from meta_spider.loom.gguf.sidecar import load_sidecar

        calibration = load_sidecar(sidecar).calibration
        if calibration is None:
            print(f"{sidecar} carries no calibration: export it again after `metaloom eval`", file=sys.stderr)
        else:
            gate = AnswerGate.from_calibration(calibration)
            backend = LlamaCppBackend.from_settings(base, sidecar, n_threads=args.threads)
            decided = [llamacpp_refuses(backend, m, gate, max_tokens) for m in messages]
            backend.close()
            rows.append((f"llama.cpp, {Path(base).name} + {Path(sidecar).name}", decided,
                         f"P(correct) >= {gate.threshold:.4f}"))
    lines = [f"run {run_dir}, split {args.split}, {len(examples)} questions, max {max_tokens} tokens; "
             f"reference: load_pipeline (refuses {sum(ref)})",
             "| loaded as | gate | refuses | agreement with load_pipeline |", "|---|---|---|---|"]
    for name, decided, gate_text in rows:
        agreement = sum(a == b for a, b in zip(decided, ref)) / len(ref)
        lines.append(f"| {name} | {gate_text} | {sum(decided)} | {agreement:.4f} |")
    lines.append(f"({time.perf_counter() - started:.0f} s)")
    text = "\n".join(lines)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
