"""Grounding a call's arguments in the user's words: the function on its
own, in the agent loop (what runs, what the session and the trace keep),
and on a run of the embedded world (on by its dataset, off by the flag)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from meta_spider.agentcore import MetaAgent, Session
from meta_spider.agentcore.arithmetic import (
    expression_problem,
    ground_numbers,
    named_operations,
    question_expression,
    question_numbers,
)
from meta_spider.agentcore.grounding import (
    complete_word,
    ground_call,
    ground_text,
    grounding,
    respelled,
    ungrounded,
)
from meta_spider.agentcore.render import step_renderable
from meta_spider.agentcore.rundir import read_run_settings
from meta_spider.backends import FakeBackend
from meta_spider.policies import DefaultRenderer, DirectPolicy
from meta_spider.policies.actions import ToolInvocation
from meta_spider.tools import DictKnowledgeBase, ToolRegistry, make_lookup_tool
from meta_spider.tools.builtin import CALCULATOR_TOOL, is_calculator
from meta_spider.tools.calculator import calculator
from meta_spider.tools.tool import Tool


@pytest.mark.parametrize("argument, question, grounded", [
    ("Beastruin Gromton", "Hello, what is the place of birth of Beastruinwyn Gromton?", "Beastruinwyn Gromton"),
    ("17 * 22", "What is 17 * 23?", "17 * 23"),
    ("DesgrenwynVoullnberg", "Where does Drousgrenard Voullnud work?", "Drousgrenard Voullnud"),
    ("mira tolan", "Where was Mira Tollan born?", "Mira Tollan"),  # case is the user's too
    ("17*23", "What is 17*23?", "17*23"),  # an exact copy stays
    ("17 + 23", "Calculate 17*23.", "17*23"),  # the model's spacing: as many numbers, not as many words
    ("17*33", "Compute 17 x 23", "17 x 23"),
    ("8 * 48", "What is 8 multiplied by 48?", "8 * 48"),  # never a word for a number
    ("Mira Tollan", "where was mira tollan born", "Mira Tollan"),  # only case and spaces differ: a copy
    ("Mira Tollan", "What is Mira Tollan's job?", "Mira Tollan"),  # a copy of part of a word run stays
    ("Mira Tolan", "What is Mira Tollan\u2019s job?", "Mira Tollan"),  # a possessive is not part of the name
    ("3 * 2", "What is 3+4 times 2?", "3 * 2"),  # far from every run: the model's own words
    ("Drathan Parziley", "What is the capital of France?", "Drathan Parziley"),
    ("Besa Gromton", "Where was Besatrainwyn Gromton born?", "Besa Gromton"),  # a dropped word is not guessed
    ("Ida Bren", "Is Ida Brenn related to Ida Brent?", "Ida Bren"),  # two runs as near: no guess
    # As near as a run with a word more ("Rouia Salfrod born"): the run with as many words wins.
    ("Raiia Salfroford", "Where was Rouia Salfrod born?", "Rouia Salfrod"),
    ("", "What is 17*23?", ""),
    ("17 * 22", "", "17 * 22"),
])
def test_ground_text(argument: str, question: str, grounded: str) -> None:
    assert ground_text(argument, question) == grounded


def test_grounding_says_whether_an_argument_is_the_questions_words() -> None:
    question = "Where was Beastruinwyn Gromton born?"
    assert grounding("Beastruin Gromton", question) == ("Beastruinwyn Gromton", True)
    assert grounding("Beastruinwyn Gromton", question) == ("Beastruinwyn Gromton", True)
    assert grounding("Zithan Bruford", question) == ("Zithan Bruford", False)
    assert grounding("x" * 300, question) == ("x" * 300, False)
    call = ToolInvocation("lookup", {"query": "Gromton", "note": "Zithan Bruford", "limit": 2})
    assert ungrounded(call, question) == "Zithan Bruford"
    assert ungrounded(ToolInvocation("lookup", {"query": "Gromton", "limit": 2}), question) is None


@pytest.mark.parametrize("question, numbers", [
    ("What's 12 plus 30?", ["12", "30"]),
    ("what is twelve times four", ["12", "4"]),
    ("Add 1,000 and 2.50 to 07", ["1000", "2.5", "7"]),
    ("twenty-one and one hundred and five; a thousand, nineteen ninety", ["21", "105", "1000", "19", "90"]),
    ("one and two", ["1", "2"]),
    ("Where was Mira Tollan born?", []),
])
def test_question_numbers_in_digits_and_in_words(question: str, numbers: list[str]) -> None:
    assert sorted(question_numbers(question)) == sorted(numbers)


def test_question_numbers_come_in_the_order_the_question_gives_them() -> None:
    assert question_numbers("Take twenty-one away from 5,000 and add a hundred and five") == ["21", "5000", "105"]
    assert question_numbers("What is Seventeen times TWENTY-THREE?") == ["17", "23"]


@pytest.mark.parametrize("expression, question, grounded", [
    ("14 + 30", "What's 12 plus 30?", "12 + 30"),  # one number miscopied, an edit away: the user's
    ("22 * 4", "What do you get if you multiply 25 by 4?", "25 * 4"),
    ("12 + 3", "What's 12 plus 30?", "12 + 30"),
    ("100 - 1", "what's 1000 - 1", "1000 - 1"),
    ("14 + 35", "What's 12 plus 30?", "14 + 35"),  # two differ: not a miscopy we can undo
    ("12 + 45", "What's 12 plus 30?", "12 + 45"),  # more than an edit away
    ("3*3600", "How many seconds are in 3 hours?", "3*3600"),  # more numbers than the question: the model's own
    ("30 - 12", "What's 12 plus 30?", "30 - 12"),  # every number the question's
])
def test_ground_numbers_puts_back_one_miscopied_number(expression: str, question: str, grounded: str) -> None:
    assert ground_numbers(expression, question) == grounded


@pytest.mark.parametrize("expression, question, grounded", [
    ("25*4", "What do you get if you multiply 25 by 4?", "25*4"),  # not "25 by 4": the calculator cannot read it
    ("350+275", "Add 350 and 275.", "350+275"),
    ("17 + 23", "Calculate 17*23.", "17*23"),  # an arithmetic run is still copied
    ("14 + 30", "What's 12 plus 30?", "12 + 30"),
])
def test_an_expression_is_grounded_only_by_arithmetic(expression: str, question: str, grounded: str) -> None:
    call = ToolInvocation("calculator", {"expression": expression})
    assert ground_call(call, question).arguments == {"expression": grounded}


def test_an_expression_must_hold_the_questions_numbers() -> None:
    def made_up(expression: str, question: str) -> str | None:
        return ungrounded(ToolInvocation("calculator", {"expression": expression}), question)

    assert made_up("30 - 34", "what year was shamor shuson born") == "30 - 34"
    assert made_up("14 + 30", "What's 12 plus 30?") == "14 + 30"  # ungrounded until ground_numbers mends it
    assert made_up("12*4", "what is twelve times four") is None
    assert made_up("2^10", "What is 2 to the power of 10?") is None
    assert made_up("1,000 + 1", "a thousand plus one") is None
    # A name is still held to the question's words.
    assert ungrounded(ToolInvocation("lookup", {"query": "Zed Quux"}), "What's 12 plus 30?") == "Zed Quux"


@pytest.mark.parametrize("question, operations", [
    ("Sum of 70 and 80?", {"add"}),
    ("Can you divide 96 by 8?", {"divide"}),
    ("What do you get if you multiply 25 by 4?", {"multiply"}),  # "by" alone names nothing
    ("What is 2 to the power of 10?", {"raise"}),
    ("Compute 17 x 23", {"multiply"}),
    ("what's 1000 - 1", {"subtract"}),
    ("Compute (7 + 5) * 3", {"add", "multiply"}),
    ("What is twenty-one?", set()),  # a hyphen in a word is no minus
    ("What's 15% of 80?", {"take a percentage"}),
    ("Seven percent of 200", {"take a percentage"}),
    ("Where was Mira Tollan born?", set()),
    ("How many times does 8 go into 64?", {"divide"}),  # a comparison: "times" does not multiply
    ("How much more is 50 than 20?", {"subtract"}),  # nor "more" add
    ("What is 45 more than 30?", {"add"}),
    ("Tell me the square root of 196.", {"take a root"}),
    ("sqrt(81)?", {"take a root"}),
    ("What is the mean of 2 and 12?", {"average"}),
])
def test_named_operations_in_words_and_symbols(question: str, operations: set[str]) -> None:
    assert named_operations(question) == operations


@pytest.mark.parametrize("expression, question, problem", [
    ("70/80", "Sum of 70 and 80?", "divides where the question asks to add"),
    ("2+10", "What is 2 to the power of 10?", "adds where the question asks to raise to a power"),
    ("1000 + 1", "what's 1000 - 1", "adds where the question asks to subtract"),
    ("30 - 34", "what year was Mira Tollan born", "holds 30, which the question does not give"),
    ("15 * 80", "What's 15% of 80?", "multiplies where the question asks to take a percentage"),
    ("17*23", "what is 17*23 + 5", "leaves out 5, which the question gives"),
    ("17*23+5", "what is 17*23 + 5", None),
    ("17 * 23", "Where was Mira Tollan born? And what is 17*23?", None),
    ("2**10", "What is 2 to the power of 10?", None),
    ("(7+5)*3", "Compute (7 + 5) * 3", None),  # two operations named: not checked
    ("15+27", "If I have 15 apples and buy 27 more, how many do I have?", None),
    ("12*4", "what is twelve times four", None),
    ("86/2", "Half of 86?", None),  # the 2 comes with "half"
    ("9**2", "What is 9 squared?", None),
    ("15 / 100 * 80", "What's 15% of 80?", None),  # a percentage is a division by 100
    ("7/100*200", "Seven percent of 200", None),
    ("86*3", "Half of 86?", "holds 3, which the question does not give"),
    ("12, 30", "What is the sum of 12, 30 and 8?", "computes nothing where the question asks to add"),
    ("8*64", "How many times does 8 go into 64?", "multiplies where the question asks to divide"),
    ("50+20", "How much more is 50 than 20?", "adds where the question asks to subtract"),
    # The arithmetic a question states plainly: another result is not the question's.
    ("17 + 5", "What is 17 plus 38 plus 5?", "computes 22 where the question states 17 + 38 + 5"),
    ("8/64", "How many times does 8 go into 64?", "computes 0.125 where the question states 64 / 8"),
    ("5 + 38 + 17", "What is 17 plus 38 plus 5?", None),  # the same result
    ("3 + 4 * 2", "What is 3 plus 4 times 2?", None),
    ("3 * 4 + 2", "What is 3 plus 4 times 2?", "computes 14 where the question states 3 + 4 * 2"),
    ("29 / 4", "What is the remainder when 29 is divided by 4?",
     "divides where the question asks to take a remainder"),
    ("29 % 4", "What is the remainder when 29 is divided by 4?", None),
    ("15 % 300", "What's 15% of 300?", "takes a remainder where the question asks to take a percentage"),
    ("84 * 4", "What is a quarter of 84?", "multiplies where the question asks to divide"),
    ("84 / 4", "What is a quarter of 84?", None),  # the 4 comes with "quarter"
    ("sqrt(196)", "Tell me the square root of 196.", None),
    ("196 / 2", "Tell me the square root of 196.", "holds 2, which the question does not give"),
    ("196 * 196", "Tell me the square root of 196.", "multiplies where the question asks to take a root"),
    ("64 ** (1/3)", "What's the cube root of 64?", None),  # the 1 and the 3 come with "cube root"
    ("(2 + 12) / 2", "What is the mean of 2 and 12?", None),  # the 2 is how many numbers it gives
    ("2 - 12", "What is the mean of 2 and 12?", "subtracts where the question asks to average"),
    ("2 + 12 / 2", "What is the mean of 2 and 12?", "adds and divides where the question asks to average"),
    # a root or an average is checked beside other operations too: no other computes it
    ("25 - 4", "What is the square root of 25 minus 4?", "subtracts where the question asks to take a root"),
    ("sqrt(25) - 4", "What is the square root of 25 minus 4?", None),
])
def test_expression_problem_names_what_is_not_the_questions(expression: str, question: str,
                                                            problem: str | None) -> None:
    assert expression_problem(expression, question) == problem


@pytest.mark.parametrize("question, expression, value", [
    ("What is seventeen times twenty-three", "17 * 23", "391"),
    ("What is 17*23 + 5?", "17*23 + 5", "396"),
    ("What is 7 x 8?", "7 * 8", "56"),
    ("What is 81 \u00f7 9?", "81 / 9", "9"),
    ("Compute 2^8", "2**8", "256"),
    ("1,000 + 5?", "1000 + 5", "1005"),
    ("What is the sum of 12, 30 and 8?", "12 + 30 + 8", "50"),
    ("If I have 15 apples and buy 27 more, how many do I have?", "15 + 27", "42"),
    ("What do 8 and 9 make when multiplied?", "8 * 9", "72"),
    ("how much is 300 minus 45", "300 - 45", "255"),
    ("Subtract 58 from 200.", "200 - 58", "142"),  # "from" between them: the other way round
    ("What is 5 less than 20?", "20 - 5", "15"),
    ("What is the difference between 35 and 90?", "90 - 35", "55"),
    ("Divide 500 by 4 please", "500 / 4", "125"),
    ("What's 7 percent of 200?", "7 / 100 * 200", "14"),
    ("How much is 15% of 240?", "15 / 100 * 240", "36"),
    ("What is 3 to the power of 4?", "3 ** 4", "81"),
    ("What is 9 squared?", "9 ** 2", "81"),
    ("Half of 86?", "86 / 2", "43"),
    ("Double 45", "45 * 2", "90"),
    ("What is 1000 times 0.5?", "1000 * 0.5", "500"),  # a number under one keeps its 0
    ("How many times does 8 go into 64?", "64 / 8", "8"),  # "into": the other way round
    ("Divide 84 into 7 equal parts", "84 / 7", "12"),  # ... but not after "divide"
    ("How much more is 50 than 20?", "50 - 20", "30"),  # "than" after a word for larger: in order
    ("How many times larger is 60 than 12?", "60 / 12", "5"),
    ("How much smaller is 20 than 50?", "50 - 20", "30"),  # after a word for smaller: the other way round
    ("By how much is 500 greater than 320?", "500 - 320", "180"),  # the comparison need not follow "how much"
    ("By how much does 300 exceed 175?", "300 - 175", "125"),
    ("What is 45 more than 30?", "45 + 30", "75"),  # "more than" without "how much": an addition
    ("How many 5s are there in 65?", "65 / 5", "13"),
    ("What do you get if you take 9 from 40?", "40 - 9", "31"),
    ("Twice 35?", "35 * 2", "70"),
    ("Halve 96.", "96 / 2", "48"),
    ("What is a quarter of 84?", "84 / 4", "21"),  # a fraction in words brings its denominator
    ("What's three quarters of 200?", "200 * 3 / 4", "150"),
    ("What is one third of 27?", "27 / 3", "9"),
    ("What is 2/5 of 50?", "2 / 5 * 50", "20"),  # ... and in digits
    ("What is the remainder when 29 is divided by 4?", "29 % 4", "1"),
    ("If you split 90 into 3 groups, how many in each?", "90 / 3", "30"),  # "into" after a word for sharing out
    ("Share 48 sweets among 6 children.", "48 / 6", "8"),
    ("If 5 friends share 60 dollars, how much does each get?", "60 / 5", "12"),  # the number shared comes after
    # A chain: an operator between each two numbers, precedence as written, "then" first what came before.
    ("What is 90 minus 45 minus 15?", "90 - 45 - 15", "30"),
    ("Calculate 250 plus 250 minus 100.", "250 + 250 - 100", "400"),
    ("What is 3 plus 4 times 2?", "3 + 4 * 2", "11"),
    ("What is 10 squared plus 1?", "10 ** 2 + 1", "101"),
    ("What is 144 divided by 12, then times 3?", "(144 / 12) * 3", "36"),
    ("What is 2 plus 3, then squared?", None, None),
    ("What is 4 plus 9 squared?", "4 + 9 ** 2", "85"),
    # A root of one number, an average of several.
    ("Tell me the square root of 196.", "sqrt(196)", "14"),
    ("sqrt 121?", "sqrt(121)", "11"),
    ("What is sqrt(36)?", "sqrt(36)", "6"),
    ("What's the square root of three?", "sqrt(3)", "1.73205080756888"),
    ("What's the cube root of 64?", "64 ** (1/3)", "4"),
    ("What is the mean of 2 and 12?", "(2 + 12) / 2", "7"),
    ("Average these: 1, 2, 3, 4 and 10.", "(1 + 2 + 3 + 4 + 10) / 5", "4"),
])
def test_question_expression_reads_the_arithmetic_a_question_states(question: str, expression: str | None,
                                                                    value: str | None) -> None:
    assert question_expression(question) == expression
    assert expression is None or calculator(expression) == value


@pytest.mark.parametrize("question", [
    "How many times does 8 fit in 64?",  # a comparison with neither "than" nor "into": which way is not said
    "Is 50 more than 20?",  # asks whether, not how much
    "Is 5 less than 20?",
    "What is 3 times more than 5?",  # "than" with a multiplication
    "What is half of a third of 90?",  # two fractions
    "How many 5s are there?",  # in what, not said
    "What is 12 plus 30 and 4 minus 1?",  # a chain with a gap that names no operation
    "What is the sum of 3 plus 4 times 2?",  # an operation before the chain
    "If 3 pens cost 6 dollars, what is the price per pen?",  # a rate: which way is not said
    "What is -5 plus 3?",  # a sign the numbers would lose
    "What is 17*23 plus 5?",  # an expression and an operation in words besides
    "What is 17*23 and 4*5?",  # two expressions
    "Increase 200 by 7%.",  # a percentage without "of"
    "What is 2 to the power of 10 and 3?",  # three numbers for a power
    "Double 45 and 3",
    "Where was Mira Tollan born in 1920?",
    "What is 12 and 30?",  # no operation
    "What is the square root of 25 minus 4?",  # of 25, or of 21: not said
    "What is the fourth root of 16?",  # a root the calculator has no function for
    "What is the average of 40?",  # one number
    "",
])
def test_question_expression_leaves_what_a_question_does_not_state_plainly(question: str) -> None:
    assert question_expression(question) is None


ARITHMETIC_TEXT = st.text("0123456789 .,+-*/^%()x\u00d7\u00f7abcdefghijklmnopqrstuvwxyz'?", max_size=60)


@settings(max_examples=400, deadline=None)
@given(argument=ARITHMETIC_TEXT, question=ARITHMETIC_TEXT)
def test_grounding_any_text_never_raises_and_keeps_what_it_cannot_mend(argument: str, question: str) -> None:
    """Whatever a model writes and a user asks: a string back, and a call
    whose every argument comes from the question once grounded is one
    :func:`ungrounded` accepts, or names the argument it does not."""
    call = ToolInvocation("calculator", {"expression": argument})
    grounded = ground_call(call, question)
    assert isinstance(grounded.arguments["expression"], str)
    assert ungrounded(grounded, question) in (None, grounded.arguments["expression"])
    if expression_problem(argument, question) is None and argument.strip():
        assert ground_numbers(argument, question) == argument  # nothing to mend in the question's own arithmetic


@settings(max_examples=400, deadline=None)
@given(question=ARITHMETIC_TEXT)
def test_the_arithmetic_a_question_states_is_its_own_and_computes(question: str) -> None:
    """What :func:`question_expression` reads is an expression the check
    holds to be the question's, and one the calculator reads."""
    from meta_spider.tools.calculator import CalculatorError, CalculatorSyntaxError

    expression = question_expression(question)
    if expression is not None:
        assert expression_problem(expression, question) is None
        try:
            calculator(expression)
        except CalculatorError as error:  # a division by zero is the question's, not a misreading
            assert not isinstance(error, CalculatorSyntaxError), error


