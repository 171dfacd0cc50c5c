"""Name -> factory registries built from the collection hooks.

Backends, policies, renderers, datasets and exporters all register as
``register(name, factory)``. :class:`ComponentRegistry` gathers one hook's
registrations, refuses a name given twice (naming both plugins), and builds a
component by name with ``create(name, **settings)``.

This module knows nothing about what the factories build; it never calls a
factory until ``create`` is asked to, so registering a heavy backend costs
nothing until it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pluggy

from meta_spider.plugins.manager import PluginError, collect

__all__ = [
    "ComponentEntry",
    "ComponentRegistry",
    "DuplicateComponentError",
    "PluginRegistrationError",
    "UnknownComponentError",
]


class PluginRegistrationError(PluginError, fields=("plugin", "hook", "reason")):
    """A plugin called ``register`` with arguments the hook does not accept."""

    template = "plugin {plugin!r} registered something invalid in {hook!r}: {reason}"


class DuplicateComponentError(PluginError, fields=("kind", "name", "first", "second")):
    """Two plugins registered one name for the same kind of component."""

    template = (
        "{kind} {name!r} is registered twice: by plugin {first!r} and by plugin "
        "{second!r}. Rename one, or leave one plugin out with META_SPIDER_PLUGINS."
    )


class UnknownComponentError(PluginError, LookupError, fields=("kind", "name", "available")):
    """A name was asked for that no plugin registered."""

    def describe(self) -> str:
        choices = ", ".join(self.available) or "(none)"
        return (
            f"no {self.kind} named {self.name!r} is registered; available: {choices}. "
            f"Install or enable the plugin that provides it."
        )


@dataclass(frozen=True)
class ComponentEntry:
    """One registered factory and the plugin that gave it."""

    name: str
    factory: Callable[..., Any]
    plugin: str


class ComponentRegistry:
    """The factories one hook registered, by name.

    ``kind`` is a human word for error messages (``"backend"``, ``"policy"``).
    """

    def __init__(self, kind: str) -> None:
        if not kind:
            raise ValueError(f"a registry needs a kind for its messages, got {kind!r}")
        self.kind = kind
        self._entries: dict[str, ComponentEntry] = {}

    @classmethod
    def from_plugins(cls, pm: pluggy.PluginManager, hook_name: str, kind: str) -> "ComponentRegistry":
        """Collect ``hook_name``'s ``register(name, factory)`` calls from every
        plugin. Raises :class:`PluginRegistrationError` for a malformed call and
        :class:`DuplicateComponentError` for a name given twice."""
        registry = cls(kind)
        for registration in collect(pm, hook_name):
            args = registration.args
            if (
                len(args) != 2
                or not isinstance(args[0], str)
                or not args[0]
                or not callable(args[1])
            ):
                raise PluginRegistrationError(
                    registration.plugin,
                    hook_name,
                    f"expected register(name: str, factory: callable), got {args!r}",
                )
            registry.add(args[0], args[1], plugin=registration.plugin)
        return registry

    def add(self, name: str, factory: Callable[..., Any], *, plugin: str) -> None:
        """Add one factory; a name already present raises
        :class:`DuplicateComponentError`."""
        if name in self._entries:
            raise DuplicateComponentError(self.kind, name, self._entries[name].plugin, plugin)
        self._entries[name] = ComponentEntry(name, factory, plugin)

    def entry(self, name: str) -> ComponentEntry:
        """The entry for ``name``; raises :class:`UnknownComponentError`."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self.kind, name, self.names()) from None

    def create(self, name: str, **settings: Any) -> Any:
        """Build the component ``name`` with ``factory(**settings)``."""
        return self.entry(name).factory(**settings)

    def names(self) -> tuple[str, ...]:
        """Registered names, sorted."""
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[ComponentEntry]:
        return iter(self._entries[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._entries)
