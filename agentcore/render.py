"""Rich rendering of a turn's trace for ``meta-agent chat`` and ``run``.

Each step record becomes one renderable: a model step shows the policy, its
P(correct) as a gauge when the decision carries one, and the action it
became; a tool step shows the call with its arguments and the observation;
the final step is a panel with the answer, refusal or "no answer". It knows
nothing about how the steps were produced or where they are printed
(:mod:`meta_spider.agentcore.trace` keeps the one-line form of the demo).
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from meta_spider.agentcore.steps import FinalStep, ModelStep, Step, ToolStep, json_safe
from meta_spider.policies.actions import Answer, Refuse, ToolCall

__all__ = ["GAUGE_WIDTH", "call_text", "final_panel", "p_correct_gauge", "set_aside_note", "step_renderable"]

GAUGE_WIDTH = 20
_OBSERVATION_LIMIT = 600  # characters of a tool result shown; the model saw all of it


def call_text(name: str, arguments: Any) -> str:
    """``name({"arg": value})`` with the arguments as compact JSON."""
    return f"{name}({json.dumps(json_safe(arguments), ensure_ascii=False)})"


def _gauge_style(p_correct: float) -> str:
    return "green" if p_correct >= 0.7 else "yellow" if p_correct >= 0.4 else "red"


def p_correct_gauge(p_correct: float, *, confident: bool | None = None, width: int = GAUGE_WIDTH) -> Text:
    """``P(correct) [#######.....] 0.72`` as a coloured bar of ``width`` cells."""
    if not 0.0 <= p_correct <= 1.0:
        raise ValueError(f"p_correct must lie in [0, 1], got {p_correct!r}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width!r}")
    filled = round(p_correct * width)
    gauge = Text("P(correct) ", style="bold")
    gauge.append("█" * filled, style=_gauge_style(p_correct))
    gauge.append("░" * (width - filled), style="dim")
    gauge.append(f" {p_correct:.2f}", style=_gauge_style(p_correct))
    if confident is not None:
        gauge.append("  confident" if confident else "  uncertain", style="bold" if confident else "bold yellow")
    return gauge


def _action_text(step: ModelStep) -> Text:
    action = step.action
    line = Text("  -> ")
    if isinstance(action, ToolCall):
        line.append("tool call ", style="bold cyan")
        line.append(", ".join(call_text(call.name, call.arguments) for call in action.calls) or "(nothing readable)",
                    style="cyan")
        if action.failures:
            line.append(f"  +{len(action.failures)} unreadable call attempt(s)", style="yellow")
    elif isinstance(action, Refuse):
        line.append("refuse", style="bold magenta")
        line.append(f" ({action.reason})", style="magenta")
    elif isinstance(action, Answer):
        line.append("answer", style="bold")
    return line


def _model_step(step: ModelStep) -> RenderableType:
    decision = step.decision
    header = Text(f"step {step.index} ", style="bold cyan")
    policy = decision.metadata.get("policy")
    if policy:
        header.append(f"policy {policy}", style="cyan")
    finish = decision.metadata.get("finish_reason")
    if finish and finish not in ("eos", "stop"):
        header.append(f"  (finish: {finish})", style="yellow")
    rows: list[RenderableType] = [header]
    if decision.p_correct is not None:
        gauge = Text("  ")
        gauge.append_text(p_correct_gauge(decision.p_correct, confident=decision.confident))
        rows.append(gauge)
    rows.append(_action_text(step))
    withheld = decision.metadata.get("withheld")
    if isinstance(step.action, Refuse) and isinstance(withheld, str) and withheld.strip():
        rows.append(Text(f"     the base's answer, withheld: {withheld.strip()!r}", style="dim"))
    return Group(*rows)


def _tool_step(step: ToolStep) -> RenderableType:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    mark, style = ("ok", "green") if step.ok else (step.kind.value, "yellow")
    name = call_text(step.call.name, step.call.arguments) if step.call else "(unreadable call)"
    grid.add_row(Text(f"  tool [{mark}]", style=f"bold {style}"), Text(name, style=style))
    if step.written is not None and step.call is not None:
        grid.add_row(Text("    grounded", style="dim"),
                     Text(f"in the question; the model wrote {call_text(step.written_tool or step.call.name, step.written)}",
                          style="dim"))
    observation = step.observation
    if len(observation) > _OBSERVATION_LIMIT:
        observation = observation[:_OBSERVATION_LIMIT] + f"... ({len(step.observation)} characters)"
    grid.add_row(Text("    result", style="dim"), Text(observation))
    return grid


def final_panel(step: FinalStep) -> Panel:
    """The answer (or refusal, or "no answer") in a titled panel."""
    if step.outcome == "answer":
        direct = isinstance(step.action, Answer) and step.action.source == "tool"
        title = "answer: the tool's result" if direct else "answer"
        return Panel(Text(step.text or ""), title=title, title_align="left", border_style="bold white")
    if step.outcome == "refuse":
        return Panel(Text(step.text or ""), title="refusal", title_align="left", border_style="magenta")
    return Panel(Text(f"no answer after {step.model_steps} model steps"), title="max steps", title_align="left",
                 border_style="red")


def step_renderable(step: Step) -> RenderableType:
    """The trace entry for one step record."""
    if isinstance(step, ModelStep):
        return _model_step(step)
    if isinstance(step, ToolStep):
        return _tool_step(step)
    if isinstance(step, FinalStep):
        return final_panel(step)
    raise TypeError(f"not a step record: {step!r:.80}")


def set_aside_note(step: ModelStep) -> str | None:
    """Why the text a model step streamed is not what the agent does with
    it (the policy was unsure, so the renderer refuses or asks for a tool
    call instead), or None when the streamed text is the step's own."""
    action = step.action
    if isinstance(action, (Answer, Refuse)) and action.text.strip() == step.decision.text.strip():
        return None
    if isinstance(action, Refuse) and action.reason != "model":
        return f"set aside: {action.reason}; the agent refuses instead"
    lookup = step.decision.metadata.get("lookup")
    if isinstance(lookup, dict) and isinstance(action, ToolCall):
        return f"set aside: {lookup.get('reason', 'unsure')}; the agent calls a tool instead"
    return None