_SPOKEN = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}


@settings(max_examples=300, deadline=None)
@given(numbers=st.lists(st.integers(1, 999), min_size=2, max_size=6),
       operators=st.lists(st.sampled_from(sorted(_SPOKEN)), min_size=5, max_size=5),
       opening=st.sampled_from(["What is ", "Calculate ", "what's ", "Tell me "]))
def test_a_spoken_chain_computes_what_its_symbols_do(numbers: list[int], operators: list[str], opening: str) -> None:
    """A chain of numbers with an operator word between each two reads as
    the same arithmetic written in symbols, the calculator's precedence included."""
    spoken = " ".join(f"{_SPOKEN[op]} {n}" for op, n in zip(operators, numbers[1:]))
    written = " ".join(f"{op} {n}" for op, n in zip(operators, numbers[1:]))
    expression = question_expression(f"{opening}{numbers[0]} {spoken}?")
    assert expression is not None
    assert calculator(expression) == calculator(f"{numbers[0]} {written}")  # numbers from 1: no division by zero


@given(times=st.integers(1, 9), whole=st.integers(1, 5000),
       denominator=st.sampled_from([("half", 2), ("third", 3), ("quarter", 4), ("fifth", 5), ("tenth", 10)]))
def test_a_fraction_of_a_number_in_words_is_that_share_of_it(times: int, whole: int,
                                                             denominator: tuple[str, int]) -> None:
    word, parts = denominator
    spelt = ["a", "two", "three", "four", "five", "six", "seven", "eight", "nine"][times - 1]
    plural = word if times == 1 else ("halves" if word == "half" else word + "s")
    expression = question_expression(f"What is {spelt} {plural} of {whole}?")
    assert expression is not None
    assert float(calculator(expression)) == pytest.approx(whole * times / parts)


