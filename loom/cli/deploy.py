"""``metadeploy export``: write a run's Doubter sidecar and base GGUFs and
record them in ``run.json`` (see :func:`meta_spider.loom.gguf.deploy.export_from_run_dir`).

This module knows only options and messages; the work is the deploy module's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

__all__ = ["export"]


@click.command("export")
@click.option("--run-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="run directory with run.json and a trained checkpoint")
@click.option("--base-gguf", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="your own GGUF of the run's base (checked against the sidecar's fingerprint)")
@click.option("--quantize", "quantize", multiple=True, metavar="KIND",
              help="llama.cpp quantisations of the base (repeatable; default Q8_0 and Q4_K_M)")
@click.option("--no-quantize", is_flag=True, help="write the f16 base only")
def export(run_dir: Path, base_gguf: Optional[Path], quantize: tuple[str, ...], no_quantize: bool) -> None:
    """Export the run's Doubter as doubter_sidecar.gguf and, for a local
    Qwen2/Llama base, the base GGUF in f16, Q8_0 and 4-bit; record the paths
    and the llamacpp backend's settings in run.json."""
    from meta_spider.loom.gguf.deploy import DEFAULT_QUANTIZATIONS, export_from_run_dir, missing_base_message
    from meta_spider.loom.manifest import RunManifest

    kinds: tuple[str, ...] = () if no_quantize else (quantize or DEFAULT_QUANTIZATIONS)
    paths = export_from_run_dir(run_dir, kinds, base_gguf=base_gguf)
    for key, path in paths.items():
        size = path.stat().st_size / 2**20
        click.echo(f"{key:10s} {path}  ({size:.2f} MiB)")
    if not any(key.startswith("base") for key in paths):
        click.echo(missing_base_message(RunManifest.load(run_dir).model.name, run_dir), err=True)
    else:
        click.echo(f"recorded in {RunManifest.path_in(run_dir)}; run it with "
                   f"`meta-agent chat --run-dir {run_dir} --backend llamacpp`")
