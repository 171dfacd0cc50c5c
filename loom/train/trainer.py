"""The Trainer: teach the Doubter through the frozen base from a collected
activation dataset.

Pass 1 is never re-run: the collected states (at the Doubter's read
position) feed the encoder, and training runs only the teacher-forced pass 2
(``prompt + target`` with injection) with LM cross-entropy on the target
(:mod:`meta_spider.loom.train.targets` picks the targets), plus an
auxiliary BCE of the encoder's P(correct) logit (and the selective
encoder's per-layer probes) against ``pass1_correct``: the calibrated score
the agent acts on. Before the first update the per-layer probes are fitted
(``pretrain_projectors``) and, for a Doubter that reads pass-1 signals, its
signal mix (on out-of-fold encoder logits; the optimizer never touches it).

Built on HF accelerate: the same code runs in one process, under
``accelerate launch`` (GPUs) or ``torchrun --nproc_per_node N`` (CPU
processes over gloo). ``batch_size`` is the global batch: each process
takes its share of every batch, and the losses are normalised by the global
token and example counts, so N processes compute the gradient one process
would (up to float reduction order). The data order is a function of
``(seed, epoch)``; each epoch ends with a validation, a checkpoint
(:mod:`meta_spider.loom.train.state`) and early stopping. A resumed run
continues from the last epoch checkpoint and ends where an uninterrupted
run ends.

This module knows the dataset's rows, the Doubter and the loop; the
optimizer groups (``groups``), targets (``targets``), probe fit
(``probes``), rows (``data``), checkpoint layout (``state``) and the
records of a run (``history``) live in the modules beside it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from torch import nn

from meta_spider.loom.evaluate.metrics import UndefinedMetricError, auroc
from meta_spider.loom.train.config import TrainerConfig, TrainerError
from meta_spider.loom.train.data import (
    EPOCH_SEED_STRIDE,
    SplitSamples,
    TrainingRows,
    class_pos_weight,
    epoch_batches,
    load_activations,
    prepare_rows,
)
from meta_spider.loom.train.groups import build_optimizer, build_scheduler, parameter_groups
from meta_spider.loom.train.history import EpochRecord, TrainingResult
from meta_spider.loom.train.probes import pretrain_doubter
from meta_spider.loom.train.state import (
    BEST_DIR,
    CHECKPOINTS_DIR,
    latest_epoch_checkpoint,
    load_epoch_checkpoint,
    prune_epoch_checkpoints,
    save_best,
    save_epoch_checkpoint,
)
from meta_spider.wrapper.doubter import Doubter
from meta_spider.wrapper.training import TeacherForcedBatch, make_batch, teacher_forced_forward

if TYPE_CHECKING:
    from accelerate import Accelerator

    from meta_spider.loom.collect.activations import ActivationDataset
    from meta_spider.wrapper.pipeline import MetaSpiderPipeline

__all__ = ["EpochRecord", "Trainer", "TrainerConfig", "TrainerError", "TrainingResult", "make_accelerator"]

logger = logging.getLogger(__name__)

HISTORY_FILE = "history.json"


def make_accelerator(config: TrainerConfig | None = None, *, cpu: bool = True) -> "Accelerator":
    """The Accelerator the trainer runs under. ``cpu=True`` keeps every
    process on the CPU (gloo under ``torchrun``); otherwise accelerate picks
    the process's GPU. Create it before loading the pipeline so the base can
    go to ``accelerator.device``."""
    try:
        from accelerate import Accelerator, DistributedDataParallelKwargs
    except ImportError as error:
        raise TrainerError(f"training needs HF accelerate, which does not import here ({error})",
                           "pip install 'meta-spider[train]' (or accelerate)") from None

    config = config or TrainerConfig()
    # Without the BCE term the probe heads get no gradient; DDP must be told.
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if config.probe_loss_weight == 0 else []
    return Accelerator(cpu=cpu, mixed_precision=config.mixed_precision, kwargs_handlers=handlers)


class _Pass2(nn.Module):
    """The module data parallelism wraps: the Doubter as its only
    submodule (so only wrapper parameters are synchronised), the frozen base
    held outside the module tree."""

    def __init__(self, doubter: Doubter, pipe: "MetaSpiderPipeline") -> None:
        super().__init__()
        self.doubter = doubter
        self._base = (pipe.model, pipe.structure, bool(pipe.config.gradient_checkpointing))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                prompt_lengths: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                layer_states: torch.Tensor, example_weights: torch.Tensor, signals: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        model, structure, checkpointing = self._base
        batch = TeacherForcedBatch(input_ids, attention_mask, labels, prompt_lengths, prompt_ids, prompt_mask)
        output = teacher_forced_forward(model, structure, self.doubter, batch, layer_states=layer_states,
                                        signals=signals, gradient_checkpointing=checkpointing,
                                        example_weights=example_weights)
        return output.lm_loss, output.p_correct_logit, output.probe_logits


class Trainer:
    """Train a Doubter on a collected activation dataset (see the module docstring)."""

    def __init__(self, doubter: Doubter, pipe: "MetaSpiderPipeline", config: TrainerConfig | None = None,
                 *, accelerator: "Accelerator | None" = None) -> None:
        self.config = config if config is not None else TrainerConfig()
        # An unsized Doubter (Doubter(DoubterConfig(...))) is sized as attach would size it.
        doubter.size_for(pipe.hidden_size, pipe.num_layers, pipe.config, model_id=pipe.model_id)
        encoder_type = doubter.config.encoder_type
        if encoder_type == "selective" and not self.config.pretrain_projectors:
            raise TrainerError("the selective encoder needs its per-layer probes fitted first, but "
                               "pretrain_projectors=False", "set pretrain_projectors=True (the default)")
        if self.config.enable_self_correction and encoder_type != "transformer":
            raise TrainerError(f"enable_self_correction needs the transformer encoder, this Doubter has "
                               f"encoder_type={encoder_type!r}", "build the Doubter with encoder_type='transformer'")
        if doubter.config.enable_self_correction and not self.config.enable_self_correction:
            # The Doubter was built for self-correction: train it that way.
            self.config = dataclasses.replace(self.config, enable_self_correction=True)
        if self.config.signals_only and not doubter.config.signals:
            raise TrainerError("signals_only=True, but this Doubter reads no pass-1 signals",
                               "build it with DoubterConfig(signals=[...]) (metaloom train --logprob-signals)")
        doubter.check_fits(pipe.fingerprint())
        self.pipe = pipe
        self.accelerator = accelerator if accelerator is not None else make_accelerator(
            self.config, cpu=pipe.device.type == "cpu")
        wanted, have = self.accelerator.device, pipe.device
        if wanted.type != have.type or (wanted.type != "cpu" and wanted.index != have.index):
            raise TrainerError(f"the base is on {have} but this process trains on {wanted}",
                               "load the pipeline with device=str(accelerator.device) (make_accelerator first)")
        self.doubter = doubter.to(self.accelerator.device)
        self.optimizer: Any = None
        self.scheduler: Any = None

    # ------------------------------------------------------------ public

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The five groups (see :mod:`meta_spider.loom.train.groups`)."""
        return parameter_groups(self.doubter)

    def train(self, train_samples: Any, val_samples: Any = None, **fit_options: Any) -> TrainingResult:
        """:meth:`fit` on samples as ``ActivationDatasetCollector.collect``
        returns them (or their folders): every example of ``train_samples``
        trains, every one of ``val_samples`` validates (without them a
        seeded ``validation_fraction`` of the training samples is held out),
        whatever splits they were collected under."""
        train, validation = load_activations(train_samples), load_activations(val_samples)
        view = SplitSamples(train, validation, self.config.train_split, self.config.validation_split)
        return self.fit(view, **fit_options)

    def fit(
        self,
        activations: "ActivationDataset | str | os.PathLike[str]",
        *,
        run_dir: "str | os.PathLike[str] | None" = None,
        resume: bool = False,
        on_epoch_end: Callable[[EpochRecord], None] | None = None,
    ) -> TrainingResult:
        """Train; with ``run_dir`` checkpoint every epoch into
        ``run_dir/checkpoints`` and record the best one in ``run.json`` (when
        the folder has one). ``resume`` continues from the newest epoch
        checkpoint there. ``on_epoch_end`` sees every epoch's record (on
        every process)."""
        config, accelerator = self.config, self.accelerator
        self.doubter.calibration = None  # a threshold calibrated for other weights no longer holds
        dataset = load_activations(activations)
        rows = prepare_rows(dataset, self.doubter.config, self.pipe.tokenizer,
                            sorted(self.pipe.decoder.eos_token_ids), config)
        if rows.log_reference is not None:  # the PMI signals read it at inference: it travels with the weights
            self.doubter.set_log_reference(rows.log_reference)
            if self.pipe.vocab_size is not None:
                self.doubter.check_vocabulary(self.pipe.vocab_size)
        pos_weight = class_pos_weight(rows, config)
        checkpoints = Path(run_dir) / CHECKPOINTS_DIR if run_dir is not None else None
        world, rank = accelerator.num_processes, accelerator.process_index
        batches_per_epoch = len(epoch_batches(rows.train, 0, config, world))
        if batches_per_epoch == 0:
            raise TrainerError(f"{len(rows.train)} training examples give no batch for {world} processes",
                               "collect more examples or run fewer processes")
        windows = -(-batches_per_epoch // config.gradient_accumulation_steps)
        total_steps = windows * config.epochs

        optimizer = build_optimizer(self.doubter, config)
        scheduler = build_scheduler(optimizer, config, total_steps)
        state = self._resume_state(checkpoints, optimizer, scheduler) if resume else None
        if state is None:
            pretrain_doubter(self.doubter, rows, config, pos_weight, accelerator.device)
        history = [EpochRecord(**record) for record in state["history"]] if state else []
        start_epoch = state["epoch"] if state else 0
        global_step = state["global_step"] if state else 0
        best_metric, best_epoch = (state["best_metric"], state["best_epoch"]) if state else (None, None)
        stale = state["epochs_without_improvement"] if state else 0
        stopped_early = bool(state and state["stopped_early"])
        best_weights = None

        model, optimizer = accelerator.prepare(_Pass2(self.doubter, self.pipe), optimizer)
        self.optimizer, self.scheduler = optimizer, scheduler  # kept for inspection after fit
        logger.info("training on %d examples (%d validation), %d processes, %d updates, pos_weight %.3g",
                    len(rows.train), len(rows.validation), world, total_steps, pos_weight)
        if not history:
            history.append(self._record(0, global_step, scheduler, None, rows, pos_weight))
        for epoch in range(start_epoch + 1, config.epochs + 1):
            if stopped_early:
                break
            torch.manual_seed(config.seed * EPOCH_SEED_STRIDE + epoch)
            model.train()
            train_losses = self._train_epoch(model, optimizer, scheduler, rows, epoch, pos_weight, world, rank)
            global_step += windows
            record = self._record(epoch, global_step, scheduler, train_losses, rows, pos_weight)
            metric = record.val_auroc if config.higher_is_better else record.val_loss
            record.improved = self._improves(record, best_metric, history[best_epoch] if best_epoch else None)
            if record.improved:
                best_metric, best_epoch, stale = metric, epoch, 0
                best_weights = {k: v.detach().to("cpu").clone() for k, v in self.doubter.state_dict().items()}
            else:
                stale += 1
            history.append(record)
            patience = config.early_stopping_patience
            stopped_early = patience is not None and stale >= patience and epoch < config.epochs
            if checkpoints is not None:
                self._checkpoint(checkpoints, run_dir, optimizer, scheduler, {
                    "epoch": epoch, "global_step": global_step, "best_metric": best_metric, "best_epoch": best_epoch,
                    "epochs_without_improvement": stale, "stopped_early": stopped_early,
                    "history": [asdict(r) for r in history], "total_steps": total_steps, "pos_weight": pos_weight,
                    "num_processes": world, "config": config.to_dict(),
                }, record.improved)
            logger.info("epoch %d: val_auroc %s, val_loss %.4f%s", epoch, _fmt(record.val_auroc), record.val_loss,
                        " (best)" if record.improved else "")
            if on_epoch_end is not None:
                on_epoch_end(record)
            if stopped_early:
                logger.info("early stopping: no improvement of %s for %d epochs", config.early_stopping_metric, stale)
        best_path = checkpoints / BEST_DIR if checkpoints is not None and best_epoch is not None else None
        if config.restore_best and best_epoch is not None:
            self._restore(best_weights, best_path)
        accelerator.wait_for_everyone()
        return TrainingResult(
            history=history, best_epoch=best_epoch, best_metric=best_metric, metric=config.early_stopping_metric,
            stopped_early=stopped_early, global_step=global_step, best_checkpoint=best_path, pos_weight=pos_weight,
            target_counts=rows.targets.counts(rows.train), resumed_from=state["epoch"] if state else None,
            num_processes=world,
        )

    def _improves(self, record: EpochRecord, best_metric: float | None, best: EpochRecord | None) -> bool:
        """Better by more than ``min_delta``; an AUROC tie (it saturates on
        small validation sets) is broken by a lower validation loss."""
        config = self.config
        if best_metric is None or best is None:
            return True
        if not config.higher_is_better:
            return record.val_loss < best_metric - config.min_delta
        if record.val_auroc > best_metric + config.min_delta:
            return True
        return record.val_auroc >= best_metric and record.val_loss < best.val_loss - config.min_delta

    # ------------------------------------------------------------ data

    def _inputs(self, indices: Sequence[int], rows: TrainingRows) -> dict[str, torch.Tensor]:
        pad = self.pipe.tokenizer.pad_token_id if self.pipe.tokenizer.pad_token_id is not None else 0
        batch = make_batch([rows.prompts[i] for i in indices], [rows.targets.ids[i] for i in indices], pad)
        device = self.accelerator.device
        tensors = {name: getattr(batch, name).to(device) for name in
                   ("input_ids", "attention_mask", "labels", "prompt_lengths", "prompt_ids", "prompt_mask")}
        tensors["layer_states"] = rows.states[list(indices)].to(device)
        if rows.signals is not None:
            tensors["signals"] = rows.signals[list(indices)].to(device)
        tensors["example_weights"] = torch.tensor([self._lm_weight(rows, i) for i in indices], device=device)
        return tensors

    def _lm_weight(self, rows: TrainingRows, index: int) -> float:
        """LM-loss weight of row ``index``: ``answer_loss_weight`` for answer
        targets, 1 for refusals."""
        return 1.0 if rows.targets.kinds[index] == "refuse" else float(self.config.answer_loss_weight)

    # ------------------------------------------------------------ losses

    def _aux_sum(self, logit: torch.Tensor, probes: torch.Tensor | None, labels: torch.Tensor,
                 pos_weight: float) -> torch.Tensor:
        """Summed (over examples) BCE of the P(correct) logit, plus the mean
        over layers of the per-layer probes' BCE."""
        bce = nn.functional.binary_cross_entropy_with_logits
        weight = torch.tensor(pos_weight, device=logit.device)
        total = bce(logit.float(), labels, pos_weight=weight, reduction="sum")
        if probes is not None:
            expanded = labels.unsqueeze(1).expand_as(probes)
            total = total + bce(probes.float(), expanded, pos_weight=weight, reduction="none").mean(dim=1).sum()
        return total

    def _train_epoch(self, model: nn.Module, optimizer: Any, scheduler: Any, rows: TrainingRows, epoch: int,
                     pos_weight: float, world: int, rank: int) -> tuple[float, float]:
        """One epoch of updates; returns the mean (LM, aux) training loss."""
        config, accelerator = self.config, self.accelerator
        batches = epoch_batches(rows.train, epoch, config, world)
        step = config.gradient_accumulation_steps
        sums = torch.zeros(4, dtype=torch.float64, device=accelerator.device)  # lm, tokens, aux, examples
        for start in range(0, len(batches), step):
            window = batches[start : start + step]
            for position, batch in enumerate(window):
                local = batch[rank::world]
                # The LM loss is a weighted token mean: normalise by weighted tokens.
                local_tokens = sum(len(rows.targets.ids[i]) * self._lm_weight(rows, i) for i in local)
                global_tokens = sum(len(rows.targets.ids[i]) * self._lm_weight(rows, i) for i in batch)
                labels = rows.correct[local].float().to(accelerator.device)
                # Only the window's last micro-step synchronises gradients.
                sync = position == len(window) - 1
                with nullcontext() if sync else accelerator.no_sync(model):
                    lm_mean, logit, probes = model(**self._inputs(local, rows))
                    aux = self._aux_sum(logit, probes, labels, pos_weight)
                    # Global normalisation: DDP averages over processes, so
                    # scale by `world`; the sum then equals one process's loss.
                    loss = (lm_mean * local_tokens / global_tokens
                            + config.probe_loss_weight * aux / len(batch)) * world / len(window)
                    accelerator.backward(loss)
                sums += torch.tensor([float(lm_mean.detach()) * local_tokens, local_tokens, float(aux.detach()),
                                      len(local)],
                                     dtype=torch.float64, device=accelerator.device)
            if config.max_grad_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        sums = accelerator.reduce(sums, "sum") if world > 1 else sums
        return float(sums[0] / sums[1].clamp(min=1)), float(sums[2] / sums[3].clamp(min=1))

    # ------------------------------------------------------------ evaluation

    @torch.no_grad()
    def _p_correct_logits(self, states: torch.Tensor, indices: Sequence[int],
                          signals: torch.Tensor | None = None) -> torch.Tensor:
        logits, device = [], self.accelerator.device
        for start in range(0, len(indices), self.config.eval_batch_size):
            chunk = list(indices[start : start + self.config.eval_batch_size])
            chunk_signals = None if signals is None else signals[chunk].to(device)
            logits.append(self.doubter.encode(states[chunk].to(device), chunk_signals).p_correct_logit)
        return torch.cat(logits).float().cpu() if logits else torch.zeros(0)

    def p_correct(self, activations: "ActivationDataset | str | os.PathLike[str]",
                  split: str | None = None) -> torch.Tensor:
        """P(correct) of the Doubter for every row (or the rows of ``split``)
        of an activation dataset: the encoder only, no base forward."""
        dataset = load_activations(activations)
        states = dataset.states(self.doubter.config.read_position).float()
        signals = dataset.signals(self.doubter.config.signals) if self.doubter.config.signals else None
        indices = list(range(len(dataset))) if split is None else dataset.split_indices(split)
        return torch.sigmoid(self._p_correct_logits(states, indices, signals))

    def _auroc(self, indices: Sequence[int], rows: TrainingRows) -> float | None:
        try:
            return auroc(self._p_correct_logits(rows.states, indices, rows.signals).numpy(),
                         rows.correct[list(indices)].numpy())
        except UndefinedMetricError:
            return None

    @torch.no_grad()
    def _validation_losses(self, rows: TrainingRows, pos_weight: float) -> tuple[float, float]:
        """(LM, aux) loss on the validation split; each process takes a
        share and the sums are reduced."""
        accelerator, world = self.accelerator, self.accelerator.num_processes
        local = rows.validation[accelerator.process_index :: world]
        gradient_checkpointing = bool(self.pipe.config.gradient_checkpointing)
        sums = torch.zeros(4, dtype=torch.float64, device=accelerator.device)
        for start in range(0, len(local), self.config.eval_batch_size):
            chunk = local[start : start + self.config.eval_batch_size]
            inputs = self._inputs(chunk, rows)
            batch = TeacherForcedBatch(**{k: v for k, v in inputs.items()
                                          if k not in ("layer_states", "example_weights", "signals")})
            with accelerator.autocast():
                output = teacher_forced_forward(self.pipe.model, self.pipe.structure, self.doubter, batch,
                                                layer_states=inputs["layer_states"], signals=inputs.get("signals"),
                                                gradient_checkpointing=gradient_checkpointing)
            tokens = sum(len(rows.targets.ids[i]) for i in chunk)
            labels = rows.correct[chunk].float().to(accelerator.device)
            aux = self._aux_sum(output.p_correct_logit, output.probe_logits, labels, pos_weight)
            sums += torch.tensor([float(output.lm_loss) * tokens, tokens, float(aux), len(chunk)],
                                 dtype=torch.float64, device=accelerator.device)
        sums = accelerator.reduce(sums, "sum") if world > 1 else sums
        return float(sums[0] / sums[1].clamp(min=1)), float(sums[2] / sums[3].clamp(min=1))

    def _record(self, epoch: int, global_step: int, scheduler: Any, train_losses: tuple[float, float] | None,
                rows: TrainingRows, pos_weight: float) -> EpochRecord:
        self.doubter.eval()
        try:
            val_lm, val_aux = self._validation_losses(rows, pos_weight)
            return EpochRecord(
                epoch=epoch, global_step=global_step, lr=float(scheduler.get_last_lr()[0]),
                train_lm_loss=train_losses[0] if train_losses else None,
                train_aux_loss=train_losses[1] if train_losses else None,
                train_auroc=self._auroc(rows.train, rows), val_auroc=self._auroc(rows.validation, rows),
                val_loss=val_lm + self.config.probe_loss_weight * val_aux, val_lm_loss=val_lm, val_aux_loss=val_aux,
            )
        finally:
            self.doubter.train()

    # ------------------------------------------------------------ setup and files

    def _resume_state(self, checkpoints: Path | None, optimizer: Any, scheduler: Any) -> dict[str, Any] | None:
        if checkpoints is None:
            raise TrainerError("resume=True needs the run_dir the checkpoints were written to", "pass run_dir=...")
        folder = latest_epoch_checkpoint(checkpoints)
        if folder is None:
            logger.info("resume: no epoch checkpoint in %s; starting from the beginning", checkpoints)
            return None
        state, tensors, optimizer_state = load_epoch_checkpoint(folder)
        saved, current = TrainerConfig.from_dict(state["config"]).schedule_fields(), self.config.schedule_fields()
        changed = sorted(k for k in current if saved.get(k) != current[k])
        if changed:
            raise TrainerError(f"{folder} was trained with different settings: "
                               + ", ".join(f"{k}={saved.get(k)!r} (now {current[k]!r})" for k in changed),
                               "resume with the same settings, or train into a new run directory")
        if state["num_processes"] != self.accelerator.num_processes:
            logger.warning("resuming a %d-process run with %d processes; the result is equal up to float noise",
                           state["num_processes"], self.accelerator.num_processes)
        self.doubter.load_state_dict({k: v.to(self.accelerator.device) for k, v in tensors.items()}, strict=True)
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(state["scheduler"])
        logger.info("resumed from %s (epoch %d, step %d)", folder, state["epoch"], state["global_step"])
        return state

    def _checkpoint(self, checkpoints: Path, run_dir: Any, optimizer: Any, scheduler: Any, state: dict[str, Any],
                    improved: bool) -> None:
        accelerator = self.accelerator
        if accelerator.is_main_process:
            state = {**state, "scheduler": scheduler.state_dict()}
            save_epoch_checkpoint(checkpoints, state["epoch"], self.doubter, optimizer, state)
            if improved:
                save_best(checkpoints, self.doubter)
                self._record_in_manifest(Path(run_dir))
            prune_epoch_checkpoints(checkpoints, self.config.keep_epoch_checkpoints)
        accelerator.wait_for_everyone()

    @staticmethod
    def _record_in_manifest(run_dir: Path) -> None:
        from meta_spider.loom.manifest import RunManifest

        if RunManifest.path_in(run_dir).is_file():
            RunManifest.update_file(run_dir, checkpoint=f"{CHECKPOINTS_DIR}/{BEST_DIR}")

    def _restore(self, weights: dict[str, torch.Tensor] | None, best_path: Path | None) -> None:
        if weights is None and best_path is not None:
            from meta_spider.wrapper.checkpoint import read_checkpoint

            _, weights = read_checkpoint(best_path)
        if weights is not None:
            self.doubter.load_state_dict({k: v.to(self.accelerator.device) for k, v in weights.items()}, strict=True)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"

