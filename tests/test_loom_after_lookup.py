"""Fitting the gate after a lookup (``loom/evaluate/after_lookup.py``) on a
real collection: a tiny base reads the ``train_lookup`` and
``validation_lookup`` questions, the labels come from the scorer, and the
fit sets its threshold at the quantile of the validation rows' right
answers; rows that cannot teach it say why, and a collection without those
splits has no gate to fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from activation_fixtures import tiny_pipeline
from wrapper_helpers import PROMPTS

from meta_spider.loom.collect.collector import ActivationDatasetCollector
from meta_spider.loom.datasets import QAExample, SplitDataset
from meta_spider.loom.evaluate.after_lookup import FIT_SPLIT, THRESHOLD_SPLIT, fit_after_lookup_gate
from meta_spider.loom.evaluate.comparison import doubter_p_correct
from meta_spider.wrapper.after_lookup import AfterLookupGate, gate_features


@pytest.fixture(scope="module")
def pipe():  # type: ignore[no-untyped-def]
    return tiny_pipeline()


def collect(pipe, folder: Path, right, splits=(FIT_SPLIT, THRESHOLD_SPLIT)):  # type: ignore[no-untyped-def]
    """The first 12 prompts as the fit split, the next 6 as the threshold's; ``right(index)`` labels each."""
    examples = [QAExample(id=str(index), question=prompt, answer="x") for index, prompt in enumerate(PROMPTS[:18])]
    dataset = SplitDataset("lookups", {splits[0]: examples[:12], splits[1]: examples[12:]})
    collector = ActivationDatasetCollector(pipe, max_new_tokens=4, show_progress=False,
                                           check_example=lambda text, example: right(int(example.id)))
    return collector.collect_dataset(dataset, list(splits), output_dir=folder)


def test_the_gate_is_fitted_on_the_fit_rows_and_its_threshold_set_on_the_validation_rows(pipe, tmp_path) -> None:
    activations = collect(pipe, tmp_path, right=lambda index: index % 3 != 0)
    doubter = pipe.new_doubter(encoder_dim=16, ca_bottleneck_dim=16, ca_num_heads=2,
                               signals=["draft_logprob_mean", "draft_logprob_min"])
    fit = fit_after_lookup_gate(doubter, activations, quantile=0.25)
    assert fit is not None and (fit.fitted_on, fit.wrong, fit.right_on_validation) == (12, 4, 4)
    gate = fit.gate
    assert gate.tool == "lookup" and gate.signals == ("draft_logprob_mean", "draft_logprob_min")
    assert gate.layer_index is None and len(gate.weight) == 3  # no scope gate: the signals and the P(correct) logit
    # the threshold is that quantile of the validation rows' right answers, scored as the policy scores a read
    rows = activations.split_indices(THRESHOLD_SPLIT)
    states = activations.states(doubter.config.read_position).numpy()
    scores = gate.scores(gate_features(doubter_p_correct(doubter, activations, states, rows),
                                       activations.signals(list(gate.signals)).numpy()[rows], None))
    right = activations.tensor("pass1_correct").numpy().astype(bool)[rows]
    assert gate.threshold == pytest.approx(float(np.quantile(scores[right], 0.25)))
    assert 0.0 <= fit.wrong_caught <= 1.0
    entry = fit.to_entry()
    assert AfterLookupGate.from_entry(entry).to_entry() == gate.to_entry()
    assert (entry["fit_split"], entry["threshold_split"], entry["n_wrong"]) == (FIT_SPLIT, THRESHOLD_SPLIT, 4)
    assert "fitted on 12 train_lookup questions (4 answered wrong" in fit.summary()


@pytest.mark.parametrize(("right", "complaint"), [
    (lambda index: True, "every train_lookup answer is right"),
    (lambda index: index < 12 and index % 2 == 0, "no validation_lookup answer is right"),
])
def test_rows_that_cannot_teach_the_gate_say_why(pipe, tmp_path, right, complaint: str) -> None:
    activations = collect(pipe, tmp_path, right=right)
    with pytest.raises(ValueError, match=complaint):
        fit_after_lookup_gate(pipe.new_doubter(encoder_dim=16, ca_bottleneck_dim=16, ca_num_heads=2), activations)


def test_a_collection_without_the_lookup_splits_has_no_gate_to_fit(pipe, tmp_path) -> None:
    activations = collect(pipe, tmp_path, right=lambda index: index % 2 == 0, splits=("train", "validation"))
    assert fit_after_lookup_gate(pipe.new_doubter(encoder_dim=16, ca_bottleneck_dim=16, ca_num_heads=2),
                                 activations) is None
    with pytest.raises(ValueError, match="quantile must lie in"):
        fit_after_lookup_gate(None, activations, quantile=1.0)
