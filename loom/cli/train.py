"""``metaloom train``: train the Doubter of a run directory.

Reads ``run.json`` (model, layers, positions, encoder type), loads the
frozen base, builds a new Doubter from the manifest (or, with ``--resume``,
from the newest epoch checkpoint), trains it on ``<run-dir>/activations``
with :class:`meta_spider.loom.train.trainer.Trainer`, writes
``<run-dir>/checkpoints/`` and ``<run-dir>/training.json``, and records the
best checkpoint in ``run.json`` (``checkpoint``).

Data parallel without code change::

    torchrun --standalone --nproc_per_node 2 -m meta_spider.loom.cli.train --run-dir D --epochs 3
    accelerate launch -m meta_spider.loom.cli.train --run-dir D --epochs 3      # GPUs

(``python -m meta_spider.loom.cli.train`` is the same command as
``metaloom train``.) Importing this module is light: torch, transformers
and accelerate load when the command runs. It knows command-line plumbing
only; the training itself lives in the trainer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import click

from meta_spider.loom.train.config import EARLY_STOPPING_METRICS, MIXED_PRECISION, OPTIMIZERS, TrainerConfig
from meta_spider.wrapper.signals import KNOWN_SIGNALS, SIGNALS, check_signal_names

TRAINING_FILE = "training.json"

_DOUBTER_OPTIONS = ("encoder_dim", "encoder_num_heads", "encoder_num_layers", "num_cognitive_tokens",
                    "ca_bottleneck_dim", "ca_num_heads", "ca_gate_init", "encoder_gate_init", "signals", "scope_layer")


def _signal_names(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[tuple[str, ...]]:
    """``--logprob-signals a,b`` (or ``all``) as a checked tuple of signal names.
    (Not ``--signals``: torchrun's argument parser would take it for an
    abbreviation of its own ``--signals-to-handle``.)"""
    if value is None:
        return None
    names = SIGNALS if value.strip() == "all" else tuple(part.strip() for part in value.split(",") if part.strip())
    try:
        return check_signal_names(names)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
_TRAINER_OPTIONS = ("epochs", "lr", "batch_size", "gradient_accumulation_steps", "gate_lr_multiplier",
                    "weight_decay", "optimizer", "probe_loss_weight", "pos_weight", "balance_classes",
                    "enable_self_correction", "answer_loss_weight", "early_stopping_metric", "seed", "mixed_precision",
                    "max_grad_norm", "train_split", "validation_split", "signals_only", "scope_quantile")


P_CORRECT_SOURCES = ("states", "signals", "both")
"""What ``--p-correct-from`` lets P(correct) read."""


def _p_correct_source(options: dict[str, Any]) -> None:
    """Apply ``--p-correct-from`` to the options: ``states`` reads no signals,
    ``signals`` and ``both`` read ``--logprob-signals`` (default: all), and
    ``signals`` gives the encoder's own logit weight 0."""
    source = options.pop("p_correct_from", None)
    if source == "states" and options.get("signals"):
        raise click.UsageError("--p-correct-from states reads no pass-1 signals: leave out --logprob-signals")
    if source in ("signals", "both") and not options.get("signals"):
        options["signals"] = SIGNALS
    if source == "signals":
        options["signals_only"] = True


def _trainer_config(options: dict[str, Any]) -> TrainerConfig:
    _p_correct_source(options)
    values = {name: options[name] for name in _TRAINER_OPTIONS if options.get(name) is not None}
    patience = options.get("patience")
    if patience is not None:
        values["early_stopping_patience"] = None if patience == 0 else patience
    try:
        return TrainerConfig(**values)
    except ValueError as error:
        raise click.UsageError(str(error)) from None


@click.command("train")
@click.option("--run-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="run directory written by `metaloom collect` (run.json + activations/)")
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True,
              help="passes over the training split")
@click.option("--lr", type=float, default=None, help="base learning rate (encoder and cross-attention weights)")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="global examples per micro-step")
@click.option("--grad-accum", "gradient_accumulation_steps", type=click.IntRange(min=1), default=None,
              help="micro-steps per optimizer update")
