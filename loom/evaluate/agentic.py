"""Agentic evaluation: the same tasks through several policies of the agent
loop, and what the Doubter rescues and breaks.

:class:`AgentComparison` runs every :class:`AgentTask` (a question, its
expected answer and aliases, the tools available for it) through each policy
(by default ``direct``, the plain base, then ``doubter``) on one backend,
with the default renderer, and scores the final answers. The
:class:`AgentComparisonReport` gives per policy the pass rate, refusals,
tool calls per task and model steps per task, and against the first policy
(the baseline) the tasks *rescued* (baseline wrong, policy right) and
*broke* (baseline right, policy wrong); ``summary()`` is a rich table,
``to_json()`` the full record.

:func:`run_agentic_eval` builds the tasks from a run directory: the
dataset named in ``run.json`` (its test split, or another), the tools, the
backend and the calibrated policies as ``meta-agent run`` builds them (the
``lookup`` over the dataset's own knowledge base when it provides one, e.g.
a ``knowledge_base()`` method; else ``run.json``'s ``knowledge_base`` facts).
Every agent here is built by :func:`~meta_spider.agentcore.factory.build_agent`,
every named policy by :func:`~meta_spider.agentcore.factory.build_policy`.

A task counts as passed only when the run ends with an answer that the
check function accepts; a refusal or running out of steps is a miss. This
module knows nothing about how policies decide; torch loads only when a
pipeline is given or the run's backend needs it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from meta_spider.agentcore.factory import build_agent, build_policy
from meta_spider.agentcore.run_dataset import dataset_knowledge_base
from meta_spider.agentcore.steps import FinalStep, ModelStep, ToolStep
from meta_spider.loom.datasets import check_answer
from meta_spider.policies.base import ActionRenderer, Policy
from meta_spider.policies.renderer import DefaultRenderer
from meta_spider.tools import KnowledgeBase, Tool, ToolRegistry

if TYPE_CHECKING:
    import pluggy
    from rich.console import Console, RenderableType

__all__ = ["AgentComparison", "AgentComparisonReport", "AgentTask", "TaskResult", "run_agentic_eval"]

CheckFn = Callable[[str, "AgentTask"], bool]
PolicySpec = Any  # a registered name, a Policy object, or a (name, Policy) pair


@dataclass(frozen=True)
class AgentTask:
    """One question for the agent and what counts as its right answer."""

    question: str
    expected_answer: str
    aliases: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    """The tools the agent may call on this task (none: it must answer or refuse)."""
    id: str = ""
    system_prompt: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("question", "expected_answer"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"AgentTask.{name} must be a non-empty string, got {value!r}")
        if isinstance(self.aliases, str) or not all(isinstance(alias, str) for alias in self.aliases):
            raise ValueError(f"AgentTask.aliases must be a sequence of strings, got {self.aliases!r}")
        if not all(isinstance(tool, Tool) for tool in self.tools):
            raise ValueError(f"AgentTask.tools must hold meta_spider.tools.Tool objects, got {self.tools!r:.120}")
        object.__setattr__(self, "aliases", tuple(self.aliases))
        object.__setattr__(self, "tools", tuple(self.tools))

    @property
    def ground_truths(self) -> tuple[str, ...]:
        return (self.expected_answer, *self.aliases)


@dataclass(frozen=True)
class TaskResult:
    """How one policy did on one task."""

    task_id: str
    policy: str
    outcome: str
    """``"answer"``, ``"refuse"`` or ``"max_steps"``."""
    text: str | None
    correct: bool
    tool_calls: int
    """Tool calls that were parsed and run (unreadable attempts not included)."""
    model_steps: int
    p_correct: float | None = None
    """The first decision's P(correct), when the policy reports one."""
    steps: tuple[dict[str, Any], ...] = ()
    """The step records (``Step.to_dict()``), when recorded."""

    @property
    def refused(self) -> bool:
        return self.outcome == "refuse"

    def to_dict(self, *, with_steps: bool = True) -> dict[str, Any]:
        record = {"outcome": self.outcome, "text": self.text, "correct": self.correct, "tool_calls": self.tool_calls,
                  "model_steps": self.model_steps, "p_correct": self.p_correct}
        if with_steps:
            record["steps"] = list(self.steps)
        return record


def _rate(count: float, total: int) -> float:
    return count / total if total else 0.0


