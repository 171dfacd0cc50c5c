"""A walkthrough of the agent loop on a *scripted* backend.

No model runs: a :class:`~meta_spider.backends.FakeBackend` plays a model
whose replies are written below, but everything around it is real: plugins
load, prompts are rendered with a chat template carrying the tool
definitions, replies are parsed as native ``<tool_call>`` blocks, the real
``calculator`` and ``lookup`` tools run, and :class:`StopBackend` cuts a
reply that runs on into the user's turn. It is also what ``meta-agent
--backend fake`` plays. The demo with a trained Doubter on the embedded
world is :mod:`meta_spider.loom.demo` (scripts/demo.sh).

Run with ``python -m meta_spider.agentcore.demo``.
"""

from __future__ import annotations

from rich.console import Console
from rich.rule import Rule

from meta_spider.agentcore.factory import build_agent
from meta_spider.agentcore.steps import FinalStep
from meta_spider.agentcore.trace import step_text
from meta_spider.backends import FakeBackend
from meta_spider.plugins import make_plugin_manager
from meta_spider.tools import DictKnowledgeBase

DEMO_FACTS = {
    "capital of Veloria": "The capital of Veloria is Amberhold.",
    "founder of Amberhold": "Amberhold was founded by Queen Isolde Marrow.",
}

DEMO_SCRIPT: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "What is 17 * 23 + 4?",
        (
            '<tool_call>\n{"name": "calculator", "arguments": {"expression": "17 * 23 + 4"}}\n</tool_call>',
            # Runs on into a fake user turn: StopBackend cuts it at <|im_end|>.
            "17 * 23 + 4 = 395.<|im_end|>\n<|im_start|>user\nThanks! And 2 + 2?",
        ),
    ),
    (
        "What is the capital of Veloria?",
        (
            '<tool_call>\n{"name": "lookup", "arguments": {"query": "capital of Veloria"}}\n</tool_call>',
            "The capital of Veloria is Amberhold.",
        ),
    ),
    (
        "How many moons does Veloria have?",
        (
            '<tool_call>\n{"name": "lookup", "arguments": {"query": "moons of Veloria"}}\n</tool_call>',
            "I don't know.",
        ),
    ),
)


def run_demo(console: Console | None = None) -> list[FinalStep]:
    """Run the scripted questions, print their traces, return the final steps."""
    console = console or Console()
    fake = FakeBackend()
    for _question, replies in DEMO_SCRIPT:
        fake.enqueue(*replies)
    agent = build_agent(make_plugin_manager(), backend=fake, policy="direct", policy_settings={"max_new_tokens": 64},
                        knowledge_base=DictKnowledgeBase(DEMO_FACTS, name="demo-facts"), max_steps=4)
    tools = agent.tools
    console.print(Rule("meta-spider demo: scripted backend (no model yet), real loop and tools"))
    console.print(f"tools: {', '.join(tools.names())}")
    finals: list[FinalStep] = []
    for question, _replies in DEMO_SCRIPT:
        console.print(Rule(style="dim"))
        console.print(f"[bold]user:[/bold] {question}")
        for step in agent.run(question):
            console.print(step_text(step))
            if isinstance(step, FinalStep):
                finals.append(step)
    return finals


def main() -> None:
    run_demo()


if __name__ == "__main__":
    main()
