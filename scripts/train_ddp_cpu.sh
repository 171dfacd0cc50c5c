#!/usr/bin/env bash
# Train a run directory's Doubter data-parallel on CPU processes (gloo):
#   scripts/train_ddp_cpu.sh RUN_DIR [metaloom train options, e.g. --epochs 3]
# NPROC (default 2) processes, one thread each. The same command with one
# process is `metaloom train --run-dir RUN_DIR ...`; on GPUs use
#   accelerate launch -m meta_spider.loom.cli.train --run-dir RUN_DIR ...
# `accelerate launch --cpu` starts a single process here; torchrun starts N.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
RUN_DIR="${1:?usage: $0 RUN_DIR [metaloom train options]}"
shift
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false
exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "${NPROC:-2}" \
    -m meta_spider.loom.cli.train --run-dir "$RUN_DIR" "$@"
