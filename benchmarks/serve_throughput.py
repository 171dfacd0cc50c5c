"""Benchmark: ``meta-agent serve`` against llama-cpp-python's own server on the same GGUF.

The 122M Qwen2-shaped random model of ``llamacpp_two_pass.py`` (f16 GGUF
and a random Doubter's sidecar) is served three ways, each in its own
process with one llama.cpp thread and one worker: ``llama_cpp.server`` (the
reference), ``meta-agent serve --policy direct`` and ``meta-agent serve
--policy doubter`` (threshold 0, so every request gets pass 1 and the
injected pass 2). For N concurrent clients (1, 4, 16; each sends
``--requests`` chat requests, greedy, ``max_tokens`` new tokens), round by
round and server after server, it reports aggregate completion tokens per
second (the servers' own ``usage`` counts over the wall time of the round),
requests per second, p50/p95 request latency, each server's token
throughput over the reference's (every request asks for ``max_tokens``
tokens; a server whose ``usage`` counts more is credited with them), and
the same per CPU second of the server process (all its threads, from
``/proc``): on a machine shared with other work the wall-clock ratios move
with the load from round to round, the CPU ones much less. Goals: direct >= 0.9x, doubter >= 0.8x. Run:
``python benchmarks/serve_throughput.py --output benchmarks/results/serve_throughput.txt``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from meta_spider.agentcore.runfile import write_run_file

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = ["Where was Ada born?", "What does Lev do?", "Who is Hugo?", "When was Greta born?",
             "Where does Ilse work?", "What is Ada's profession?", "Who employs Lev?", "Where was Hugo born?"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen, label: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{label} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{label} did not answer within {timeout} s")


def cpu_seconds(process: subprocess.Popen) -> float:
    """User + system CPU time of a server process, all its threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_run_dir(folder: Path, base: Path, sidecar: Path, threads: int) -> Path:
    """A run directory whose run.json gives the llama.cpp backend and a doubter answering everything."""
    run = folder / "bench-run"
    run.mkdir()
    write_run_file(run, {
        "backends": {"llamacpp": {"model_path": str(base), "sidecar_path": str(sidecar), "n_ctx": 1024,
                                  "n_threads": threads, "ignore_eos": True}},
        "policy": {"name": "doubter", "settings": {"threshold": 0.0}},
    })
    return run


