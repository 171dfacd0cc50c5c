"""Opening a world run's agent for the agent benchmarks here: the run's
manifest, and the backend and launcher ``meta-agent run --run-dir RUN``
would build. Imported as ``from world_run import ...`` (the scripts run
as ``python benchmarks/NAME.py``, with this folder first on the path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple


class NotAWorldRun(Exception):
    """The run cannot be read, or is not a run of the embedded world."""


class WorldAgent(NamedTuple):
    manifest: Any
    plugin_manager: Any
    launcher: Any
    backend: Any


def open_world_agent(run_dir: Path) -> WorldAgent:
    """The world run in ``run_dir`` with its default backend loaded; raises
    :class:`NotAWorldRun` saying why it cannot."""
    from meta_spider.agentcore.launch import AgentLauncher
    from meta_spider.agentcore.rundir import read_run_settings
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.plugins import MetaSpiderError, make_plugin_manager

    try:
        manifest = RunManifest.load(run_dir)
    except MetaSpiderError as error:
        raise NotAWorldRun(f"cannot read the run: {error}") from error
    if manifest.dataset.name != "world":
        raise NotAWorldRun(f"{run_dir}: the run's dataset is {manifest.dataset.name!r}, not the embedded world")
    plugin_manager = make_plugin_manager()
    launcher = AgentLauncher(plugin_manager, read_run_settings(run_dir))
    return WorldAgent(manifest, plugin_manager, launcher, launcher.make_backend(launcher.default_backend))
