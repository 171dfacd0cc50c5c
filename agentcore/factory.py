"""The one way to build a :class:`MetaAgent`: :func:`build_agent`.

The quickstart, ``meta-agent run``, ``chat`` and ``serve`` (through
:class:`~meta_spider.agentcore.launch.AgentLauncher`, which only turns
run.json and the command's options into these arguments) and the loom's
:class:`~meta_spider.loom.evaluate.agentic.AgentComparison` all build their
agents here, so every agent gets the same three things: components named
through the plugins (``register_backends``, ``register_policies``,
``register_renderers``, ``register_tools``); a policy built under the
policy-factory contract of ``register_policies`` (:func:`build_policy`: the
run's calibration goes to the factories that declare it); and a backend
wrapped in :class:`~meta_spider.backends.StopBackend`, so every reply ends
at its turn's end. A component given as an object is used as it is.

This module knows nothing about run directories, scripts or terminals.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Mapping

import pluggy

from meta_spider.agentcore.errors import AgentError
from meta_spider.agentcore.loop import MetaAgent
from meta_spider.backends import StopBackend
from meta_spider.backends.base import InferenceBackend, WrappedBackend, use_tool_family
from meta_spider.plugins import ComponentRegistry, make_plugin_manager
from meta_spider.policies.base import ActionRenderer, Policy
from meta_spider.tools import KnowledgeBase, ToolRegistry

__all__ = [
    "ComponentSettingsError",
    "POLICY_KEYWORDS",
    "PolicyContractError",
    "build_agent",
    "build_backend",
    "build_policy",
    "build_renderer",
    "rebuild_agent",
    "stop_at_turn_end",
]

POLICY_KEYWORDS = ("calibration",)
"""The keywords the host hands a policy factory besides its settings, to the
factories that name them in ``host_keywords`` (see ``register_policies``)."""

_HOOKS = {"backend": "register_backends", "policy": "register_policies", "renderer": "register_renderers"}


class ComponentSettingsError(AgentError, TypeError, fields=("kind", "name", "settings", "reason")):
    """A policy, backend or renderer factory refused its settings (missing or unknown keywords)."""

    template = ("cannot build {kind} {name!r} from the settings given (keys: {given}): {reason}. "
                "Pass a --run-dir whose run.json has the {kind}'s settings, or choose another {kind}.")

    def __post_init__(self) -> None:
        self.given = ", ".join(sorted(self.settings)) or "none"


class PolicyContractError(AgentError, TypeError, fields=("name", "declared")):
    """A policy factory's ``host_keywords`` is not a tuple of keywords the host passes."""

    template = ("policy {name!r} declares host_keywords={declared!r:.80}; it must be a tuple of names from "
                "{keywords} (see register_policies in meta_spider.plugins.hookspecs). Fix the plugin that "
                "registers it, or leave it out with META_SPIDER_PLUGINS.")

    def __post_init__(self) -> None:
        self.keywords = POLICY_KEYWORDS


def _factory(pm: pluggy.PluginManager, kind: str, name: str) -> Any:
    return ComponentRegistry.from_plugins(pm, _HOOKS[kind], kind).entry(name).factory  # unknown: names the choices


def _call(kind: str, name: str, factory: Any, settings: Mapping[str, Any],
          host: Mapping[str, Any] | None = None) -> Any:
    arguments = {**(host or {}), **settings}  # a setting given explicitly wins over the host's value
    try:
        return factory(**arguments)
    except TypeError as exc:  # a missing or unexpected keyword: say which settings were given
        raise ComponentSettingsError(kind, name, arguments, str(exc)) from exc


def _host_keywords(name: str, factory: Any) -> tuple[str, ...]:
    declared = getattr(factory, "host_keywords", ())
    if not isinstance(declared, tuple) or not set(declared) <= set(POLICY_KEYWORDS):
        raise PolicyContractError(name, declared)
    return declared


def build_policy(pm: pluggy.PluginManager, name: str, settings: Mapping[str, Any] | None = None, *,
                 calibration: Mapping[str, Any] | None = None) -> Policy:
    """Policy ``name`` built as ``register_policies`` documents:
    ``factory(**settings)``, plus ``calibration`` (run.json's calibration
    object, or None) when the factory lists it in ``host_keywords``.

    Raises :class:`~meta_spider.plugins.UnknownComponentError` for an
    unknown name, :class:`ComponentSettingsError` when the factory refuses
    its keywords and :class:`PolicyContractError` for a malformed
    ``host_keywords``.
    """
    factory = _factory(pm, "policy", name)
    offered = {"calibration": dict(calibration) if calibration else None}  # an empty one calibrates nothing
    host = {keyword: offered[keyword] for keyword in _host_keywords(name, factory)}
    return _call("policy", name, factory, dict(settings or {}), host)


