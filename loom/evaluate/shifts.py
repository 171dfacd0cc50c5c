"""Shift evaluation: the Doubter on ``test`` and on every shift split of a
dataset (``test_<shift>``: new phrasings, misspelt names, questions outside
the dataset's world), scored the same way and shown side by side.

Every split is calibrated on the ordinary validation split (the answer
threshold does not move with the split) and generated under that gate.
Questions with a true answer go through
:class:`~meta_spider.loom.evaluate.comparison.BaselineComparison` (one full report per
split). Questions without one (``meta["answerable"] is False``, e.g. every
question of ``test_outside``) have no oracle: for them only what the system
did counts, the share refused and the number of invented answers (anything
answered that is not the refusal sentence). This module knows nothing about
files or options: ``metaloom eval --shifts`` writes what it returns.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from meta_spider.loom.evaluate.comparison import GOALS, MIN_AUROC_MARGIN, goal_check
from meta_spider.loom.evaluate.evaluation import BenchmarkItem, QABenchmark, QuestionOutcome, answer_gate, run_benchmark
from meta_spider.policies.actions import is_refusal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from meta_spider.loom.evaluate.comparison import AcceptanceCheck, ComparisonReport

__all__ = ["SHIFT_GOALS", "SHIFT_PREFIX", "OutsideMetrics", "ShiftRow", "ShiftTable", "is_answerable",
           "outside_metrics", "run_shift_evaluation", "shift_splits"]

SHIFT_PREFIX = "test_"
"""A split named ``test_<shift>`` holds held-out questions under a shift."""


SHIFT_GOALS: dict[str, Any] = {
    "min_auroc": 0.85, "auroc_splits": ("test",), "min_margin": MIN_AUROC_MARGIN,
    "margin_splits": ("test", "test_paraphrase"),
    "max_knowledge_loss": GOALS.max_knowledge_loss, "min_refusal_precision": GOALS.min_refusal_precision,
    "min_outside_refused": 0.95, "min_paraphrase_accuracy_ratio": 0.8,
}
"""What the Doubter should hold under shift: P(correct) AUROC on test and
every shift split with true answers, a margin over the best baseline and a
bounded knowledge loss on test and in new phrasings, refusal precision on
every split, almost every question without a true answer refused and none
answered, and a base that answers new phrasings nearly as well as test's."""


def shift_splits(available: Sequence[str]) -> list[str]:
    """``test`` (when there) and every ``test_<shift>`` split, in order."""
    return [name for name in available if name == "test"] + [name for name in available
                                                             if name.startswith(SHIFT_PREFIX)]


def is_answerable(item: BenchmarkItem) -> bool:
    """Whether the question has a true answer (``meta["answerable"]`` is not False)."""
    return item.example.meta.get("answerable", True) is not False


@dataclass(frozen=True)
class OutsideMetrics:
    """What the system did with questions that have no true answer: refused
    (the refusal sentence) or invented an answer (anything else). The base's
    own pass-1 answers are counted the same way for comparison."""

    n: int
    refused: int
    invented: int
    refused_share: float
    base_refused_share: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OutsideMetrics":
        """Read back from ``shifts.json``; TypeError or KeyError naming a bad or missing field."""
        values = {name: data[name] for name in cls.__dataclass_fields__}
        for name, value in values.items():
            _check_field(f"outside.{name}", value, (int, float), "a number")
        return cls(**values)


def _check_field(name: str, value: Any, types: type | tuple[type, ...], wanted: str, optional: bool = False) -> None:
    """Raise TypeError unless ``value`` is of ``types`` (a bool is no number), or None when ``optional``."""
    if value is None and optional:
        return
    if not isinstance(value, types) or isinstance(value, bool):
        raise TypeError(f"shifts.json field {name!r} must be {wanted}{' or null' if optional else ''}, "
                        f"got {value!r:.40}")


def outside_metrics(outcomes: Sequence[QuestionOutcome]) -> OutsideMetrics:
    """:class:`OutsideMetrics` of unanswerable questions' outcomes."""
    if not outcomes:
        raise ValueError("outside_metrics needs at least one question outcome, got none")
    refused = sum(1 for outcome in outcomes if not outcome.answered)
    base_refused = sum(1 for outcome in outcomes if is_refusal(outcome.base_answer))
    return OutsideMetrics(n=len(outcomes), refused=refused, invented=len(outcomes) - refused,
                          refused_share=refused / len(outcomes), base_refused_share=base_refused / len(outcomes))