def one_round(url: str, model: str, clients: int, requests: int, max_tokens: int,
              process: subprocess.Popen | None = None) -> dict[str, Any]:
    latencies: list[float] = []
    tokens: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(offset: int) -> None:
        with httpx.Client(timeout=600) as http:
            for turn in range(requests):
                question = QUESTIONS[(offset + turn) % len(QUESTIONS)]
                body = {"model": model, "messages": [{"role": "user", "content": question}],
                        "max_tokens": max_tokens, "temperature": 0}
                start = time.perf_counter()
                response = http.post(f"{url}/v1/chat/completions", json=body)
                elapsed = time.perf_counter() - start
                with lock:
                    if response.status_code != 200:
                        errors.append(response.text[:200])
                        continue
                    latencies.append(elapsed)
                    tokens.append(int(response.json()["usage"]["completion_tokens"]))

    threads = [threading.Thread(target=client, args=(offset,)) for offset in range(clients)]
    cpu_start = cpu_seconds(process) if process is not None else 0.0
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    cpu = cpu_seconds(process) - cpu_start if process is not None else float("nan")
    if not latencies:
        raise RuntimeError(f"all {len(errors)} requests failed, e.g. {errors[0]}")
    ordered = sorted(latencies)
    return {"tokens_per_s": sum(tokens) / wall, "requests_per_s": len(latencies) / wall,
            "tokens_per_cpu_s": sum(tokens) / cpu if cpu > 0 else float("nan"),
            "p50": statistics.median(ordered),
            "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
            "tokens": sum(tokens), "requests": len(latencies), "failed": len(errors),
            "error": errors[0] if errors else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,4,16", help="comma-separated concurrent client counts")
    parser.add_argument("--requests", type=int, default=2, help="requests per client per round")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads of every server")
    parser.add_argument("--output", default=None, help="also write the report here")
    args = parser.parse_args(argv)
    counts = [int(count) for count in args.clients.split(",")]
    lines: list[str] = []

    def out(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    sys.path.insert(0, str(REPO / "benchmarks"))
    from llamacpp_two_pass import build

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_args = argparse.Namespace(hidden=768, layers=12, heads=12, ffn=2048, vocab_size=32000, prompts=1)
        base, sidecar, _prompts, description = build(model_args, folder)
        run = write_run_dir(folder, base, sidecar, args.threads)
        bin_dir = Path(sys.executable).parent
        servers: dict[str, tuple[str, str]] = {}
        try:
            port = free_port()
            reference = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(base), "--host", "127.0.0.1",
                 "--port", str(port), "--n_ctx", "1024", "--n_threads", str(args.threads), "--n_threads_batch",
                 str(args.threads), "--model_alias", "reference"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            processes.append(reference)
            servers["llama_cpp.server"] = (f"http://127.0.0.1:{port}", "reference")
            for policy in ("direct", "doubter"):
                port = free_port()
                process = subprocess.Popen(
                    [str(bin_dir / "meta-agent"), "serve", "--run-dir", str(run), "--backend", "llamacpp",
                     "--policy", policy, "--port", str(port), "--parallel", "1"],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                processes.append(process)
                servers[f"meta-agent serve {policy}"] = (f"http://127.0.0.1:{port}", "bench-run")
            for (label, (url, _model)), process in zip(servers.items(), processes):
                wait_ready(url, process, label)
            for label, (url, model) in servers.items():  # warm-up
                one_round(url, model, 1, 1, args.max_tokens)
            results: dict[int, dict[str, dict[str, Any]]] = {}
            for clients in counts:
                results[clients] = {label: one_round(url, model, clients, args.requests, args.max_tokens, process)
                                    for (label, (url, model)), process in zip(servers.items(), processes)}
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)

    import llama_cpp

    out(f"# serve throughput: llama-cpp-python {llama_cpp.__version__}, {args.threads} llama.cpp thread(s) and one "
        "worker per server, f16 GGUF, CPU, greedy; wall clock and server CPU time (the machine was shared)")
    out(f"# command: python benchmarks/serve_throughput.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    out(f"# {description}")
    out(f"# {args.requests} requests per client per round, max_tokens {args.max_tokens}; meta-agent serve's "
        "doubter at threshold 0 (pass 1 and the injected pass 2 on every request)")
    out(f"{'clients':>7}  {'server':<26}{'tokens':>7}{'failed':>7}{'tokens/s':>10}{'req/s':>7}{'p50 s':>8}"
        f"{'p95 s':>8}{'vs reference':>14}{'tokens/cpu-s':>14}{'vs reference':>14}")
    for clients, by_server in results.items():
        reference_rate = by_server["llama_cpp.server"]["tokens_per_s"]
        reference_cpu = by_server["llama_cpp.server"]["tokens_per_cpu_s"]
        for label, result in by_server.items():
            out(f"{clients:>7}  {label:<26}{result['tokens']:>7}{result['failed']:>7}{result['tokens_per_s']:>10.1f}"
                f"{result['requests_per_s']:>7.2f}{result['p50']:>8.2f}{result['p95']:>8.2f}"
                f"{result['tokens_per_s'] / reference_rate:>13.3f}x{result['tokens_per_cpu_s']:>14.1f}"
                f"{result['tokens_per_cpu_s'] / reference_cpu:>13.3f}x")
    failures = [(clients, label, result) for clients, by_server in results.items()
                for label, result in by_server.items() if result["failed"]]
    for clients, label, result in failures:  # a server's rate counts its answered requests only
        out(f"{label} at {clients} clients: {result['failed']} of {result['failed'] + result['requests']} requests "
            f"failed, e.g. {result['error']}")
    for policy, goal in (("direct", 0.9), ("doubter", 0.8)):
        for key, what in (("tokens_per_s", "wall"), ("tokens_per_cpu_s", "per CPU second")):
            ratios = [by_server[f"meta-agent serve {policy}"][key] / by_server["llama_cpp.server"][key]
                      for by_server in results.values()]
            listed = ", ".join(f"{ratio:.3f}" for ratio in ratios)
            out(f"{policy}: throughput ({what}) / llama_cpp.server = {min(ratios):.3f} at worst ({listed} for "
                f"{args.clients} clients; goal >= {goal})")
    if args.output:
        Path(args.output).write_text("\n".join(lines) + "\n", encoding="utf-8")
    ours = [label for _, label, _ in failures if label.startswith("meta-agent")]
    if ours:
        raise SystemExit(f"requests to {', '.join(sorted(set(ours)))} failed (above)")


if __name__ == "__main__":
    main()
