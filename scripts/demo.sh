#!/usr/bin/env bash
# Runs the demo on the embedded default: sets up .venv (without llama.cpp,
# which the demo does not use), then builds or reuses the embedded world,
# collects, trains and evaluates the Doubter and asks three questions.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export META_SPIDER_EXTRAS="${META_SPIDER_EXTRAS:-train,plot}"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m meta_spider.loom.demo "$@"
