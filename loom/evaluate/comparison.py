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
* **Own threshold**: every baseline but the probe (fitted on the calibration
  split) and ``always_answer`` is also gated as the Doubter is, at a
  threshold chosen on the calibration split by the same rule
  (:class:`~meta_spider.loom.evaluate.report.OwnThreshold`). Matched coverage
  compares rankings; this compares what a user of each score would get, and
  under a shift the two part: a score whose scale moves with the wording
  keeps its ranking and loses its threshold.

The report itself (its fields, ``report.json``, the tables) is
:mod:`meta_spider.loom.evaluate.report`. :func:`build_report` is the pure
part (a behaviour table in, a report out); :class:`BaselineComparison`
generates the table. Neither knows how a report is printed or stored.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import numpy as np

from meta_spider.loom.evaluate.baselines import BASELINES, SignalBaselines, fit_signal_baselines, select_probe_layer
from meta_spider.loom.evaluate.evaluation import ACTIONS, QABenchmark, QuestionOutcome, answer_gate, run_benchmark
from meta_spider.loom.evaluate.metrics import (
    BehaviourGoals,
    ThresholdChoice,
    UndefinedMetricError,
    choose_threshold,
    evaluate_at_coverage,
    fixed_threshold,
    score_metrics,
    selective_metrics,
    threshold_for_goals,
)
from meta_spider.loom.evaluate.report import (
    DECISION_NAMES,
    SCHEMA_VERSION,
    AcceptanceCheck,
    BaselineResult,
    ComparisonReport,
    OwnThreshold,
    PrintableTable,
    goal_check,
)
from meta_spider.loom.evaluate.stats import mcnemar_exact, paired_t_test

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["AcceptanceCheck", "BaselineComparison", "BaselineResult", "ComparisonReport", "MIN_AUROC_MARGIN",
           "PrintableTable", "SCHEMA_VERSION", "build_report", "goal_check"]

GOALS = BehaviourGoals()
"""The project's behaviour goals, also the default calibration rule."""
MIN_AUROC_MARGIN = 0.03
"""How far the Doubter's AUROC must lie above the best baseline's."""
ACCEPTANCE = (  # name, target, op: the project's goals for the Doubter on the embedded world
    ("doubter_auroc", 0.80, ">="), ("auroc_margin_over_best_baseline", MIN_AUROC_MARGIN, ">="),
    ("coverage", GOALS.min_coverage, ">="), ("selective_accuracy_gain", GOALS.min_selective_gain, ">="),
    ("refusal_precision", GOALS.min_refusal_precision, ">="), ("knowledge_loss", GOALS.max_knowledge_loss, "<="),
    ("mcnemar_p", 0.01, "<"),
)

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


def _with_evaluated(entry: dict[str, Any], threshold: float, labels: np.ndarray, test_indices: list[int],
                    test_scores: np.ndarray) -> dict[str, Any]:
    """``entry`` with what ``threshold`` does on the evaluated questions
    (``test_scores``, keeping the base's answers), when there are any."""
    if test_indices:
        gate = selective_metrics(test_scores >= threshold, labels[test_indices], labels[test_indices])
        entry["evaluated"] = gate.to_dict()
    return entry


def build_report(outcomes: Sequence[QuestionOutcome], *, benchmark: Optional[Mapping[str, Any]] = None,
                 calibration: Optional[Mapping[str, Any]] = None, probe: Optional[Mapping[str, Any]] = None,
                 notes: Sequence[str] = (),
                 baseline_thresholds: Optional[Mapping[str, tuple[Optional[float], str]]] = None) -> ComparisonReport:
    """The report of a behaviour table (one :class:`QuestionOutcome` per
    question). Baselines whose score column is missing for any question are
    left out with a note; scores that are all equal have no AUROC.
    ``baseline_thresholds`` maps a baseline's name to its own answer
    threshold (None: answer nothing) and the rule that chose it; that
    baseline is also gated there (:class:`OwnThreshold`)."""
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
        own = None
        if baseline_thresholds and spec.name in baseline_thresholds:
            threshold, rule = baseline_thresholds[spec.name]
            gated = scores >= (math.inf if threshold is None else threshold)
            own = OwnThreshold(threshold, rule, selective_metrics(gated, oracle, oracle))
        baselines.append(BaselineResult(spec.name, spec.description, score_metrics(_probability(spec.name, scores), oracle),
                                        evaluate_at_coverage(scores, oracle, coverage, oracle), own))

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