@click.option("--gate-lr-multiplier", type=float, default=None, help="LR multiple for gates and token preferences")
@click.option("--weight-decay", type=float, default=None, help="weight decay of weight matrices")
@click.option("--max-grad-norm", type=float, default=None, help="gradient clipping norm")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None, help="adamw or adam8bit (bitsandbytes)")
@click.option("--probe-loss-weight", type=float, default=None, help="weight of the P(correct) BCE")
@click.option("--pos-weight", type=float, default=None, help="BCE weight of the correct class")
@click.option("--balance-classes/--no-balance-classes", default=None, help="pos_weight = n_wrong / n_correct")
@click.option("--answer-loss-weight", type=click.FloatRange(min=0, min_open=True), default=None,
              help="LM-loss weight of answer targets relative to refusals (>1: pass 2 answers more)")
@click.option("--self-correction/--no-self-correction", "enable_self_correction", default=None,
              help="confirm / correct / refuse targets (transformer encoder)")
@click.option("--early-stopping-metric", type=click.Choice(EARLY_STOPPING_METRICS), default=None)
@click.option("--patience", type=click.IntRange(min=0), default=None,
              help="early-stopping patience in epochs (0: never stop)")
@click.option("--train-split", default=None, help="split to train on (default: train)")
@click.option("--validation-split", default=None, help="split to validate on (default: validation)")
@click.option("--seed", type=int, default=None)
@click.option("--mixed-precision", type=click.Choice(MIXED_PRECISION), default=None)
@click.option("--encoder-dim", type=click.IntRange(min=1), default=None, help="Doubter shape (new Doubters only)")
@click.option("--encoder-num-heads", type=click.IntRange(min=1), default=None)
@click.option("--encoder-num-layers", type=click.IntRange(min=1), default=None)
@click.option("--num-cognitive-tokens", type=click.IntRange(min=1), default=None)
@click.option("--ca-bottleneck-dim", type=click.IntRange(min=1), default=None)
@click.option("--ca-num-heads", type=click.IntRange(min=1), default=None)
@click.option("--ca-gate-init", type=float, default=None)
@click.option("--encoder-gate-init", type=float, default=None)
@click.option("--logprob-signals", "signals", callback=_signal_names, default=None, metavar="NAMES",
              help="pass-1 log-prob signals the Doubter's P(correct) also reads: comma-separated names from "
                   f"{', '.join(KNOWN_SIGNALS)} (the last two need a collection made with --pmi-signals and "
                   f"--occlusion-signals), or 'all' ({', '.join(SIGNALS)})")
@click.option("--p-correct-from", "p_correct_from", type=click.Choice(P_CORRECT_SOURCES), default=None,
              help="what P(correct) reads: the hidden states (no signals), the pass-1 signals alone (the encoder's "
                   "logit gets weight 0), or both; signals and both read --logprob-signals, default all")
@click.option("--scope-layer", type=int, default=None, metavar="LAYER",
              help="add a scope gate reading this target layer's state and the signals: it vetoes questions "
                   "outside what the base can answer (needs unanswerable training questions the base answered, "
                   "e.g. --dataset-option train_outside=N at collection)")
@click.option("--scope-quantile", type=click.FloatRange(0.0, 0.5, min_open=True, max_open=True), default=None,
              help="the scope gate vetoes below this quantile of validation's scores (default 0.005)")
@click.option("--resume", is_flag=True, help="continue from the newest epoch checkpoint")
@click.option("--local-files-only", is_flag=True, help="never touch the network when loading the base")
def train(run_dir: Path, resume: bool, local_files_only: bool, **options: Any) -> None:
    """Train the Doubter of RUN_DIR through the frozen base."""
    from meta_spider.loom.manifest import RunManifest

    config = _trainer_config(options)
    manifest = RunManifest.load(run_dir)
    result = _run(run_dir, manifest, config, resume, local_files_only,
                  {name: options[name] for name in _DOUBTER_OPTIONS if options.get(name) is not None})
    if result is not None:
        click.echo(result)