@dataclass(frozen=True)
class ShiftRow:
    """One split of the shift table. The answerable questions' figures are
    None when the split has none (and AUROC also when one class is missing);
    ``outside`` is None when every question has a true answer."""

    split: str
    n: int
    seconds: float
    base_accuracy: float | None = None
    auroc: float | None = None
    mean_p_correct: float | None = None
    """The Doubter's mean P(correct): beside ``base_accuracy``, how sure it is on the whole."""
    ece: float | None = None
    """The Doubter's expected calibration error (10 equal-width bins)."""
    best_baseline: str | None = None
    best_baseline_auroc: float | None = None
    best_baseline_coverage: float | None = None
    """The best baseline's coverage at its own validation threshold."""
    best_baseline_knowledge_loss: float | None = None
    """The best baseline's knowledge loss at its own validation threshold."""
    coverage: float | None = None
    selective_accuracy: float | None = None
    refusal_precision: float | None = None
    over_refusal: float | None = None
    knowledge_loss: float | None = None
    outside: OutsideMetrics | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # the nested OutsideMetrics as a dict too

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ShiftRow":
        """A row read back from ``shifts.json``; raises TypeError naming a
        field that holds the wrong kind of value (every figure is a number
        or null), so a damaged file is refused here rather than when shown."""
        values = {name: data.get(name) for name in cls.__dataclass_fields__}
        for name, value in values.items():
            if name == "outside":
                continue
            if name in ("split", "best_baseline"):
                _check_field(name, value, str, "a string", optional=name == "best_baseline")
            else:
                _check_field(name, value, (int, float), "a number", optional=name not in ("n", "seconds"))
        values["outside"] = None if data.get("outside") is None else OutsideMetrics.from_dict(data["outside"])
        return cls(**values)


