"""Turns run.json and the command's options into agents for ``meta-agent``.

:class:`AgentLauncher` joins three sources: what the plugins registered
(``register_policies``, ``register_backends``, ``register_renderers``,
``register_tools``), a run directory's settings
(:func:`~meta_spider.agentcore.rundir.read_run_settings`) and, for the
``fake`` backend, a script (:mod:`meta_spider.agentcore.script`). So the
``doubter`` policy and the ``transformers`` / ``llamacpp`` backends are
chosen by name like any other, with the settings run.json gives for them.

The agent itself is built by :func:`~meta_spider.agentcore.factory.build_agent`,
as every agent is; the launcher only resolves what to pass it. Built backends
are cached by name (switching back to a loaded model costs nothing). This
module knows nothing about terminals.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import pluggy

from meta_spider.agentcore.factory import (
    ComponentSettingsError,
    build_agent,
    build_backend,
    build_policy,
    build_renderer,
    stop_at_turn_end,
)
from meta_spider.agentcore.loop import MetaAgent
from meta_spider.agentcore.rundir import RunSettings
from meta_spider.agentcore.run_dataset import (dataset_context, dataset_direct_tools, dataset_ground_arguments,
                                               dataset_grounded_tools, dataset_knowledge_base, dataset_lookup_schema,
                                               dataset_tool_names, load_run_dataset)
from meta_spider.agentcore.script import BackendScript, ScriptedBackend, parse_script
from meta_spider.agentcore.session import CONTEXTS
from meta_spider.backends.base import InferenceBackend
from meta_spider.plugins import ComponentRegistry
from meta_spider.policies.base import ActionRenderer, Policy
from meta_spider.tools import DictKnowledgeBase, KnowledgeBase, ToolRegistry

logger = logging.getLogger(__name__)

__all__ = ["AgentLauncher", "ComponentSettingsError", "DEFAULT_POLICY", "FAKE_BACKEND", "demo_script"]

DEFAULT_POLICY = "direct"
DOUBTER_POLICY = "doubter"
"""The default policy of a run whose backend holds a trained Doubter."""
FAKE_BACKEND = "fake"


def demo_script() -> BackendScript:
    """The scripted demo's replies and facts (used by ``--backend fake``
    when no ``--script`` is given)."""
    from meta_spider.agentcore.demo import DEMO_FACTS, DEMO_SCRIPT

    outputs = [reply for _question, replies in DEMO_SCRIPT for reply in replies]
    return parse_script({"outputs": outputs, "facts": dict(DEMO_FACTS)}, source="the built-in demo script")


@dataclass
class AgentLauncher:
    """Names -> components, with run.json settings and a fake-backend script."""

    pm: pluggy.PluginManager
    run_settings: RunSettings = field(default_factory=RunSettings)
    script: BackendScript | None = None
    """Outputs for the ``fake`` backend; None uses :func:`demo_script`."""
    knowledge_base: KnowledgeBase | None = None
    """Backs the ``lookup`` tool; None takes the script's facts (if any)."""
    max_steps: int = 8
    system_prompt: str | None = None
    tool_names: Sequence[str] | None = None
    """Offer only these tools (None: the tools the run's dataset says its
    base was trained with, else every registered one)."""
    tool_family: str | None = None
    """The tool-call family the renderer parses (``--tool-family``); None
    keeps run.json's renderer setting, else detection from the template."""
    context: str | None = None
    """What the model reads of a conversation (``--context``: ``all`` or
    ``question``); None: what the run's dataset says its base can read, else
    ``all``."""
    direct_tools: Sequence[str] | None = None
    """Tools whose result is the answer (``--direct-tools``; see
    :attr:`~meta_spider.agentcore.loop.MetaAgent.direct_tools`); None: those
    the run's dataset names among the tools offered, else none."""
    ground_arguments: bool | None = None
    """Ground calls' arguments in the user's words (``--ground-arguments``;
    see :attr:`~meta_spider.agentcore.loop.MetaAgent.ground_arguments`);
    None: what the run's dataset says, else no. With it, the tools the
    dataset names as taking only the user's words
    (:attr:`~meta_spider.agentcore.loop.MetaAgent.grounded_tools`) do."""

    def __post_init__(self) -> None:
        if self.system_prompt is None:  # ask with the run's own system prompt
            self.system_prompt = self.run_settings.system_prompt
        if not isinstance(self.max_steps, int) or isinstance(self.max_steps, bool) or self.max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {self.max_steps!r}")
        self._policies = ComponentRegistry.from_plugins(self.pm, "register_policies", "policy")
        self._backends = ComponentRegistry.from_plugins(self.pm, "register_backends", "backend")
        self._built_backends: dict[str, InferenceBackend] = {}
        knowledge_base, schema, dataset = self.knowledge_base, None, None
        if knowledge_base is None:  # run.json's facts, when it names some
            knowledge_base = self.run_settings.make_knowledge_base()
        if self.context is not None and self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {self.context!r}")
        if (knowledge_base is None or self.tool_names is None or self.context is None or self.direct_tools is None
                or self.ground_arguments is None):
            dataset = load_run_dataset(self.pm, self.run_settings)
        if self.ground_arguments is None:
            self.ground_arguments = dataset_ground_arguments(dataset)
        if self.context is None:  # a base trained on one question per chat reads only the current one
            self.context = dataset_context(dataset) or "all"
        if knowledge_base is None:  # else the facts of the run's own dataset, as its base was trained to ask
            knowledge_base, schema = dataset_knowledge_base(dataset), dataset_lookup_schema(dataset)
        if knowledge_base is None and self.script is not None and self.script.facts:
            knowledge_base = DictKnowledgeBase(self.script.facts, name="script-facts")
        self._knowledge_base = knowledge_base
        self.tools = ToolRegistry.from_plugins(self.pm)
        if knowledge_base is not None:
            self.tools.install_knowledge_base(knowledge_base, schema)
        if self.tool_names is not None:
            self.tools = self.tools.subset(self.tool_names)
        elif (trained := dataset_tool_names(dataset)) is not None:  # the prompt its base learnt to call from
            self.tools = self.tools.subset([name for name in trained if name in self.tools])
            if not len(self.tools):
                logger.warning("the run's dataset names the tools %s, none of them registered: the agent offers no "
                               "tool (name some with --tools)", list(trained))
        grounded = dataset_grounded_tools(dataset) if self.ground_arguments else ()
        self._grounded_tools = tuple(name for name in grounded if name in self.tools)
        if self.direct_tools is None:
            self.direct_tools = tuple(name for name in dataset_direct_tools(dataset) if name in self.tools)
        else:
            self.direct_tools = tuple(self.direct_tools)
            for name in self.direct_tools:
                self.tools[name]  # not offered: UnknownToolError naming the tools that are

    # ------------------------------------------------------------ names

    def policy_names(self) -> tuple[str, ...]:
        """Every registered policy name, sorted (third-party ones included)."""
        return self._policies.names()

    def backend_names(self) -> tuple[str, ...]:
        return self._backends.names()

    @property
    def default_policy(self) -> str:
        """The default policy with the default backend (:meth:`policy_for`)."""
        return self.policy_for(self.default_backend)

    def policy_for(self, backend: str | None) -> str:
        """run.json's policy; else ``doubter`` when ``backend`` (default: the
        default backend) has a trained Doubter (a checkpoint or a sidecar),
        else ``direct``."""
        if self.run_settings.policy:
            return self.run_settings.policy.name
        settings = self.run_settings.backend_settings(backend or self.default_backend)
        if settings.get("checkpoint") or settings.get("sidecar_path"):
            return DOUBTER_POLICY
        return DEFAULT_POLICY

    @property
    def default_backend(self) -> str:
        """The first backend run.json lists, else ``fake``."""
        return self.run_settings.default_backend or FAKE_BACKEND

    # ------------------------------------------------------------ building

    def make_policy(self, name: str) -> Policy:
        """Build policy ``name`` with run.json's settings for it and its
        calibration (:func:`~meta_spider.agentcore.factory.build_policy`).
        Raises :class:`~meta_spider.plugins.UnknownComponentError` for an unknown name."""
        return build_policy(self.pm, name, self.run_settings.policy_settings(name),
                            calibration=self.run_settings.calibration)

    def renderer_choice(self) -> tuple[str, dict[str, Any]]:
        """The renderer's name and settings: run.json's, with ``--tool-family`` over its ``family``."""
        choice = self.run_settings.renderer
        name, settings = ("default", {}) if choice is None else (choice.name, dict(choice.settings))
        if self.tool_family is not None:
            settings["family"] = self.tool_family
        return name, settings

    def make_renderer(self) -> ActionRenderer:
        return build_renderer(self.pm, *self.renderer_choice())

    def make_backend(self, name: str) -> InferenceBackend:
        """Build (once) backend ``name``, wrapped to stop at its turn's end.
        ``fake`` plays the script (its facts were installed in :attr:`tools`)."""
        if name not in self._built_backends:
            self._backends.entry(name)  # an unknown name fails here, naming the choices
            if name == FAKE_BACKEND:
                script = self.script or demo_script()
                if self._knowledge_base is None and script.facts:
                    # The demo's questions need the demo's facts; a real
                    # knowledge base, when given, is never replaced.
                    self._knowledge_base = DictKnowledgeBase(script.facts, name="demo-facts")
                    self.tools.install_knowledge_base(self._knowledge_base)
                backend: Any = ScriptedBackend(script, **self.run_settings.backend_settings(name))
            else:
                backend = build_backend(self.pm, name, self.run_settings.backend_settings(name))
            self._built_backends[name] = stop_at_turn_end(backend)
        return self._built_backends[name]

    def build_agent(self, *, policy: str | None = None, backend: str | None = None) -> MetaAgent:
        """A :class:`MetaAgent` with the named (or default) policy and backend,
        built by :func:`~meta_spider.agentcore.factory.build_agent` with
        run.json's settings and calibration."""
        policy = policy or self.policy_for(backend)
        renderer, renderer_settings = self.renderer_choice()
        return build_agent(
            self.pm,
            backend=self.make_backend(backend or self.default_backend),
            policy=policy,
            policy_settings=self.run_settings.policy_settings(policy),
            calibration=self.run_settings.calibration,
            renderer=renderer,
            renderer_settings=renderer_settings,
            tools=self.tools,
            max_steps=self.max_steps,
            system_prompt=self.system_prompt,
            context=self.context,
            direct_tools=tuple(self.direct_tools or ()),
            ground_arguments=bool(self.ground_arguments),
            grounded_tools=self.grounded_tools,
        )

    @property
    def grounded_tools(self) -> tuple[str, ...]:
        """The offered tools whose arguments must be the user's words (the run's dataset's, with grounding on)."""
        return self._grounded_tools
