"""One-line rendering of step records, for the scripted demo.

It turns each :mod:`~meta_spider.agentcore.steps` record into one printable
line; it knows nothing about how the steps were produced. The REPL and
``meta-agent run`` use the richer :mod:`meta_spider.agentcore.render`.
"""

from __future__ import annotations

from rich.text import Text

from meta_spider.agentcore.render import call_text as _call_text
from meta_spider.agentcore.steps import FinalStep, ModelStep, Step, ToolStep
from meta_spider.policies.actions import Answer, Refuse, ToolCall

__all__ = ["step_text"]


def step_text(step: Step) -> Text:
    """One styled line describing ``step``."""
    line = Text()
    if isinstance(step, ModelStep):
        line.append(f"[{step.index}] model ", style="bold cyan")
        action = step.action
        if isinstance(action, ToolCall):
            calls = ", ".join(_call_text(c.name, c.arguments) for c in action.calls)
            line.append("calls " + (calls or "(nothing readable)"), style="cyan")
            if action.failures:
                line.append(f"  +{len(action.failures)} unreadable call(s)", style="yellow")
        elif isinstance(action, Refuse):
            line.append(f"refuses ({action.reason})", style="magenta")
        elif isinstance(action, Answer):
            line.append("answers", style="cyan")
        if step.decision.p_correct is not None:
            line.append(f"  p_correct={step.decision.p_correct:.2f}", style="dim")
    elif isinstance(step, ToolStep):
        line.append(f"[{step.index}] tool  ", style="bold green" if step.ok else "bold yellow")
        name = step.call.name if step.call else "?"
        line.append(f"{name} -> ", style="green" if step.ok else "yellow")
        line.append(step.observation)
    elif isinstance(step, FinalStep):
        style = {"answer": "bold white", "refuse": "bold magenta", "max_steps": "bold red"}[step.outcome]
        line.append(f"=> {step.outcome}: ", style=style)
        line.append(step.text if step.text is not None else f"no answer after {step.model_steps} steps")
    return line