@pytest.mark.parametrize("text, record, respelt", [
    ("Could you tell me when Zerpieth Kilrideg was born?", "Zerpieth Kilridge: born 1975 in Fealtrorara.",
     "Could you tell me when Zerpieth Kilridge was born?"),
    ("What is Sathk Stagothski's job?", "Sathek Stagothski: born 1990", "What is Sathek Stagothski's job?"),
    ("Did Mira Tolan meet Zerpieth Kilrideg?", "Mira Tollan: born in Kuba; Zerpieth Kilridge: born in Goka.",
     "Did Mira Tollan meet Zerpieth Kilridge?"),  # every name the record writes
    ("Where was Mira Tollan born?", "Mira Tollan: born in Kuba.", "Where was Mira Tollan born?"),  # a copy
    ("where was mira tolan born?", "Mira Tollan: born in Kuba.", "where was Mira Tollan born?"),  # lower case
    ("where was mira tollan born", "Mira Tollan: born in Kuba.", "where was Mira Tollan born"),  # lower case, a copy
    ("where was Mira tolan born?", "Mira Tollan: born in Kuba.", "where was Mira tolan born?"),  # neither case
    ("WHERE WAS MIRA TOLAN BORN?", "Mira Tollan: born in Kuba.", "where was Mira Tollan born?"),  # capitals
    ("WHERE WAS MIRA TOLLAN BORN?", "Mira Tollan: born in Kuba.", "where was Mira Tollan born?"),  # capitals, a copy
    ("WHERE IS FEALTRORARA?", "Zerpieth Kilridge: born in Fealtrorara.", "WHERE IS FEALTRORARA?"),  # no name: as typed
    ("when was tollan born?", "Mira Tollan: born in Kuba.", "when was Tollan born?"),  # the subject's surname
    ("WHEN WAS TOLLAN BORN?", "Mira Tollan: born in Kuba.", "when was Tollan born?"),
    ("When was tollan born?", "Mira Tollan: born in Kuba.", "When was tollan born?"),  # not all in lower case
    ("when was mira born?", "Mira Tollan: born in Kuba.", "when was mira born?"),  # under five letters
    ("when was tolan born?", "Mira Tollan: born in Kuba.", "when was tolan born?"),  # one word, misspelt
    ("who works at drionklo?", "Mira Tollan: works for Drionklo Foundry.", "who works at drionklo?"),  # not the subject
    ("where is fealtrorara?", "Zerpieth Kilridge: born in Fealtrorara.", "where is fealtrorara?"),  # one word
    ("are these hers?", "There Kilridge: a botanist.", "are these hers?"),
    ("Where was Mira Tallon born?", "Mira Tollan: born in Kuba.", "Where was Mira Tallon born?"),  # two edits: another
    ("Was he born in Gkoa?", "Mira Tollan: born in Goka.", "Was he born in Gkoa?"),  # under five letters
    ("Is Mira, Tolan here?", "Mira Tollan: born in Kuba.", "Is Mira, Tolan here?"),  # not one run of words
    ("Where was Mira Tolan born?", "", "Where was Mira Tolan born?"),
])
def test_respelled_writes_a_misspelt_name_as_the_record_spells_it(text: str, record: str, respelt: str) -> None:
    assert respelled(text, record) == respelt


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=80), record=st.text(max_size=120))
def test_respelling_any_text_never_raises_and_settles_at_once(text: str, record: str) -> None:
    once = respelled(text, record)
    assert isinstance(once, str) and respelled(once, record) == once


