"""The comparison report: what :class:`~meta_spider.loom.evaluate.comparison.BaselineComparison`
measured, as data, as JSON and as rich tables.

``report.json`` (``ComparisonReport.to_json()``, keys sorted, ``schema_version``
2; a version 1 report, which called knowledge loss over-refusal, is read
with its meaning kept): ``benchmark`` (dataset, split, n, max_tokens, ...), ``definitions``,
``doubter`` {``behaviour``: SelectiveMetrics, ``actions``: {confirm, correct,
refuse}, ``decisions``: {pass2, gate_refused, base_answer} counts, ``scores``: ScoreMetrics or null, ``gate_at_coverage``:
MatchedCoverage of P(correct) or null}, ``paired`` {``definition``,
``mcnemar``, ``t_test``, ``answered_only``: {``mcnemar``, ``t_test``} or
null}, ``baselines`` [{``name``, ``description``, ``scores``, ``matched``,
``own_threshold``: {``threshold``, ``rule``, ``metrics``} or null}],
``calibration`` (ThresholdChoice chosen on validation plus ``score``, ``split``,
``read_position``, ``rule`` (``goals``, ``target_coverage``, ``target_risk``),
``gated_generation`` (whether the generated text followed it) and
``evaluated``: that gate's SelectiveMetrics on the evaluated questions, with
the base's answers; or null), ``probe`` (layer choice, or null), ``acceptance`` [{``name``, ``value``, ``target``, ``op``,
``passed``}], ``questions`` [QuestionOutcome], ``notes`` [str]. Metric
dictionaries are the ``to_dict()`` of :mod:`meta_spider.loom.evaluate.metrics` and
:mod:`meta_spider.loom.evaluate.stats`; undefined values are null.

This module computes nothing: :func:`~meta_spider.loom.evaluate.comparison.build_report`
fills a :class:`ComparisonReport`; here it is read, written and shown.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional

import numpy as np

from meta_spider.loom.evaluate.evaluation import ACTIONS, QuestionOutcome
from meta_spider.loom.evaluate.metrics import MatchedCoverage, RiskCoverageCurve, ScoreMetrics, SelectiveMetrics
from meta_spider.loom.evaluate.stats import McNemarResult, PairedTTestResult

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["AcceptanceCheck", "BaselineResult", "ComparisonReport", "DECISION_NAMES", "DEFINITIONS", "OwnThreshold",
           "PrintableTable", "SCHEMA_VERSION", "goal_check"]

SCHEMA_VERSION = 2
DEFINITIONS = {
    "oracle": "pass1_correct: the frozen base's greedy answer was right",
    "answered": "the generated text is not the refusal sentence",
    "correct": "answered and dataset.check_fn(text) accepts it",
    "paired_modified_correct": "answered correctly, or refused a question the base gets wrong",
    "paired_base_correct": "pass1_correct",
    "matched_coverage": "baselines answer exactly the Doubter's coverage, their most confident questions first",
    "own_threshold": "a baseline's own answer threshold, chosen on the calibration split by the Doubter's rule, "
                     "applied to the evaluated questions (none for the linear probe, fitted on that split)",
}
DECISION_NAMES = ("pass2", "gate_refused", "base_answer")


@dataclass(frozen=True)
class OwnThreshold:
    """A baseline gated as the Doubter is: the answer threshold chosen on
    the calibration split by the same rule (``rule``; ``threshold`` None
    when it answers nothing), and what it does on the evaluated questions
    (keeping the base's answers). Under a shift, this is where a score that
    ranks well but whose scale moves with the wording shows it."""

    threshold: Optional[float]
    rule: str
    metrics: SelectiveMetrics

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "rule": self.rule, "metrics": self.metrics.to_dict()}

    @classmethod
    def from_dict(cls, data: Optional[Mapping[str, Any]]) -> "Optional[OwnThreshold]":
        if data is None:
            return None
        return cls(data["threshold"], data["rule"], SelectiveMetrics.from_dict(data["metrics"]))


@dataclass(frozen=True)
class BaselineResult:
    """One baseline: its score metrics against the oracle, its behaviour
    at the matched coverage and, when it has one, at its own threshold."""

    name: str
    description: str
    scores: Optional[ScoreMetrics]
    matched: MatchedCoverage
    own_threshold: Optional[OwnThreshold] = None


@dataclass(frozen=True)
class AcceptanceCheck:
    """One goal the report checks; ``passed`` is None when ``value`` is undefined."""

    name: str
    value: Optional[float]
    target: float
    op: str
    passed: Optional[bool]


def _score_from_dict(data: Optional[Mapping[str, Any]]) -> Optional[ScoreMetrics]:
    if data is None:
        return None
    curve = data["curve"]
    values = {k: v for k, v in data.items() if k != "curve"}
    return ScoreMetrics(**values, curve=RiskCoverageCurve(
        coverage=np.asarray(curve["coverage"], dtype=np.float64), risk=np.asarray(curve["risk"], dtype=np.float64),
        thresholds=np.asarray(curve["thresholds"], dtype=np.float64), aurc=curve["aurc"]))


def _matched_from_dict(data: Optional[Mapping[str, Any]]) -> Optional[MatchedCoverage]:
    if data is None:
        return None
    return MatchedCoverage(target_coverage=data["target_coverage"], threshold=data["threshold"],
                           split_ties=data["split_ties"], metrics=SelectiveMetrics.from_dict(data["metrics"]))


def _t_test_from_dict(data: Mapping[str, Any]) -> PairedTTestResult:
    return PairedTTestResult(**{**data, "t_statistic": float(data["t_statistic"])})


class PrintableTable(str):
    """A rich renderable as plain text (what ``print`` and ``str`` show),
    still drawn by a rich console as the original (``__rich__``)."""

    renderable: Any

    def __new__(cls, renderable: Any, width: int = 160) -> "PrintableTable":
        import io

        from rich.console import Console

        buffer = io.StringIO()
        Console(file=buffer, width=width, color_system=None, force_terminal=False).print(renderable)
        text = super().__new__(cls, buffer.getvalue().rstrip("\n"))
        text.renderable = renderable
        return text

    def __rich__(self) -> Any:
        return self.renderable


@dataclass
class ComparisonReport:
    """Everything one comparison measured (see the module docstring for the
    definitions and the JSON layout)."""

    benchmark: dict[str, Any]
    questions: list[QuestionOutcome]
    behaviour: SelectiveMetrics
    actions: dict[str, int]
    doubter_scores: Optional[ScoreMetrics]
    gate_at_coverage: Optional[MatchedCoverage]
    mcnemar: McNemarResult
    t_test: Optional[PairedTTestResult]
    answered_only: Optional[tuple[McNemarResult, Optional[PairedTTestResult]]]
    baselines: list[BaselineResult]
    acceptance: list[AcceptanceCheck]
    calibration: Optional[dict[str, Any]] = None
    probe: Optional[dict[str, Any]] = None
    notes: list[str] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)
    """How many texts took each generation path (empty for reports from
    before the answer gate)."""

    # ------------------------------------------------------------ access

    def baseline(self, name: str) -> BaselineResult:
        for result in self.baselines:
            if result.name == name:
                return result
        raise KeyError(f"no baseline {name!r} in this report; it has {[b.name for b in self.baselines]}")

    @property
    def best_baseline(self) -> Optional[BaselineResult]:
        """The baseline with the highest AUROC (``always_answer`` and
        baselines without an AUROC excluded): the one the margin goal
        measures against."""
        rivals = [b for b in self.baselines
                  if b.name != "always_answer" and b.scores is not None and b.scores.auroc is not None]
        return max(rivals, key=lambda b: b.scores.auroc) if rivals else None  # type: ignore[union-attr]

    @property
    def passed(self) -> Optional[bool]:
        """All acceptance checks passed (None when one is undefined)."""
        verdicts = [check.passed for check in self.acceptance]
        return None if None in verdicts else all(verdicts)

    # ------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        def t_dict(result: Optional[PairedTTestResult]) -> Optional[dict[str, Any]]:
            return None if result is None else result.to_dict()

        answered_only = None
        if self.answered_only is not None:
            answered_only = {"mcnemar": self.answered_only[0].to_dict(), "t_test": t_dict(self.answered_only[1])}
        return {
            "schema_version": SCHEMA_VERSION,
            "benchmark": dict(self.benchmark),
            "definitions": dict(DEFINITIONS),
            "doubter": {
                "behaviour": self.behaviour.to_dict(),
                "actions": dict(self.actions),
                "decisions": dict(self.decisions),
                "scores": None if self.doubter_scores is None else self.doubter_scores.to_dict(),
                "gate_at_coverage": None if self.gate_at_coverage is None else self.gate_at_coverage.to_dict(),
            },
            "paired": {"definition": DEFINITIONS["paired_modified_correct"], "mcnemar": self.mcnemar.to_dict(),
                       "t_test": t_dict(self.t_test), "answered_only": answered_only},
            "baselines": [{"name": b.name, "description": b.description,
                           "scores": None if b.scores is None else b.scores.to_dict(),
                           "matched": b.matched.to_dict(),
                           "own_threshold": None if b.own_threshold is None else b.own_threshold.to_dict()}
                          for b in self.baselines],
            "calibration": self.calibration,
            "probe": self.probe,
            "acceptance": [asdict(check) for check in self.acceptance],
            "questions": [q.to_dict() for q in self.questions],
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        """Strict JSON (no NaN), keys sorted, two-space indent."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ComparisonReport":
        version = data.get("schema_version")
        if version not in (1, SCHEMA_VERSION):
            raise ValueError(f"report schema_version {version!r} is not the {SCHEMA_VERSION} this meta-spider reads")
        if version == 1:  # its "over_refusal" check was what is now knowledge loss
            data = {**data, "acceptance": [{**check, "name": "knowledge_loss"} if check["name"] == "over_refusal"
                                           else check for check in data["acceptance"]]}
        paired = data["paired"]
        answered_only = None
        if paired.get("answered_only") is not None:
            inner = paired["answered_only"]
            answered_only = (McNemarResult(**inner["mcnemar"]),
                             None if inner["t_test"] is None else _t_test_from_dict(inner["t_test"]))
        doubter = data["doubter"]
        return cls(
            benchmark=dict(data["benchmark"]),
            questions=[QuestionOutcome.from_dict(q) for q in data["questions"]],
            behaviour=SelectiveMetrics.from_dict(doubter["behaviour"]),
            actions=dict(doubter["actions"]),
            decisions=dict(doubter.get("decisions", {})),
            doubter_scores=_score_from_dict(doubter["scores"]),
            gate_at_coverage=_matched_from_dict(doubter["gate_at_coverage"]),
            mcnemar=McNemarResult(**paired["mcnemar"]),
            t_test=None if paired["t_test"] is None else _t_test_from_dict(paired["t_test"]),
            answered_only=answered_only,
            baselines=[BaselineResult(b["name"], b["description"], _score_from_dict(b["scores"]),
                                      _matched_from_dict(b["matched"]),  # type: ignore[arg-type]
                                      OwnThreshold.from_dict(b.get("own_threshold"))) for b in data["baselines"]],
            acceptance=[AcceptanceCheck(**check) for check in data["acceptance"]],
            calibration=data.get("calibration"),
            probe=data.get("probe"),
            notes=list(data.get("notes", [])),
        )

    @classmethod
    def from_json(cls, text: str) -> "ComparisonReport":
        return cls.from_dict(json.loads(text))

    # ------------------------------------------------------------ display

    def summary(self) -> "PrintableTable":
        """The :meth:`summary_table` as text: ``print(report.summary())``
        shows the table; a rich console prints it as the rich table."""
        return PrintableTable(self.summary_table())

    def summary_table(self) -> "Table":
        """A rich table: the Doubter's generated behaviour, its P(correct)
        gate and every baseline at matched coverage, with their score
        metrics (below each, dimmed, that baseline gated at its own
        threshold); the caption gives the paired tests, the best baseline and
        the goals met."""
        from rich.table import Table

        def cell(value: Optional[float], digits: int = 3) -> str:
            return "-" if value is None else f"{value:.{digits}f}"

        def score_cells(scores: Optional[ScoreMetrics]) -> list[str]:
            if scores is None:
                return ["-"] * 4
            return [cell(scores.auroc), cell(scores.aurc), cell(scores.ece), cell(scores.prr)]

        def behaviour_cells(metrics: SelectiveMetrics) -> list[str]:
            return [cell(metrics.coverage), cell(metrics.selective_accuracy), cell(metrics.refusal_precision),
                    cell(metrics.over_refusal), cell(metrics.knowledge_loss)]

        info = self.benchmark
        table = Table(title=f"Doubter vs baselines: {info.get('dataset', '?')} / {info.get('split', '?')}, "
                            f"n={self.behaviour.n}, base accuracy {self.behaviour.base_accuracy:.3f}")
        for column in ("system", "coverage", "sel. acc", "refusal prec.", "over-refusal", "knowledge loss", "AUROC",
                       "AURC", "ECE", "PRR"):
            table.add_column(column, justify="left" if column == "system" else "right")
        table.add_row("Doubter (generated text)", *behaviour_cells(self.behaviour), *score_cells(self.doubter_scores),
                      style="bold")
        if self.gate_at_coverage is not None:
            table.add_row("Doubter P(correct) gate", *behaviour_cells(self.gate_at_coverage.metrics), *["-"] * 4)
        for result in self.baselines:
            table.add_row(result.name, *behaviour_cells(result.matched.metrics), *score_cells(result.scores))
            if result.own_threshold is not None:
                table.add_row("  at own threshold", *behaviour_cells(result.own_threshold.metrics), *["-"] * 4,
                              style="dim")
        actions = ", ".join(f"{name} {self.actions.get(name, 0)}" for name in ACTIONS)
        calibration = self.calibration or {}
        if calibration.get("gated_generation"):
            threshold = calibration.get("threshold")
            gate = "answers nothing" if threshold is None else f"P(correct) >= {threshold:.3f}"
            paths = ", ".join(f"{name} {self.decisions.get(name, 0)}" for name in DECISION_NAMES)
            actions += f". Answer gate ({calibration.get('rule', '?')}, {calibration.get('split', '?')}): {gate}; {paths}"
        best = self.best_baseline
        if best is not None and best.scores is not None:
            actions += f". Best baseline: {best.name} (AUROC {best.scores.auroc:.3f})"
        passed = sum(1 for check in self.acceptance if check.passed)
        t_p = "-" if self.t_test is None else f"{self.t_test.p_value:.3g}"
        table.caption = (f"actions: {actions}. McNemar p={self.mcnemar.p_value:.3g} "
                         f"(better {self.mcnemar.modified_only}, worse {self.mcnemar.base_only}), paired t p={t_p}. "
                         f"Acceptance {passed}/{len(self.acceptance)} passed.")
        return table

    def acceptance_table(self) -> "Table":
        """The acceptance checks as a rich table."""
        from rich.table import Table

        table = Table(title="Acceptance")
        for column in ("criterion", "value", "target", "passed"):
            table.add_column(column)
        for check in self.acceptance:
            value = "-" if check.value is None else f"{check.value:.4g}"
            verdict = {True: "[green]yes[/]", False: "[red]no[/]", None: "undefined"}[check.passed]
            table.add_row(check.name, value, f"{check.op} {check.target:g}", verdict)
        return table


def goal_check(name: str, value: Optional[float], target: float, op: str) -> AcceptanceCheck:
    """The check of one goal: ``value`` ``op`` ``target`` (None when the value is undefined)."""
    passed = None
    if value is not None:
        passed = {">=": value >= target - 1e-12, "<=": value <= target + 1e-12, "<": value < target}[op]
    return AcceptanceCheck(name, value, target, op, passed)
