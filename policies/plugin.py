"""Built-in policies plugin: the ``direct`` policy and the ``default`` renderer.

Registered through the same hooks third-party policies use; the Doubter
policy arrives later through ``register_policies`` as well.
"""

from __future__ import annotations

from typing import Any, Callable

from meta_spider.plugins import hookimpl
from meta_spider.policies.direct import DirectPolicy
from meta_spider.policies.renderer import DefaultRenderer


@hookimpl
def register_policies(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ``direct``."""
    register("direct", DirectPolicy)


@hookimpl
def register_renderers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ``default``."""
    register("default", DefaultRenderer)
