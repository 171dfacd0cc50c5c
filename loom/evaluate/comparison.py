"""The Doubter against the base and against baselines, on held-out questions:
:class:`BaselineComparison` runs a :class:`~meta_spider.loom.evaluate.evaluation.QABenchmark`
and returns a :class:`ComparisonReport`.

How things are counted (also written into every report, ``definitions``):

* **Oracle**: ``pass1_correct``, whether the frozen base's own greedy answer
  was right.
* **Behaviour** is read from the text generated with the Doubter attached
  (pass 2, under the answer gate calibrated on validation unless
  ``answer_gate=False``: see :class:`~meta_spider.wrapper.gates.AnswerGate`):
  a refusal is the refusal sentence; anything else is an answer, right when
  ``dataset.check_fn`` accepts it. Coverage, selective accuracy,
  refusal rate, refusal precision (share of refusals where the base was
  wrong), over-refusal (share of refusals where the base was right: 1 -
  refusal precision) and knowledge loss (share of base-right questions
  refused) come from
  :func:`~meta_spider.loom.evaluate.metrics.selective_metrics`.
* **Paired tests** (McNemar exact, paired t) compare per-question *correct
  behaviour*: the base is right when ``pass1_correct``; the Doubter system is
  right when it answered correctly **or refused a question the base gets
  wrong** (declining to state a wrong answer is the behaviour selective
  prediction asks for; refusing a question the base knows counts as wrong).
  This is what the goal "McNemar p < 0.01" next to "selective accuracy
  >= base accuracy + 20 points" measures: whether the system behaves
  better than the bare base on the same questions, with the goal also
  requiring the improvement's direction. The same tests
  restricted to the answered questions (modified answer vs the base's
  answer on them, which only self-corrections change) are reported as
  ``paired.answered_only``.
* **Scores** (Doubter P(correct) and each baseline's) are judged against the
  oracle: AUROC, AURC, ECE, PRR. ``answer_mean_logprob`` enters ECE as
  ``exp(mean log-prob)``; the ranking metrics do not change under that map.
* **Baselines** (:data:`~meta_spider.loom.evaluate.baselines.BASELINES`): the linear
  probe is fitted on the calibration split; the two that read the pass-1
  log-prob signals ("pass-1 signals (logistic)", "probe + signals
  (logistic)") on the training split (what was fitted:
  ``benchmark.signal_baselines``). The margin goal compares the Doubter with
  the best of every baseline (:attr:`ComparisonReport.best_baseline`).
* **Matched coverage**: every baseline answers exactly the Doubter's achieved
  coverage (its most confident questions, keeping the base's answer), via
  :func:`~meta_spider.loom.evaluate.metrics.evaluate_at_coverage`; ``always_answer``
  stays at coverage 1.

``report.json`` (``ComparisonReport.to_json()``, keys sorted, ``schema_version``
2; a version 1 report, which called knowledge loss over-refusal, is read
with its meaning kept): ``benchmark`` (dataset, split, n, max_tokens, ...), ``definitions``,
``doubter`` {``behaviour``: SelectiveMetrics, ``actions``: {confirm, correct,
refuse}, ``decisions``: {pass2, gate_refused, base_answer} counts, ``scores``: ScoreMetrics or null, ``gate_at_coverage``:
MatchedCoverage of P(correct) or null}, ``paired`` {``definition``,
``mcnemar``, ``t_test``, ``answered_only``: {``mcnemar``, ``t_test``} or
null}, ``baselines`` [{``name``, ``description``, ``scores``, ``matched``}],
``calibration`` (ThresholdChoice chosen on validation plus ``score``, ``split``,
``read_position``, ``rule`` (``goals``, ``target_coverage``, ``target_risk``),
``gated_generation`` (whether the generated text followed it) and
``evaluated``: that gate's SelectiveMetrics on the evaluated questions, with
the base's answers; or null), ``probe`` (layer choice, or null), ``acceptance`` [{``name``, ``value``, ``target``, ``op``,
``passed``}], ``questions`` [QuestionOutcome], ``notes`` [str]. Metric
dictionaries are the ``to_dict()`` of :mod:`meta_spider.loom.evaluate.metrics` and
:mod:`meta_spider.loom.evaluate.stats`; undefined values are null.

:func:`build_report` is the pure part (a behaviour table in, a report out);
this module knows nothing about how the table was generated.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import numpy as np

from meta_spider.loom.evaluate.baselines import BASELINES, fit_signal_baselines, select_probe_layer
from meta_spider.loom.evaluate.evaluation import ACTIONS, QABenchmark, QuestionOutcome, answer_gate, run_benchmark
from meta_spider.loom.evaluate.metrics import (
    BehaviourGoals,
    MatchedCoverage,
    RiskCoverageCurve,
    ScoreMetrics,
    SelectiveMetrics,
    UndefinedMetricError,
    choose_threshold,
    evaluate_at_coverage,
    score_metrics,
    selective_metrics,
    threshold_for_goals,
)
from meta_spider.loom.evaluate.stats import McNemarResult, PairedTTestResult, mcnemar_exact, paired_t_test

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = ["AcceptanceCheck", "BaselineComparison", "BaselineResult", "ComparisonReport", "PrintableTable",
           "SCHEMA_VERSION", "build_report", "goal_check"]

SCHEMA_VERSION = 2
DEFINITIONS = {
    "oracle": "pass1_correct: the frozen base's greedy answer was right",
    "answered": "the generated text is not the refusal sentence",
    "correct": "answered and dataset.check_fn(text) accepts it",
    "paired_modified_correct": "answered correctly, or refused a question the base gets wrong",
    "paired_base_correct": "pass1_correct",
    "matched_coverage": "baselines answer exactly the Doubter's coverage, their most confident questions first",
}
GOALS = BehaviourGoals()
"""The project's behaviour goals, also the default calibration rule."""
ACCEPTANCE = (  # name, target, op: the project's goals for the Doubter on the embedded world
    ("doubter_auroc", 0.80, ">="), ("auroc_margin_over_best_baseline", 0.03, ">="),
    ("coverage", GOALS.min_coverage, ">="), ("selective_accuracy_gain", GOALS.min_selective_gain, ">="),
    ("refusal_precision", GOALS.min_refusal_precision, ">="), ("knowledge_loss", GOALS.max_knowledge_loss, "<="),
    ("mcnemar_p", 0.01, "<"),
)
DECISION_NAMES = ("pass2", "gate_refused", "base_answer")