class _Forgiving:
    """A knowledge base that finds Mira Tollan under one misspelling, as the world's forgives typos."""

    name = "people"

    def lookup(self, query: str) -> str | None:
        return "Mira Tollan: born in Kuba." if "tolan" in query.casefold() else None


@pytest.mark.parametrize("context, grounded, respelt", [
    ("question", ("lookup",), True),
    ("question", (), False),  # a search not held to the question: its record does not respell it
    ("all", ("lookup",), True),  # the whole conversation, respelt the same
    ("all", (), False),
])
def test_the_question_the_model_reads_after_a_record_spells_its_name(context: str, grounded: tuple[str, ...],
                                                                     respelt: bool) -> None:
    registry = ToolRegistry([make_lookup_tool(_Forgiving())])
    backend = FakeBackend([call("lookup", query="Mira Tolan"), "She was born in Kuba."])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), registry, context=context, grounded_tools=grounded)
    final = agent.ask("Where was Mira Tolan born?")
    assert final.text == "She was born in Kuba."
    after_the_record = backend.history[1]
    assert ("Where was Mira Tollan born?" in after_the_record) is respelt
    assert ('"query": "Mira Tollan"' in after_the_record) is respelt  # the call as the model reads it back
    assert "Where was Mira Tolan born?" in backend.history[0]  # before a record: as the user wrote it
    assert final.session.messages[0]["content"] == "Where was Mira Tolan born?"  # the session keeps the user's words
    assert final.session.tool_results[0].arguments == {"query": "Mira Tolan"}


