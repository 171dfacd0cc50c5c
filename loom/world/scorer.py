"""Scorer of world answers: normalised exact match with aliases, usable as
the collector's ``check_fn(prediction, ground_truth)``.

The implementation is loom's free-form scorer
(:mod:`meta_spider.loom.datasets.scoring`, which started from this module);
it is re-exported here so the world has one obvious place for its scorer and
the two can never disagree. A prediction passes when its first line, after
normalisation (case, punctuation, articles, chat special tokens, spacing),
equals the canonical pronoun sentence or one of the aliases (the bare value).
"""

from __future__ import annotations

from meta_spider.loom.datasets.scoring import check_answer, normalize_answer

__all__ = ["check_answer", "normalize_answer"]
