"""``metaloom`` run as a user runs it, in a process of its own (model loading
included), for the benchmarks that time a loom step or keep its memory apart.
Imported as ``from metaloom_process import run_metaloom`` (the scripts run as
``python benchmarks/NAME.py``, with this folder first on the path)."""

from __future__ import annotations

import subprocess
import sys
import time


def run_metaloom(command: str, *options: object) -> tuple[float, int]:
    """Wall-clock seconds and exit status of ``metaloom COMMAND OPTIONS``
    (each option as its string: paths and numbers may be passed as they are);
    when it fails, the end of its error output is printed to stderr."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "from meta_spider.agentcore.cli import metaloom; metaloom()",
                           command, *map(str, options)], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        print(f"metaloom {command} failed (exit {done.returncode}):\n{done.stderr[-4000:]}", file=sys.stderr)
    return seconds, done.returncode
