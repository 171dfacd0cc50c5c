"""Hostile plugins: ``sys.exit(0)`` or ``KeyboardInterrupt`` at import or in
a hook is that plugin's failure (status 1, the plugin named), never a silent
exit 0 with no output."""

from __future__ import annotations

from pathlib import Path

import pytest

from meta_spider.plugins import MetaSpiderError, PLUGINS_ENV_VAR, PluginError, PluginLoadError, make_plugin_manager
from test_plugins_broken import fake_distribution, run_script

AT_IMPORT = "import sys\nsys.exit(0)\n"
IN_HOOK = (
    "import sys\n"
    "from meta_spider.plugins import hookimpl\n"
    "@hookimpl\n"
    "def register_tools(register):\n"
    "    sys.exit(0)\n"
)
INTERRUPT_IN_HOOK = IN_HOOK.replace("sys.exit(0)", "raise KeyboardInterrupt")


@pytest.mark.parametrize("source", [AT_IMPORT, IN_HOOK, INTERRUPT_IN_HOOK], ids=["import", "hook", "interrupt"])
def test_a_plugin_that_exits_is_reported_by_the_cli(tmp_path: Path, source: str) -> None:
    site = fake_distribution(tmp_path / "site", "meta-spider-quitter", "quitter", "meta_spider_quitter", source)
    result = run_script("meta-agent", ["tools", "--json"], site)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("meta-agent: error: plugin 'quitter'")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_sys_exit_at_import_is_a_plugin_load_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = fake_distribution(tmp_path / "site", "meta-spider-quitter", "quitter", "meta_spider_quitter", AT_IMPORT)
    monkeypatch.delenv(PLUGINS_ENV_VAR, raising=False)
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PluginLoadError) as info:
        make_plugin_manager()
    assert info.value.plugin == "quitter" and "SystemExit" in info.value.reason


def test_every_area_error_shares_the_project_root() -> None:
    from meta_spider.agentcore.errors import AgentError
    from meta_spider.backends.base import BackendError
    from meta_spider.native.errors import NativeToolError
    from meta_spider.tools.calculator import CalculatorError
    from meta_spider.tools.errors import ToolError
    from meta_spider.wrapper.errors import WrapperError

    for area in (AgentError, BackendError, NativeToolError, ToolError, WrapperError, PluginError, CalculatorError):
        assert issubclass(area, MetaSpiderError), area


BUGGY_COMMAND = (
    "import click\n"
    "from meta_spider.plugins import hookimpl\n"
    "@click.group('agent')\n"
    "def group():\n"
    "    pass\n"
    "@group.command('boom')\n"
    "def boom():\n"
    "    raise ValueError('a bug\\nover two lines')\n"
    "@hookimpl\n"
    "def register_commands(register):\n"
    "    register(group)\n"
)


def test_an_unexpected_exception_in_a_command_is_one_line_with_status_2(tmp_path: Path) -> None:
    site = fake_distribution(tmp_path / "site", "meta-spider-buggy", "buggy", "meta_spider_buggy", BUGGY_COMMAND)
    result = run_script("meta-agent", ["boom"], site)
    assert result.returncode == 2
    assert result.stderr == (
        "meta-agent: error: unexpected ValueError: a bug over two lines (a bug in meta-spider or a plugin; "
        "META_SPIDER_DEBUG=1 shows the traceback)\n"
    )
