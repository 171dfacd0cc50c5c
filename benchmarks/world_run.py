"""Opening a world run's agent for the agent benchmarks here: the run's
manifest, and the backend and launcher ``meta-agent run --run-dir RUN``
would build. Imported as ``from world_run import ...`` (the scripts run
as ``python benchmarks/NAME.py``, with this folder first on the path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Sequence


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


def world_agent_or_say_why(run_dir: Path) -> WorldAgent | None:
    """:func:`open_world_agent`, or None after printing why it cannot (the
    caller exits with status 2)."""
    import sys

    try:
        return open_world_agent(run_dir)
    except NotAWorldRun as error:
        print(error, file=sys.stderr)
        return None


def compare_policies(agent: WorldAgent, split: str, policies: list[tuple[str, Any]], *,
                     also: Sequence[Any] = ()) -> Any:
    """The agent comparison ``metaloom eval --agentic --split SPLIT`` runs on
    the world run (its dataset's questions, with the world's lookup), with
    ``policies`` (``(name, policy)`` pairs) in place of the registered ones;
    ``also``: tools offered before the lookup (one named as the lookup is
    left out)."""
    from meta_spider.agentcore.run_dataset import dataset_knowledge_base, dataset_lookup_schema
    from meta_spider.loom.datasets import create_dataset
    from meta_spider.loom.evaluate.agentic import AgentComparison, tasks_from_dataset
    from meta_spider.tools.knowledge import make_lookup_tool

    dataset = create_dataset(agent.plugin_manager, agent.manifest.dataset.name, **agent.manifest.dataset.options)
    tool = make_lookup_tool(dataset_knowledge_base(dataset), dataset_lookup_schema(dataset))
    tasks = tasks_from_dataset(dataset, split, tools=(*(other for other in also if other.name != tool.name), tool))
    examples = {task.id: task.metadata["example"] for task in tasks}
    launcher = agent.launcher
    comparison = AgentComparison(
        agent.backend, policies=policies, renderer=launcher.make_renderer(), system_prompt=launcher.system_prompt,
        check_fn=lambda text, task: bool(dataset.check_fn(text, examples[task.id])),
        ground_arguments=bool(launcher.ground_arguments), grounded_tools=launcher.grounded_tools)
    return comparison.run(tasks)


OUTCOME_COLUMNS = f"{'right':>7}{'refused':>9}{'wrong':>7}{'record found: right':>21}{'wrong':>7}{'refused':>9}"
"""The header of :func:`outcome_columns`."""


def outcome_columns(results: Any) -> str:
    """Agent comparison results (one policy's, one split's) as columns: right
    answers, refusals, wrong answers, and of the questions whose lookup found
    someone's record, how many were answered right, wrong and refused."""
    def counts(rows: list) -> tuple[int, int, int]:
        right, refused = sum(bool(r.correct) for r in rows), sum(bool(r.refused) for r in rows)
        return right, refused, len(rows) - right - refused

    found = [r for r in results if any(step.get("type") == "tool" and step.get("kind") == "result"
                                       for step in r.steps)]
    (right, refused, wrong), (found_right, found_refused, found_wrong) = counts(list(results)), counts(found)
    return f"{right:>7}{refused:>9}{wrong:>7}{found_right:>21}{found_wrong:>7}{found_refused:>9}"
