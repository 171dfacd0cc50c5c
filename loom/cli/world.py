"""Command line of the embedded world: ``world build`` (and ``world info``).

The lead hooks the ``world`` group into the ``metaloom`` host through the
plugin hooks; this module only defines the click commands and prints the
build's measured numbers.
"""

from __future__ import annotations

from pathlib import Path

import click

from meta_spider.loom.world.presets import PRESETS


@click.group("world")
def world() -> None:
    """The embedded fictional world and its trained base model."""


@world.command("build")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="small", show_default=True,
              help="world and model size")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the world and the training run")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="output folder (default: the user cache, keyed by version, preset and seed)")
@click.option("--force", is_flag=True, help="rebuild even if a complete build exists")
@click.option("--train", "train", is_flag=True,
              help="train the base here even where one is shipped for this world, and say whether it came out "
                   "bit-identical to the shipped one")
@click.option("--ship", is_flag=True,
              help="(maintainers) train the base here and write it into the package as this world's shipped base")
@click.option("--export-jsonl", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the test QA split as JSONL here (the format your own data needs)")
def build(preset: str, seed: int, out: Path | None, force: bool, train: bool, ship: bool,
          export_jsonl: Path | None) -> None:
    """Generate the world, install its shipped base (or train one), evaluate, cache."""
    from rich.console import Console

    from meta_spider.loom.world.cache import MODEL_DIR, build_world
    from meta_spider.loom.world.dataset import export_qa_jsonl
    from meta_spider.loom.world.shipped import ship as ship_base

    console = Console()
    artifacts = build_world(preset, seed=seed, out=out, progress=True, force=force, train=train or ship)
    _print_summary(console, artifacts.manifest, artifacts.path)
    if ship:
        folder = ship_base(artifacts.manifest["key"], artifacts.path / MODEL_DIR, artifacts.manifest,
                           command=f"metaloom world build --preset {preset} --seed {seed} --train")
        console.print(f"shipped base written to {folder}")
    if export_jsonl is not None:
        export_qa_jsonl(artifacts, "test", export_jsonl)
        console.print(f"test QA written to {export_jsonl}")


@world.command("info")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="small", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def info(preset: str, seed: int) -> None:
    """Show where the world of PRESET and SEED is cached, whether it is built,
    and whether a base is shipped for it."""
    from meta_spider.loom.world.cache import MANIFEST, cache_key, cache_root
    from meta_spider.loom.world.presets import get_preset
    from meta_spider.loom.world.shipped import ShippedBase, short

    key = cache_key(get_preset(preset), seed)
    path = cache_root() / key
    state = "built" if (path / MANIFEST).exists() else "not built"
    click.echo(f"{path} ({state})")
    shipped = ShippedBase.find(key)
    click.echo(f"shipped base: {shipped.path} (sha256 {short(shipped.model_sha256)}…, trained with "
               f"{shipped.kernels['torch_capability']} kernels)" if shipped else
               "shipped base: none (a build trains the base)")


def _print_summary(console: "object", manifest: dict, path: Path) -> None:
    from rich.table import Table

    from meta_spider.loom.world.cache import describe_base

    metrics = manifest["metrics"]
    table = Table(title=f"world {manifest['preset']['name']} seed {manifest['seed']}: {path}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    test = metrics["qa"]["test"]
    table.add_row("test QA exact match", f"{test['accuracy']:.3f} (n={test['n']})")
    table.add_row("base", describe_base(manifest))
    if "kernels" in manifest:  # absent from worlds built before it was recorded
        table.add_row("trained with CPU kernels", manifest["kernels"]["torch_capability"])
    for bucket, row in test["by_bucket"].items():
        table.add_row(f"  {bucket}", f"{row['accuracy']:.3f} (n={row['n']})")
    for position in ("prompt", "draft"):
        probe = metrics["probe"][position]
        table.add_row(f"probe AUROC @{position} (layer {probe['best_layer']})",
                      f"{probe['auroc_test']:.3f} / mentioned {probe['auroc_test_mentioned']:.3f}")
    for split in ("test_paraphrase", "test_misspelt"):
        if split in metrics["qa"]:
            row = metrics["qa"][split]
            table.add_row(f"{split} QA exact match", f"{row['accuracy']:.3f} (n={row['n']})")
    if "outside" in metrics:
        outside = metrics["outside"]
        table.add_row(f"{outside['split']}: refused", f"{outside['refused']:.3f} (answered {outside['answered']} "
                                                      f"of {outside['n']})")
    tool = metrics["tool_use"]
    table.add_row(f"tool-call rate ({tool['parser']})", f"{tool['rate']:.3f}")
    if "calculator_use" in metrics:
        calculator = metrics["calculator_use"]
        table.add_row("calculator-call rate", f"{calculator['rate']:.3f}")
        if "answer_rate" in calculator:
            table.add_row("answer from the calculator's result", f"{calculator['answer_rate']:.3f}")
    table.add_row("build time", f"{manifest['timings']['total_s']:.0f} s")
    console.print(table)  # type: ignore[attr-defined]
