"""Builds plugin managers and collects what the plugins register.

The manager is made by a factory, never held in a module global, so tests and
embedding applications each get their own. Loading order: the built-in
modules of :data:`DEFAULT_PLUGINS`, then third-party entry points of group
:data:`ENTRYPOINT_GROUP` (optionally pinned by :data:`PLUGINS_ENV_VAR`).

This module knows nothing about what the registrations mean; registries
(tools, backends, policies, ...) interpret them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterable

import pluggy

from meta_spider.plugins import hookspecs
from meta_spider.plugins.errors import MetaSpiderError

logger = logging.getLogger(__name__)

ENTRYPOINT_GROUP = "meta_spider"
"""Entry-point group third-party packages use to expose a plugin module."""

PLUGINS_ENV_VAR = "META_SPIDER_PLUGINS"
"""Comma-separated entry-point names to load; when set, other third-party
plugins are skipped (an empty value loads none). Built-ins always load."""

DEFAULT_PLUGINS: tuple[str, ...] = (
    "meta_spider.tools.builtin",
    "meta_spider.backends.plugin",
    "meta_spider.policies.plugin",
    "meta_spider.agentcore.commands",
    "meta_spider.loom.plugin",
)
"""Built-in plugin modules, registered through the same hooks as third parties.
Each must import cheaply: heavy dependencies load inside the factories."""

BUILTIN_DISTRIBUTION = "meta-spider"

_PLUGIN_FAILURES = (Exception, SystemExit, KeyboardInterrupt)
"""What foreign plugin code may raise that is reported as that plugin's
failure: a ``sys.exit(0)`` at import or in a hook must not end the host with
status 0 and no output."""


class PluginError(MetaSpiderError):
    """Base class for plugin-host errors."""


class PluginHookError(PluginError, fields=("plugin", "hook", "reason")):
    """A loaded plugin's hook implementation raised while it was called.

    Carries the plugin's name, the hook and the original exception's text so
    the CLI can print one clean line instead of a traceback.
    """

    def describe(self) -> str:
        return (
            f"plugin {self.plugin!r} failed in hook {self.hook!r}: {self.reason}. "
            f"Fix or uninstall the plugin, or leave it out with {PLUGINS_ENV_VAR}."
        )


class PluginLoadError(PluginError, fields=("plugin", "distribution", "reason")):
    """A plugin failed to import or does not satisfy the hook contract."""

    def describe(self) -> str:
        where = f" (distribution {self.distribution!r})" if self.distribution else ""
        return (
            f"plugin {self.plugin!r}{where} could not be loaded: {self.reason}. "
            f"Fix or uninstall it, or pin the plugins to load with "
            f"{PLUGINS_ENV_VAR}=name1,name2 (empty loads no third-party plugin)."
        )


@dataclass(frozen=True)
class Registration:
    """One thing a plugin registered: the plugin's name and the arguments it
    passed to ``register``."""

    plugin: str
    args: tuple[Any, ...]


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers which distribution gave each plugin."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.distributions: dict[str, str] = {}


def make_plugin_manager(
    *,
    load_entrypoints: bool = True,
    extra_plugins: Iterable[object] = (),
) -> PluginManager:
    """Return a new plugin manager with the built-ins, optional third-party
    entry points and any ``extra_plugins`` (objects or modules) registered.

    Raises :class:`PluginLoadError` naming the plugin when one fails to import
    or implements a hook that does not exist (a misspelt hook).
    """
    pm = PluginManager()
    for module_name in DEFAULT_PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except _PLUGIN_FAILURES as exc:
            raise PluginLoadError(module_name, BUILTIN_DISTRIBUTION, repr(exc)) from exc
        _register(pm, module, module_name, BUILTIN_DISTRIBUTION)

    if load_entrypoints:
        for entry_point, dist_name in _selected_entrypoints():
            try:
                plugin = entry_point.load()
            except _PLUGIN_FAILURES as exc:  # any import-time failure of foreign code
                raise PluginLoadError(entry_point.name, dist_name, repr(exc)) from exc
            _register(pm, plugin, entry_point.name, dist_name)

    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        _register(pm, plugin, name, None)
    return pm


def plugin_distributions(pm: PluginManager) -> dict[str, str]:
    """Map each loaded plugin's name to the distribution that provided it."""
    return dict(pm.distributions)


def collect(pm: pluggy.PluginManager, hook_name: str) -> list[Registration]:
    """Call every implementation of collection hook ``hook_name`` and return
    what each registered, tagged with the plugin's name, in call order.

    Raises :class:`PluginHookError` naming the plugin when an implementation
    raises, and ``ValueError`` for a hook name the contract does not define.
    """
    caller = getattr(pm.hook, hook_name, None)
    if caller is None or not hasattr(caller, "get_hookimpls"):
        raise ValueError(f"{hook_name!r} is not a hook of the meta_spider contract")
    registrations: list[Registration] = []
    # get_hookimpls() lists implementations in registration order (pluggy's
    # own calls run them in reverse); collecting in load order keeps the
    # built-ins first in every listing.
    for impl in caller.get_hookimpls():

        def register(*args: Any, _plugin: str = impl.plugin_name) -> None:
            registrations.append(Registration(_plugin, args))

        try:
            impl.function(register=register)
        except _PLUGIN_FAILURES as exc:  # foreign code: report it under the plugin's name
            raise PluginHookError(impl.plugin_name, hook_name, repr(exc)) from exc
    return registrations


def _register(pm: PluginManager, plugin: object, name: str, dist: str | None) -> None:
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        raise PluginLoadError(name, dist, str(exc)) from exc
    pm.distributions[name] = dist or "(in-process)"


def _selected_entrypoints() -> list[tuple[importlib.metadata.EntryPoint, str | None]]:
    pinned = os.environ.get(PLUGINS_ENV_VAR)
    wanted = None if pinned is None else {n.strip() for n in pinned.split(",") if n.strip()}
    selected = []
    for dist in importlib.metadata.distributions():
        for entry_point in dist.entry_points:
            if entry_point.group != ENTRYPOINT_GROUP:
                continue
            if wanted is not None and entry_point.name not in wanted:
                continue
            selected.append((entry_point, dist.metadata["Name"]))
    if wanted:
        unknown = sorted(wanted - {entry_point.name for entry_point, _ in selected})
        if unknown:
            installed = sorted({entry_point.name for dist in importlib.metadata.distributions()
                                for entry_point in dist.entry_points if entry_point.group == ENTRYPOINT_GROUP})
            logger.warning("%s names %s, which no installed plugin is (installed: %s); check the spelling",
                           PLUGINS_ENV_VAR, ", ".join(map(repr, unknown)), ", ".join(installed) or "none")
    # Several installs of one distribution (e.g. editable plus a stale copy)
    # would register one name twice; the first on sys.path wins, as for imports.
    seen: set[str] = set()
    unique = []
    for entry_point, dist_name in selected:
        if entry_point.name not in seen:
            seen.add(entry_point.name)
            unique.append((entry_point, dist_name))
    return unique
