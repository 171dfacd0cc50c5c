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
question with its right answer, and LATER_WORDS, LAST_WORDS,
HELDOUT_WORDS, FRESH_WORDS, NEWEST_WORDS,
UNSEEN_WORDS, SUMS_WORDS, FORMS_WORDS, POST_WORDS and ROOTS_WORDS, each written later (their docstrings say
which change each was written before); and PEOPLE
test questions about people asked in lower case without a question mark,
counting those answered with a calculator's result. Both ways run side by
side in one process; each question is a new session. About a minute and a
half per way on one core.

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
LATER_WORDS = (
    ("What's 48 plus 17?", "48+17"), ("how much is 300 minus 45", "300-45"), ("Multiply 13 and 7 for me.", "13*7"),
    ("What is twelve times eleven?", "12*11"), ("Can you divide 96 by 8?", "96/8"), ("Work out 1234 + 4321.", "1234+4321"),
    ("whats 56*9", "56*9"), ("If I have 15 apples and buy 27 more, how many do I have?", "15+27"),
    ("What is 2500 / 50?", "2500/50"), ("Tell me 33 x 3.", "33*3"), ("Sum of 70 and 80?", "70+80"),
    ("What is 9 squared?", "9**2"), ("Half of 86?", "86/2"), ("What's 7 percent of 200?", "7*200/100"),
    ("Calculate 88 - 29", "88-29"), ("How many is 6 times 7", "6*7"), ("what do 45 and 55 add up to", "45+55"),
    ("Please compute 17 * 19.", "17*19"), ("What's the product of 14 and 15?", "14*15"),
    ("Take 1000 away from 5000.", "5000-1000"),
)
"""More of them, written after the agent's calculator was held to the
question's numbers and used for nothing else; three need a number the
question does not write ("squared", "half", "percent")."""
LAST_WORDS = (
    ("What is 144 divided by 12?", "144/12"), ("add 19 to 23", "19+23"), ("What's 81 minus 18", "81-18"),
    ("Can you multiply 21 by 3?", "21*3"), ("What is the difference between 90 and 35?", "90-35"),
    ("Total of 120 and 35?", "120+35"), ("What is 5 times 25?", "5*25"), ("Divide 500 by 4 please", "500/4"),
    ("How much is 64 over 8?", "64/8"), ("What is 3 to the power of 4?", "3**4"), ("Whats 11 plus 99", "11+99"),
    ("Subtract 15 from 40", "40-15"), ("The product of 9 and 12?", "9*12"), ("I want 250 minus 75.", "250-75"),
    ("What do 8 and 9 make when multiplied?", "8*9"), ("quotient of 72 and 6", "72/6"),
)
"""And more, written before the operation a question names in words was
checked against the call's operators, and used for nothing else."""
HELDOUT_WORDS = (
    ("What is 48 plus 52?", "48+52"), ("Could you multiply 13 by 13 for me?", "13*13"), ("what's 7 times 6", "7*6"),
    ("How much is 900 minus 123?", "900-123"), ("Find 20 percent of 150.", "20/100*150"),
    ("What is 250 / 10?", "250/10"), ("What is fifteen plus twenty?", "15+20"), ("Take 12 from 50.", "50-12"),
    ("What is 6 cubed?", "6**3"), ("Double 45.", "45*2"), ("What's the total of 5, 10 and 15?", "5+10+15"),
    ("Multiply 11 and 12.", "11*12"), ("What is 1000 divided by 8?", "1000/8"),
    ("Give me the sum of 333 and 667.", "333+667"), ("What is 2 + 3 * 4?", "2+3*4"), ("Compute 81 over 9", "81/9"),
    ("How much is 45% of 80?", "45/100*80"), ("Subtract 7 from 100.", "100-7"), ("twenty five times four?", "25*4"),
    ("How much do 19 and 23 add up to?", "19+23"), ("What's 64 divided by four?", "64/4"),
    ("How many times does 8 go into 64?", "64/8"), ("What is 5 less than 20?", "20-5"),
    ("How much more is 50 than 20?", "50-20"), ("Increase 200 by 7%.", "200*1.07"),
    ("If 3 pens cost 6 dollars, what does one pen cost?", "6/3"), ("What is 10 squared plus 1?", "10**2+1"),
)
"""And more, written before a made-up calculation was replaced with the
arithmetic the question states; the last six ask what a question's numbers
and one operation word alone would get wrong, and were in mind while that
rule was written. Its first measure showed most of the rest refused because
the base had looked up a made-up name, which is why such a lookup became the
question's calculation: held out for the first change, not for the second."""
FRESH_WORDS = (
    ("What is 37 plus 58?", "37+58"), ("calculate 14 times 16", "14*16"), ("Please add 1200 and 800", "1200+800"),
    ("What's 95 minus 17?", "95-17"), ("How much is 7 multiplied by 9?", "7*9"),
    ("What is 360 divided by 12?", "360/12"), ("Work out 3.5 plus 1.25", "3.5+1.25"), ("what is 10% of 90", "10/100*90"),
    ("What's eight plus nine?", "8+9"), ("What is 11 squared?", "11**2"), ("Can you tell me what 56 + 44 is?", "56+44"),
    ("Find the product of 6, 7 and 2.", "6*7*2"), ("What do you get when you subtract 30 from 75?", "75-30"),
    ("what's half of 250", "250/2"), ("Compute 2^8", "2**8"), ("What is 100 - 37?", "100-37"),
    ("Tell me 13 x 4.", "13*4"), ("How much is forty minus eight?", "40-8"),
    ("I have 12 cookies and eat 5. How many are left?", "12-5"), ("What is 3 plus 4 times 2?", "3+4*2"),
    ("A train goes 60 miles per hour for 3 hours. How far does it go?", "60*3"),
    ("What is the average of 4 and 8?", "(4+8)/2"),
)
"""And more, written after both changes and before either was measured on
them, and used for nothing else."""
NEWEST_WORDS = (
    ("How many times does 7 go into 91?", "91/7"), ("How many 6s are in 48?", "48/6"),
    ("How much bigger is 90 than 35?", "90-35"), ("How many more is 120 than 85?", "120-85"),
    ("By how much does 300 exceed 175?", "300-175"), ("What is 45 more than 30?", "45+30"),
    ("How many times larger is 60 than 12?", "60/12"), ("What's 18 times 3?", "18*3"),
    ("Sum up 15, 25 and 35.", "15+25+35"), ("what is 250 take away 80", "250-80"),
    ("Divide 84 into 7 equal parts; how big is each?", "84/7"), ("What is 1/4 of 200?", "200/4"),
    ("Whats 9 x 9", "9*9"), ("what is twenty divided by four", "20/4"), ("Compute 15 squared.", "15**2"),
    ("How much is 3 cubed?", "3**3"), ("What's 12.5 times 4?", "12.5*4"), ("Triple 21.", "21*3"),
    ("What is 30 percent of 70?", "30/100*70"), ("Add 5 to 17, please.", "5+17"),
    ("What do you get if you take 9 from 40?", "40-9"), ("Minus 14 from 60?", "60-14"),
    ("How many days are in 6 weeks?", "6*7"), ("What is 1000 times 0.5?", "1000*0.5"),
)
"""And more, written before comparisons ("how many times does 8 go into
64", "how much more is 50 than 20") were read as the operation they ask,
and used for nothing else; a third of them compare two numbers. They were
in mind while that rule was written ("divide 84 into 7" is why "into"
without "divide" alone reverses), so they measure it in sight."""
UNSEEN_WORDS = (
    ("How many times does 12 go into 144?", "144/12"), ("How much taller is 190 than 165?", "190-165"),
    ("How much less is 40 than 100?", "100-40"), ("what's 64 divided by 16", "64/16"),
    ("Please multiply 23 by 11.", "23*11"), ("What is 17 plus 38 plus 5?", "17+38+5"),
    ("How much is 2.5 times 8?", "2.5*8"), ("Compute 0.25 * 400", "0.25*400"), ("What is 7 to the power of 3?", "7**3"),
    ("What's 50% of 64?", "50/100*64"), ("Twice 35?", "35*2"),
    ("If you split 90 into 3 groups, how many in each?", "90/3"), ("What is 1000 minus 1?", "1000-1"),
    ("How many more is 75 than 60?", "75-60"), ("Divide 120 by 8.", "120/8"), ("what is nine times nine", "9*9"),
    ("Subtract 0.5 from 3", "3-0.5"), ("How many times smaller is 5 than 40?", "40/5"),
    ("What's the sum of 101 and 202?", "101+202"), ("What is 13 squared?", "13**2"),
)
"""And more, written after that rule and before it was measured on them,
and used for nothing else."""
SUMS_WORDS = (
    ("Add 12, 15 and 20 together.", "12+15+20"), ("What is 4 times 5 times 6?", "4*5*6"),
    ("What's 100 minus 35?", "100-35"), ("How much is 6.5 plus 3.25?", "6.5+3.25"),
    ("What is 81 divided by 3?", "81/3"),
    ("What is 25 percent of 80?", "25/100*80"), ("Sum 7, 8, 9 and 10.", "7+8+9+10"), ("what is five times six", "5*6"),
    ("How many times does 9 go into 99?", "99/9"), ("How much older is 64 than 29?", "64-29"),
    ("Multiply 2.5 by 4.", "2.5*4"), ("What's 1,200 + 800?", "1200+800"), ("What is 50 divided by 0.5?", "50/0.5"),
    ("Calculate 45 * 45.", "45*45"), ("What is 2 to the power of 5?", "2**5"), ("Subtract 250 from 1000.", "1000-250"),
    ("What is the product of 3, 4 and 5?", "3*4*5"), ("How much is 12 squared?", "12**2"),
    ("What's 333 plus 444 plus 111?", "333+444+111"), ("What is 90 minus 45 minus 15?", "90-45-15"),
)
"""And more, written after `UNSEEN_WORDS` was measured and before a call
computing another value than the arithmetic a question states plainly was
replaced with it, and used for nothing else; a third of them give three
numbers or more."""

