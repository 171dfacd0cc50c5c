"""Benchmarks written as a list of questions: :class:`BenchmarkTask` (one
question and its ground truth) and :class:`TaskDataset`, the in-memory
dataset ``QABenchmark(name=..., tasks=[...], scoring=...)`` evaluates.

``scoring`` says when an answer is right: ``"exact_match"`` (the default:
normalised exact match with the ground truth or an alias, as every dataset
of the project scores), ``"contains"`` (the normalised ground truth occurs
in the normalised answer's first line) or a function ``(prediction, truth)
-> bool`` on two strings, right when it accepts one ground truth. This
module knows nothing about models or metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

from meta_spider.loom.datasets.base import QAExample, SplitDataset
from meta_spider.loom.datasets.scoring import check_answer, normalize_answer

__all__ = ["SCORINGS", "BenchmarkTask", "Scoring", "TaskDataset"]

Scoring = Union[str, Callable[[str, str], bool], None]
SCORINGS = ("exact_match", "contains")


def _contains(prediction: str, truth: str) -> bool:
    wanted, got = normalize_answer(truth), normalize_answer(prediction)
    return bool(wanted) and f" {wanted} " in f" {got} "


@dataclass(frozen=True)
class BenchmarkTask:
    """One question of a benchmark: the question, its ground truth (or the
    accepted answers, the first being the reference) and an optional id
    (default: its position, ``q0``, ``q1``, ...)."""

    question: str
    ground_truth: Union[str, Sequence[str]]
    id: Optional[str] = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError(f"a benchmark task needs a question, got {self.question!r}")
        truths = [self.ground_truth] if isinstance(self.ground_truth, str) else list(self.ground_truth)
        if not truths or not all(isinstance(t, str) and t.strip() for t in truths):
            raise ValueError(f"task {self.question!r} needs a non-empty ground truth, got {self.ground_truth!r}")

    def example(self, index: int) -> QAExample:
        """The task as the project's :class:`QAExample`."""
        truths = [self.ground_truth] if isinstance(self.ground_truth, str) else list(self.ground_truth)
        return QAExample(id=self.id if self.id is not None else f"q{index}", question=self.question,
                         answer=truths[0], aliases=tuple(truths[1:]), meta=dict(self.meta))


class TaskDataset(SplitDataset):
    """A list of :class:`BenchmarkTask` as a one-split (``split``) dataset
    scored by ``scoring`` (see the module docstring)."""

    def __init__(self, name: str, tasks: Sequence[BenchmarkTask], scoring: Scoring = None,
                 split: str = "test") -> None:
        tasks = list(tasks)
        if not tasks or not all(isinstance(task, BenchmarkTask) for task in tasks):
            raise ValueError(f"tasks must be a non-empty list of BenchmarkTask, got {tasks!r}"[:300])
        if scoring is not None and not callable(scoring) and scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS} or a function (prediction, truth) -> bool, "
                             f"got {scoring!r}")
        examples = [task.example(index) for index, task in enumerate(tasks)]
        ids = [example.id for example in examples]
        if len(set(ids)) != len(ids):
            raise ValueError(f"task ids must be unique, got {sorted({i for i in ids if ids.count(i) > 1})} twice")
        super().__init__(name, {split: examples}, options={"scoring": scoring if isinstance(scoring, str) else None})
        self.scoring = scoring

    def check_fn(self, prediction: str, example: QAExample) -> bool:
        if self.scoring is None or self.scoring == "exact_match":
            return check_answer(prediction, example.ground_truths)
        check = _contains if self.scoring == "contains" else self.scoring
        return any(bool(check(prediction, truth)) for truth in example.ground_truths)  # type: ignore[operator]