def doubter_p_correct(doubter: Any, activations: Any, states: np.ndarray, indices: Sequence[int]) -> np.ndarray:
    """The Doubter's P(correct) on collected rows ``indices``: ``states``
    ``[n, L, d]`` at its read position over the collected layers, and the
    collected signals it reads."""
    import torch

    layers = list(activations.target_layers)
    wanted = list(doubter.config.target_layers)
    missing = [layer for layer in wanted if layer not in layers]
    if missing:
        raise ValueError(f"the Doubter reads layers {missing} that the activation dataset did not collect "
                         f"(it holds {layers}); collect with the Doubter's target layers")
    picked = states[list(indices)][:, [layers.index(layer) for layer in wanted]]
    names = doubter.config.signals
    signals = activations.signals(names)[list(indices)] if names else None
    with torch.no_grad():
        logits = doubter.encode(torch.from_numpy(picked), signals).p_correct_logit
    return torch.sigmoid(logits.double()).cpu().numpy()


class BaselineComparison:
    """Run ``benchmark`` through ``pipe`` (Doubter attached) and compare.

    Before generating it calibrates the Doubter's answer threshold on the
    benchmark's calibration split (``validation``) and fits the linear probe
    there. The threshold rule: ``target_risk`` or ``target_coverage`` when
    given; otherwise ``goals`` (default :data:`GOALS`): the threshold that
    answers most while the gate meets them on validation, falling back to
    a coverage equal to the base's validation accuracy (a perfect ranking
    would answer exactly the questions the base knows) when none does.
    ``threshold`` instead gates at that value (rule ``fixed``: one
    calibrated elsewhere, such as the one the Doubter's checkpoint carries);
    the baselines' own thresholds are still chosen by the goals.
    With ``answer_gate`` (default) the questions are then generated under
    that threshold (:class:`~meta_spider.wrapper.gates.AnswerGate`);
    without it, pass 2's own text decides. ``max_tokens`` defaults to the
    collection's ``max_new_tokens``. The baselines that read the pass-1
    signals are fitted on ``fit_split`` (``train``). ``fitted``, a dict
    shared by comparisons of several splits of one collection, keeps the
    baselines fitted, and their own thresholds chosen, once for all of them.
    ``batch_size`` questions are answered as one batch (see
    :func:`~meta_spider.loom.evaluate.evaluation.run_benchmark`).
    """

    def __init__(self, pipe: Any, benchmark: QABenchmark, max_tokens: Optional[int] = None, *,
                 console: "Optional[Console]" = None, target_coverage: Optional[float] = None,
                 target_risk: Optional[float] = None, goals: Optional[BehaviourGoals] = None,
                 threshold: Optional[float] = None,
                 answer_gate: bool = True, probe_folds: int = 5, probe_l2: float = 1.0,
                 fit_split: str = "train", fitted: Optional[dict[Any, Any]] = None, batch_size: int = 1) -> None:
        if target_coverage is not None and target_risk is not None:
            raise ValueError(f"give target_coverage or target_risk, not both; got {target_coverage!r} and {target_risk!r}")
        if goals is not None and (target_coverage is not None or target_risk is not None):
            raise ValueError("give goals or a target coverage/risk, not both")
        if threshold is not None and (goals is not None or target_coverage is not None or target_risk is not None):
            raise ValueError("give a fixed threshold or a rule to choose one (goals, target coverage or risk), "
                             "not both")
        self.pipe = pipe
        self.benchmark = benchmark
        self.max_tokens = benchmark.default_max_tokens() if max_tokens is None else max_tokens
        self.console = console
        self.target_coverage = target_coverage
        self.target_risk = target_risk
        self.goals = goals if goals is not None else GOALS
        self.threshold = threshold
        self.answer_gate = answer_gate
        self.probe_folds = probe_folds
        self.probe_l2 = probe_l2
        self.fit_split = fit_split
        self.fitted = {} if fitted is None else fitted
        self.batch_size = batch_size

    def _states(self) -> tuple[Any, list[int], str]:
        """States at the Doubter's read position and the collected layers."""
        activations = self.benchmark.activations
        read_position = self.pipe.doubter.config.read_position
        return activations.states(read_position).numpy(), list(activations.target_layers), read_position

    def _doubter_p_correct(self, states: np.ndarray, layers: list[int], indices: list[int]) -> np.ndarray:
        return doubter_p_correct(self.pipe.doubter, self.benchmark.activations, states, indices)

    def run(self) -> ComparisonReport:
        benchmark = self.benchmark
        if not benchmark.items:
            raise ValueError(f"benchmark {benchmark.describe()} has no questions to evaluate")
        notes: list[str] = []
        info = {**benchmark.describe(), "max_tokens": self.max_tokens, "batch_size": self.batch_size,
                "model": self.pipe.fingerprint(),
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
        if not fit_indices and self.threshold is not None:
            notes.append(f"no {benchmark.calibration_split!r} split collected: no linear probe; the given threshold "
                         "gates")
            calibration = self._given_threshold(labels, test_indices, from_states, read_position)
        elif not fit_indices:
            notes.append(f"no {benchmark.calibration_split!r} split collected: no linear probe, no calibration; "
                         "pass 2's own text decides")
        else:
            calibration = self._calibrate(states, layers, labels, fit_indices, test_indices, from_states,
                                          read_position, notes)
        outcomes = self._generate(calibration)
        if calibration is not None:
            calibration["gated_generation"] = self.answer_gate
        if fit_indices:
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
        fitted_signals = self._signal_baselines(states, layers, labels, test_indices, outcomes, notes)
        if fitted_signals is not None:
            info["signal_baselines"] = {**fitted_signals.to_dict(), "split": self.fit_split,
                                        "read_position": read_position}
        baseline_thresholds = None
        if calibration is not None and fit_indices:  # the same for every split of the collection: chosen once
            key = ("baseline_thresholds", benchmark.calibration_split, self.fit_split, len(states), read_position,
                   tuple(benchmark.activations.recorded_signals), self.probe_folds, self.probe_l2,
                   self.target_risk, self.target_coverage, self.goals)
            if key not in self.fitted:
                self.fitted[key] = self._baseline_thresholds(states, labels, fit_indices, fitted_signals)
            baseline_thresholds = self.fitted[key]
        # pass 1 inside generation and the encoder on collected states must agree
        generated = np.array([q.p_correct for q in outcomes], dtype=np.float64)
        drift = float(np.max(np.abs(from_states - generated))) if len(outcomes) else 0.0
        info["p_correct_max_abs_diff_vs_collected_states"] = drift
        if drift > 1e-3:
            notes.append(f"P(correct) from generation differs from P(correct) on the collected states by up to "
                         f"{drift:.3g}: {self._drift_cause()}")
        return build_report(outcomes, benchmark=info, calibration=calibration, probe=probe, notes=notes,
                            baseline_thresholds=baseline_thresholds)

    def _drift_cause(self) -> str:
        """Why P(correct) on the collected states can differ from generation's."""
        import torch

        from meta_spider.wrapper.signals import reads_reference

        doubter = self.pipe.doubter
        own = getattr(doubter, "log_reference", None)
        if reads_reference(doubter.config.signals) and own is not None and own.numel():
            collected = self.benchmark.activations.log_reference()
            if collected.shape != own.shape or not torch.equal(collected.cpu(), own.detach().cpu().float()):
                return ("the collection read its PMI signal against another reference distribution than the "
                        "Doubter's (it was trained on another collection), and the threshold was calibrated on "
                        "the collected signals; collect again with `metaloom collect --pmi-signals "
                        "--pmi-reference CHECKPOINT` for this Doubter")
        return "the prompts or the base changed since collection"

    def _signal_baselines(self, states: np.ndarray, layers: list[int], labels: np.ndarray, test_indices: list[int],
                          outcomes: Sequence[QuestionOutcome], notes: list[str]) -> Optional[SignalBaselines]:
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
        return fitted

    def _baseline_thresholds(self, states: np.ndarray, labels: np.ndarray, fit_indices: list[int],
                             fitted: Optional[SignalBaselines]) -> dict[str, tuple[Optional[float], str]]:
        """Each baseline's own answer threshold on the calibration split,
        chosen by the Doubter's rule: the two scores collected with the
        answers and the two fitted on the training split (the linear probe
        is fitted on the calibration split itself, so a threshold there
        would flatter it)."""
        activations = self.benchmark.activations
        columns = {name: activations.tensor(name).numpy()[fit_indices].astype(np.float64)
                   for name in ("first_token_max_prob", "answer_mean_logprob")}
        if fitted is not None:
            signals = activations.signals(list(fitted.signals)).numpy()
            columns.update(fitted.scores(states[fit_indices], signals[fit_indices]))
        fit_labels = labels[fit_indices]
        thresholds: dict[str, tuple[Optional[float], str]] = {}
        for spec in BASELINES:
            if spec.column in columns:
                choice, rule, _ = self._choose_threshold(columns[spec.column], fit_labels)
                thresholds[spec.name] = (None if not math.isfinite(choice.threshold) else choice.threshold, rule)
        return thresholds

    def _choose_threshold(self, scores: np.ndarray, labels: np.ndarray) -> tuple[ThresholdChoice, str, Optional[str]]:
        """The answer threshold on calibration ``scores``: ``target_risk`` or
        ``target_coverage`` when given, else the one that meets the goals,
        else a coverage equal to the base's accuracy there; the rule's name
        and, on that fallback, a note saying so."""
        if self.target_risk is not None:
            return choose_threshold(scores, labels, target_risk=self.target_risk), "target_risk", None
        if self.target_coverage is not None:
            return choose_threshold(scores, labels, target_coverage=self.target_coverage), "target_coverage", None
        choice = threshold_for_goals(scores, labels, self.goals)
        if choice is not None:
            return choice, "goals", None
        coverage = float(labels.mean())
        note = (f"no threshold meets the behaviour goals on {self.benchmark.calibration_split!r}: calibrated for "
                f"coverage {coverage:.3f} (the base's accuracy there) instead")
        return choose_threshold(scores, labels, target_coverage=coverage), "target_coverage", note

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
                                 description=f"evaluating {self.benchmark.split}", batch_size=self.batch_size)
        finally:
            pipe.answer_gate = previous

    def _given_threshold(self, labels: np.ndarray, test_indices: list[int], test_scores: np.ndarray,
                         read_position: str) -> dict[str, Any]:
        """The calibration entry of a given threshold with no calibration
        split to measure it on: what it does on the evaluated questions."""
        threshold = float(self.threshold)
        entry: dict[str, Any] = {"threshold": threshold if math.isfinite(threshold) else None, "coverage": None,
                                 "risk": None, "target_coverage": None, "target_risk": None, "n": 0, "goals": None,
                                 "score": "p_correct", "split": None, "read_position": read_position, "rule": "fixed"}
        return _with_evaluated(entry, threshold, labels, test_indices, test_scores)

    def _calibrate(self, states: np.ndarray, layers: list[int], labels: np.ndarray, fit_indices: list[int],
                   test_indices: list[int], test_scores: np.ndarray, read_position: str,
                   notes: list[str]) -> dict[str, Any]:
        """The answer threshold on the Doubter's P(correct), chosen on the
        calibration split, and what it does on the evaluated questions
        (``test_scores``, keeping the base's answers)."""
        scores = self._doubter_p_correct(states, layers, fit_indices)
        if self.threshold is not None:
            choice, rule = fixed_threshold(scores, labels[fit_indices], self.threshold), "fixed"
        else:
            choice, rule, note = self._choose_threshold(scores, labels[fit_indices])
            if note is not None:
                notes.append(note)
        entry = {**choice.to_dict(), "score": "p_correct", "split": self.benchmark.calibration_split,
                 "read_position": read_position, "rule": rule}
        _with_evaluated(entry, choice.threshold, labels, test_indices, test_scores)
        if not math.isfinite(choice.threshold):
            entry["note"] = ("the given threshold answers nothing" if rule == "fixed" else
                             "no threshold meets the target risk on the calibration split: answer nothing")
        return entry
