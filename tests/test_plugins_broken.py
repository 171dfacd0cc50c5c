"""Broken third-party plugins: one that raises on import and one with a
misspelt hook, each exposed through a real entry point.

The broken packages are *not* pip-installed (an installed broken plugin would
break every plugin manager in the suite). Each test writes a ``*.dist-info``
with an ``entry_points.txt`` in group ``meta_spider`` into a temporary folder
and puts that folder on ``sys.path`` (in-process) or PYTHONPATH (console
scripts): ``importlib.metadata`` then finds it exactly as it finds an
installed distribution.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meta_spider.agentcore.cli import meta_agent
from meta_spider.plugins import PLUGINS_ENV_VAR, PluginLoadError, make_plugin_manager, plugin_distributions

BROKEN_MODULE = Path(__file__).parent / "thirdparty" / "meta_spider_broken_plugin" / "meta_spider_broken_plugin.py"
TYPO_SOURCE = '''
from meta_spider.plugins import hookimpl

@hookimpl
def register_tool(register):  # sic: the hook is register_tools
    pass
'''


def fake_distribution(root: Path, dist_name: str, entry_name: str, module_name: str, source: str) -> Path:
    """Write ``module_name``.py and an installed-looking dist-info for it under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module_name}.py").write_text(source, encoding="utf-8")
    info = root / f"{dist_name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[meta_spider]\n{entry_name} = {module_name}\n", encoding="utf-8")
    return root


@pytest.fixture
def broken_root(tmp_path: Path) -> Path:
    return fake_distribution(
        tmp_path / "site", "meta-spider-broken-plugin", "broken", "meta_spider_broken_plugin", BROKEN_MODULE.read_text()
    )


@pytest.fixture
def typo_root(tmp_path: Path) -> Path:
    return fake_distribution(
        tmp_path / "site", "meta-spider-typo-plugin", "typo", "meta_spider_typo_plugin", TYPO_SOURCE
    )


def run_script(name: str, args: list[str], site: Path) -> subprocess.CompletedProcess[str]:
    """Run an installed console script of this environment with ``site`` importable."""
    script = Path(sys.executable).parent / name
    assert script.exists(), f"console script {script} is not installed"
    env = {k: v for k, v in os.environ.items() if k != PLUGINS_ENV_VAR}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=env, timeout=120)


def test_plugin_raising_on_import_gives_an_error_naming_it(broken_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PLUGINS_ENV_VAR, raising=False)
    monkeypatch.syspath_prepend(str(broken_root))
    with pytest.raises(PluginLoadError) as info:
        make_plugin_manager()
    assert info.value.plugin == "broken"
    assert info.value.distribution == "meta-spider-broken-plugin"
    assert "broken on purpose" in info.value.reason
    assert "'broken' (distribution 'meta-spider-broken-plugin')" in str(info.value)


def test_pinning_the_plugins_leaves_the_broken_one_out(broken_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(broken_root))
    monkeypatch.setenv(PLUGINS_ENV_VAR, "example")
    assert "broken" not in plugin_distributions(make_plugin_manager())


def test_misspelt_hook_in_an_entry_point_names_it(typo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PLUGINS_ENV_VAR, raising=False)
    monkeypatch.syspath_prepend(str(typo_root))
    with pytest.raises(PluginLoadError) as info:
        make_plugin_manager()
    assert (info.value.plugin, info.value.distribution) == ("typo", "meta-spider-typo-plugin")
    assert "register_tool" in info.value.reason


def test_cli_reports_a_broken_plugin_in_one_line(broken_root: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv(PLUGINS_ENV_VAR, raising=False)
    monkeypatch.syspath_prepend(str(broken_root))
    with pytest.raises(SystemExit) as info:
        meta_agent(["tools"])
    assert info.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("meta-agent: error: plugin 'broken' (distribution 'meta-spider-broken-plugin')")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


@pytest.mark.parametrize(
    "fixture, script, args, plugin",
    [("broken_root", "meta-agent", ["tools"], "broken"), ("typo_root", "metaspider", ["agent", "plugins"], "typo")],
)
def test_console_scripts_report_broken_plugins_cleanly(
    request: pytest.FixtureRequest, fixture: str, script: str, args: list[str], plugin: str
) -> None:
    site = request.getfixturevalue(fixture)
    result = run_script(script, args, site)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{script}: error: plugin {plugin!r}")
    assert result.stdout == ""


def test_cli_reports_a_plugin_failing_inside_a_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    source = (
        "from meta_spider.plugins import hookimpl\n"
        "@hookimpl\n"
        "def register_tools(register):\n"
        "    raise RuntimeError('no tools today')\n"
    )
    site = fake_distribution(
        tmp_path / "site", "meta-spider-grumpy-plugin", "grumpy", "meta_spider_grumpy_plugin", source
    )
    monkeypatch.delenv(PLUGINS_ENV_VAR, raising=False)
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(SystemExit) as info:
        meta_agent(["tools"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("meta-agent: error: plugin 'grumpy' failed in hook 'register_tools'")
    assert "no tools today" in err and "Traceback" not in err


def test_broken_plugin_is_not_installed() -> None:
    # Guard for the design above: scripts/test.sh installs every tests/thirdparty/*/
    # that has a pyproject.toml, so the broken one must not have one.
    assert not (BROKEN_MODULE.parent / "pyproject.toml").exists()
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("meta-spider-broken-plugin")