def build_backend(pm: pluggy.PluginManager, name: str, settings: Mapping[str, Any] | None = None) -> InferenceBackend:
    """Backend ``name`` from ``register_backends``, with ``factory(**settings)``
    (not yet wrapped: :func:`build_agent` does that)."""
    return _call("backend", name, _factory(pm, "backend", name), dict(settings or {}))


def build_renderer(pm: pluggy.PluginManager, name: str = "default",
                   settings: Mapping[str, Any] | None = None) -> ActionRenderer:
    """Renderer ``name`` from ``register_renderers``, with ``factory(**settings)``."""
    return _call("renderer", name, _factory(pm, "renderer", name), dict(settings or {}))


def stop_at_turn_end(backend: InferenceBackend) -> InferenceBackend:
    """``backend`` in a :class:`StopBackend`, unless one already wraps it
    (anywhere in its chain of wrappers: a second one would cut nothing more)."""
    layer: Any = backend
    while isinstance(layer, WrappedBackend):
        if isinstance(layer, StopBackend):
            return backend
        layer = layer.inner
    return StopBackend(backend)


def build_agent(
    pm: pluggy.PluginManager | None,
    *,
    backend: str | InferenceBackend,
    backend_settings: Mapping[str, Any] | None = None,
    policy: str | Policy = "direct",
    policy_settings: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
    renderer: str | ActionRenderer = "default",
    renderer_settings: Mapping[str, Any] | None = None,
    tools: ToolRegistry | None = None,
    knowledge_base: KnowledgeBase | None = None,
    max_steps: int = 8,
    system_prompt: str | None = None,
    context: str = "all",
    direct_tools: tuple[str, ...] = (),
    ground_arguments: bool = False,
    grounded_tools: tuple[str, ...] = (),
) -> MetaAgent:
    """The agent: ``backend``, ``policy`` and ``renderer`` by registered name
    (built with their settings; the policy with ``calibration`` through
    :func:`build_policy`) or as objects; the backend wrapped by
    :func:`stop_at_turn_end`; ``tools`` as given, else every registered tool
    (``lookup`` answering from ``knowledge_base``); ``context``: what the
    model reads of a session (:attr:`MetaAgent.context`); ``direct_tools``:
    tools whose result is the answer (:attr:`MetaAgent.direct_tools`);
    ``ground_arguments``: calls' arguments grounded in the user's words
    (:attr:`MetaAgent.ground_arguments`); ``grounded_tools``: tools whose
    arguments must be the user's words (:attr:`MetaAgent.grounded_tools`). A renderer with a
    ``family`` set (``--tool-family``) has the backend's prompts show that
    family's syntax too (:func:`~meta_spider.backends.base.use_tool_family`).
    ``pm`` may be None when nothing is looked up by name (a default plugin
    manager is made otherwise).

    Raises :class:`~meta_spider.plugins.UnknownComponentError` naming the
    missing component and the registered choices.
    """
    if tools is not None and knowledge_base is not None:
        raise ValueError("give tools or a knowledge_base for the registered tools' lookup, not both")
    manager = pm

    def plugins() -> pluggy.PluginManager:  # made only when a name is looked up
        nonlocal manager
        if manager is None:
            manager = make_plugin_manager()
        return manager

    if isinstance(backend, str):
        backend = build_backend(plugins(), backend, backend_settings)
    if isinstance(policy, str):
        policy = build_policy(plugins(), policy, policy_settings, calibration=calibration)
    if isinstance(renderer, str):
        renderer = build_renderer(plugins(), renderer, renderer_settings)
    if tools is None:
        tools = ToolRegistry.from_plugins(plugins(), knowledge_base=knowledge_base)
    family = getattr(renderer, "family", None)
    if family is not None:  # the prompts teach the syntax the renderer parses
        use_tool_family(backend, family)
    return MetaAgent(backend=stop_at_turn_end(backend), policy=policy, renderer=renderer, tools=tools,
                     max_steps=max_steps, system_prompt=system_prompt, context=context,
                     direct_tools=direct_tools, ground_arguments=ground_arguments, grounded_tools=grounded_tools)


def rebuild_agent(agent: MetaAgent, *, backend: InferenceBackend) -> MetaAgent:
    """``agent`` with another backend (a request's view of its own), built
    by :func:`build_agent` with every setting ``agent`` has that
    :func:`build_agent` takes (found by name, so a new setting is carried
    without being listed here)."""
    taken = set(inspect.signature(build_agent).parameters) - {"pm", "backend"}
    settings = {field.name: getattr(agent, field.name) for field in dataclasses.fields(agent) if field.name in taken}
    return build_agent(None, backend=backend, **settings)