FORMS_WORDS = (
    ("What is 100 minus 30 minus 20?", "100-30-20"), ("Take 15 away from 60.", "60-15"),
    ("What is twice 42?", "42*2"), ("What is a quarter of 84?", "84/4"), ("What's three quarters of 200?", "200*3/4"),
    ("What is one third of 27?", "27/3"), ("How many 5s are there in 65?", "65/5"),
    ("By how much is 500 greater than 320?", "500-320"), ("What is the remainder when 29 is divided by 4?", "29%4"),
    ("If I share 48 sweets equally among 6 children, how many does each get?", "48/6"), ("Double 37.", "37*2"),
    ("What is 8 times 7 times 2?", "8*7*2"), ("Halve 96.", "96/2"), ("What is 2/5 of 50?", "2/5*50"),
    ("What do 14 and 28 add up to?", "14+28"), ("Deduct 45 from 300.", "300-45"), ("What is 17 more than 45?", "45+17"),
    ("What is 9 less than 50?", "50-9"), ("How much is 15% of 300?", "15/100*300"), ("What's 6 cubed?", "6**3"),
    ("What is 144 divided by 12, then times 3?", "144/12*3"), ("Tell me what 4 squared plus 9 is.", "4**2+9"),
    ("Calculate 250 plus 250 minus 100.", "250+250-100"), ("How many hours are in 3 days?", "3*24"),
)
"""And more, written after `SUMS_WORDS` was measured and before any rule
for the forms `NEWEST_WORDS`, `UNSEEN_WORDS` and `SUMS_WORDS` left wrong or
refused (a chain of one operation, "twice", "take ... from", a fraction of a
number, "how many 5s in", "exceed") was written; used for nothing else.
Half are those forms in new words, half forms no set asked before."""

