"""``metaloom collect``: resolve a dataset through the plugins, load the
frozen base, collect pass-1 activations into ``<run-dir>/activations/`` and
write ``<run-dir>/run.json``.

Running the same command again resumes a killed collection. A run directory
whose ``run.json`` names another base is refused unless ``--force`` (which
discards that run's activations). Launched by ``torchrun --nproc_per_node N
-m meta_spider.loom.cli.collect ...`` (or ``accelerate launch``), each
process collects its own shards and rank 0 merges them and writes run.json
(:mod:`meta_spider.loom.collect.ranks`); ``--device cuda`` then means each
process's own GPU (``LOCAL_RANK``). This module knows only options and
files; the work is :class:`~meta_spider.loom.collect.collector.ActivationDatasetCollector`'s.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from meta_spider.loom.collect.activations import ACTIVATIONS_DIR
from meta_spider.loom.cli.errors import CommandError
from meta_spider.loom.manifest import (
    MANIFEST_FILE,
    DatasetSection,
    ManifestError,
    PromptSection,
    RunManifest,
)

__all__ = ["collect", "default_splits", "parse_dataset_options"]

DEFAULT_SPLITS = ("train", "validation", "test")


def parse_dataset_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs as factory keyword arguments; a value that reads
    as JSON (``3``, ``true``, ``[1, 2]``) is that value, anything else a
    string. A relative path that exists is made absolute, because later
    commands rebuild the dataset from run.json, maybe from another folder."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="--dataset-option")
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
            if value and Path(value).exists():
                parsed = str(Path(value).resolve())
        options[key.strip()] = parsed
    return options


def default_splits(available: Sequence[str]) -> list[str]:
    """train / validation / test where the dataset has them, then its shift
    splits (``test_*``, what ``metaloom eval --shifts`` reads) and its
    questions asked with their lookup (``train_lookup``, ``validation_lookup``:
    what ``metaloom eval`` fits the gate after a lookup on); else all its splits."""
    chosen = [split for split in DEFAULT_SPLITS if split in available]
    if not chosen:
        return list(available)
    from meta_spider.loom.evaluate.after_lookup import LOOKUP_SPLITS
    from meta_spider.loom.evaluate.shifts import SHIFT_PREFIX

    return (chosen + [split for split in available if split.startswith(SHIFT_PREFIX)]
            + [split for split in LOOKUP_SPLITS if split in available])


def _template_kwargs(dataset: Any) -> dict[str, Any]:
    """The template switches the dataset's prompts use (from its first example)."""
    for split in dataset.splits:
        examples = dataset.split(split)
        if examples:
            return dict(dataset.prompt(examples[0]).template_kwargs)
    return {}


def _default_model(run_dir: Path, dataset: Any, dataset_name: str) -> str:
    """The base when --model-name is left out: the dataset's own (the world
    built with build=true), else the one the run directory's run.json names."""
    model_dir = getattr(dataset, "model_dir", None)
    if model_dir is not None:
        return str(model_dir)
    if RunManifest.path_in(run_dir).is_file():
        return RunManifest.load(run_dir).model.name
    raise click.UsageError(f"--model-name is required: dataset {dataset_name!r} brings no base of its own (the world "
                           f"does with --dataset-option build=true) and {run_dir} has no run.json naming one")


def _checkpoint_reference(path: Path) -> Any:
    """The ``log_reference`` a Doubter checkpoint carries (``--pmi-reference``)."""
    from meta_spider.wrapper.checkpoint import read_checkpoint
    from meta_spider.wrapper.errors import CheckpointError

    try:
        _, tensors = read_checkpoint(path)
    except CheckpointError as error:
        raise CommandError(f"--pmi-reference {path}: {error}", "name a Doubter checkpoint (a folder or a "
                           ".safetensors file) trained with the PMI signal") from error
    reference = tensors.get("log_reference")
    if reference is None or not reference.numel():
        raise CommandError(f"--pmi-reference {path}: this Doubter carries no PMI reference distribution (it does "
                           "not read prompt_pmi_top4)", "leave out --pmi-reference, or name a checkpoint trained "
                           "with --logprob-signals ...,prompt_pmi_top4")
    return reference.numpy()


def _check_run_dir(run_dir: Path, model_name: str, force: bool, ranks: Any) -> RunManifest | None:
    """The existing manifest to update (None: write a new one). Without
    --force a run.json naming another base is refused; with --force the old
    activations are discarded (each rank its own folder, rank 0 the merged
    one) and the manifest starts over."""
    if force:
        from meta_spider.loom.collect.ranks import rank_folder

        if ranks.parallel:
            shutil.rmtree(rank_folder(run_dir / ACTIVATIONS_DIR, ranks), ignore_errors=True)
        if ranks.rank == 0:
            shutil.rmtree(run_dir / ACTIVATIONS_DIR, ignore_errors=True)
        return None
    if not RunManifest.path_in(run_dir).is_file():
        return None
    try:
        existing = RunManifest.load(run_dir)
    except ManifestError as error:
        raise click.ClickException(f"{error} (or pass --force to start this run directory over)") from error
    if existing.model.name != model_name:
        raise click.ClickException(
            f"{run_dir / MANIFEST_FILE} belongs to model {existing.model.name!r}, not {model_name!r}; a run directory "
            "holds one base. Use another --run-dir, or pass --force to discard that run's activations and start over."
        )
    return existing


