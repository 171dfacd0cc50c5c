"""Multiple-choice questions: the prompt text (question plus lettered
choices), the reference letter, and a strict reader of the letter a model
chose.

The reader accepts exactly two shapes: a standalone letter at the start of
the answer ("B", "B.", "(B)", "B) Paris", markdown "**B**") or an explicit "Answer: B" (the
last one counts, so a model that reconsiders is judged on its final word).
Anything else, including a letter buried in prose, reads as no choice. This
module knows nothing about files or models.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

from meta_spider.native.prompt import thinking_switches

__all__ = [
    "CHOICE_LETTERS",
    "DIRECT_INSTRUCTION",
    "REASONED_INSTRUCTION",
    "answer_letter",
    "extract_choice_letter",
    "format_mcq",
    "mcq_template_kwargs",
]

CHOICE_LETTERS = "ABCDEFGHIJ"
"""Letters for up to ten choices (MMLU has four; MMLU-Pro ten)."""

DIRECT_INSTRUCTION = "Answer with the letter of the correct choice only."
REASONED_INSTRUCTION = (
    "Think it through if you need to, then end with a line of the form 'Answer: X', "
    "where X is the letter of the correct choice."
)

_THINK_BLOCK = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)
# A letter alone at the start, optionally bracketed, followed by the end or
# punctuation or space. "A" followed by a lower-case word is the article.
_LEADING_LETTER = re.compile(r"^\**[(\[]?([A-J])[)\]]?(?=$|[\s.,:;!)\]*])")
_ARTICLE = re.compile(r"^A\s+[a-z]")
_ANSWER_LINE = re.compile(r"(?i:answer)\s*:\s*\**[(\[]?([A-J])[)\]]?\**(?![A-Za-z0-9])")


def format_mcq(question: str, choices: Sequence[str], subject: Optional[str] = None, mcq_direct: bool = False) -> str:
    """The user message for a multiple-choice question: an optional subject
    line, the question, one ``X. choice`` line per choice, and the answer
    instruction (letter only when ``mcq_direct``, else "Answer: X")."""
    if len(choices) > len(CHOICE_LETTERS) or len(choices) < 2:
        raise ValueError(f"a multiple-choice question needs 2 to {len(CHOICE_LETTERS)} choices, got {len(choices)}")
    lines = []
    if subject:
        lines.append(f"The following is a multiple choice question about {subject.replace('_', ' ')}.")
        lines.append("")
    lines.append(question.strip())
    lines.extend(f"{letter}. {choice}" for letter, choice in zip(CHOICE_LETTERS, choices))
    lines.append("")
    lines.append(DIRECT_INSTRUCTION if mcq_direct else REASONED_INSTRUCTION)
    return "\n".join(lines)


def mcq_template_kwargs(mcq_direct: bool) -> dict[str, Any]:
    """Template switches for a multiple-choice prompt: a letter-only answer
    switches reasoning off under both names templates read
    (``enable_thinking`` and ``thinking``); otherwise the template's default."""
    return thinking_switches(False) if mcq_direct else {}


def answer_letter(answer: Any, choices: Sequence[str]) -> str:
    """The reference letter from an index (0-based int), a letter, or the
    text of one of the choices. Raises ValueError naming the bad value."""
    letters = CHOICE_LETTERS[: len(choices)]
    if isinstance(answer, bool):
        raise ValueError(f"answer must be a choice index, letter or choice text, got {answer!r}")
    if isinstance(answer, int):
        if 0 <= answer < len(choices):
            return letters[answer]
        raise ValueError(f"answer index {answer} is out of range for {len(choices)} choices")
    if isinstance(answer, str):
        stripped = answer.strip()
        if len(stripped) == 1 and stripped.upper() in letters:
            return stripped.upper()
        if stripped in choices:
            return letters[list(choices).index(stripped)]
    raise ValueError(f"answer must be one of {', '.join(letters)}, an index or a choice's text, got {answer!r}")


def extract_choice_letter(text: str, n_choices: int = 4) -> Optional[str]:
    """The letter a model chose, read strictly (see the module docstring);
    None when the text states no choice or one beyond ``n_choices``."""
    allowed = CHOICE_LETTERS[:n_choices]
    body = _THINK_BLOCK.sub("", text, count=1).strip()
    leading = _LEADING_LETTER.match(body)
    if leading and not _ARTICLE.match(body):
        return leading.group(1) if leading.group(1) in allowed else None
    stated = _ANSWER_LINE.findall(body)
    if stated:
        return stated[-1] if stated[-1] in allowed else None
    return None
