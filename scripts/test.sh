#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: sets up .venv, installs the
# test-only plugin packages under tests/, then runs pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export META_SPIDER_EXTRAS=all  # the tests exercise every backend
source "$ROOT/scripts/setup.sh"
for pkg in "$ROOT"/tests/thirdparty/*/; do
    [ -f "$pkg/pyproject.toml" ] && "${PIP[@]}" install -q -c "$ROOT/constraints.txt" "$pkg"
done
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
