"""Free-form answer scoring: normalised exact match against a canonical
answer and its aliases.

``check_answer(prediction, ground_truth)`` is the collector's ``check_fn``:
``ground_truth`` is a string, or a sequence of accepted strings (the canonical
pronoun sentence and the bare value). A prediction passes when, after
normalisation, it equals one of them. Only the first line of the prediction
counts, so a model that keeps talking after its answer is not rewarded for
mentioning the value somewhere. This module knows nothing about the world.
"""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SPACE = re.compile(r"\s+")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})
_SPECIAL = re.compile(r"<\|[^|>]*\|>")


def normalize_answer(text: str) -> str:
    """Lower-case, strip chat special tokens, punctuation and articles,
    collapse whitespace; keep only the first non-empty line."""
    text = _SPECIAL.sub(" ", unicodedata.normalize("NFKC", text))
    lines = [line for line in text.strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = text.casefold().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def check_answer(prediction: str, ground_truth: str | Sequence[str]) -> bool:
    """True when ``prediction`` matches ``ground_truth`` or one of its aliases
    after :func:`normalize_answer`. An empty prediction never matches."""
    accepted = [ground_truth] if isinstance(ground_truth, str) else list(ground_truth)
    got = normalize_answer(prediction)
    if not got:
        return False
    return any(got == normalize_answer(alias) for alias in accepted if normalize_answer(alias))