@pytest.mark.parametrize("typed, name", [("where was mira tolan born", "mira tolan"),
                                         ("WHERE WAS MIRA TOLAN BORN", "MIRA TOLAN")])
def test_a_name_typed_in_lower_case_or_capitals_is_read_as_the_record_writes_it(typed: str, name: str) -> None:
    registry = ToolRegistry([make_lookup_tool(_Forgiving())])
    backend = FakeBackend([call("lookup", query=name), "She was born in Kuba."])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), registry, grounded_tools=("lookup",))
    final = agent.ask(typed)
    assert "where was Mira Tollan born" in backend.history[1]
    assert '"query": "Mira Tollan"' in backend.history[1]
    assert typed in backend.history[0]
    assert final.session.messages[0]["content"] == typed


@pytest.mark.parametrize("value, question, completed", [
    ("capital of Velor", "What is the capital of Veloria?", "capital of Veloria"),  # cut inside a word
    ("Br", "Where was Brwimziolek Riomsealski born?", "Brwimziolek"),
    ("Vea ", "What is the job of Veaellle Ruberg?", "Veaellle"),
    ("capital", "What is the capital of Veloria?", "capital"),  # a whole word: as it is
    ("ital", "What is the capital of Veloria?", "ital"),  # not from a word's start
    ("Ve", "Is Veloria near Venmark?", "Ve"),  # the start of two words
    ("Zed", "What is the capital of Veloria?", "Zed"),  # no copy
])
def test_complete_word_writes_out_the_word_a_cut_argument_ends_inside(value: str, question: str,
                                                                      completed: str) -> None:
    assert complete_word(value, question) == completed
    call = ToolInvocation("lookup", {"query": value})
    assert ground_call(call, question, cut=True).arguments["query"] == ground_text(completed, question)


def test_ground_call_touches_only_top_level_strings_and_keeps_an_unchanged_call() -> None:
    question = "Where was Beastruinwyn Gromton born?"
    call = ToolInvocation("lookup", {"query": "Beastruin Gromton", "limit": 3, "tags": ["Beastruin Gromton"]}, "c1",
                          "raw text")
    grounded = ground_call(call, question)
    assert grounded.arguments == {"query": "Beastruinwyn Gromton", "limit": 3, "tags": ["Beastruin Gromton"]}
    assert (grounded.name, grounded.call_id, grounded.raw) == ("lookup", "c1", "raw text")
    exact = ToolInvocation("lookup", {"query": "Beastruinwyn Gromton"})
    assert ground_call(exact, question) is exact
    huge = "Beastruin Gromton " * 50_000  # a runaway argument or question: left as written
    assert ground_text(huge, question) == huge and ground_text("Beastruin Gromton", huge * 2) == "Beastruin Gromton"


def call(name: str, **arguments: object) -> str:
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


def run_grounded(registry: ToolRegistry, question: str, model_call: str, reply: str,
                 grounded: tuple[str, ...] = ("lookup", "calculator")) -> list:
    """The steps of one run in which the model writes ``model_call`` and then
    ``reply``, ``grounded`` tools grounded and the calculator direct."""
    agent = MetaAgent(FakeBackend([model_call, reply]), DirectPolicy(), DefaultRenderer(), registry,
                      grounded_tools=grounded, direct_tools=("calculator",))
    return list(agent.run(question))


