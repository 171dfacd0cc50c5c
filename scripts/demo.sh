#!/usr/bin/env bash
# Runs the demo on the embedded default: sets up .venv, then runs the agent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m meta_spider.agentcore.demo "$@"
