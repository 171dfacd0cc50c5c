"""The host CLI: command groups from plugins, the aliases, and the agent
group's ``tools`` and ``plugins`` listings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from meta_spider.agentcore.cli import CliState, build_cli, command_groups, run_group
from meta_spider.plugins import PLUGINS_ENV_VAR, PluginRegistrationError, hookimpl, make_plugin_manager


def commands_plugin(name: str, group: click.Group) -> types.ModuleType:
    module = types.ModuleType(name)

    @hookimpl
    def register_commands(register):  # type: ignore[no-untyped-def]
        register(group)

    module.register_commands = register_commands  # type: ignore[attr-defined]
    return module


def invoke(pm, *args: str):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(build_cli(pm), list(args), obj=CliState(pm), env={"COLUMNS": "200"})
    return result


def test_agent_tools_lists_the_third_party_tool(plugin_manager) -> None:
    result = invoke(plugin_manager, "agent", "tools")
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") >= 4}
    assert "meta-spider-example-plugin" in lines["reverse_text"] and "example" in lines["reverse_text"]
    assert "meta_spider.tools.builtin" in lines["calculator"]


def test_agent_tools_json(plugin_manager) -> None:
    result = invoke(plugin_manager, "agent", "tools", "--json")
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["reverse_text"] == {
        "name": "reverse_text",
        "plugin": "example",
        "distribution": "meta-spider-example-plugin",
        "description": "Reverse a piece of text character by character.",
    }
    assert rows["lookup"]["plugin"] == "meta_spider.tools.builtin"


def test_agent_plugins_lists_plugins_and_distributions(plugin_manager) -> None:
    rows = {row["plugin"]: row for row in json.loads(invoke(plugin_manager, "agent", "plugins", "--json").output)}
    assert rows["example"]["distribution"] == "meta-spider-example-plugin"
    assert rows["example"]["hooks"] == ["register_policies", "register_tools"]
    assert rows["meta_spider.agentcore.commands"] == {
        "plugin": "meta_spider.agentcore.commands",
        "distribution": "meta-spider",
        "hooks": ["register_commands"],
    }
    table = invoke(plugin_manager, "agent", "plugins").output
    assert "meta-spider-example-plugin" in table and "register_commands" in table


def test_real_console_script_lists_the_third_party_tool() -> None:
    script = Path(sys.executable).parent / "meta-agent"
    env = {k: v for k, v in os.environ.items() if k != PLUGINS_ENV_VAR}
    result = subprocess.run([str(script), "tools", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert {"name": "reverse_text", "plugin": "example"}.items() <= next(
        row for row in json.loads(result.stdout) if row["name"] == "reverse_text"
    ).items()


def test_aliases_run_their_group(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv(PLUGINS_ENV_VAR, raising=False)
    with pytest.raises(SystemExit) as info:
        run_group("agent", ["tools", "--json"], "meta-agent")
    assert info.value.code == 0
    assert "reverse_text" in capsys.readouterr().out


def test_an_unregistered_group_gives_a_clear_message(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        run_group("no-such-group", [], "metanothing")
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("metanothing: error: no command group 'no-such-group' is registered")
    assert "agent" in err and "Traceback" not in err


def test_plugins_can_add_commands_to_a_group() -> None:
    extra = click.Group("agent")

    @extra.command("hello")
    def hello() -> None:
        click.echo("hello from a plugin")

    pm = make_plugin_manager(load_entrypoints=False, extra_plugins=[commands_plugin("greeter", extra)])
    groups = command_groups(pm)
    assert {"tools", "plugins", "hello"} <= set(groups["agent"].commands)
    assert invoke(pm, "agent", "hello").output == "hello from a plugin\n"
    # The built-in group object itself is left untouched.
    from meta_spider.agentcore.commands import agent_group

    assert "hello" not in agent_group.commands


def test_a_command_clash_names_both_plugins() -> None:
    extra = click.Group("agent")
    extra.command("tools")(lambda: None)
    pm = make_plugin_manager(load_entrypoints=False, extra_plugins=[commands_plugin("clasher", extra)])
    with pytest.raises(PluginRegistrationError) as info:
        command_groups(pm)
    assert info.value.plugin == "clasher"
    assert "'agent tools' is already provided by plugin 'meta_spider.agentcore.commands'" in info.value.reason


def test_registering_a_non_group_names_the_plugin() -> None:
    pm = make_plugin_manager(load_entrypoints=False, extra_plugins=[commands_plugin("odd", click.Command("solo"))])
    with pytest.raises(PluginRegistrationError, match="click.Group") as info:
        command_groups(pm)
    assert info.value.plugin == "odd"


def test_host_help_lists_groups(plugin_manager) -> None:
    result = invoke(plugin_manager, "--help")
    assert result.exit_code == 0 and "agent" in result.output


def test_a_group_invoked_on_its_own_builds_its_plugin_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    from meta_spider.agentcore.commands import agent_group

    monkeypatch.delenv(PLUGINS_ENV_VAR, raising=False)
    result = CliRunner().invoke(agent_group, ["tools", "--json"])
    assert result.exit_code == 0, result.output
    assert "reverse_text" in result.output