@pytest.fixture
def tools() -> ToolRegistry:
    registry = ToolRegistry()
    registry.register(Tool.from_function(calculator), source="tests")
    registry.register(make_lookup_tool(DictKnowledgeBase({"Mira Tollan": "Mira Tollan: born in Kuba."})),
                      source="tests")
    return registry


def test_the_loop_runs_the_grounded_call_and_keeps_what_the_model_wrote(tools: ToolRegistry) -> None:
    backend = FakeBackend([call("lookup", query="Mira Tolan"), "She was born in Kuba."])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), tools, ground_arguments=True)
    steps = list(agent.run("Where was Mira Tollan born?"))
    tool_step = steps[1]
    assert tool_step.call.arguments == {"query": "Mira Tollan"} and tool_step.observation == "Mira Tollan: born in Kuba."
    assert tool_step.written == {"query": "Mira Tolan"} and tool_step.to_dict()["written"] == {"query": "Mira Tolan"}
    assert steps[0].action.calls[0].arguments == {"query": "Mira Tolan"}  # the model step shows its own call
    # The conversation the model reads next holds the call that ran.
    assert steps[-1].session.messages[1]["tool_calls"][0]["function"]["arguments"] == {"query": "Mira Tollan"}
    assert steps[-1].text == "She was born in Kuba."
    # Off (the default): the call runs as written and misses.
    backend = FakeBackend([call("lookup", query="Mira Tolan"), "I don't know."])
    steps = list(MetaAgent(backend, DirectPolicy(), DefaultRenderer(), tools).run("Where was Mira Tollan born?"))
    assert steps[1].call.arguments == {"query": "Mira Tolan"} and steps[1].written is None
    assert steps[1].kind.value == "not_found"


class _TwoTolans:
    """A knowledge base in which "Tolan" is two people's surname."""

    name = "people"

    def lookup(self, query: str) -> str | None:
        return {"Mira Tolan": "Mira Tolan: born in Kuba.", "Kai Tolan": "Kai Tolan: born in Goka."}.get(query)

    def matches(self, query: str) -> list[str]:
        return ["Kai Tolan", "Mira Tolan"] if "Tolan" in query.split() else []


def test_a_lookup_of_a_name_two_people_share_is_a_miss_that_names_them() -> None:
    registry = ToolRegistry([make_lookup_tool(_TwoTolans())])
    backend = FakeBackend([call("lookup", query="Tolan"), "I don't know."])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), registry, grounded_tools=("lookup",))
    steps = list(agent.run("When was Tolan born?"))
    assert steps[1].kind.value == "not_found" and not steps[1].ok  # a policy that refuses on a miss still does
    assert steps[1].observation == ("'Tolan' names 2 entries, not one: Kai Tolan; Mira Tolan. "
                                    "Ask again naming one of them.")
    assert "Kai Tolan; Mira Tolan" in backend.history[1]  # what the model reads
    assert steps[-1].text == "I don't know."
    # The names travel with the miss: in the step, in the session's record and in the saved session.
    assert steps[1].choices == ("Kai Tolan", "Mira Tolan") and steps[1].to_dict()["choices"] == ["Kai Tolan",
                                                                                                 "Mira Tolan"]
    session = steps[-1].session
    assert session.tool_results[-1].choices == ["Kai Tolan", "Mira Tolan"]
    assert Session.from_json(session.to_json()) == session


def test_the_doubter_policy_asks_which_one_when_a_lookup_names_several() -> None:
    from meta_spider.backends import StopBackend
    from meta_spider.backends.base import Introspection
    from meta_spider.policies.doubter import DoubterPolicy, which_one

    registry = ToolRegistry([make_lookup_tool(_TwoTolans())])
    unsure = Introspection(p_correct=0.1, cognitive_tokens=[[0.0] * 4] * 2)
    body = '{"name": "lookup", "arguments": {"query": "Tolan"}}\n</tool_call>'
    backend = FakeBackend([unsure, "I don't know.", body])
    agent = MetaAgent(StopBackend(backend), DoubterPolicy(threshold=0.5), DefaultRenderer(), registry,
                      grounded_tools=("lookup",), max_steps=4)
    final = list(agent.run("When was Tolan born?"))[-1]
    assert (final.outcome, final.text) == ("refuse", "I don't know. Which one do you mean: Kai Tolan or Mira Tolan?")
    assert final.action.reason == "every lookup found nothing, and the lookup found several entries"
    assert len(backend.calls) == 2  # nothing generated after the miss
    # A plain miss still ends in the bare sentence.
    backend = FakeBackend([unsure, "I don't know.", body])
    agent = MetaAgent(StopBackend(backend), DoubterPolicy(threshold=0.5), DefaultRenderer(),
                      ToolRegistry([make_lookup_tool(DictKnowledgeBase({"Mira Tolan": "born in Kuba"}))]),
                      grounded_tools=("lookup",), max_steps=4)
    assert list(agent.run("When was Tolan born?"))[-1].text == "I don't know."
    # A run's own refusal sentence is the one the agent says, the question after it.
    for knowledge_base, said in ((_TwoTolans(), "I cannot say. Which one do you mean: Kai Tolan or Mira Tolan?"),
                                 (DictKnowledgeBase({"Mira Tolan": "born in Kuba"}), "I cannot say.")):
        backend = FakeBackend([unsure, "I cannot say.", body])
        agent = MetaAgent(StopBackend(backend), DoubterPolicy(threshold=0.5), DefaultRenderer(refusal="I cannot say."),
                          ToolRegistry([make_lookup_tool(knowledge_base)]), grounded_tools=("lookup",), max_steps=4)
        final = list(agent.run("When was Tolan born?"))[-1]
        assert (final.outcome, final.text) == ("refuse", said)  # an "answer" of "I don't know." before
    assert which_one(["A"]) == "Which one do you mean: A?"
    assert which_one([str(n) for n in range(7)]) == "Which one do you mean: 0, 1, 2, 3 or 4, or one of 2 more?"
    with pytest.raises(ValueError, match="at least one name"):
        which_one([])


class _BrokenMatches:
    """A knowledge base whose ``matches`` fails or answers with no sequence."""

    name = "people"

    def __init__(self, matches: object) -> None:
        self.matches = matches

    def lookup(self, query: str) -> str | None:
        return None