@dataclass
class ShiftTable:
    """The shift evaluation: one row per split, the answer threshold they
    share, and each split's full report (answerable questions only)."""

    rows: list[ShiftRow]
    threshold: float | None
    reports: dict[str, "ComparisonReport"] = field(default_factory=dict, repr=False)
    threshold_source: str = "validation"
    """Where the threshold came from: ``validation`` (chosen there) or ``checkpoint`` (the one it carries)."""

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold,
                "calibration_split": "validation" if self.threshold_source == "validation" else None,
                "threshold_source": self.threshold_source,
                "splits": [row.to_dict() for row in self.rows],
                "goals": [asdict(check) for check in self.goals()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ShiftTable":
        """A table read back from ``shifts.json`` (without the full reports)."""
        return cls([ShiftRow.from_dict(row) for row in data["splits"]], data.get("threshold"),
                   threshold_source=data.get("threshold_source", "validation"))

    def row(self, split: str) -> ShiftRow | None:
        return next((row for row in self.rows if row.split == split), None)

    def goals(self) -> "list[AcceptanceCheck]":
        """The project's goals for the Doubter under shift, for the splits
        this table has (:data:`SHIFT_GOALS`): AUROC on every split with
        true answers, the margin over the best baseline, knowledge loss on
        test and new phrasings, refusal precision everywhere, the base's
        accuracy in new phrasings against test, and what happens to
        questions without a true answer."""
        checks: list[AcceptanceCheck] = []
        test = self.row("test")
        for row in self.rows:
            if row.outside is None or row.n > row.outside.n:  # it has questions with a true answer
                if row.split in SHIFT_GOALS["auroc_splits"] or row.split.startswith(SHIFT_PREFIX):
                    checks.append(goal_check(f"{row.split}: doubter_auroc", row.auroc, SHIFT_GOALS["min_auroc"],
                                             ">="))
                if row.split in SHIFT_GOALS["margin_splits"]:
                    margin = None if row.auroc is None or row.best_baseline_auroc is None \
                        else row.auroc - row.best_baseline_auroc
                    checks.append(goal_check(f"{row.split}: auroc_margin_over_best_baseline", margin,
                                         SHIFT_GOALS["min_margin"], ">="))
                    checks.append(goal_check(f"{row.split}: knowledge_loss", row.knowledge_loss,
                                         SHIFT_GOALS["max_knowledge_loss"], "<="))
                checks.append(goal_check(f"{row.split}: refusal_precision", row.refusal_precision,
                                     SHIFT_GOALS["min_refusal_precision"], ">="))
            if row.outside is not None:
                checks.append(goal_check(f"{row.split}: refused_without_true_answer", row.outside.refused_share,
                                     SHIFT_GOALS["min_outside_refused"], ">="))
                checks.append(goal_check(f"{row.split}: invented_answers", float(row.outside.invented), 0.0, "<="))
        paraphrase = self.row("test_paraphrase")
        if test is not None and paraphrase is not None and test.base_accuracy and paraphrase.base_accuracy is not None:
            checks.append(goal_check("test_paraphrase: base_accuracy_vs_test",
                                     paraphrase.base_accuracy / test.base_accuracy,
                                     SHIFT_GOALS["min_paraphrase_accuracy_ratio"], ">="))
        return checks

    def goals_table(self) -> "Table":
        """:meth:`goals` as a rich table."""
        from rich.table import Table

        table = Table(title="Goals under shift")
        for column in ("goal", "value", "target", "met"):
            table.add_column(column)
        for check in self.goals():
            value = "-" if check.value is None else f"{check.value:.4g}"
            verdict = {True: "[green]yes[/]", False: "[red]no[/]", None: "undefined"}[check.passed]
            table.add_row(check.name, value, f"{check.op} {check.target:g}", verdict)
        return table

    def table(self) -> "Table":
        """The side-by-side rich table: one column per split (narrow
        terminals keep every split readable), one row per figure."""
        from rich.table import Table

        def cell(value: float | None, digits: int = 3) -> str:
            return "-" if value is None else f"{value:.{digits}f}"

        def outside(row: ShiftRow, name: str) -> str:
            if row.outside is None:
                return "-"
            return cell(row.outside.refused_share) if name == "refused" else str(row.outside.invented)

        threshold = "" if self.threshold is None else f", P(correct) >= {self.threshold:.3f}"
        source = "from validation" if self.threshold_source == "validation" else "the checkpoint's"
        table = Table(title=f"Doubter under shift (answer threshold {source}{threshold})")
        table.add_column("", no_wrap=True)
        for row in self.rows:  # test_paraphrase -> paraphrase: the columns stay narrow
            shift = row.split[len(SHIFT_PREFIX):] if row.split.startswith(SHIFT_PREFIX) else row.split
            table.add_column(shift, justify="right")
        figures: list[tuple[str, Callable[[ShiftRow], str]]] = [
            ("questions", lambda row: str(row.n)),
            ("base accuracy", lambda row: cell(row.base_accuracy)),
            ("Doubter AUROC", lambda row: cell(row.auroc)),
            ("mean P(correct)", lambda row: cell(row.mean_p_correct)),
            ("calibration error (ECE)", lambda row: cell(row.ece)),
            ("best baseline AUROC", lambda row: cell(row.best_baseline_auroc)),
            ("best baseline", lambda row: row.best_baseline or "-"),
            ("coverage", lambda row: cell(row.coverage)),
            ("selective accuracy", lambda row: cell(row.selective_accuracy)),
            ("refusal precision", lambda row: cell(row.refusal_precision)),
            ("knowledge loss", lambda row: cell(row.knowledge_loss)),
            ("best baseline coverage", lambda row: cell(row.best_baseline_coverage)),
            ("best baseline know. loss", lambda row: cell(row.best_baseline_knowledge_loss)),
            ("no true answer, refused", lambda row: outside(row, "refused")),
            ("no true answer, invented", lambda row: outside(row, "invented")),
            ("seconds", lambda row: f"{row.seconds:.1f}"),
        ]
        for label, figure in figures:
            table.add_row(label, *(figure(row) for row in self.rows))
        if any(row.best_baseline_coverage is not None for row in self.rows):
            table.caption = ("best baseline coverage and knowledge loss: that baseline gated at its own threshold, "
                             "chosen on validation as the Doubter's is")
        return table


def _row(split: str, n: int, seconds: float, report: "ComparisonReport | None",
         outside: OutsideMetrics | None) -> ShiftRow:
    if report is None:
        return ShiftRow(split, n, seconds, outside=outside)
    behaviour, best, scores = report.behaviour, report.best_baseline, report.doubter_scores
    own = None if best is None or best.own_threshold is None else best.own_threshold.metrics
    mean_p = None if scores is None else sum(q.p_correct for q in report.questions) / len(report.questions)
    return ShiftRow(
        split, n, seconds, base_accuracy=behaviour.base_accuracy,
        auroc=None if scores is None else scores.auroc,
        mean_p_correct=mean_p, ece=None if scores is None else scores.ece,
        best_baseline=None if best is None else best.name,
        best_baseline_auroc=None if best is None or best.scores is None else best.scores.auroc,
        best_baseline_coverage=None if own is None else own.coverage,
        best_baseline_knowledge_loss=None if own is None else own.knowledge_loss,
        coverage=behaviour.coverage, selective_accuracy=behaviour.selective_accuracy,
        refusal_precision=behaviour.refusal_precision, over_refusal=behaviour.over_refusal,
        knowledge_loss=behaviour.knowledge_loss, outside=outside)


def run_shift_evaluation(pipe: Any, dataset: Any, activations: Any, splits: Sequence[str], *,
                         comparison: Callable[[QABenchmark], Any], max_tokens: int | None = None,
                         max_examples: int | None = None, answer_gate_on: bool = True,
                         console: "Console | None" = None, batch_size: int = 1) -> ShiftTable:
    """Evaluate ``splits`` (collected in ``activations``) one after another.

    ``comparison(benchmark)`` builds the
    :class:`~meta_spider.loom.evaluate.comparison.BaselineComparison` of a split's
    answerable questions (the caller's options: goals, gate, targets). The
    unanswerable questions are generated under the threshold the first
    comparison calibrated on validation (the pipeline's own gate when no
    split had an answerable question), or, without ``answer_gate_on``,
    judged on pass 2's own text as the comparison does then, ``batch_size``
    questions to a batch (the comparisons take their own). Raises
    ValueError naming a split the activations do not hold.
    """
    for split in splits:
        if not activations.split_indices(split):
            raise ValueError(f"the activations hold no {split!r} questions (they hold {activations.splits}); "
                             "collect that split (`metaloom collect` collects every test_* split by default)")
    rows: list[ShiftRow] = []
    reports: dict[str, Any] = {}
    threshold: float | None = None
    source = "validation"
    outside_items: dict[str, tuple[QABenchmark, float]] = {}
    for split in splits:
        started = time.perf_counter()
        benchmark = QABenchmark(dataset, split=split, activations=activations, max_examples=max_examples)
        everything = list(benchmark.items)
        benchmark.items = [item for item in everything if is_answerable(item)]
        report = None
        if benchmark.items:
            report = comparison(benchmark).run()
            reports[split] = report
            if threshold is None and report.calibration is not None:
                threshold = report.calibration.get("threshold")
                threshold = float("inf") if threshold is None else float(threshold)
                source = "checkpoint" if report.calibration.get("rule") == "fixed" else "validation"
        unanswerable = QABenchmark(dataset, split=split, activations=activations, max_examples=max_examples)
        unanswerable.items = [item for item in everything if not is_answerable(item)]
        if unanswerable.items:
            outside_items[split] = (unanswerable, time.perf_counter() - started)
        rows.append(_row(split, len(everything), time.perf_counter() - started, report, None))
    for position, row in enumerate(rows):
        if row.split not in outside_items:
            continue
        benchmark, spent = outside_items[row.split]
        started = time.perf_counter()
        previous = getattr(pipe, "answer_gate", None)
        if not answer_gate_on:
            pipe.answer_gate = None
        elif threshold is not None:
            pipe.answer_gate = answer_gate(threshold)
        try:
            outcomes = run_benchmark(pipe, benchmark, max_tokens, console=console,
                                     description=f"evaluating {row.split} (no true answer)", batch_size=batch_size)
        finally:
            pipe.answer_gate = previous
        seconds = spent + time.perf_counter() - started
        rows[position] = _row(row.split, row.n, seconds, reports.get(row.split), outside_metrics(outcomes))
    return ShiftTable(rows, None if threshold is None or threshold == float("inf") else threshold, reports,
                      threshold_source=source)