POST_WORDS = (
    ("What is 60 minus 25 minus 5?", "60-25-5"), ("Take 8 from 50.", "50-8"), ("What is twice 19?", "19*2"),
    ("What is a fifth of 45?", "45/5"), ("What is two thirds of 60?", "60*2/3"), ("What is 3/4 of 80?", "3/4*80"),
    ("How many 4s are in 36?", "36/4"), ("By how much is 90 bigger than 55?", "90-55"),
    ("What's the remainder when 50 is divided by 7?", "50%7"), ("Split 72 into 8 equal groups.", "72/8"),
    ("What is 12 more than 30?", "12+30"), ("Halve 130.", "130/2"), ("What is 5 squared minus 4?", "5**2-4"),
    ("What is 100 divided by 4, then plus 5?", "100/4+5"), ("Calculate 7 times 6 plus 8.", "7*6+8"),
    ("How much does 400 exceed 150 by?", "400-150"), ("What is 81 mod 10?", "81%10"),
    ("What's 2 to the power of 6 minus 1?", "2**6-1"), ("How many weeks are in 21 days?", "21/7"),
    ("If 5 friends share 60 dollars equally, how much does each get?", "60/5"),
)
"""And more, written after the rules `FORMS_WORDS` was written for (chains,
fractions, "twice", remainders, sharing out, "how many 5s in") and before
they were measured on them; used for nothing else."""

