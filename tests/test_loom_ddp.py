"""Two data-parallel CPU processes train the same run as one process.

``torchrun --standalone --nproc_per_node 2`` (run as ``python -m
torch.distributed.run`` from the test's interpreter) launches ``python -m
meta_spider.loom.cli.train`` twice; the trainer's Accelerator joins them
over gloo and each process computes half of every global batch. The loss is
normalised by the global token and example counts, so the two processes
together compute the single-process gradient: the runs differ only by float
reduction order. Tolerance: validation loss within 1e-4 relative per epoch
and final weights within 1e-4 absolute (measured: about 1e-7 relative). A
launcher that silently ran one process would fail the ``num_processes``
check. Gradient accumulation (2 micro-steps) exercises ``no_sync``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from activation_fixtures import write_run_dir

from meta_spider.wrapper import Doubter

ARGUMENTS = ["--epochs", "2", "--batch-size", "4", "--grad-accum", "2", "--lr", "3e-3",
             "--early-stopping-metric", "val_loss", "--encoder-dim", "16", "--ca-bottleneck-dim", "16",
             "--ca-num-heads", "2", "--logprob-signals", "all", "--local-files-only"]


def _train(command: list[str], run_dir: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run([*command, "-m", "meta_spider.loom.cli.train", "--run-dir", str(run_dir), *ARGUMENTS],
                               env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return json.loads((run_dir / "training.json").read_text())


@pytest.mark.slow
def test_two_cpu_processes_train_to_the_single_process_result(tmp_path: Path) -> None:
    prepared = write_run_dir(tmp_path / "run", tmp_path / "model")
    single_dir, pair_dir = tmp_path / "single", tmp_path / "pair"
    shutil.copytree(prepared, single_dir)
    shutil.copytree(prepared, pair_dir)

    single = _train([sys.executable], single_dir)
    pair = _train([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"], pair_dir)

    assert (single["num_processes"], pair["num_processes"]) == (1, 2)
    assert single["global_step"] == pair["global_step"] == 8  # 2 epochs x 4 updates (8 micro-batches / 2)
    assert [h["epoch"] for h in pair["history"]] == [0, 1, 2]
    for one, two in zip(single["history"], pair["history"]):
        assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-4), one["epoch"]
        assert two["val_auroc"] == pytest.approx(one["val_auroc"], abs=1e-6)
        if one["train_lm_loss"] is not None:
            assert two["train_lm_loss"] == pytest.approx(one["train_lm_loss"], rel=1e-4)
    assert single["history"][-1]["val_loss"] < single["history"][0]["val_loss"]  # it did train
    mine = Doubter.from_checkpoint(pair_dir / "checkpoints" / "best").state_dict()
    for name, tensor in Doubter.from_checkpoint(single_dir / "checkpoints" / "best").state_dict().items():
        torch.testing.assert_close(mine[name], tensor, rtol=1e-4, atol=1e-4, msg=name)
