"""The scope gate's fit (``loom.train.probes.fit_scope_gate``): learnt from the
training split's unanswerable questions the base answered anyway, its
threshold at a quantile of the validation questions' scores, and a typed
error when the training split has no such question."""

from __future__ import annotations

import pytest
import torch

from meta_spider.loom.train.config import TrainerError
from meta_spider.loom.train.data import TrainingRows
from meta_spider.loom.train.probes import fit_scope_gate
from meta_spider.loom.train.targets import TrainingTargets
from meta_spider.wrapper import DoubterConfig
from meta_spider.wrapper.doubter import Doubter
from meta_spider.wrapper.scope import VETO_LOGIT

HIDDEN, N_TRAIN, N_VAL, N_INVENTED = 16, 300, 200, 30


def rows(invented_direction: torch.Tensor, *, with_invented: bool = True) -> TrainingRows:
    """Ordinary questions around 0; the training split's invented drafts
    (unanswerable, base answered) shifted along one direction of layer 4."""
    generator = torch.Generator().manual_seed(0)
    n = N_TRAIN + N_VAL
    states = torch.randn(n, 2, HIDDEN, generator=generator)
    signals = torch.randn(n, 1, generator=generator)
    correct = torch.rand(n, generator=generator) < 0.5
    unanswerable = torch.zeros(n, dtype=torch.bool)
    if with_invented:
        unanswerable[:N_INVENTED] = True
        correct[:N_INVENTED] = False
        states[:N_INVENTED, 1] += 4.0 * invented_direction
    targets = TrainingTargets([[0]] * n, ["refuse"] * n)
    return TrainingRows(states, correct, [[0]] * n, targets, list(range(N_TRAIN)), list(range(N_TRAIN, n)),
                        signals, None, unanswerable)


def doubter() -> Doubter:
    config = DoubterConfig.for_base(HIDDEN, 6, target_layers=[3, 4], signals=["draft_logprob_mean"], scope_layer=4,
                                    encoder_dim=8, encoder_num_heads=2, ca_bottleneck_dim=8, ca_num_heads=2)
    return Doubter(config)


def test_the_fit_separates_invented_drafts_and_vetoes_a_quantile_of_validation() -> None:
    direction = torch.nn.functional.normalize(torch.ones(HIDDEN), dim=0)
    data, wrapper = rows(direction), doubter()
    fitted = fit_scope_gate(wrapper, data, quantile=0.05)
    assert fitted["invented"] == N_INVENTED and wrapper.scope_gate.fitted
    with torch.no_grad():
        logits = wrapper.encode(data.states, data.signals).p_correct_logit
        scores = wrapper.scope_gate.logit(data.states, data.signals)
    validation = slice(N_TRAIN, N_TRAIN + N_VAL)
    vetoed = logits == VETO_LOGIT
    assert abs(float(vetoed[validation].float().mean()) - 0.05) <= 0.01  # the quantile it was asked for
    assert bool(vetoed[:N_INVENTED].all())  # every invented draft (well separated here)
    assert float(scores[:N_INVENTED].max()) < float(scores[N_INVENTED:N_TRAIN].median())
    # New invented drafts along the same direction are vetoed too.
    fresh = torch.randn(20, 2, HIDDEN, generator=torch.Generator().manual_seed(9))
    fresh[:, 1] += 4.0 * direction
    with torch.no_grad():
        assert bool((wrapper.encode(fresh, torch.zeros(20, 1)).p_correct_logit == VETO_LOGIT).all())


def test_without_invented_drafts_in_the_training_split_the_fit_says_what_to_collect() -> None:
    wrapper = doubter()
    with pytest.raises(TrainerError, match="train_outside") as error:
        fit_scope_gate(wrapper, rows(torch.zeros(HIDDEN), with_invented=False), quantile=0.02)
    assert "--scope-layer" in str(error.value)
    assert not wrapper.scope_gate.fitted  # left as it was: never vetoes


def test_non_finite_states_are_a_typed_error_not_a_gate_that_never_vetoes() -> None:
    direction = torch.nn.functional.normalize(torch.ones(HIDDEN), dim=0)
    data = rows(direction)
    data.states[N_TRAIN + 3, 1, 0] = float("nan")  # a validation row
    wrapper = doubter()
    with pytest.raises(TrainerError, match="non-finite"):
        fit_scope_gate(wrapper, data, quantile=0.05)
    assert not wrapper.scope_gate.fitted


def test_with_a_scope_gate_the_signal_mix_learns_from_answerable_questions_only() -> None:
    from meta_spider.loom.train.config import TrainerConfig
    from meta_spider.loom.train.probes import mix_rows, pretrain_doubter

    direction = torch.nn.functional.normalize(torch.ones(HIDDEN), dim=0)
    config = TrainerConfig(signals_only=True, pretrain_projectors=False)
    weights = []
    for invented_signal in (-5.0, 5.0):  # what the unanswerable questions' signal says must not matter
        data = rows(direction)
        data.correct[N_INVENTED:] = data.signals[N_INVENTED:, 0] > 0
        data.signals[:N_INVENTED] = invented_signal
        wrapper = doubter()
        assert mix_rows(wrapper, data) == list(range(N_INVENTED, N_TRAIN))
        pretrain_doubter(wrapper, data, config, 1.0, torch.device("cpu"))
        weights.append(torch.cat([wrapper.signal_mix.linear.weight.flatten(), wrapper.signal_mix.linear.bias]))
    torch.testing.assert_close(weights[0], weights[1])
    # Without a gate the mix is all P(correct) has: it learns from every training question.
    ungated = Doubter(DoubterConfig.for_base(HIDDEN, 6, target_layers=[3, 4], signals=["draft_logprob_mean"],
                                             encoder_dim=8, encoder_num_heads=2, ca_bottleneck_dim=8, ca_num_heads=2))
    assert mix_rows(ungated, rows(direction)) == list(range(N_TRAIN))
