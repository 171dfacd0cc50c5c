"""The loom's built-in plugin: the ``loom`` command group (``metaloom``), the
``deploy`` group (``metadeploy``), the datasets it ships and the GGUF exporter.

Registration is cheap: the command modules import only click and light
helpers; torch, transformers and llama_cpp load when a command runs.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from meta_spider.plugins import hookimpl


def _loom_group() -> click.Group:
    from meta_spider.loom.cli.collect import collect
    from meta_spider.loom.cli.eval import eval_command
    from meta_spider.loom.cli.train import train
    from meta_spider.loom.cli.world import world

    @click.group("loom")
    def loom() -> None:
        """Collect, train and evaluate the Doubter; build the embedded world."""

    for command in (world, collect, train, eval_command):
        loom.add_command(command)
    return loom


def _deploy_group() -> click.Group:
    from meta_spider.loom.cli.deploy import export

    @click.group("deploy")
    def deploy() -> None:
        """Export a trained run for llama.cpp: the Doubter sidecar and base GGUFs."""

    deploy.add_command(export)
    return deploy


@hookimpl
def register_commands(register: Callable[[click.Group], None]) -> None:
    register(_loom_group())
    register(_deploy_group())


@hookimpl
def register_datasets(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from meta_spider.loom.datasets import register_builtin_datasets
    from meta_spider.loom.world.dataset import register_world_dataset

    register_world_dataset(register)
    register_builtin_datasets(register)


@hookimpl
def register_exporters(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from meta_spider.loom.gguf.deploy import register_deploy_exporters

    register_deploy_exporters(register)
