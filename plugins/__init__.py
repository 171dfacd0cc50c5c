"""The plugin host: the hook contract, the manager factory and the registries.

Everything that extends meta-spider (tools, inference backends, policies,
action renderers, CLI command groups, datasets, exporters) arrives through the
hooks in :mod:`meta_spider.plugins.hookspecs`. The built-ins are plugins too:
they register through the same hooks a third-party package uses.
"""

from meta_spider.plugins.errors import MetaSpiderError
from meta_spider.plugins.hookspecs import hookimpl, hookspec
from meta_spider.plugins.manager import (
    DEFAULT_PLUGINS,
    ENTRYPOINT_GROUP,
    PLUGINS_ENV_VAR,
    PluginError,
    PluginHookError,
    PluginLoadError,
    PluginManager,
    Registration,
    collect,
    make_plugin_manager,
    plugin_distributions,
)
from meta_spider.plugins.registry import (
    ComponentEntry,
    ComponentRegistry,
    DuplicateComponentError,
    PluginRegistrationError,
    UnknownComponentError,
)

__all__ = [
    "ComponentEntry",
    "ComponentRegistry",
    "DuplicateComponentError",
    "PluginHookError",
    "PluginRegistrationError",
    "UnknownComponentError",
    "DEFAULT_PLUGINS",
    "ENTRYPOINT_GROUP",
    "MetaSpiderError",
    "PLUGINS_ENV_VAR",
    "PluginError",
    "PluginLoadError",
    "PluginManager",
    "Registration",
    "collect",
    "hookimpl",
    "hookspec",
    "make_plugin_manager",
    "plugin_distributions",
]