def _run(run_dir: Path, manifest: Any, config: TrainerConfig, resume: bool, local_files_only: bool,
         doubter_options: dict[str, Any]) -> Optional[str]:
    from meta_spider.loom.collect.activations import ACTIVATIONS_DIR, ActivationDataset
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.train.trainer import Trainer, make_accelerator
    from meta_spider.loom.train.state import CHECKPOINTS_DIR, latest_epoch_checkpoint
    from meta_spider.wrapper import Doubter, MetaSpiderConfig, MetaSpiderPipeline

    dataset = ActivationDataset.load(run_dir / ACTIVATIONS_DIR)
    cpu = not str(manifest.model.device).startswith("cuda")
    accelerator = make_accelerator(config, cpu=cpu)
    settings = manifest.pipeline_settings()
    settings["device"] = "cpu" if cpu else str(accelerator.device)
    pipe = MetaSpiderPipeline.from_pretrained(MetaSpiderConfig(**settings, local_files_only=local_files_only))
    collected = dataset.model
    for key in ("hidden_size", "num_layers"):
        if collected.get(key) != getattr(pipe, key):
            raise click.ClickException(f"{run_dir / ACTIVATIONS_DIR} was collected from a base with {key}="
                                       f"{collected.get(key)!r}, {manifest.model.name!r} has {getattr(pipe, key)!r}; "
                                       "collect again for this model")
    latest = latest_epoch_checkpoint(run_dir / CHECKPOINTS_DIR) if resume else None
    if latest is not None:
        doubter = Doubter.from_checkpoint(latest)
    else:
        import torch

        # Seeded so every data-parallel process (and a rerun) starts from the same Doubter.
        torch.manual_seed(config.seed)
        try:
            doubter = pipe.new_doubter(encoder_type=manifest.encoder_type, **doubter_options)
        except ValueError as error:  # a Doubter option that does not fit this base (e.g. a scope layer it lacks)
            raise click.UsageError(f"cannot build the Doubter: {error}") from error

    def report(record: Any) -> None:
        if accelerator.is_main_process:
            auroc = "n/a" if record.val_auroc is None else f"{record.val_auroc:.4f}"
            click.echo(f"epoch {record.epoch}: step {record.global_step}, train loss {record.train_lm_loss:.4f}, "
                       f"val loss {record.val_loss:.4f}, val AUROC {auroc}{' *' if record.improved else ''}")

    trainer = Trainer(doubter, pipe, config, accelerator=accelerator)
    if accelerator.is_main_process:
        groups = {name: sum(p.numel() for p in params) for name, params in trainer.parameter_groups().items()}
        click.echo(f"training a {manifest.encoder_type} Doubter ({doubter.num_parameters():,} parameters: "
                   + ", ".join(f"{k} {v:,}" for k, v in groups.items())
                   + f") on {len(dataset)} collected examples, {accelerator.num_processes} process(es)")
    result = trainer.fit(dataset, run_dir=run_dir, resume=resume, on_epoch_end=report)
    if not accelerator.is_main_process:
        return None
    (run_dir / TRAINING_FILE).write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    if result.best_checkpoint is None:
        return "no epoch was trained (the run was already complete)"
    relative = result.best_checkpoint.relative_to(run_dir).as_posix()
    RunManifest.update_file(run_dir, checkpoint=relative)
    return (f"best epoch {result.best_epoch} ({result.metric} {result.best_metric:.4f})"
            f"{', stopped early' if result.stopped_early else ''}; checkpoint {run_dir / relative} "
            "recorded in run.json")


if __name__ == "__main__":  # torchrun / accelerate launch: python -m meta_spider.loom.cli.train ...
    # Through the host, as `metaloom train`, so an error is one line and not a traceback.
    import sys

    from meta_spider.agentcore.cli import run_group

    run_group("loom", ["train", *sys.argv[1:]], "metaloom")
