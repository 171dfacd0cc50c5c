"""Does the llama.cpp deployment decide like the transformers pipeline?

For a run directory that ``metadeploy export`` has filled (sidecar plus base
GGUFs), every held-out question goes through the ``doubter`` policy's first
step on the transformers backend and on the llamacpp backend with each base
file (f16, Q8_0, 4-bit), with the lookup tool offered as in the agentic
evaluation. The first decision is one of answer / lookup / refuse; the
table gives, per llama.cpp base, the share of questions whose decision equals
the transformers one, and each backend's selective accuracy (the share of
its answered questions answered right) and coverage.

    python benchmarks/deploy_agreement.py --run-dir RUN --output benchmarks/results/deploy_agreement.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench_report import emit

DECISIONS = {"answer": "answer", "tool_call": "lookup", "refuse": "refuse"}


def first_decisions(run_dir: Path, backend: Any, max_tasks: int | None) -> list[dict[str, Any]]:
    """Per task: the first decision and, for answers, whether it was right."""
    from meta_spider.loom.evaluate.agentic import run_agentic_eval

    report = run_agentic_eval(run_dir, policies=("doubter",), backend=backend, max_tasks=max_tasks, max_steps=1)
    rows = []
    for result in report.results["doubter"]:
        kind = (result.steps[0].get("action") or {}).get("type", "none") if result.steps else "none"
        decision = DECISIONS.get(kind, kind)
        rows.append({"id": result.task_id, "decision": decision, "correct": bool(result.correct)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--max-tasks", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    from meta_spider.agentcore.launch import AgentLauncher
    from meta_spider.agentcore.rundir import read_run_settings
    from meta_spider.backends import StopBackend
    from meta_spider.backends.llamacpp import LlamaCppBackend
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.plugins import make_plugin_manager

    manifest = RunManifest.load(args.run_dir)
    gguf = manifest.gguf
    files = {"f16": gguf.base_f16, "Q8_0": gguf.base_q8, "4-bit": gguf.base_q4}
    if gguf.sidecar is None or not any(files.values()):
        print(f"{args.run_dir}: run `metadeploy export --run-dir {args.run_dir}` first", file=sys.stderr)
        return 2
    launcher = AgentLauncher(make_plugin_manager(), read_run_settings(args.run_dir))
    started = time.perf_counter()
    reference = first_decisions(args.run_dir, launcher.make_backend("transformers"), args.max_tasks)
    rows = [("transformers (float32)", reference, time.perf_counter() - started)]
    for label, path in files.items():
        if path is None:
            continue
        started = time.perf_counter()
        backend = StopBackend(LlamaCppBackend.from_settings(manifest.resolve(args.run_dir, path),
                                                            manifest.resolve(args.run_dir, gguf.sidecar),
                                                            n_threads=args.threads))
        rows.append((f"llamacpp {label} ({Path(path).name})", first_decisions(args.run_dir, backend, args.max_tasks),
                     time.perf_counter() - started))

    lines = [
        f"# deploy agreement: run {args.run_dir.name}, {len(reference)} held-out questions, doubter policy, "
        "first decision (answer / lookup / refuse), lookup offered",
        f"# command: python benchmarks/deploy_agreement.py --run-dir RUN --threads {args.threads}",
        f"{'backend':<40} {'agreement':>9} {'coverage':>8} {'sel. acc':>8} {'answer/lookup/refuse':>22} {'s':>6}",
    ]
    for label, decisions, seconds in rows:
        agree = sum(a["decision"] == b["decision"] for a, b in zip(decisions, reference)) / len(reference)
        answered = [d for d in decisions if d["decision"] == "answer"]
        selective = sum(d["correct"] for d in answered) / len(answered) if answered else float("nan")
        counts = "/".join(str(sum(d["decision"] == kind for d in decisions)) for kind in ("answer", "lookup", "refuse"))
        lines.append(f"{label:<40} {agree:>9.3f} {len(answered) / len(decisions):>8.3f} {selective:>8.3f} "
                     f"{counts:>22} {seconds:>6.0f}")
    return emit(lines, args.output)


if __name__ == "__main__":
    sys.exit(main())
