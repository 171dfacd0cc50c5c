"""The plugin host: built-ins and entry points load, the pin variable
selects, contract violations name the plugin, registries refuse duplicates."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from meta_spider.plugins import (
    DEFAULT_PLUGINS,
    PLUGINS_ENV_VAR,
    ComponentRegistry,
    DuplicateComponentError,
    PluginHookError,
    PluginLoadError,
    PluginRegistrationError,
    UnknownComponentError,
    collect,
    hookimpl,
    make_plugin_manager,
    plugin_distributions,
)

EXAMPLE = "example"  # entry-point name of tests/thirdparty/meta_spider_example_plugin


def module_with(name: str, **functions) -> types.ModuleType:  # type: ignore[no-untyped-def]
    module = types.ModuleType(name)
    for attribute, function in functions.items():
        setattr(module, attribute, function)
    return module


def only_with(plugin: types.ModuleType):  # type: ignore[no-untyped-def]
    """A manager with the built-ins and ``plugin`` (no entry points)."""
    return make_plugin_manager(load_entrypoints=False, extra_plugins=[plugin])


def test_import_stays_light() -> None:
    # The acceptance command, verbatim, in a fresh interpreter.
    code = (
        "import sys, meta_spider.agentcore, meta_spider.tools, meta_spider.native, meta_spider.plugins; "
        "assert 'torch' not in sys.modules and 'llama_cpp' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_builtins_and_the_installed_example_load(plugin_manager) -> None:
    distributions = plugin_distributions(plugin_manager)
    for module_name in DEFAULT_PLUGINS:
        assert distributions[module_name] == "meta-spider"
    assert distributions.get(EXAMPLE) == "meta-spider-example-plugin", (
        "the example plugin is not installed: scripts/test.sh pip-installs tests/thirdparty/*/"
    )


def test_collect_keeps_load_order(plugin_manager) -> None:
    plugins = [registration.plugin for registration in collect(plugin_manager, "register_tools")]
    assert plugins[:2] == ["meta_spider.tools.builtin", "meta_spider.tools.builtin"]
    assert plugins.index(EXAMPLE) > 1


def test_collect_rejects_an_unknown_hook(plugin_manager) -> None:
    with pytest.raises(ValueError, match="'register_widgets' is not a hook"):
        collect(plugin_manager, "register_widgets")


@pytest.mark.parametrize(
    "pin, loaded", [("", False), (EXAMPLE, True), (f" other , {EXAMPLE} ", True), ("other", False)]
)
def test_env_var_pins_third_party_plugins(monkeypatch: pytest.MonkeyPatch, pin: str, loaded: bool) -> None:
    monkeypatch.setenv(PLUGINS_ENV_VAR, pin)
    pm = make_plugin_manager()
    assert (EXAMPLE in plugin_distributions(pm)) is loaded
    assert all(name in plugin_distributions(pm) for name in DEFAULT_PLUGINS)  # built-ins always load


def test_a_pinned_name_no_plugin_has_is_warned_about(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(PLUGINS_ENV_VAR, f"{EXAMPLE}x, {EXAMPLE}")
    with caplog.at_level("WARNING", logger="meta_spider.plugins.manager"):
        pm = make_plugin_manager()
    assert EXAMPLE in plugin_distributions(pm)
    assert f"'{EXAMPLE}x', which no installed plugin is (installed: " in caplog.text and EXAMPLE in caplog.text
    caplog.clear()
    monkeypatch.setenv(PLUGINS_ENV_VAR, EXAMPLE)
    with caplog.at_level("WARNING", logger="meta_spider.plugins.manager"):
        make_plugin_manager()
    assert "no installed plugin" not in caplog.text


def test_misspelt_hook_names_the_plugin() -> None:
    @hookimpl
    def register_tool(register):  # type: ignore[no-untyped-def]  # sic: register_tools
        pass

    with pytest.raises(PluginLoadError) as info:
        only_with(module_with("typo_plugin", register_tool=register_tool))
    assert info.value.plugin == "typo_plugin"
    assert "register_tool" in info.value.reason
    assert "'typo_plugin'" in str(info.value) and PLUGINS_ENV_VAR in str(info.value)


def test_wrong_hook_argument_names_the_plugin() -> None:
    @hookimpl
    def register_tools(callback):  # type: ignore[no-untyped-def]
        pass

    with pytest.raises(PluginLoadError) as info:
        only_with(module_with("argname_plugin", register_tools=register_tools))
    assert info.value.plugin == "argname_plugin" and "callback" in info.value.reason


def test_a_hook_that_raises_names_the_plugin_and_hook() -> None:
    @hookimpl
    def register_backends(register):  # type: ignore[no-untyped-def]
        raise KeyError("missing setting")

    pm = only_with(module_with("raising_plugin", register_backends=register_backends))
    with pytest.raises(PluginHookError) as info:
        ComponentRegistry.from_plugins(pm, "register_backends", "backend")
    assert (info.value.plugin, info.value.hook) == ("raising_plugin", "register_backends")
    assert "missing setting" in info.value.reason


def test_component_registry_names_and_errors(plugin_manager) -> None:
    policies = ComponentRegistry.from_plugins(plugin_manager, "register_policies", "policy")
    assert {"direct", "echo-policy"} <= set(policies.names())
    assert policies.entry("echo-policy").plugin == EXAMPLE
    assert policies.entry("direct").plugin == "meta_spider.policies.plugin"
    renderers = ComponentRegistry.from_plugins(plugin_manager, "register_renderers", "renderer")
    assert renderers.create("default", threshold=0.5).threshold == 0.5
    with pytest.raises(UnknownComponentError) as info:
        renderers.create("fancy")
    assert info.value.available == renderers.names() and "fancy" in str(info.value)


def test_duplicate_component_names_both_plugins() -> None:
    @hookimpl
    def register_policies(register):  # type: ignore[no-untyped-def]
        register("direct", object)

    pm = only_with(module_with("shadow", register_policies=register_policies))
    with pytest.raises(DuplicateComponentError) as info:
        ComponentRegistry.from_plugins(pm, "register_policies", "policy")
    assert (info.value.first, info.value.second) == ("meta_spider.policies.plugin", "shadow")


@pytest.mark.parametrize("args", [("name",), ("", object), (3, object), ("name", "not callable")])
def test_malformed_registration_names_the_plugin(args: tuple) -> None:
    @hookimpl
    def register_datasets(register):  # type: ignore[no-untyped-def]
        register(*args)

    pm = only_with(module_with("malformed", register_datasets=register_datasets))
    with pytest.raises(PluginRegistrationError) as info:
        ComponentRegistry.from_plugins(pm, "register_datasets", "dataset")
    assert info.value.plugin == "malformed" and info.value.hook == "register_datasets"


def test_every_hook_is_a_documented_collection_hook() -> None:
    from meta_spider.plugins import hookspecs

    names = {
        "register_tools",
        "register_backends",
        "register_policies",
        "register_renderers",
        "register_commands",
        "register_datasets",
        "register_exporters",
    }
    pm = make_plugin_manager(load_entrypoints=False)
    for name in names:
        function = getattr(hookspecs, name)
        assert function.__doc__ and "Called" in function.__doc__
        assert list(function.__annotations__) == ["register", "return"]
        assert getattr(pm.hook, name).spec is not None