def _raises(query: str) -> list[str]:
    raise RuntimeError("index offline")


@pytest.mark.parametrize("matches, reason", [(_raises, "RuntimeError: index offline"),
                                              (lambda query: None, "TypeError"),
                                              ("not callable", None)])
def test_a_knowledge_base_whose_matches_fails_gives_a_typed_observation(matches: object, reason: str | None) -> None:
    registry = ToolRegistry([make_lookup_tool(_BrokenMatches(matches))])
    backend = FakeBackend([call("lookup", query="Tolan"), "I don't know."])
    steps = list(MetaAgent(backend, DirectPolicy(), DefaultRenderer(), registry).run("When was Tolan born?"))
    if reason is None:  # not a method: the plain miss
        assert steps[1].kind.value == "not_found" and steps[1].observation == "No entry found for 'Tolan'."
    else:
        assert steps[1].kind.value == "tool_raised" and reason in steps[1].observation
        assert steps[1].observation.startswith("Error: tool 'lookup' raised ")
    assert steps[-1].text == "I don't know."  # the run goes on


def test_a_grounded_tool_does_not_run_for_a_name_the_question_does_not_give(tools: ToolRegistry) -> None:
    ran: list[str] = []
    facts = DictKnowledgeBase({"Mira Tollan": "Mira Tollan: born in Kuba.", "Zed Quux": "Zed Quux: born in Ora."})
    lookup = make_lookup_tool(facts)
    registry = ToolRegistry()
    registry.register(Tool(lookup.name, lookup.description, lookup.parameters,
                           lambda query: ran.append(query) or lookup.function(query=query)), source="tests")
    backend = FakeBackend([call("lookup", query="Zed Quux"), "Never read."])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), registry, grounded_tools=("lookup",))
    steps = list(agent.run("Who invented the telephone?"))
    assert steps[1].kind.value == "not_found" and not steps[1].ok and ran == []
    assert steps[1].observation == "No entry found for 'Zed Quux': the question does not name it."
    assert steps[-1].session.tool_results[0].kind == "not_found"
    backend = FakeBackend([call("lookup", query="Mira Tollan"), "Kuba."])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), registry, grounded_tools=("lookup",))
    assert agent.ask("Where was Mira Tollan born?").text == "Kuba." and ran == ["Mira Tollan"]
    with pytest.raises(ValueError, match="grounded_tools must be a sequence of tool names"):
        MetaAgent(backend, DirectPolicy(), DefaultRenderer(), registry, grounded_tools="lookup")  # type: ignore[arg-type]


def test_a_grounded_calculator_does_not_compute_numbers_the_question_does_not_give(tools: ToolRegistry) -> None:
    backend = FakeBackend([call("calculator", expression="30 - 34"), "-4"])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), tools, ground_arguments=True,
                      grounded_tools=("lookup", "calculator"))
    steps = list(agent.run("what year was Mira Tollan born"))
    assert steps[1].kind.value == "not_found" and not steps[1].ok
    assert steps[1].observation == "Not computed: '30 - 34' holds 30, which the question does not give."
    backend = FakeBackend([call("calculator", expression="14 + 30"), "42"])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), tools, ground_arguments=True,
                      grounded_tools=("lookup", "calculator"))
    steps = list(agent.run("What's 12 plus 30?"))
    assert (steps[1].call.arguments, steps[1].written, steps[1].observation) == (
        {"expression": "12 + 30"}, {"expression": "14 + 30"}, "42")


def test_a_grounded_search_with_a_made_up_query_searches_the_question() -> None:
    """Asked in lower case the world's base writes a name it made up; a lookup
    is of what the question names, so the question itself is searched (a
    knowledge base that finds a name among other words finds the person)."""
    searched: list[str] = []

    class Names:
        name = "names"

        def lookup(self, query: str) -> str | None:
            searched.append(query)
            return "Mira Tollan: born in Kuba." if "mira tollan" in query.casefold() else None

    registry = ToolRegistry([make_lookup_tool(Names())])
    backend = FakeBackend([call("lookup", query="Zaior Heshunlund"), "She was born in Kuba."])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), registry, grounded_tools=("lookup",))
    steps = list(agent.run("where was mira tollan born"))
    assert searched == ["where was mira tollan born"]
    assert (steps[1].call.arguments, steps[1].written, steps[1].observation) == (
        {"query": "where was mira tollan born"}, {"query": "Zaior Heshunlund"}, "Mira Tollan: born in Kuba.")
    assert steps[-1].text == "She was born in Kuba."
    # A question that names no one finds no one, whatever the model made up.
    backend = FakeBackend([call("lookup", query="Zithan Bruford"), "Never read."])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), registry, grounded_tools=("lookup",))
    steps = list(agent.run("Who invented the telephone?"))
    assert steps[1].kind.value == "not_found" and searched[-1] == "Who invented the telephone?"
    # A query that is the question's words runs as written.
    backend = FakeBackend([call("lookup", query="mira tollan"), "Kuba."])
    agent = MetaAgent(backend, DirectPolicy(), DefaultRenderer(), registry, grounded_tools=("lookup",))
    list(agent.run("where was mira tollan born"))
    assert searched[-1] == "mira tollan"


def test_a_grounded_calculator_computes_the_arithmetic_the_question_states() -> None:
    """The base writes an expression it made up ("3-1 Dreal / 3" for
    "seventeen times twenty-three") or the wrong one ("15 * 240" for "15% of
    240"); a grounded calculator computes what the question states plainly
    instead, and the result is the answer where the calculator is direct."""
    assert is_calculator(CALCULATOR_TOOL) and not is_calculator(Tool.from_function(calculator))
    registry = ToolRegistry([CALCULATOR_TOOL])

    def first_call(question: str, expression: str) -> object:
        steps = run_grounded(registry, question, call("calculator", expression=expression), "The answer is 0.",
                             grounded=("calculator",))
        return steps[1], steps[-1]

    step, final = first_call("what is seventeen times twenty-three", "3-1 Dreal / 3")
    assert (step.call.arguments, step.written, step.observation) == (
        {"expression": "17 * 23"}, {"expression": "3-1 Dreal / 3"}, "391")
    assert (final.outcome, final.text) == ("answer", "391")
    step, final = first_call("How much is 15% of 240?", "15 * 240")
    assert (step.call.arguments["expression"], final.text) == ("15 / 100 * 240", "36")
    step, _ = first_call("What is 12 times 7?", "12 * 7")  # the question's own: runs as written
    assert (step.call.arguments, step.written) == ({"expression": "12 * 7"}, None)
    # A question that states no plain arithmetic: nothing runs, and the note says why.
    step, final = first_call("How many times does 8 fit in 64?", "3 Dreal")
    assert (step.kind.value, step.observation) == (
        "not_found", "Not computed: '3 Dreal' is not arithmetic the question asks.")
    assert final.outcome == "answer" and final.text == "The answer is 0."  # the model reads the note, not a result


