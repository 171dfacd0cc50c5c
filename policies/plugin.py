"""Built-in policies plugin: ``direct``, ``doubter`` and the ``probe``
baseline, and the ``default`` renderer.

Registered through the same hooks third-party policies use.
"""

from __future__ import annotations

from typing import Any, Callable

from meta_spider.plugins import hookimpl
from meta_spider.policies.direct import DirectPolicy
from meta_spider.policies.doubter import DoubterPolicy
from meta_spider.policies.probe import ProbePolicy
from meta_spider.policies.renderer import DefaultRenderer


@hookimpl
def register_policies(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ``direct``, ``doubter`` and ``probe``."""
    register("direct", DirectPolicy)
    register("doubter", DoubterPolicy)
    register("probe", ProbePolicy)


@hookimpl
def register_renderers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ``default``."""
    register("default", DefaultRenderer)
