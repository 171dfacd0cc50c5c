"""Arithmetic through the whole agent: does the answer carry the calculator's result?

`calculator_readback.py` measures the base's copy alone. This script asks
the agent of a run (its own policy, backend, tools, context and argument
grounding, as `meta-agent run --run-dir RUN` builds it) "What is 17*23?" and then COUNT
arithmetic questions drawn as the world draws them, from an RNG of their
own, twice: with the calculator's result as the answer (a world run's
default, `--direct-tools calculator`) and with the model restating it
(`--direct-tools ''`). Per way: how many answers are right (the result
itself, or exactly "The answer is RESULT."), how many runs called the
calculator with an expression of the right value, how many ended in a
refusal, and the wrong answers. Then the same for OWN_WORDS, arithmetic
asked as people ask it and as the world never does ("Compute 17 x 23",
"What is 81 ÷ 9?"; written for this benchmark, used nowhere else), each
question with its right answer. Both ways run side by side in one process;
each question is a new session. About a minute per way on one core.

    python benchmarks/calculator_agent.py --run-dir RUN --output FILE
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any, Optional

from report import Report

CHAT_QUESTION = ("What is 17*23?", "17*23")
WAYS = (("the calculator's result is the answer", ("calculator",)), ("the model restates it", ()))
OWN_WORDS = (
    ("Calculate 17*23.", "17*23"), ("Compute 17 x 23", "17*23"), ("What is 17 \u00d7 23?", "17*23"),
    ("17*23=?", "17*23"), ("How much is 123+456?", "123+456"), ("what's 1000 - 1", "1000-1"),
    ("Please work out 45 * 12.", "45*12"), ("Can you calculate 144 / 12?", "144/12"),
    ("What do you get if you multiply 25 by 4?", "25*4"), ("What is 2 to the power of 10?", "2**10"),
    ("Add 350 and 275.", "350+275"), ("What is 81 \u00f7 9?", "81/9"), ("Subtract 58 from 200.", "200-58"),
    ("Quick: 64 * 3?", "64*3"), ("I need 999 + 1, please.", "999+1"),
    ("What is the sum of 12, 30 and 8?", "12+30+8"), ("Compute (7 + 5) * 3", "(7+5)*3"),
    ("What is 7 x 8?", "7*8"), ("How much is 19 \u00d7 21?", "19*21"), ("What's 250 divided by 5?", "250/5"),
)
"""Arithmetic in people's words, the world's frames none of them, with an
expression of the right value."""


def ask_all(agent: Any, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Each question in a new session: the final text, whether a calculator
    call had the right value, and the outcome."""
    from meta_spider.agentcore.steps import FinalStep, ToolStep
    from meta_spider.tools.calculator import CalculatorError, calculator

    records = []
    for question, expression in pairs:
        result = calculator(expression)
        called = False
        final: FinalStep | None = None
        for step in agent.run(question):
            if isinstance(step, ToolStep) and step.call is not None and step.call.name == "calculator":
                try:
                    called = called or calculator(str(step.call.arguments.get("expression", ""))) == result
                except CalculatorError:
                    pass
            elif isinstance(step, FinalStep):
                final = step
        text = (final.text or "") if final is not None else ""
        records.append({"result": result, "text": text, "called": called,
                        "outcome": final.outcome if final is not None else None,
                        "right": text.strip() in (result, f"The answer is {result}.")})
    return records


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a run whose dataset offers the calculator")
    parser.add_argument("--count", type=int, default=200, help="arithmetic questions besides 17*23")
    parser.add_argument("--seed", type=int, default=999, help="the questions' RNG seed")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    if not (args.run_dir / "run.json").is_file():
        print(f"not a run directory (no run.json): {args.run_dir}", file=sys.stderr)
        return 2

    import torch

    from meta_spider.agentcore.launch import AgentLauncher
    from meta_spider.agentcore.rundir import read_run_settings
    from meta_spider.loom.world.frames import arithmetic_question
    from meta_spider.plugins import MetaSpiderError, make_plugin_manager

    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    pairs = [CHAT_QUESTION] + [arithmetic_question(rng) for _ in range(args.count)]
    pm = make_plugin_manager()
    try:
        settings = read_run_settings(args.run_dir)
        launchers = [AgentLauncher(pm, settings, direct_tools=tools) for _way, tools in WAYS]
        agents = [launcher.build_agent() for launcher in launchers]
    except MetaSpiderError as error:
        print(f"cannot build the run's agent: {error}", file=sys.stderr)
        return 2
    if "calculator" not in agents[0].tools:
        print(f"the run's agent offers no calculator (tools: {', '.join(agents[0].tools.names())})", file=sys.stderr)
        return 2

    out = Report()
    out.say(f"# python benchmarks/calculator_agent.py --run-dir RUN --count {args.count} --seed {args.seed}")
    out.say(f"run: {args.run_dir.name} (policy {launchers[0].default_policy}, backend {launchers[0].default_backend})")
    out.say("right: the final answer is the result, or exactly 'The answer is RESULT.'")
    for (way, _tools), agent in zip(WAYS, agents):
        start = time.perf_counter()
        records = ask_all(agent, pairs)
        seconds = time.perf_counter() - start
        rest = records[1:]
        wrong = [record for record in rest if not record["right"]]
        out.say()
        out.say(f"## {way} (direct tools: {', '.join(agent.direct_tools) or 'none'}; {seconds:.0f} s)")
        out.say(f"17*23 -> {records[0]['text']!r}")
        out.say(f"right: {args.count - len(wrong)} of {args.count}; calculator called with the right value: "
                f"{sum(record['called'] for record in rest)}; refused: "
                f"{sum(record['outcome'] == 'refuse' for record in rest)}")
        for record in wrong:
            called = "right call" if record["called"] else "no right call"
            out.say(f"  {record['result']:>8}  {record['outcome']}, {called}: {record['text']!r}")
        own = ask_all(agent, list(OWN_WORDS))
        out.say(f"own words: right {sum(record['right'] for record in own)} of {len(own)}; calculator called with "
                f"the right value: {sum(record['called'] for record in own)}; refused: "
                f"{sum(record['outcome'] == 'refuse' for record in own)}")
        for (question, _expression), record in zip(OWN_WORDS, own):
            if not record["right"]:
                out.say(f"  {question!r} ({record['result']})  {record['outcome']}: {record['text']!r}")
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