@click.command("collect")
@click.option("--run-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="run directory (run.json and activations/ are written here)")
@click.option("--model-name", default=None,
              help="hub id or local folder of the base (default: the dataset's own, e.g. world with build=true, "
                   "else the one run.json names)")
@click.option("--dataset", "dataset_name", default="world", show_default=True, help="registered dataset name")
@click.option("--dataset-option", "dataset_options", multiple=True, metavar="KEY=VALUE",
              help="dataset factory option (repeatable), e.g. preset=tiny, path=qa.jsonl")
@click.option("--mcq-direct", is_flag=True, help="multiple choice: letter-only answers, thinking switched off")
@click.option("--splits", default=None,
              help="comma-separated splits (default: train,validation,test where present, every test_* split, "
                   "and train_lookup,validation_lookup where present)")
@click.option("--max-examples", type=click.IntRange(min=1), default=None, help="at most N examples per split")
@click.option("--target-layers", default="late", show_default=True, help="'late', 'all' or indices like 10,12,14")
@click.option("--cross-attn-layers", default=None, help="layers pass 2 injects after (default: the target layers)")
@click.option("--encoder-type", type=click.Choice(["selective", "multi_token", "transformer"]), default="selective",
              show_default=True, help="the encoder the trainer will build (recorded in run.json)")
@click.option("--read-position", type=click.Choice(["prompt", "draft"]), default="prompt", show_default=True,
              help="where pass 1 reads at inference (both are collected)")
@click.option("--dtype", type=click.Choice(["auto", "bfloat16", "float16", "float32"]), default="auto", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="torch device: cpu, cuda, cuda:1, ...")
@click.option("--quantization", type=click.Choice(["none", "int8", "nf4", "fp4"]), default="none", show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=48, show_default=True,
              help="length limit of the greedy answer")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--shard-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="examples per shard (the unit a killed run loses)")
@click.option("--pmi-signals", is_flag=True,
              help="also record the prompt's PMI signal (prompt_pmi_top4): needs the base's mean next-token "
                   "distribution over the train prompts, computed first (a prefill of each) and kept with the "
                   "activations")
@click.option("--occlusion-signals", is_flag=True,
              help="also record occluded_name_logprob (where the question's subject is, found by leaving out each "
                   "word in turn, and how predictable the base finds it): one more forward per word of each question")
@click.option("--pmi-reference", "pmi_reference", type=click.Path(exists=True, path_type=Path), default=None,
              metavar="CHECKPOINT",
              help="with --pmi-signals: read the PMI against this Doubter checkpoint's distribution instead of "
                   "computing one over the train prompts (to collect new questions for `metaloom eval --checkpoint "
                   "CHECKPOINT`: the Doubter reads its PMI against the distribution it was trained with)")
@click.option("--force", is_flag=True,
              help="start the run directory over: discard its activations (also when made for another model)")
