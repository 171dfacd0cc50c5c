#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs
# meta-spider with the extras in $META_SPIDER_EXTRAS (default: all), pinned
# by constraints.txt. Sourced by scripts/test.sh and scripts/demo.sh; safe to
# run on a fresh machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${META_SPIDER_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    # A fresh environment with every extra takes about 2 GB (torch,
    # transformers, llama-cpp-python and its build); say so before pip
    # fails half-way with "No space left on device".
    NEED_MB=2500
    FREE_MB=$(df -Pm "$(dirname "$VENV")" 2>/dev/null | awk 'NR==2 {print $4}')
    if [ -n "$FREE_MB" ] && [ "$FREE_MB" -lt "$NEED_MB" ]; then
        echo "[setup] only ${FREE_MB} MB free under $(dirname "$VENV"); a new environment needs about ${NEED_MB} MB." >&2
        echo "[setup] free some space (old virtual environments, 'pip cache purge') or set META_SPIDER_VENV to a folder on a disk with room." >&2
        exit 1
    fi
    echo "[setup] creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip>=24" "setuptools>=77" wheel
EXTRAS="${META_SPIDER_EXTRAS:-all}"
# llama-cpp-python compiles llama.cpp, by default for the building CPU
# (GGML_NATIVE). Some virtual machines list instructions they do not allow
# (AMX tiles: quantized matmuls die with SIGILL), so build for any x86-64 CPU
# with AVX2 unless CMAKE_ARGS is set. pip caches the wheel it builds: after
# changing CMAKE_ARGS, `pip cache remove llama_cpp_python` forces a rebuild.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
case ",$EXTRAS," in
    *,all,*|*,llamacpp,*) echo "[setup] installing meta-spider[$EXTRAS] (llama-cpp-python compiles on the first run: ~10 min on 2 cores)" ;;
    *) echo "[setup] installing meta-spider[$EXTRAS]" ;;
esac
"${PIP[@]}" install -q -c "$ROOT/constraints.txt" -e "$ROOT[$EXTRAS]"
export PATH="$VENV/bin:$PATH"