def test_a_made_up_search_for_a_question_that_states_arithmetic_is_its_calculation() -> None:
    """The world's base sometimes looks up a name it made up ("Lomelle
    Ganson" for "What is 6 cubed?"); the question names no one and states
    arithmetic, so the grounded calculator computes it, as the answer where
    the calculator is direct."""
    registry = ToolRegistry([CALCULATOR_TOOL, make_lookup_tool(DictKnowledgeBase({"Mira Tollan": "born in Kuba."}))])

    def run(question: str, query: str, grounded: tuple[str, ...] = ("lookup", "calculator")) -> list:
        return run_grounded(registry, question, call("lookup", query=query), "I don't know.", grounded)

    steps = run("What is 6 cubed?", "Lomelle Ganson")
    assert (steps[1].call.name, steps[1].call.arguments, steps[1].written, steps[1].observation) == (
        "calculator", {"expression": "6 ** 3"}, {"query": "Lomelle Ganson"}, "216")
    assert steps[1].written_tool == "lookup" and steps[1].to_dict()["written_tool"] == "lookup"
    console = Console(width=200, record=True)
    console.print(step_renderable(steps[1]))
    assert 'the model wrote lookup({"query": "Lomelle Ganson"})' in console.export_text()
    assert (steps[-1].outcome, steps[-1].text) == ("answer", "216")
    assert steps[-1].session.messages[1]["tool_calls"][0]["function"]["name"] == "calculator"
    # A question about a person, or a calculator that is not grounded: the search of the question.
    steps = run("Where was Mira Tollan born in 1920?", "Zaior Heshunlund")
    assert (steps[1].call.name, steps[1].call.arguments) == ("lookup", {"query": "Where was Mira Tollan born in 1920?"})
    steps = run("What is 6 cubed?", "Lomelle Ganson", grounded=("lookup",))
    assert (steps[1].call.name, steps[1].kind.value) == ("lookup", "not_found")
    # A made-up calculation as the query is the question's calculation too; without one, it is not run.
    steps = run("What do 14 and 28 add up to?", "188/2")
    assert (steps[1].call.name, steps[1].call.arguments, steps[1].observation) == (
        "calculator", {"expression": "14 + 28"}, "42")
    steps = run("Where was Mira Tollan born?", "188/2")
    assert (steps[1].call.name, steps[1].kind.value, steps[1].observation) == (
        "lookup", "not_found", "Not computed: '188/2' holds 188, which the question does not give.")
    # A query that is the question's words is the model's search and runs as written.
    steps = run("What is 6 cubed?", "6 cubed")
    assert (steps[1].call.name, steps[1].call.arguments) == ("lookup", {"query": "6 cubed"})


def test_a_made_up_calculation_for_a_question_without_arithmetic_is_a_search_of_it() -> None:
    """Asked "where was mira tollan born", the world's base sometimes calls
    the calculator with numbers it made up ("60 / 34"); the question gives
    no number and names no operation, so it is searched instead."""

    class Names:  # finds a name among other words, as the world's knowledge base does
        name = "names"

        def lookup(self, query: str) -> str | None:
            return "born in Kuba." if "mira tollan" in query.casefold() else None

    registry = ToolRegistry([CALCULATOR_TOOL, make_lookup_tool(Names())])

    def run(question: str, expression: str, grounded: tuple[str, ...] = ("lookup", "calculator")) -> list:
        return run_grounded(registry, question, call("calculator", expression=expression), "She was born in Kuba.",
                            grounded)

    steps = run("Where was Mira Tollan born?", "60 / 34")
    assert (steps[1].call.name, steps[1].call.arguments, steps[1].written, steps[1].observation) == (
        "lookup", {"query": "Where was Mira Tollan born?"}, {"expression": "60 / 34"}, "born in Kuba.")
    assert (steps[-1].outcome, steps[-1].text) == ("answer", "She was born in Kuba.")  # the model reads the record
    # A question with a number or an operation word is arithmetic that is not plain: nothing runs.
    for question in ("Where was Mira Tollan born in 1920?", "How many times does Mira Tollan travel?"):
        steps = run(question, "60 / 34")
        assert (steps[1].call.name, steps[1].kind.value) == ("calculator", "not_found"), question
    # Without a grounded search there is nothing to turn to.
    steps = run("Where was Mira Tollan born?", "60 / 34", grounded=("calculator",))
    assert (steps[1].call.name, steps[1].observation) == (
        "calculator", "Not computed: '60 / 34' holds 60, which the question does not give.")


def test_a_world_run_grounds_arguments_unless_told_not_to(plugin_manager, tmp_path: Path) -> None:
    from meta_spider.agentcore.launch import AgentLauncher

    assert AgentLauncher(plugin_manager).build_agent().ground_arguments is False
    (tmp_path / "run.json").write_text(json.dumps({"dataset": {"name": "world", "options": {"preset": "tiny"}}}))
    settings = read_run_settings(tmp_path)
    agent = AgentLauncher(plugin_manager, settings).build_agent()
    assert (agent.ground_arguments, agent.grounded_tools) == (True, ("lookup",))
    agent = AgentLauncher(plugin_manager, settings, ground_arguments=False).build_agent()
    assert (agent.ground_arguments, agent.grounded_tools) == (False, ())
