"""Runs a script in a child interpreter where importing torch fails, for the
tests showing that a torch-free path (the sidecar, the llama.cpp hooks, the
agent on llama.cpp) really loads no torch. Knows nothing about what the
script checks: it returns the script's last printed line, read as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

BLOCK_TORCH = textwrap.dedent('''
    import importlib.abc, json, sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked here ({name})")
            return None

    sys.meta_path.insert(0, BlockTorch())
''')


def run_without_torch(script: str, folder: Path, *arguments: str, timeout: float = 120) -> Any:
    """Run ``script`` (dedented) after :data:`BLOCK_TORCH` with ``arguments``;
    assert it succeeded and return its last stdout line parsed as JSON."""
    path = folder / "torchless.py"
    path.write_text(BLOCK_TORCH + textwrap.dedent(script))
    completed = subprocess.run([sys.executable, str(path), *arguments], capture_output=True, text=True,
                               timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])
