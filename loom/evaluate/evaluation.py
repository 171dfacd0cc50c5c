"""Held-out benchmarks of the two-pass system: which questions to ask, what
the frozen base did on them (the oracle), and what the Doubter system did,
read from the text it generated.

:class:`QABenchmark` pairs a dataset split with the activation dataset the
collector wrote (``metaloom collect``): every question keeps its collected
prompt ids, the base's greedy pass-1 answer and ``pass1_correct``, the
oracle. Without an activation dataset the oracle is recomputed by greedy
decoding of the bare base and ``dataset.check_fn``.

:func:`run_benchmark` asks every question again with the Doubter attached
(pass 1 reads, pass 2 generates with injection, under the pipeline's answer
gate when it has one: what ``pipe.generate`` does, here on the collected
prompt ids so the oracle and the Doubter see the very same tokens) and
classifies the **generated text** with
:func:`classify_action`: ``"refuse"`` (the refusal sentence,
:func:`~meta_spider.policies.actions.is_refusal`), ``"confirm"`` (the base's
pass-1 answer after normalisation) or ``"correct"`` (another answer).
An answer's correctness is ``dataset.check_fn(text, example)``; a refusal is
never compared with the reference answer. The result is one
:class:`QuestionOutcome` per question, the table
:mod:`meta_spider.loom.evaluate.comparison` turns into a report.

:class:`QABenchmark` also takes a named list of :class:`BenchmarkTask`
(question and ground truth; :mod:`meta_spider.loom.evaluate.benchmark_tasks`).
:class:`HarnessTask` names a benchmark; :class:`EvalHarness` runs several.
:func:`answer_gate` and :func:`calibrated_answer_gate` build the pipeline's
:class:`~meta_spider.wrapper.gates.AnswerGate` around the project's refusal
sentence. This module knows nothing about metrics: it produces per-question
rows.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Optional, Sequence

from meta_spider.loom.evaluate.benchmark_tasks import BenchmarkTask, Scoring, TaskDataset
from meta_spider.loom.datasets.base import QADataset, QAExample, canonical_split
from meta_spider.loom.datasets.mcq import extract_choice_letter
from meta_spider.loom.datasets.scoring import normalize_answer
from meta_spider.loom.progress import progress_bar
from meta_spider.plugins.errors import MetaSpiderError
from meta_spider.policies.actions import REFUSAL_SENTENCE, is_refusal

if TYPE_CHECKING:
    from rich.console import Console

    from meta_spider.loom.evaluate.comparison import ComparisonReport
    from meta_spider.wrapper.gates import AnswerGate

__all__ = [
    "ACTIONS",
    "ActionKind",
    "DEFAULT_MAX_TOKENS",
    "BenchmarkAlignmentError",
    "BenchmarkItem",
    "BenchmarkTask",
    "EvalHarness",
    "HarnessTask",
    "QABenchmark",
    "QuestionOutcome",
    "answer_gate",
    "calibrated_answer_gate",
    "classify_action",
    "load_activations",
    "run_benchmark",
]

ActionKind = Literal["confirm", "correct", "refuse"]
ACTIONS: tuple[str, ...] = ("confirm", "correct", "refuse")
DEFAULT_MAX_TOKENS = 64
"""Generation limit when neither the caller nor a collection sets one."""


def classify_action(text: str, base_answer: Optional[str] = None,
                    normalize: Callable[[str], Any] = normalize_answer,
                    refusal: str = REFUSAL_SENTENCE) -> ActionKind:
    """What the Doubter system did with a question, read from its text.

    ``"refuse"`` when ``text`` is the refusal sentence; ``"confirm"`` when it
    says what the base said in pass 1 (``base_answer``), compared after
    ``normalize`` (default: :func:`normalize_answer`, i.e. first line, case,
    punctuation and articles ignored); ``"correct"`` when it gives another
    answer. Without ``base_answer`` any answer confirms (nothing to have
    corrected). ``refusal`` is the refusal sentence to recognise.
    """
    if is_refusal(text, refusal):
        return "refuse"
    if base_answer is None:
        return "confirm"
    return "confirm" if normalize(text) == normalize(base_answer) else "correct"


def _mcq_normalizer(n_choices: int) -> Callable[[str], Any]:
    # Two answers to a multiple-choice question agree when they pick the same
    # letter, however they are worded.
    return lambda text: extract_choice_letter(text, n_choices) or normalize_answer(text)


def answer_gate(threshold: float) -> "AnswerGate":
    """The pipeline's answer gate at ``threshold`` with the project's
    refusal sentence (:data:`~meta_spider.policies.actions.REFUSAL_SENTENCE`)."""
    from meta_spider.wrapper.gates import AnswerGate

    return AnswerGate(threshold=threshold, refusal=REFUSAL_SENTENCE, is_refusal=is_refusal)


def calibrated_answer_gate(calibration: Optional[Mapping[str, Any]]) -> "Optional[AnswerGate]":
    """The answer gate run.json's calibration (``metaloom eval``) asks for,
    None when the run has not been calibrated. Raises ValueError quoting a
    malformed entry."""
    from meta_spider.policies.doubter import CALIBRATION_KEY
    from meta_spider.wrapper.gates import AnswerGate

    if not calibration or CALIBRATION_KEY not in calibration:
        return None
    return AnswerGate.from_calibration(calibration[CALIBRATION_KEY])  # a malformed entry fails, quoting it


class BenchmarkAlignmentError(MetaSpiderError, ValueError, fields=("split", "missing_ids", "dataset_name")):
    """The activation dataset and the dataset disagree about the questions
    (the dataset changed since collection, or another one was passed)."""

    def __post_init__(self) -> None:
        self.missing_ids = list(self.missing_ids)

    def describe(self) -> str:
        shown = ", ".join(repr(i) for i in self.missing_ids[:5])
        return (
            f"{len(self.missing_ids)} collected {self.split!r} questions are not in dataset {self.dataset_name!r} "
            f"(e.g. {shown}); evaluate with the dataset the activations were collected from, "
            f"or re-run `metaloom collect`"
        )


def load_activations(source: Any) -> Any:
    """An activation dataset from a path (``ActivationDataset.load``) or an
    already loaded one (returned as is); None stays None."""
    if source is None or not isinstance(source, (str, os.PathLike)):
        return source
    from meta_spider.loom.collect.activations import ActivationDataset

    return ActivationDataset.load(Path(source))


@dataclass(frozen=True)
class BenchmarkItem:
    """One question of a benchmark with what collection recorded about it
    (``index`` into the activation dataset and its ``record``; both None
    when the benchmark has no activations)."""

    example: QAExample
    index: Optional[int] = None
    record: Optional[Mapping[str, Any]] = None


class QABenchmark:
    """Held-out questions of ``dataset`` with their collected activations.

    ``activations`` is an ``ActivationDataset`` or its folder; the questions
    are the collected ones of ``split`` in collection order (first
    ``max_examples``), each looked up in the dataset by id for its
    ``check_fn``. Without activations they are the dataset's split and the
    oracle is recomputed when the benchmark runs.
    """

    def __init__(self, dataset: Optional[QADataset] = None, split: str = "test", activations: Any = None,
                 max_examples: Optional[int] = None, calibration_split: str = "validation", *,
                 name: Optional[str] = None, tasks: Optional[Sequence[BenchmarkTask]] = None,
                 scoring: Scoring = None) -> None:
        if tasks is not None:  # the published form: a named list of questions
            if dataset is not None:
                raise ValueError("give a dataset or tasks, not both")
            dataset = TaskDataset(name or "benchmark", tasks, scoring, split=canonical_split(split))
        elif dataset is None:
            raise ValueError("QABenchmark needs a dataset, or name=..., tasks=[BenchmarkTask(...), ...]")
        elif name is not None or scoring is not None:
            raise ValueError("name and scoring go with tasks=[...]; a dataset has its own name and check_fn")
        self.name = name or str(getattr(dataset, "name", "?"))
        if max_examples is not None and (isinstance(max_examples, bool) or not isinstance(max_examples, int)
                                         or max_examples < 1):
            raise ValueError(f"max_examples must be a positive int or None, got {max_examples!r}")
        self.dataset = dataset
        self.split = canonical_split(split)
        self.calibration_split = canonical_split(calibration_split)
        self.activations = load_activations(activations)
        self.max_examples = max_examples
        self.items = self._align(self.split, max_examples)

    def _align(self, split: str, limit: Optional[int]) -> list[BenchmarkItem]:
        if self.activations is None:
            examples = self.dataset.split(split)[:limit]
            return [BenchmarkItem(example) for example in examples]
        indices = list(self.activations.split_indices(split))[:limit]
        records = self.activations.examples
        wanted = {str(records[i]["id"]) for i in indices}
        by_id = {e.id: e for e in self.dataset.split(split)} if split in self.dataset.splits else {}
        if not wanted <= by_id.keys():
            # Looked up in the other splits only when needed (some are large);
            # the split's own examples win over another split's with the same id.
            for name in self.dataset.splits:
                if name != split:
                    for example in self.dataset.split(name):
                        by_id.setdefault(example.id, example)
        missing = [str(records[i]["id"]) for i in indices if str(records[i]["id"]) not in by_id]
        if missing:
            raise BenchmarkAlignmentError(split, missing, getattr(self.dataset, "name", "?"))
        return [BenchmarkItem(by_id[str(records[i]["id"])], i, records[i]) for i in indices]

    def calibration_indices(self) -> list[int]:
        """Activation indices of the calibration split (empty without
        activations or when that split was not collected)."""
        if self.activations is None:
            return []
        return list(self.activations.split_indices(self.calibration_split))

    def default_max_tokens(self) -> int:
        """The collection's answer length limit (:data:`DEFAULT_MAX_TOKENS`
        without activations)."""
        limit = getattr(self.activations, "max_new_tokens", None)
        return int(limit) if limit else DEFAULT_MAX_TOKENS

    def normalizer(self, example: QAExample) -> Callable[[str], Any]:
        """How :func:`classify_action` compares two answers to ``example``."""
        return _mcq_normalizer(len(example.choices)) if example.choices is not None else normalize_answer

    def describe(self) -> dict[str, Any]:
        """Dataset, split and size, for the report."""
        return {"dataset": getattr(self.dataset, "name", "?"), "split": self.split, "n": len(self.items),
                "max_examples": self.max_examples, "calibration_split": self.calibration_split,
                "activations": self.activations is not None}

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class QuestionOutcome:
    """One row of the behaviour table: the oracle, the system's text and
    action, and every confidence score the comparison ranks by (None where
    a score is unavailable)."""

    id: str
    question: str
    base_answer: str
    pass1_correct: bool
    text: str
    action: str
    correct: bool
    p_correct: Optional[float] = None
    first_token_max_prob: Optional[float] = None
    answer_mean_logprob: Optional[float] = None
    probe_score: Optional[float] = None
    signals_score: Optional[float] = None
    probe_signals_score: Optional[float] = None
    decision: Optional[str] = None
    """Where the text came from (``GenerationResult.decision``: ``pass2``,
    ``gate_refused``, ``base_answer``); None in reports from before the gate."""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {self.action!r}")
        if self.action == "refuse" and self.correct:
            raise ValueError(f"question {self.id!r}: a refusal cannot be a correct answer")

    @property
    def answered(self) -> bool:
        return self.action != "refuse"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "QuestionOutcome":
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})


def _prompt_ids(pipe: Any, benchmark: QABenchmark, item: BenchmarkItem, tensors: Mapping[str, Any]) -> Any:
    """The collected prompt ids of a question (the exact tokens its oracle
    was computed on), else the prompt rendered as the collector renders it
    (chat template with the dataset's template switches)."""
    import torch

    if item.index is not None and "prompt_ids" in tensors:
        length = int(tensors["prompt_lengths"][item.index])
        return tensors["prompt_ids"][item.index, :length].to(torch.long).unsqueeze(0)
    from meta_spider.loom.collect.collector import render_qa_prompt

    return pipe.encode(render_qa_prompt(pipe, benchmark.dataset.prompt(item.example)))


def _question_words(pipe: Any, benchmark: QABenchmark, item: BenchmarkItem) -> Any:
    """The prompt positions of the question's words when the Doubter reads
    the occlusion signal (None otherwise), in the prompt as collected (else
    as the collector renders it)."""
    from meta_spider.loom.collect.collector import render_qa_prompt
    from meta_spider.wrapper.signals import last_user_text, reads_occlusion

    if not reads_occlusion(pipe.doubter.config.signals):
        return None
    prompt = benchmark.dataset.prompt(item.example)
    text = (item.record or {}).get("prompt_text") if item.index is not None else None
    return pipe.question_words(text if isinstance(text, str) else render_qa_prompt(pipe, prompt),
                               last_user_text(prompt.messages))


def _base_answer(pipe: Any, input_ids: Any, max_tokens: int) -> str:
    """Greedy text of the bare base."""
    from contextlib import closing

    with closing(pipe.stream_ids(input_ids, max_new_tokens=max_tokens, inject=False)) as stream:
        return pipe.decode(list(stream))


def _activation_tensors(activations: Any) -> dict[str, Any]:
    names = ("pass1_correct", "first_token_max_prob", "answer_mean_logprob", "prompt_ids", "prompt_lengths")
    tensors = {}
    for name in names:
        try:
            tensors[name] = activations.tensor(name)
        except KeyError:
            continue
    return tensors


def run_benchmark(pipe: Any, benchmark: QABenchmark, max_tokens: Optional[int] = None,
                  console: "Optional[Console]" = None, description: str = "evaluating",
                  batch_size: int = 1) -> list[QuestionOutcome]:
    """Ask every question of ``benchmark`` with the Doubter attached and
    classify the generated text (see the module docstring). ``max_tokens``
    defaults to the collection's ``max_new_tokens`` (the base's pass-1
    answers were cut there; a different limit would make "confirm" look
    like "correct"), else :data:`DEFAULT_MAX_TOKENS`. ``batch_size`` > 1
    answers that many questions as one batch (``pipe.answer_batch``: both
    passes batched): faster, equal to one at a time up to float rounding.
    ``console`` shows a progress bar. Without activations each question is
    first answered by the bare base to recompute the oracle."""
    from meta_spider.wrapper.errors import NoDoubterError

    if pipe.doubter is None:
        raise NoDoubterError("run_benchmark")
    max_tokens = benchmark.default_max_tokens() if max_tokens is None else max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    tensors = _activation_tensors(benchmark.activations) if benchmark.activations is not None else {}
    refusal = pipe.answer_gate.refusal if pipe.answer_gate is not None else REFUSAL_SENTENCE  # what the gate says
    outcomes: list[QuestionOutcome] = []
    with progress_bar(description, len(benchmark.items), enabled=console is not None, console=console,
                      transient=True) as bar:
        for start in range(0, len(benchmark.items), batch_size):
            items = benchmark.items[start:start + batch_size]
            prompts = [_prompt_ids(pipe, benchmark, item, tensors) for item in items]
            words = [_question_words(pipe, benchmark, item) for item in items]
            results = pipe.answer_batch(prompts, max_new_tokens=max_tokens, words=None if None in words else words)
            for item, input_ids, result in zip(items, prompts, results):
                outcomes.append(_outcome(pipe, benchmark, item, input_ids, result, tensors, max_tokens, refusal))
                bar.advance()
    return outcomes


def _outcome(pipe: Any, benchmark: QABenchmark, item: BenchmarkItem, input_ids: Any, result: Any,
             tensors: Mapping[str, Any], max_tokens: int, refusal: str) -> QuestionOutcome:
    """One question's row: the oracle (collected, else the bare base's
    answer checked) and what the Doubter system's ``result`` did."""
    example, record = item.example, item.record or {}
    if item.index is not None:
        base_answer = str(record.get("answer_text", ""))
        oracle = bool(tensors["pass1_correct"][item.index]) if "pass1_correct" in tensors \
            else bool(record["pass1_correct"])
    else:
        base_answer = _base_answer(pipe, input_ids, max_tokens)
        oracle = bool(benchmark.dataset.check_fn(base_answer, example))
    text = result.text
    action = classify_action(text, base_answer, benchmark.normalizer(example), refusal)
    correct = action != "refuse" and bool(benchmark.dataset.check_fn(text, example))
    scores = {name: float(tensors[name][item.index]) for name in ("first_token_max_prob", "answer_mean_logprob")
              if item.index is not None and name in tensors}
    return QuestionOutcome(
        id=example.id, question=example.question, base_answer=base_answer, pass1_correct=oracle,
        text=text, action=action, correct=correct, p_correct=result.p_correct, decision=result.decision,
        **scores,
    )


@dataclass
class HarnessTask:
    """A named benchmark and how :class:`EvalHarness` runs it."""

    name: str
    benchmark: QABenchmark
    max_tokens: Optional[int] = None
    """Default: the collection's ``max_new_tokens``."""
    options: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for :class:`BaselineComparison` (e.g.
    ``target_coverage``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a benchmark task needs a non-empty name, got {self.name!r}")
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int)
                                            or self.max_tokens < 1):
            raise ValueError(f"max_tokens must be a positive int or None, got {self.max_tokens!r}")


class EvalHarness:
    """Run several :class:`HarnessTask` on one pipeline (Doubter attached)
    and collect a :class:`~meta_spider.loom.evaluate.comparison.ComparisonReport` per
    task name."""

    def __init__(self, pipe: Any, tasks: Sequence[HarnessTask], console: "Optional[Console]" = None) -> None:
        names = [task.name for task in tasks]
        if not names:
            raise ValueError("EvalHarness needs at least one task, got none")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"task names must be unique, got {duplicates} more than once")
        self.pipe = pipe
        self.tasks = list(tasks)
        self.console = console

    def run(self) -> "dict[str, ComparisonReport]":
        from meta_spider.loom.evaluate.comparison import BaselineComparison

        return {
            task.name: BaselineComparison(self.pipe, task.benchmark, max_tokens=task.max_tokens,
                                          console=self.console, **task.options).run()
            for task in self.tasks
        }