ROOTS_WORDS = (
    ("What is the square root of 144?", "sqrt(144)"), ("square root of 81", "sqrt(81)"),
    ("What's the sqrt of 49?", "sqrt(49)"), ("Calculate sqrt(225).", "sqrt(225)"),
    ("What is the square root of 2?", "sqrt(2)"), ("Find the square root of 1,024.", "sqrt(1024)"),
    ("what is sqrt 64", "sqrt(64)"), ("Tell me the square root of 169.", "sqrt(169)"),
    ("What is the square root of nine?", "sqrt(9)"), ("What's the cube root of 27?", "27**(1/3)"),
    ("Cube root of 1000?", "1000**(1/3)"), ("What is the average of 4 and 8?", "(4+8)/2"),
    ("What's the mean of 10, 20 and 30?", "(10+20+30)/3"), ("Average of 7 and 9?", "(7+9)/2"),
    ("What is the mean of 3, 5, 7 and 9?", "(3+5+7+9)/4"), ("Find the average of 100 and 250.", "(100+250)/2"),
    ("what's the average of 2.5 and 3.5", "(2.5+3.5)/2"),
    ("What is the average of twelve and eighteen?", "(12+18)/2"),
    ("Give me the arithmetic mean of 6 and 10.", "(6+10)/2"),
    ("My test scores were 70, 80 and 90. What is my average?", "(70+80+90)/3"),
    ("What is the square root of 16 plus 9?", "sqrt(16)+9"), ("Square root of 400, please.", "sqrt(400)"),
)
"""And more, written before any rule read a root or an average (the forms
most asked of a calculator that no earlier set asked); used for nothing
else."""


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
    parser.add_argument("--people", type=int, default=100,
                        help="test questions about people, asked in lower case without a question mark")
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

    people: list[str] = []
    if args.people:
        from meta_spider.loom.world.dataset import WorldDataset

        test = list(WorldDataset(**settings.dataset.get("options", {})).split("test"))
        people = [example.question.rstrip("?").lower() for example in random.Random(args.seed).sample(
            test, min(args.people, len(test)))]
    out = Report()
    out.say(f"# python benchmarks/calculator_agent.py --run-dir RUN --count {args.count} --seed {args.seed} "
            f"--people {args.people}")
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
        for label, words in (("own words", OWN_WORDS), ("own words, written later", LATER_WORDS),
                             ("own words, written last", LAST_WORDS), ("own words, held out", HELDOUT_WORDS),
                             ("own words, written fresh", FRESH_WORDS),
                             ("own words, written newest", NEWEST_WORDS), ("own words, unseen", UNSEEN_WORDS),
                             ("own words, sums", SUMS_WORDS), ("own words, forms", FORMS_WORDS),
                             ("own words, after the forms", POST_WORDS), ("own words, roots and means", ROOTS_WORDS)):
            own = ask_all(agent, list(words))
            refused = sum(record["outcome"] == "refuse" for record in own)
            right = sum(record["right"] for record in own)
            out.say(f"{label}: right {right} of {len(own)}; calculator called with the right value: "
                    f"{sum(record['called'] for record in own)}; refused: {refused}; wrong answers: "
                    f"{len(own) - right - refused}")
            for (question, _expression), record in zip(words, own):
                if not record["right"]:
                    out.say(f"  {question!r} ({record['result']})  {record['outcome']}: {record['text']!r}")
        if people:
            answers = [step for step in (final_step(agent, question) for question in people)]
            numbers = [step for step in answers if step is not None and step.outcome == "answer"
                       and getattr(step.action, "source", "") == "tool"]
            out.say(f"{len(people)} test questions about people, lower case, no question mark: "
                    f"{len(numbers)} answered with the calculator's result "
                    f"({', '.join(repr(step.text) for step in numbers[:6])}{', ...' if len(numbers) > 6 else ''})")
    out.write(args.output)
    return 0


def final_step(agent: Any, question: str) -> Any:
    """The last step of one run of ``agent`` on ``question``."""
    last = None
    for step in agent.run(question):
        last = step
    return last


if __name__ == "__main__":
    sys.exit(main())
