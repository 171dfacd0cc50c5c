"""The agent on questions that name the person in part or in another order,
as people often do: "When was Tollan born?", "Tollan Mira", "Ms. Tollan".

This script asks the run's own agent (as `meta-agent run --run-dir RUN`
builds it: its policy, backend, tools and grounding) COUNT test questions
drawn at random, each in several forms side by side: as the world writes
it (the whole name), by the surname alone, by the first name alone, with
the surname first, by title and surname, and by the surname alone all in
lower case. The base read every person by their whole name, so these are
shifts of the name, not of the frame. Per form: how many final answers are
right, refused and wrong (and how many wrong without a lookup), and how
many runs had a lookup that found the asked person's record or another
person's (a first or last name that several people share names no one).
Each question is a new session. About 30 s per form on two cores.

    python benchmarks/name_forms.py --run-dir RUN --output benchmarks/results/name_forms.txt
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

from question_casing import agent_on_test, arguments, report_ways


def _title(example: Any) -> str:
    return "Ms." if str(example.answer).startswith("She") else "Mr."


def names_its_person(example: Any) -> bool:
    """Whether ``example``'s question writes its person's whole name (the forms replace it)."""
    return bool(example.meta.get("entity")) and str(example.meta["entity"]) in example.question


def asked_as(example: Any, form: Callable[[Any, str], str]) -> str:
    """``example``'s question with its person's name in ``form``."""
    name = str(example.meta["entity"])
    return example.question.replace(name, form(example, name))


FORMS: tuple[tuple[str, Callable[[Any, str], str]], ...] = (
    ("as written", lambda example, name: name),
    ("surname", lambda example, name: name.split()[-1]),
    ("first name", lambda example, name: name.split()[0]),
    ("surname first", lambda example, name: " ".join(reversed(name.split()))),
    ("title and surname", lambda example, name: f"{_title(example)} {name.split()[-1]}"),
)


def main(argv: Optional[list[str]] = None) -> int:
    args = arguments(__doc__.splitlines()[0], argv)
    ready = agent_on_test(args, "name_forms.py", names_its_person)
    if ready is None:
        return 2
    out, agent, dataset, examples = ready
    ways = []
    forms = [(label, form, False) for label, form in FORMS] + [("surname, lower case", FORMS[1][1], True)]
    for label, form, lower in forms:
        asked = {}
        for example in examples:
            question = asked_as(example, form)
            asked[example.question] = question.lower() if lower else question
        ways.append((label, asked.__getitem__))
    report_ways(out, agent, dataset, examples, ways, "named by")
    out.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