@dataclass(frozen=True)
class BaselineResult:
    """One baseline: its score metrics against the oracle and its behaviour
    at the matched coverage."""

    name: str
    description: str
    scores: Optional[ScoreMetrics]
    matched: MatchedCoverage


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
                           "matched": b.matched.to_dict()} for b in self.baselines],
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
                                      _matched_from_dict(b["matched"])) for b in data["baselines"]],  # type: ignore[arg-type]
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
        metrics; the caption gives the paired tests, the best baseline and the goals met."""
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


# ------------------------------------------------------------------ pure part


def _column(outcomes: Sequence[QuestionOutcome], name: str) -> Optional[np.ndarray]:
    values = [getattr(q, name) for q in outcomes]
    if any(v is None for v in values):
        return None
    return np.asarray(values, dtype=np.float64)


def _probability(name: str, scores: np.ndarray) -> np.ndarray:
    # ECE needs probabilities; exp keeps the ranking of mean log-probs.
    values = np.exp(scores) if name == "answer_mean_logprob" else scores
    return np.clip(values, 0.0, 1.0)


def goal_check(name: str, value: Optional[float], target: float, op: str) -> AcceptanceCheck:
    """The check of one goal: ``value`` ``op`` ``target`` (None when the value is undefined)."""
    passed = None
    if value is not None:
        passed = {">=": value >= target - 1e-12, "<=": value <= target + 1e-12, "<": value < target}[op]
    return AcceptanceCheck(name, value, target, op, passed)


def build_report(outcomes: Sequence[QuestionOutcome], *, benchmark: Optional[Mapping[str, Any]] = None,
                 calibration: Optional[Mapping[str, Any]] = None, probe: Optional[Mapping[str, Any]] = None,
                 notes: Sequence[str] = ()) -> ComparisonReport:
    """The report of a behaviour table (one :class:`QuestionOutcome` per
    question). Baselines whose score column is missing for any question are
    left out with a note; scores that are all equal have no AUROC."""
    if not outcomes:
        raise ValueError("build_report needs at least one question outcome, got none")
    notes = list(notes)
    oracle = np.array([q.pass1_correct for q in outcomes], dtype=bool)
    answered = np.array([q.answered for q in outcomes], dtype=bool)
    correct = np.array([q.correct for q in outcomes], dtype=bool)
    behaviour = selective_metrics(answered, correct, oracle)
    actions = {name: sum(1 for q in outcomes if q.action == name) for name in ACTIONS}
    decisions = {}
    if any(q.decision is not None for q in outcomes):
        decisions = {name: sum(1 for q in outcomes if q.decision == name) for name in DECISION_NAMES}

    p_correct = _column(outcomes, "p_correct")
    doubter_scores = gate = None
    if p_correct is not None:
        doubter_scores = score_metrics(np.clip(p_correct, 0.0, 1.0), oracle)
        gate = evaluate_at_coverage(p_correct, oracle, behaviour.coverage, oracle)

    behaving_right = correct | (~answered & ~oracle)
    mcnemar = mcnemar_exact(oracle, behaving_right)
    t_test = paired_t_test(oracle, behaving_right) if len(outcomes) >= 2 else None
    answered_only = None
    if answered.sum() >= 1:
        answered_only = (mcnemar_exact(oracle[answered], correct[answered]),
                         paired_t_test(oracle[answered], correct[answered]) if answered.sum() >= 2 else None)

    baselines = []
    for spec in BASELINES:
        scores = np.ones(len(outcomes)) if spec.column is None else _column(outcomes, spec.column)
        if scores is None:
            notes.append(f"baseline {spec.name} left out: no {spec.column} for some questions")
            continue
        coverage = 1.0 if spec.column is None else behaviour.coverage
        baselines.append(BaselineResult(spec.name, spec.description, score_metrics(_probability(spec.name, scores), oracle),
                                        evaluate_at_coverage(scores, oracle, coverage, oracle)))

    doubter_auroc = None if doubter_scores is None else doubter_scores.auroc
    rival = [b.scores.auroc for b in baselines if b.name != "always_answer" and b.scores and b.scores.auroc is not None]
    margin = None if doubter_auroc is None or not rival else doubter_auroc - max(rival)
    gain = None if behaviour.selective_accuracy is None else behaviour.selective_accuracy - behaviour.base_accuracy
    # McNemar is two-sided; the goal is an improvement, so a
    # significant change for the worse does not pass.
    mcnemar_value = mcnemar.p_value if mcnemar.modified_only > mcnemar.base_only else 1.0
    values = {"doubter_auroc": doubter_auroc, "auroc_margin_over_best_baseline": margin,
              "coverage": behaviour.coverage, "selective_accuracy_gain": gain,
              "refusal_precision": behaviour.refusal_precision, "knowledge_loss": behaviour.knowledge_loss,
              "mcnemar_p": mcnemar_value}
    acceptance = [goal_check(name, values[name], target, op) for name, target, op in ACCEPTANCE]
    return ComparisonReport(
        benchmark=dict(benchmark or {}), questions=list(outcomes), behaviour=behaviour, actions=actions,
        doubter_scores=doubter_scores, gate_at_coverage=gate, mcnemar=mcnemar, t_test=t_test,
        answered_only=answered_only, baselines=baselines, acceptance=acceptance,
        calibration=None if calibration is None else dict(calibration),
        probe=None if probe is None else dict(probe), notes=notes, decisions=decisions,
    )


# ------------------------------------------------------------------ runner


class BaselineComparison:
    """Run ``benchmark`` through ``pipe`` (Doubter attached) and compare.

    Before generating it calibrates the Doubter's answer threshold on the
    benchmark's calibration split (``validation``) and fits the linear probe
    there. The threshold rule: ``target_risk`` or ``target_coverage`` when
    given; otherwise ``goals`` (default :data:`GOALS`): the threshold that
    answers most while the gate meets them on validation, falling back to
    a coverage equal to the base's validation accuracy (a perfect ranking
    would answer exactly the questions the base knows) when none does.
    With ``answer_gate`` (default) the questions are then generated under
    that threshold (:class:`~meta_spider.wrapper.gates.AnswerGate`);
    without it, pass 2's own text decides. ``max_tokens`` defaults to the
    collection's ``max_new_tokens``. The baselines that read the pass-1
    signals are fitted on ``fit_split`` (``train``). ``fitted``, a dict
    shared by comparisons of several splits of one collection, keeps the
    baselines fitted once for all of them.
    """

    def __init__(self, pipe: Any, benchmark: QABenchmark, max_tokens: Optional[int] = None, *,
                 console: "Optional[Console]" = None, target_coverage: Optional[float] = None,
                 target_risk: Optional[float] = None, goals: Optional[BehaviourGoals] = None,
                 answer_gate: bool = True, probe_folds: int = 5, probe_l2: float = 1.0,
                 fit_split: str = "train", fitted: Optional[dict[Any, Any]] = None) -> None:
        if target_coverage is not None and target_risk is not None:
            raise ValueError(f"give target_coverage or target_risk, not both; got {target_coverage!r} and {target_risk!r}")
        if goals is not None and (target_coverage is not None or target_risk is not None):
            raise ValueError("give goals or a target coverage/risk, not both")
        self.pipe = pipe
        self.benchmark = benchmark
        self.max_tokens = benchmark.default_max_tokens() if max_tokens is None else max_tokens
        self.console = console
        self.target_coverage = target_coverage
        self.target_risk = target_risk
        self.goals = goals if goals is not None else GOALS
        self.answer_gate = answer_gate
        self.probe_folds = probe_folds
        self.probe_l2 = probe_l2
        self.fit_split = fit_split
        self.fitted = {} if fitted is None else fitted

    def _states(self) -> tuple[Any, list[int], str]:
        """States at the Doubter's read position and the collected layers."""
        activations = self.benchmark.activations
        read_position = self.pipe.doubter.config.read_position
        return activations.states(read_position).numpy(), list(activations.target_layers), read_position

    def _doubter_p_correct(self, states: np.ndarray, layers: list[int], indices: list[int]) -> np.ndarray:
        import torch

        wanted = list(self.pipe.doubter.config.target_layers)
        missing = [layer for layer in wanted if layer not in layers]
        if missing:
            raise ValueError(f"the Doubter reads layers {missing} that the activation dataset did not collect "
                             f"(it holds {layers}); collect with the Doubter's target layers")
        picked = states[indices][:, [layers.index(layer) for layer in wanted]]
        names = self.pipe.doubter.config.signals
        signals = self.benchmark.activations.signals(names)[indices] if names else None
        with torch.no_grad():
            logits = self.pipe.doubter.encode(torch.from_numpy(picked), signals).p_correct_logit
        return torch.sigmoid(logits.double()).cpu().numpy()

    def run(self) -> ComparisonReport:
        benchmark = self.benchmark
        if not benchmark.items:
            raise ValueError(f"benchmark {benchmark.describe()} has no questions to evaluate")
        notes: list[str] = []
        info = {**benchmark.describe(), "max_tokens": self.max_tokens, "model": self.pipe.fingerprint(),
                "doubter": {"encoder_type": self.pipe.doubter.config.encoder_type,
                            "read_position": self.pipe.doubter.config.read_position,
                            "target_layers": list(self.pipe.doubter.config.target_layers)}}
        if benchmark.activations is None:
            notes.append("no activation dataset: oracle recomputed by greedy decoding; only always_answer as baseline"
                         "; no calibration, pass 2's own text decides")
            outcomes = self._generate(None)
            return build_report(outcomes, benchmark=info, notes=notes)
        calibration = probe = None
        states, layers, read_position = self._states()
        labels = benchmark.activations.tensor("pass1_correct").numpy().astype(bool)
        test_indices = [item.index for item in benchmark.items]
        from_states = self._doubter_p_correct(states, layers, test_indices)
        fit_indices = benchmark.calibration_indices()
        if benchmark.calibration_split == benchmark.split:
            notes.append(f"the probe and the threshold are fitted on the evaluated split {benchmark.split!r}: "
                         "their numbers here are optimistic")
        if not fit_indices:
            notes.append(f"no {benchmark.calibration_split!r} split collected: no linear probe, no calibration; "
                         "pass 2's own text decides")
        else:
            calibration = self._calibrate(states, layers, labels, fit_indices, test_indices, from_states,
                                          read_position, notes)
        outcomes = self._generate(calibration)
        if calibration is not None:
            calibration["gated_generation"] = self.answer_gate
            key = ("probe", benchmark.calibration_split, len(states), read_position, self.probe_folds, self.probe_l2)
            try:
                if key not in self.fitted:
                    self.fitted[key] = select_probe_layer(states[fit_indices], labels[fit_indices], layers,
                                                          folds=self.probe_folds, l2=self.probe_l2)
                choice = self.fitted[key]
            except UndefinedMetricError as error:
                notes.append(f"no linear probe: {error}")
            else:
                probe = {**choice.to_dict(), "split": benchmark.calibration_split, "read_position": read_position}
                test_scores = choice.probe.predict_proba(states[test_indices][:, choice.layer_position])
                for outcome, score in zip(outcomes, test_scores):
                    outcome.probe_score = float(score)
        signal_baselines = self._signal_baselines(states, layers, labels, test_indices, outcomes, notes)
        if signal_baselines is not None:
            info["signal_baselines"] = {**signal_baselines, "read_position": read_position}
        # pass 1 inside generation and the encoder on collected states must agree
        generated = np.array([q.p_correct for q in outcomes], dtype=np.float64)
        drift = float(np.max(np.abs(from_states - generated))) if len(outcomes) else 0.0
        info["p_correct_max_abs_diff_vs_collected_states"] = drift
        if drift > 1e-3:
            notes.append(f"P(correct) from generation differs from P(correct) on the collected states by up to "
                         f"{drift:.3g}: the prompts or the base changed since collection")
        return build_report(outcomes, benchmark=info, calibration=calibration, probe=probe, notes=notes)

    def _signal_baselines(self, states: np.ndarray, layers: list[int], labels: np.ndarray, test_indices: list[int],
                          outcomes: Sequence[QuestionOutcome], notes: list[str]) -> Optional[dict[str, Any]]:
        """Fit the baselines that read the pass-1 signals on the training
        split and score the evaluated questions with them (into
        ``outcomes``); what was fitted, or None (with a note) when they
        cannot be."""
        activations = self.benchmark.activations
        fit_indices = activations.split_indices(self.fit_split)
        names = activations.recorded_signals
        if not fit_indices or not names:
            notes.append(f"no pass-1 signal baselines: the collection holds no {self.fit_split!r} split"
                         if names else "no pass-1 signal baselines: the collection recorded no signals")
            return None
        signals = activations.signals(names).numpy()
        key = ("signal_baselines", self.fit_split, len(states), tuple(names), self.probe_folds, self.probe_l2)
        try:
            if key not in self.fitted:
                self.fitted[key] = fit_signal_baselines(states[fit_indices], signals[fit_indices],
                                                        labels[fit_indices], layers, names, folds=self.probe_folds,
                                                        probe_l2=self.probe_l2)
            fitted = self.fitted[key]
        except UndefinedMetricError as error:
            notes.append(f"no pass-1 signal baselines: {error}")
            return None
        for column, values in fitted.scores(states[test_indices], signals[test_indices]).items():
            for outcome, value in zip(outcomes, values):
                setattr(outcome, column, float(value))
        return {**fitted.to_dict(), "split": self.fit_split}

    def _generate(self, calibration: Optional[Mapping[str, Any]]) -> list[QuestionOutcome]:
        """The benchmark's questions through the pipeline, under the
        calibrated answer gate when there is one and ``answer_gate`` is on
        (the pipeline's own gate is restored afterwards)."""
        pipe, previous = self.pipe, getattr(self.pipe, "answer_gate", None)
        if self.answer_gate and calibration is not None:
            threshold = calibration["threshold"]
            pipe.answer_gate = answer_gate(math.inf if threshold is None else threshold)
        elif not self.answer_gate:
            pipe.answer_gate = None
        try:
            return run_benchmark(pipe, self.benchmark, self.max_tokens, console=self.console,
                                 description=f"evaluating {self.benchmark.split}")
        finally:
            pipe.answer_gate = previous

    def _calibrate(self, states: np.ndarray, layers: list[int], labels: np.ndarray, fit_indices: list[int],
                   test_indices: list[int], test_scores: np.ndarray, read_position: str,
                   notes: list[str]) -> dict[str, Any]:
        """The answer threshold on the Doubter's P(correct), chosen on the
        calibration split, and what it does on the evaluated questions
        (``test_scores``, keeping the base's answers)."""
        scores = self._doubter_p_correct(states, layers, fit_indices)
        fit_labels = labels[fit_indices]
        if self.target_risk is not None:
            choice, rule = choose_threshold(scores, fit_labels, target_risk=self.target_risk), "target_risk"
        elif self.target_coverage is not None:
            choice, rule = choose_threshold(scores, fit_labels, target_coverage=self.target_coverage), "target_coverage"
        else:
            choice, rule = threshold_for_goals(scores, fit_labels, self.goals), "goals"
            if choice is None:
                coverage = float(fit_labels.mean())
                notes.append(f"no threshold meets the behaviour goals on {self.benchmark.calibration_split!r}: "
                             f"calibrated for coverage {coverage:.3f} (the base's accuracy there) instead")
                choice, rule = choose_threshold(scores, fit_labels, target_coverage=coverage), "target_coverage"
        entry = {**choice.to_dict(), "score": "p_correct", "split": self.benchmark.calibration_split,
                 "read_position": read_position, "rule": rule}
        if test_indices:
            gate = selective_metrics(test_scores >= choice.threshold, labels[test_indices], labels[test_indices])
            entry["evaluated"] = gate.to_dict()
        if not math.isfinite(choice.threshold):
            entry["note"] = "no threshold meets the target risk on the calibration split: answer nothing"
        return entry
