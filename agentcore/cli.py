"""The host CLI: ``metaspider`` and its aliases.

``metaspider`` is a click group whose sub-groups come from the plugins'
``register_commands`` hook; ``meta-agent``, ``metaloom`` and ``metadeploy``
run the ``agent``, ``loom`` and ``deploy`` groups directly. Two plugins may
contribute commands to one group (the group's own options come from the
first); a command name given twice is an error naming both plugins.

A plugin that fails to load or register, and any project error
(:class:`~meta_spider.plugins.MetaSpiderError`) a command lets through, is
reported as one line with exit status 1, never as a traceback; an unexpected
exception is one line with status 2 (``META_SPIDER_DEBUG=1`` shows its
traceback). This module knows nothing about what the commands do.
"""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import dataclass
from typing import NoReturn, Sequence

import click

from meta_spider.plugins import (
    MetaSpiderError,
    PluginError,
    PluginManager,
    PluginRegistrationError,
    collect,
    make_plugin_manager,
)

__all__ = [
    "CliState",
    "build_cli",
    "command_groups",
    "main",
    "meta_agent",
    "metadeploy",
    "metaloom",
    "plugin_manager",
    "run_group",
]

HOST_NAME = "metaspider"
DEBUG_ENV_VAR = "META_SPIDER_DEBUG"
"""Set to 1 to let an unexpected exception show its traceback."""


@dataclass
class CliState:
    """What every command can reach through ``ctx.find_object(CliState)``."""

    pm: PluginManager


def plugin_manager(ctx: click.Context) -> PluginManager:
    """The plugin manager of this CLI run (built on demand when a group is
    invoked on its own, e.g. from a test)."""
    state = ctx.find_object(CliState)
    if state is None:
        state = CliState(make_plugin_manager())
        ctx.obj = state
    return state.pm


def command_groups(pm: PluginManager) -> dict[str, click.Group]:
    """The command groups the plugins registered, merged by name.

    Raises :class:`PluginRegistrationError` for a registration that is not a
    named ``click.Group`` or a command name two plugins both claim.
    """
    groups: dict[str, click.Group] = {}
    owners: dict[tuple[str, str], str] = {}
    for registration in collect(pm, "register_commands"):
        args = registration.args
        if len(args) != 1 or not isinstance(args[0], click.Group) or not args[0].name:
            raise PluginRegistrationError(
                registration.plugin,
                "register_commands",
                f"expected register(group: click.Group with a name), got {args!r}",
            )
        group: click.Group = args[0]
        name = group.name
        if name not in groups:
            groups[name] = group
        else:
            first = groups[name]
            if not getattr(first, "_meta_spider_merged", False):
                # Never mutate a plugin's own group object: merge into a copy.
                merged = click.Group(
                    name,
                    commands=dict(first.commands),
                    callback=first.callback,
                    params=list(first.params),
                    help=first.help,
                )
                merged._meta_spider_merged = True  # type: ignore[attr-defined]
                groups[name] = first = merged
            for command_name, command in group.commands.items():
                if command_name in first.commands:
                    raise PluginRegistrationError(
                        registration.plugin,
                        "register_commands",
                        f"command '{name} {command_name}' is already provided by plugin "
                        f"{owners.get((name, command_name), '?')!r}",
                    )
                first.add_command(command, command_name)
        for command_name in group.commands:
            owners.setdefault((name, command_name), registration.plugin)
    return groups


def build_cli(pm: PluginManager) -> click.Group:
    """The ``metaspider`` host group with every registered command group."""

    @click.group(name=HOST_NAME, help="meta-spider: a frozen LLM that reads its own activations.")
    @click.version_option(package_name="meta-spider", prog_name="meta-spider")
    @click.pass_context
    def host(ctx: click.Context) -> None:
        if ctx.find_object(CliState) is None:
            ctx.obj = CliState(pm)

    for group in command_groups(pm).values():
        host.add_command(group)
    return host


def _fail(prog_name: str, message: str, status: int = 1) -> NoReturn:
    # One line: a message that spans lines (a quoted file's text) is folded.
    click.echo(f"{prog_name}: error: {' '.join(message.split())}", err=True)
    sys.exit(status)


def run_group(group_name: str | None, argv: Sequence[str] | None, prog_name: str) -> None:
    """Load the plugins and run ``group_name`` (None: the whole host) as
    ``prog_name``; plugin failures and a missing group exit 1 with one line."""
    try:
        pm = make_plugin_manager()
        host = build_cli(pm)
    except PluginError as exc:
        _fail(prog_name, str(exc))
    command: click.Command | None = host if group_name is None else host.commands.get(group_name)
    if command is None:
        available = ", ".join(sorted(name for name in host.commands)) or "(none)"
        _fail(
            prog_name,
            f"no command group {group_name!r} is registered (registered groups: {available}). "
            f"Install or enable the plugin that provides it.",
        )
    try:
        command.main(args=list(argv) if argv is not None else None, prog_name=prog_name, obj=CliState(pm))
    except MetaSpiderError as exc:  # a plugin or a component failed while a command used it
        _fail(prog_name, _error_text(exc))
    except Exception as exc:
        if os.environ.get(DEBUG_ENV_VAR, "") not in ("", "0"):
            raise
        problem = storage_problem(exc)
        if problem is not None:  # the machine's, not a bug
            _fail(prog_name, problem)
        _fail(
            prog_name,
            f"unexpected {type(exc).__name__}: {_error_text(exc)} "
            f"(a bug in meta-spider or a plugin; {DEBUG_ENV_VAR}=1 shows the traceback)",
            status=2,
        )


STORAGE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "a file outgrew this process's file size limit (ulimit -f)",
}
"""The write failures that are the machine's, not the command's, by errno."""


def storage_problem(exc: BaseException) -> str | None:
    """What to tell the user when ``exc`` is a write the machine refused
    (:data:`STORAGE_ERRORS`); None for any other exception."""
    if not isinstance(exc, OSError) or exc.errno not in STORAGE_ERRORS:
        return None
    where = f" writing {exc.filename}" if exc.filename else ""
    return (f"{STORAGE_ERRORS[exc.errno]}{where}. Make room (or raise the limit) and run the same command again: "
            "what was written is kept, `metaloom collect` goes on from the last complete shard and "
            "`metaloom train --resume` from the last epoch")


def _error_text(exc: BaseException) -> str:
    try:
        return str(exc)[:2000]
    except Exception:  # an exception whose str() raises still gets its one line
        return f"{type(exc).__name__} (its message could not be shown)"


def main(argv: Sequence[str] | None = None) -> None:
    """``metaspider``: the host command."""
    run_group(None, argv, HOST_NAME)


def meta_agent(argv: Sequence[str] | None = None) -> None:
    """``meta-agent``: the ``agent`` group."""
    run_group("agent", argv, "meta-agent")


def metaloom(argv: Sequence[str] | None = None) -> None:
    """``metaloom``: the ``loom`` group."""
    run_group("loom", argv, "metaloom")


def metadeploy(argv: Sequence[str] | None = None) -> None:
    """``metadeploy``: the ``deploy`` group."""
    run_group("deploy", argv, "metadeploy")


if __name__ == "__main__":
    main()