@click.option("--quiet", is_flag=True, help="no progress bar and no summary")
@click.pass_context
def collect(ctx: click.Context, run_dir: Path, model_name: str | None, dataset_name: str,
            dataset_options: tuple[str, ...], mcq_direct: bool, splits: str | None, max_examples: int | None,
            target_layers: str, cross_attn_layers: str | None, encoder_type: str, read_position: str, dtype: str,
            device: str, quantization: str, max_new_tokens: int, batch_size: int, shard_size: int, pmi_signals: bool,
            occlusion_signals: bool, pmi_reference: Path | None, force: bool, quiet: bool) -> None:
    """Collect pass-1 activations of the frozen base over a dataset (resumable)."""
    from meta_spider.agentcore.cli import plugin_manager
    from meta_spider.loom.collect.ranks import Ranks
    from meta_spider.loom.datasets import create_dataset
    from rich.console import Console

    if pmi_reference is not None and not pmi_signals:
        raise click.UsageError("--pmi-reference gives the PMI signal's distribution: add --pmi-signals")
    reference = _checkpoint_reference(pmi_reference) if pmi_reference is not None else None
    try:
        ranks = Ranks.from_environment()
    except ValueError as error:
        raise CommandError(str(error), "set RANK and WORLD_SIZE as torchrun does, or leave both unset") from error
    if ranks.parallel and device.startswith("cuda") and ":" not in device:
        device = f"cuda:{os.environ.get('LOCAL_RANK', ranks.rank)}"  # one GPU per process
    # Progress and notes (rank 0's only); the summary goes to stdout.
    console = Console(stderr=True, quiet=quiet or ranks.rank != 0)
    options = parse_dataset_options(dataset_options)
    if mcq_direct:
        options["mcq_direct"] = True
    try:
        dataset = create_dataset(plugin_manager(ctx), dataset_name, **options)
    except ValueError as error:  # an option value the factory refused
        raise CommandError(f"dataset {dataset_name!r}: {error}", "correct that --dataset-option") from error
    except TypeError as error:  # the factory does not take an option
        raise CommandError(f"dataset {dataset_name!r} rejected its options {sorted(options)}: {error}",
                           "pass only the options this dataset takes") from error
    if model_name is None:
        model_name = _default_model(run_dir, dataset, dataset_name)
    chosen = [s.strip() for s in splits.split(",") if s.strip()] if splits else default_splits(dataset.splits)
    existing = _check_run_dir(run_dir, model_name, force, ranks)

    from meta_spider.loom.collect.collector import (
        ActivationDatasetCollector,
        CollectionMismatchError,
    )
    from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline
    from meta_spider.wrapper.signals import OCCLUSION_SIGNALS, PMI_SIGNALS, SIGNALS

    try:
        config = MetaSpiderConfig(model_name=model_name, device=device, dtype=dtype,
                                  quantization=None if quantization == "none" else quantization,
                                  target_layers=target_layers, cross_attn_layers=cross_attn_layers,
                                  read_position=read_position)
    except ValueError as error:
        raise click.BadParameter(str(error)) from error
    console.print(f"loading {model_name} ({device}, {dtype})")
    try:
        pipe = MetaSpiderPipeline.from_pretrained(config)
    except ValueError as error:  # e.g. target layers out of range for this base
        raise CommandError(str(error), "choose --target-layers and --cross-attn-layers that this base has") from error
    try:
        collector = ActivationDatasetCollector(pipe, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                               shard_size=max(shard_size - shard_size % batch_size, batch_size),
                                               show_progress=not quiet and ranks.rank == 0, console=console,
                                               signals=SIGNALS + PMI_SIGNALS * pmi_signals
                                               + OCCLUSION_SIGNALS * occlusion_signals,
                                               log_reference=reference)
    except ValueError as error:  # a reference from a Doubter of another base
        raise CommandError(f"--pmi-reference {pmi_reference}: {error}",
                           "name a checkpoint trained on this base") from error
    try:
        activations = collector.collect_dataset(dataset, chosen, max_examples=max_examples,
                                                output_dir=run_dir / ACTIVATIONS_DIR, ranks=ranks)
    except CollectionMismatchError as error:
        raise click.ClickException(f"{error} (pass --force to discard the old activations)") from error

    if ranks.rank != 0:  # rank 0 merged every rank's shards and writes run.json
        return
    prompt = PromptSection(use_chat_template=bool(getattr(pipe.tokenizer, "chat_template", None)),
                           mcq_direct=mcq_direct, system_prompt=getattr(dataset, "system_prompt", None) or None,
                           template_kwargs=_template_kwargs(dataset))
    fresh = RunManifest.from_pipeline_config(config, DatasetSection.from_dataset(dataset), encoder_type, prompt)
    if existing is None:
        manifest = fresh
    else:  # keep what later commands added (checkpoint, calibration, gguf, backends)
        manifest = existing.update(model=fresh.model, layers=fresh.layers, dataset=fresh.dataset,
                                   prompt=fresh.prompt, read_position=fresh.read_position,
                                   inject_positions=fresh.inject_positions, encoder_type=fresh.encoder_type)
    manifest.save(run_dir)
    _summary(Console(quiet=quiet), activations, run_dir)


def _summary(console: Any, activations: Any, run_dir: Path) -> None:
    from rich.table import Table

    table = Table(title=f"activations: {run_dir / ACTIVATIONS_DIR}")
    table.add_column("split")
    table.add_column("examples", justify="right")
    table.add_column("base accuracy", justify="right")
    correct = activations.tensor("pass1_correct")
    for split in activations.splits:
        rows = activations.split_indices(split)
        accuracy = float(correct[rows].float().mean()) if rows else float("nan")
        table.add_row(split, str(len(rows)), f"{accuracy:.3f}")
    console.print(table)
    console.print(f"layers {activations.target_layers}, run.json written to {run_dir / MANIFEST_FILE}")


if __name__ == "__main__":  # torchrun / accelerate launch: python -m meta_spider.loom.cli.collect ...
    # Through the host, as `metaloom collect`, so an error is one line and not a traceback.
    import sys

    from meta_spider.agentcore.cli import run_group

    run_group("loom", ["collect", *sys.argv[1:]], "metaloom")