@dataclass
class AgentComparisonReport:
    """Per-task results of every policy, and the numbers derived from them."""

    tasks: list[AgentTask]
    results: dict[str, list[TaskResult]]
    """Policy name -> one result per task, in task order; the first is the baseline."""
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def policies(self) -> tuple[str, ...]:
        return tuple(self.results)

    @property
    def baseline(self) -> str:
        return self.policies[0]

    @property
    def base_error_rate(self) -> float:
        """Share of tasks the baseline policy gets wrong."""
        return 1.0 - self.metrics(self.baseline)["pass_rate"]

    def metrics(self, policy: str) -> dict[str, Any]:
        """Pass rate, refusals, tool calls and steps per task for ``policy``
        (and rescued / broke against the baseline for the others)."""
        if policy not in self.results:
            raise KeyError(f"no policy {policy!r} in this report; it has {list(self.results)}")
        results = self.results[policy]
        n = len(results)
        correct = sum(result.correct for result in results)
        refusals = sum(result.refused for result in results)
        tool_calls = sum(result.tool_calls for result in results)
        metrics: dict[str, Any] = {
            "n": n,
            "correct": correct,
            "pass_rate": _rate(correct, n),
            "refusals": refusals,
            "refusal_rate": _rate(refusals, n),
            "tool_calls": tool_calls,
            "tool_calls_per_task": _rate(tool_calls, n),
            "tasks_with_tool_calls": sum(result.tool_calls > 0 for result in results),
            "steps_per_task": _rate(sum(result.model_steps for result in results), n),
            "max_steps": sum(result.outcome == "max_steps" for result in results),
        }
        if policy != self.baseline:
            base = self.results[self.baseline]
            rescued = sum(not b.correct and r.correct for b, r in zip(base, results))
            broke = sum(b.correct and not r.correct for b, r in zip(base, results))
            base_pass_rate = _rate(sum(b.correct for b in base), n)
            metrics.update(rescued=rescued, broke=broke, rescued_rate=_rate(rescued, n), broke_rate=_rate(broke, n),
                           pass_rate_gain_points=100.0 * (metrics["pass_rate"] - base_pass_rate))
        return metrics

    def to_dict(self, *, with_steps: bool = True) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "num_tasks": len(self.tasks),
            "base_error_rate": self.base_error_rate,
            "policies": {name: self.metrics(name) for name in self.policies},
            "settings": dict(self.settings),
            "tasks": [
                {"id": task.id, "question": task.question, "expected_answer": task.expected_answer,
                 "aliases": list(task.aliases), "tools": [tool.name for tool in task.tools],
                 "results": {name: self.results[name][index].to_dict(with_steps=with_steps)
                             for name in self.policies}}
                for index, task in enumerate(self.tasks)
            ],
        }

    def to_json(self, *, indent: int | None = 2, with_steps: bool = True) -> str:
        from meta_spider.agentcore.steps import json_safe

        return json.dumps(json_safe(self.to_dict(with_steps=with_steps)), indent=indent, ensure_ascii=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_json` to ``path`` and return it."""
        target = Path(path)
        target.write_text(self.to_json() + "\n", encoding="utf-8")
        return target

    def summary(self) -> "RenderableType":
        """A rich table: one row per policy."""
        from rich.table import Table

        table = Table(title=f"agentic comparison: {len(self.tasks)} tasks, baseline {self.baseline}",
                      caption=f"baseline error rate {self.base_error_rate:.1%}; calls/q and steps/q: tool calls "
                              "and model steps per question")
        for column in ("policy", "pass", "rescued", "broke", "refused", "calls/q", "steps/q"):
            table.add_column(column, justify="left" if column == "policy" else "right", no_wrap=True)
        for name in self.policies:
            m = self.metrics(name)
            versus = name != self.baseline
            table.add_row(
                name, f"{m['pass_rate']:.1%}",
                f"{m['rescued']} ({m['rescued_rate']:.1%})" if versus else "-",
                f"{m['broke']} ({m['broke_rate']:.1%})" if versus else "-",
                f"{m['refusals']} ({m['refusal_rate']:.1%})", f"{m['tool_calls_per_task']:.2f}",
                f"{m['steps_per_task']:.2f}",
            )
        return table


def _as_backend(pipe_or_backend: Any, doubter: Any) -> Any:
    backend = pipe_or_backend
    if not (hasattr(backend, "render_prompt") and hasattr(backend, "generate")):
        if hasattr(backend, "read_ids") and hasattr(backend, "tokenizer"):  # a MetaSpiderPipeline
            from meta_spider.backends.transformers import TransformersBackend

            backend = TransformersBackend(backend)
        else:
            raise TypeError(f"AgentComparison takes an InferenceBackend or a MetaSpiderPipeline, got {backend!r:.80}")
    if doubter is not None:
        pipeline = getattr(backend, "pipeline", None)
        if pipeline is None:
            raise ValueError(f"doubter= needs a MetaSpiderPipeline (or a transformers backend) to attach to; "
                             f"backend {getattr(backend, 'name', backend)!r} has none; attach it to the backend "
                             "yourself")
        pipeline.attach(doubter)
    return backend


class AgentComparison:
    """Run the same tasks through several policies on one backend."""

    def __init__(
        self,
        pipe_or_backend: Any,
        *,
        doubter: Any = None,
        policies: Sequence[PolicySpec] = ("direct", "doubter"),
        policy_settings: Mapping[str, Mapping[str, Any]] | None = None,
        calibration: Mapping[str, Any] | None = None,
        renderer: ActionRenderer | None = None,
        max_steps: int = 4,
        system_prompt: str | None = None,
        check_fn: CheckFn | None = None,
        plugin_manager: "pluggy.PluginManager | None" = None,
        record_steps: bool = True,
        closed_book: Sequence[str] = (),
        ground_arguments: bool = False,
        grounded_tools: Sequence[str] = (),
        direct_tools: Sequence[str] = (),
    ) -> None:
        """``pipe_or_backend``: an InferenceBackend, or a MetaSpiderPipeline
        (run through the transformers backend); ``doubter``: a Doubter or a
        checkpoint path attached to that pipeline first. ``policies``:
        registered names (built by ``build_policy`` with
        ``policy_settings[name]`` and ``calibration``, run.json's calibration),
        Policy objects or ``(name, policy)`` pairs; the first is the
        baseline. ``check_fn(answer_text, task)`` defaults to normalised
        exact match against the expected answer and aliases. Policies named
        in ``closed_book`` run without the tasks' tools (a base that calls
        a tool for every question otherwise never shows what it knows).
        ``ground_arguments``: the agents ground their calls' arguments in
        the question's words (:attr:`MetaAgent.ground_arguments`);
        ``grounded_tools``: tools whose arguments must be the question's
        words (:attr:`MetaAgent.grounded_tools`; tools a task does not
        offer are left out); ``direct_tools``: tools whose result is the
        answer (:attr:`MetaAgent.direct_tools`, likewise)."""
        if isinstance(policies, str) or len(policies) < 1:
            raise ValueError(f"policies must be a non-empty sequence of policies or names, got {policies!r}")
        if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
        self.backend = _as_backend(pipe_or_backend, doubter)
        self.renderer = renderer if renderer is not None else DefaultRenderer()
        self.max_steps = max_steps
        self.system_prompt = system_prompt
        self.check_fn: CheckFn = check_fn or (lambda text, task: check_answer(text, task.ground_truths))
        self.record_steps = record_steps
        self.calibration = dict(calibration or {})
        self.policies = self._build_policies(policies, dict(policy_settings or {}), plugin_manager)
        if isinstance(closed_book, str) or not set(closed_book) <= set(self.policies):
            raise ValueError(f"closed_book must name policies of this comparison {list(self.policies)}, "
                             f"got {closed_book!r}")
        self.closed_book = tuple(closed_book)
        self.ground_arguments = bool(ground_arguments)
        for field_name, names in (("grounded_tools", grounded_tools), ("direct_tools", direct_tools)):
            names = names if isinstance(names, str) else tuple(names)  # read once: an iterator is not read empty
            if isinstance(names, str) or not all(isinstance(name, str) for name in names):
                raise ValueError(f"{field_name} must be a sequence of tool names, got {names!r:.80}")
            setattr(self, field_name, names)

    def _build_policies(self, specs: Sequence[PolicySpec], settings: dict[str, Mapping[str, Any]],
                        pm: "pluggy.PluginManager | None") -> dict[str, Policy]:
        built: dict[str, Policy] = {}
        for spec in specs:
            if isinstance(spec, str):
                if pm is None:
                    from meta_spider.plugins import make_plugin_manager

                    pm = make_plugin_manager()
                name, policy = spec, build_policy(pm, spec, settings.get(spec, {}), calibration=self.calibration)
            elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
                name, policy = spec
            else:
                name, policy = str(getattr(spec, "name", type(spec).__name__)), spec
            if not isinstance(policy, Policy):
                raise TypeError(f"policy {name!r} has no decide(session, backend, tools): {policy!r:.80}")
            if name in built:
                raise ValueError(f"policy {name!r} is listed twice; give each a distinct name")
            built[name] = policy
        return built

    def run_task(self, policy_name: str, task: AgentTask) -> TaskResult:
        """Run one task through one policy and score it."""
        tools = () if policy_name in self.closed_book else task.tools
        offered = {tool.name for tool in tools}
        # Every reply ends at its turn's end, as in `meta-agent run`: build_agent wraps the backend.
        agent = build_agent(None, backend=self.backend, policy=self.policies[policy_name], renderer=self.renderer,
                            tools=ToolRegistry(tools, source="task"), max_steps=self.max_steps,
                            system_prompt=task.system_prompt or self.system_prompt,
                            ground_arguments=self.ground_arguments,
                            grounded_tools=tuple(name for name in self.grounded_tools if name in offered),
                            direct_tools=tuple(name for name in self.direct_tools if name in offered))
        records: list[dict[str, Any]] = []
        final: FinalStep | None = None
        tool_calls = 0
        p_correct: float | None = None
        first_model_step = True
        for step in agent.run(task.question):
            if self.record_steps:
                records.append(step.to_dict())
            if isinstance(step, ModelStep) and first_model_step:
                p_correct, first_model_step = step.decision.p_correct, False
            elif isinstance(step, ToolStep) and step.call is not None:
                tool_calls += 1
            elif isinstance(step, FinalStep):
                final = step
        assert final is not None  # MetaAgent.run always ends with a FinalStep
        correct = final.outcome == "answer" and bool(self.check_fn(final.text or "", task))
        return TaskResult(task.id, policy_name, final.outcome, final.text, correct, tool_calls, final.model_steps,
                          p_correct, tuple(records))

    def run(self, tasks: Iterable[AgentTask],
            progress: Callable[[str, int, int], None] | None = None) -> AgentComparisonReport:
        """Every task through every policy; ``progress(policy, done, total)``
        is called after each task."""
        tasks = list(tasks)
        if not all(isinstance(task, AgentTask) for task in tasks):
            raise TypeError("run() takes AgentTask objects")
        tasks = [task if task.id else _with_id(task, index) for index, task in enumerate(tasks)]
        results: dict[str, list[TaskResult]] = {}
        for name in self.policies:
            results[name] = []
            for task in tasks:
                results[name].append(self.run_task(name, task))
                if progress is not None:
                    progress(name, len(results[name]), len(tasks))
        settings = {"backend": getattr(self.backend, "name", "?"), "max_steps": self.max_steps,
                    "renderer": type(self.renderer).__name__, "closed_book": list(self.closed_book),
                    "thresholds": {name: _threshold_of(policy) for name, policy in self.policies.items()}}
        return AgentComparisonReport(tasks, results, settings)


def _with_id(task: AgentTask, index: int) -> AgentTask:
    return AgentTask(task.question, task.expected_answer, task.aliases, task.tools, f"task-{index}",
                     task.system_prompt, task.metadata)


def _threshold_of(policy: Any) -> dict[str, Any] | None:
    gate = getattr(policy, "gate", None)
    if gate is None or not hasattr(gate, "value"):
        return None
    return {"value": gate.value, "source": gate.source}


# ---------------------------------------------------------------- run directories


def tasks_from_dataset(dataset: Any, split: str = "test", *, tools: Sequence[Tool] = (),
                       max_tasks: int | None = None) -> list[AgentTask]:
    """One task per example of ``split``, asked the way the dataset asks it
    (its prompt's last user message, and its system message if any)."""
    examples = dataset.split(split)
    if max_tasks is not None:
        examples = examples[:max_tasks]
    tasks = []
    for example in examples:
        messages = list(dataset.prompt(example).messages)
        question = next(m["content"] for m in reversed(messages) if m.get("role") == "user")
        system = next((m["content"] for m in messages if m.get("role") == "system"), None)
        tasks.append(AgentTask(question, example.answer, example.aliases, tuple(tools), example.id, system,
                               {"example": example}))
    return tasks


def run_agentic_eval(
    run_dir: str | os.PathLike[str],
    console: "Console | None" = None,
    *,
    policies: Sequence[str] = ("direct", "doubter"),
    split: str = "test",
    max_tasks: int | None = None,
    max_steps: int = 4,
    backend: Any = None,
    backend_name: str | None = None,
    dataset: Any = None,
    knowledge_base: KnowledgeBase | None = None,
    plugin_manager: "pluggy.PluginManager | None" = None,
    output: str | os.PathLike[str] | None = None,
    closed_book: Sequence[str] = (),
    ground_arguments: bool | None = None,
) -> AgentComparisonReport:
    """Run the agentic comparison for the run in ``run_dir``.

    Tasks come from the run's dataset (``split``, default ``test``; or
    ``dataset``), each offering the tools ``meta-agent run`` offers for the
    run (those its dataset names, else every registered one), the ``lookup``
    over ``knowledge_base`` (else the dataset's, else run.json's facts),
    and the run's direct tools' results are answers as there. The
    backend is ``backend``, else run.json's (``backend_name`` or its
    default), and the policies are built with run.json's settings and
    calibration, as ``meta-agent run`` builds them; policies named in
    ``closed_book`` get no tools; ``ground_arguments`` as ``meta-agent run``
    decides it (None: what the run's dataset says). Shows each policy's
    progress and prints the summary on ``console``, and writes the report
    to ``output`` when given.
    """
    from meta_spider.agentcore.launch import AgentLauncher
    from meta_spider.agentcore.rundir import run_settings
    from meta_spider.agentcore.runfile import read_run_file
    from meta_spider.loom.datasets import create_dataset
    from meta_spider.loom.manifest import RunManifest
    from meta_spider.loom.progress import ProgressDisplay
    from meta_spider.plugins import make_plugin_manager

    run_file = read_run_file(run_dir)  # read once: the manifest and the agent's settings are two views of it
    manifest = RunManifest.from_run_file(run_file)
    pm = plugin_manager or make_plugin_manager()
    if dataset is None:
        dataset = create_dataset(pm, manifest.dataset.name, **manifest.dataset.options)
    settings = run_settings(run_file)
    if knowledge_base is None:
        knowledge_base = dataset_knowledge_base(dataset) or settings.make_knowledge_base()
    launcher = AgentLauncher(pm, settings, knowledge_base=knowledge_base, max_steps=max_steps,
                             ground_arguments=ground_arguments)
    tasks = tasks_from_dataset(dataset, split, tools=tuple(launcher.tools), max_tasks=max_tasks)
    if not tasks:
        raise ValueError(f"split {split!r} of dataset {getattr(dataset, 'name', '?')!r} has no examples to run")
    if backend is None:
        backend = launcher.make_backend(backend_name or launcher.default_backend)
    examples = {task.id: task.metadata["example"] for task in tasks}
    comparison = AgentComparison(
        backend, policies=[(name, launcher.make_policy(name)) for name in policies], renderer=launcher.make_renderer(),
        max_steps=max_steps,
        system_prompt=settings.system_prompt,
        check_fn=lambda text, task: bool(dataset.check_fn(text, examples[task.id])), closed_book=closed_book,
        ground_arguments=bool(launcher.ground_arguments), grounded_tools=launcher.grounded_tools,
        direct_tools=launcher.direct_tools or (),
    )
    with ProgressDisplay(console is not None, console=console) as display:
        lines = {name: display.line(f"agent, {name} on {split}", len(tasks), unit="q/s")
                 for name in comparison.policies}
        report = comparison.run(tasks, progress=lambda name, done, total: lines[name].update(completed=done))
    report.settings.update(run_dir=str(Path(run_dir)), dataset=getattr(dataset, "name", "?"), split=split,
                           knowledge_base=getattr(knowledge_base, "name", None),
                           ground_arguments=comparison.ground_arguments, grounded_tools=list(comparison.grounded_tools))
    if console is not None:
        console.print(report.summary())
    if output is not None:
        report.save(output)
    return report
