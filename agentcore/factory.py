"""Builds a :class:`MetaAgent` from plugin-registered names.

``backend``, ``policy`` and ``renderer`` are looked up in what the plugins
registered (``register_backends`` / ``register_policies`` /
``register_renderers``) and built with their settings; the tools come from
``register_tools``. This is how the CLI and run manifests turn names into an
agent; Python callers may just construct :class:`MetaAgent` directly.
"""

from __future__ import annotations

from typing import Any, Mapping

import pluggy

from meta_spider.agentcore.loop import MetaAgent
from meta_spider.backends.base import InferenceBackend
from meta_spider.plugins import ComponentRegistry
from meta_spider.tools import KnowledgeBase, ToolRegistry

__all__ = ["build_agent"]


def build_agent(
    pm: pluggy.PluginManager,
    *,
    backend: str | InferenceBackend,
    backend_settings: Mapping[str, Any] | None = None,
    policy: str = "direct",
    policy_settings: Mapping[str, Any] | None = None,
    renderer: str = "default",
    renderer_settings: Mapping[str, Any] | None = None,
    knowledge_base: KnowledgeBase | None = None,
    max_steps: int = 8,
    system_prompt: str | None = None,
) -> MetaAgent:
    """Resolve the named components through ``pm`` and return the agent.

    Raises :class:`~meta_spider.plugins.UnknownComponentError` naming the
    missing component and the registered choices.
    """
    if isinstance(backend, str):
        backend = ComponentRegistry.from_plugins(pm, "register_backends", "backend").create(
            backend, **dict(backend_settings or {})
        )
    return MetaAgent(
        backend=backend,
        policy=ComponentRegistry.from_plugins(pm, "register_policies", "policy").create(
            policy, **dict(policy_settings or {})
        ),
        renderer=ComponentRegistry.from_plugins(pm, "register_renderers", "renderer").create(
            renderer, **dict(renderer_settings or {})
        ),
        tools=ToolRegistry.from_plugins(pm, knowledge_base=knowledge_base),
        max_steps=max_steps,
        system_prompt=system_prompt,
    )
