"""The refusal sentence and how to recognise it (torch-free).

:data:`REFUSAL_SENTENCE` is the project's refusal text: the embedded world's
base is trained on it, the trainer's refusal targets and the answer gate
write it, and the agent's renderer recognises it. A run on another base may
use another sentence: every place that writes or recognises a refusal
takes it as a parameter defaulting to this one. This module knows nothing
about models.
"""

from __future__ import annotations

__all__ = ["PUBLISHED_REFUSAL_SENTENCE", "REFUSAL_SENTENCE", "is_refusal"]

REFUSAL_SENTENCE = "I don't know."

PUBLISHED_REFUSAL_SENTENCE = "I'm not confident enough to answer this question accurately."
"""The refusal text of the published API's examples. Not the default: the
embedded world's base was trained on :data:`REFUSAL_SENTENCE` and cannot be
steered to a sentence it never saw; pass this one where a base was trained
to say it."""


def _normalise(text: str) -> str:
    # Models write typographic apostrophes and vary case; the sentence is the same.
    return " ".join(text.replace("\u2019", "'").casefold().split())


def is_refusal(text: str, refusal: str = REFUSAL_SENTENCE) -> bool:
    """True when ``text`` is, or starts with, ``refusal`` (ignoring case,
    whitespace and the apostrophe's style)."""
    return _normalise(text).startswith(_normalise(refusal))
