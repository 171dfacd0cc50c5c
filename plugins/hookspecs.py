"""The whole plugin contract of meta-spider.

Every hook is a *collection* hook: it receives a ``register`` callback and
calls it once per thing it contributes. The host calls each plugin's
implementation with its own ``register`` so that every registration knows the
plugin it came from (``meta-agent tools`` shows it). Duplicate names are
resolved by the registry that consumes them, never silently.

A plugin is any module or object with functions decorated by
:data:`hookimpl`; third-party packages expose one through the entry-point
group ``meta_spider``.

This module only describes; it imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    import click

PROJECT_NAME = "meta_spider"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# ---------------------------------------------------------------- tools


@hookspec
def register_tools(register: Callable[[Any], None]) -> None:
    """Contribute tools the agent may call.

    Called when a :class:`~meta_spider.tools.ToolRegistry` is built from the
    plugin manager. ``register(tool)`` takes a :class:`~meta_spider.tools.Tool`
    (build one from a typed function with ``Tool.from_function``). Two tools
    with one name are an error that names both plugins. Returns nothing.
    """


# ---------------------------------------------------------------- backends


@hookspec
def register_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Contribute inference backends.

    Called when the agent resolves ``--backend NAME`` or a run's backend
    setting. ``register(name, factory)``: ``factory(**settings)`` returns an
    object satisfying :class:`~meta_spider.backends.InferenceBackend`. Import
    heavy dependencies (torch, llama_cpp) inside the factory, not at module
    level. Returns nothing.
    """


# ---------------------------------------------------------------- policies


@hookspec
def register_policies(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Contribute decision policies (``direct``, ``doubter``, ...).

    Called when an agent is built with a policy named ``NAME``
    (``--policy NAME``, run.json's ``policy``, ``AgentComparison``'s
    names). ``register(name, factory)``: ``factory(**keywords)`` returns an
    object satisfying :class:`~meta_spider.policies.Policy`. Returns nothing.

    The keywords are the policy's settings (run.json's ``policy.settings``
    when that policy is chosen, or the caller's) plus the host keywords the
    factory names in a ``host_keywords`` attribute, a tuple (absent: none);
    a setting of the same name wins. The host keywords:

    * ``calibration``: run.json's ``calibration`` object as ``metaloom
      eval`` writes it (scorer name -> ``{"threshold": float or null,
      ...}``), or None for a run without one. ``doubter`` and ``probe``
      take their threshold from its ``"doubter"`` entry.

    A factory that names anything else is a
    :class:`~meta_spider.agentcore.factory.PolicyContractError`; one that
    refuses its keywords, a
    :class:`~meta_spider.agentcore.factory.ComponentSettingsError`.
    """


# ---------------------------------------------------------------- renderers


@hookspec
def register_renderers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Contribute action renderers, which turn a policy's latent decision
    into an :class:`~meta_spider.agentcore.Action`.

    Called when the agent resolves its renderer (default ``"default"``).
    ``register(name, factory)``: ``factory(**settings)`` returns an object
    satisfying :class:`~meta_spider.policies.ActionRenderer`. Returns nothing.
    """


# ---------------------------------------------------------------- commands


@hookspec
def register_commands(register: Callable[["click.Group"], None]) -> None:
    """Contribute CLI command groups to the host command ``metaspider``.

    Called once when the CLI starts. ``register(group)`` takes a
    ``click.Group``; its name becomes ``metaspider <name>`` (the built-in
    groups ``agent``, ``loom`` and ``deploy`` are also installed as
    ``meta-agent``, ``metaloom`` and ``metadeploy``). A plugin may instead add
    commands to an existing group by registering a group of the same name:
    its commands are merged, and a clash of command names is an error.
    Returns nothing.
    """


# ---------------------------------------------------------------- datasets


@hookspec
def register_datasets(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Contribute question-answer datasets for collection and evaluation.

    Called when ``metaloom collect --dataset NAME`` or the Python API
    resolves a dataset. ``register(name, factory)``: ``factory(**options)``
    returns a dataset object (see :mod:`meta_spider.loom`). Returns nothing.
    """


# ---------------------------------------------------------------- exporters


@hookspec
def register_exporters(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Contribute exporters that turn a run directory into deployable files.

    Called by ``metadeploy export``. ``register(name, export)``:
    ``export(run_dir, **options)`` writes its files, records them in the
    run's ``run.json`` and returns the paths it wrote. Returns nothing.
    """
