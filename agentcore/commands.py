"""The built-in ``agent`` command group (``meta-agent``): ``tools`` and
``plugins``.

A plugin module in :data:`~meta_spider.plugins.DEFAULT_PLUGINS`; it registers
its group through ``register_commands`` like any third party. The commands
list what the loaded plugins registered; they run no model.
"""

from __future__ import annotations

import json
from typing import Callable

import click
from rich.console import Console
from rich.table import Table

from meta_spider.agentcore.cli import plugin_manager
from meta_spider.plugins import hookimpl, plugin_distributions
from meta_spider.tools import ToolError, ToolRegistry


@click.group("agent", help="The agent: its tools and plugins.")
def agent_group() -> None:
    pass


@agent_group.command("tools")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def tools_command(ctx: click.Context, as_json: bool) -> None:
    """List every registered tool with the plugin that gave it."""
    pm = plugin_manager(ctx)
    try:
        registry = ToolRegistry.from_plugins(pm)
    except ToolError as exc:  # e.g. two plugins registered one tool name
        raise click.ClickException(str(exc)) from exc
    distributions = plugin_distributions(pm)
    rows = [
        {
            "name": entry.tool.name,
            "plugin": entry.source,
            "distribution": distributions.get(entry.source, "?"),
            "description": entry.tool.description,
        }
        for entry in registry.entries()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} tools")
    # Tool names stay whole (users type them); the rest wraps to fit.
    table.add_column("tool", no_wrap=True)
    table.add_column("plugin", overflow="fold", ratio=1)
    table.add_column("distribution", overflow="fold", ratio=1)
    table.add_column("description", overflow="fold", ratio=2)
    for row in rows:
        table.add_row(row["name"], row["plugin"], row["distribution"], row["description"])
    Console().print(table)


@agent_group.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool) -> None:
    """List loaded plugins, their distributions and the hooks they implement."""
    pm = plugin_manager(ctx)
    distributions = plugin_distributions(pm)
    rows = []
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(caller.name for caller in (pm.get_hookcallers(plugin) or []))
        rows.append({"plugin": name, "distribution": distributions.get(name, "?"), "hooks": hooks})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} plugins")
    table.add_column("plugin", overflow="fold", ratio=1)
    table.add_column("distribution", overflow="fold", ratio=1)
    table.add_column("hooks", overflow="fold", ratio=2)
    for row in rows:
        table.add_row(row["plugin"], row["distribution"], ", ".join(row["hooks"]))
    Console().print(table)


@hookimpl
def register_commands(register: Callable[[click.Group], None]) -> None:
    """Register the ``agent`` group."""
    register(agent_group)
