"""The Doubter trainer on a tiny real base and a tiny activation dataset in
the collector's format: structural parameter groups and their learning
rates, gradients only on the wrapper, learning (LM loss down, P(correct)
AUROC up), targets, early stopping, resume equal to an uninterrupted run
(AdamW and bitsandbytes' Adam8bit), checkpoint files (safetensors + JSON
only) and the run.json record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from activation_fixtures import tiny_pipeline, write_activation_fixture
from wrapper_helpers import make_tokenizer, shared_tokenizer

from meta_spider.loom.collect.activations import ActivationDataset
from meta_spider.loom.manifest import DatasetSection, RunManifest
from meta_spider.loom.evaluate.metrics import auroc
from meta_spider.loom.train.trainer import Trainer, TrainerConfig, TrainerError
from meta_spider.loom.train.groups import GROUP_NAMES, WEIGHT_GROUPS, build_optimizer, cosine_factor
from meta_spider.loom.train.targets import build_targets, end_of_turn_id
from meta_spider.policies.actions import REFUSAL_SENTENCE
from meta_spider.wrapper import Doubter

SMALL = {"encoder_dim": 16, "ca_bottleneck_dim": 16, "ca_num_heads": 2, "encoder_num_heads": 2}


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(target_layers=(2, 4))


@pytest.fixture(scope="module")
def activations(pipe, tmp_path_factory) -> Path:
    return write_activation_fixture(tmp_path_factory.mktemp("activations"), pipe)


def _config(**changes) -> TrainerConfig:
    values = {"epochs": 3, "batch_size": 8, "lr": 3e-3, "early_stopping_patience": None, "eval_batch_size": 16}
    return TrainerConfig(**(values | changes))


def _ids(parameters) -> set[int]:
    return {id(p) for p in parameters}


# ---------------------------------------------------------------- groups


def test_five_groups_are_found_by_structure_and_get_their_learning_rates(pipe) -> None:
    doubter = pipe.new_doubter(encoder_type="transformer", **SMALL)
    config = _config(lr=1e-3, gate_lr_multiplier=7.0, weight_decay=0.05, pretrain_projectors=False)
    groups = Trainer(doubter, pipe, config).parameter_groups()
    assert tuple(groups) == GROUP_NAMES and all(groups.values())
    injection_gates = {id(doubter.cross_attention(layer).gate.raw) for layer in doubter.config.cross_attn_layers}
    assert _ids(groups["injection_gates"]) == injection_gates
    assert _ids(groups["encoder_gates"]) == {id(gate.raw) for gate in doubter.encoder.gates}
    encoder = doubter.encoder
    assert _ids(groups["token_preferences"]) == {id(encoder.queries), id(encoder.layer_embedding), id(encoder.summary)}
    assert _ids(groups["cross_attention_weights"]) == _ids(doubter.cross_attn.parameters()) - injection_gates
    every = [p for members in groups.values() for p in members]
    assert len(every) == len(_ids(every)) and _ids(every) == _ids(doubter.parameters())

    optimizer = build_optimizer(doubter, config)
    assert {group["group"] for group in optimizer.param_groups} == set(GROUP_NAMES)
    for group in optimizer.param_groups:
        expected = 1e-3 if group["group"] in WEIGHT_GROUPS else 7e-3
        assert group["lr"] == pytest.approx(expected), group["group"]
        decayed = group["group"] in WEIGHT_GROUPS and all(p.dim() >= 2 for p in group["params"])
        assert group["weight_decay"] == (0.05 if decayed else 0.0), group["group"]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(doubter.parameters()))


def test_selective_encoder_has_no_token_preferences(pipe) -> None:
    groups = Trainer(pipe.new_doubter(**SMALL), pipe, _config()).parameter_groups()
    assert groups["token_preferences"] == []
    assert all(groups[name] for name in GROUP_NAMES if name != "token_preferences")


def test_training_changes_every_group_and_never_the_base(pipe, activations) -> None:
    base_before = {name: p.detach().clone() for name, p in pipe.model.named_parameters()}
    doubter = pipe.new_doubter(encoder_type="transformer", **SMALL)
    before = {name: p.detach().clone() for name, p in doubter.named_parameters()}
    trainer = Trainer(doubter, pipe, _config(epochs=1, pretrain_projectors=False, gate_lr_multiplier=5.0))
    trainer.fit(activations)
    unchanged = [name for name, p in doubter.named_parameters() if torch.equal(p.detach(), before[name])]
    assert unchanged == []
    assert all(p.grad is None and not p.requires_grad for p in pipe.model.parameters())
    assert all(torch.equal(p, base_before[name]) for name, p in pipe.model.named_parameters())
    # The schedule scales every group alike, so the 5x ratio holds at the end too.
    lrs = {group["group"]: group["lr"] for group in trainer.optimizer.param_groups}
    for name in GROUP_NAMES:
        expected = lrs["encoder_weights"] * (1 if name in WEIGHT_GROUPS else 5.0)
        assert lrs[name] == pytest.approx(expected, rel=1e-6), name


def test_cosine_schedule_warms_up_then_decays() -> None:
    factors = [cosine_factor(step, 100, 5, 0.1) for step in range(100)]
    assert factors[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3) and factors[52] == pytest.approx(0.55, abs=0.01)


# ---------------------------------------------------------------- learning


def test_loss_falls_and_p_correct_auroc_rises(pipe, activations) -> None:
    # The draft read position: in a random tiny base the prompt-position
    # states share one dominant direction and differ little, which makes the
    # gradient-trained head slow; the draft states differ clearly.
    torch.manual_seed(0)
    doubter = pipe.new_doubter(encoder_type="transformer", read_position="draft", **SMALL)
    trainer = Trainer(doubter, pipe, _config(epochs=6, batch_size=4, pretrain_projectors=False))
    result = trainer.fit(activations)
    initial, first, last = result.history[0], result.history[1], result.history[-1]
    assert [r.epoch for r in result.history] == [0, 1, 2, 3, 4, 5, 6]
    assert last.train_lm_loss < first.train_lm_loss - 0.05
    assert last.val_lm_loss < initial.val_lm_loss - 0.05
    assert last.train_auroc >= 0.9 and last.train_auroc > initial.train_auroc + 0.2
    dataset = ActivationDataset.load(activations)
    train = dataset.split_indices("train")
    scores = trainer.p_correct(dataset, "train")
    best = result.history[result.best_epoch]  # restore_best: the Doubter now holds the best epoch's weights
    assert auroc(scores.numpy(), dataset.tensor("pass1_correct")[train].numpy()) == pytest.approx(best.train_auroc)


def test_selective_probes_are_fitted_before_training(pipe, activations) -> None:
    trainer = Trainer(pipe.new_doubter(**SMALL), pipe, _config(epochs=1, balance_classes=True))
    dataset = ActivationDataset.load(activations)
    labels = dataset.tensor("pass1_correct")[dataset.split_indices("train")].numpy()
    untrained = auroc(trainer.p_correct(dataset, "train").numpy(), labels)
    result = trainer.fit(dataset)
    # history[0] is measured after the probe fit, before any update
    assert result.history[0].train_auroc >= 0.9 and result.history[0].train_auroc > untrained + 0.2
    assert result.pos_weight == pytest.approx(12 / 18)  # 12 wrong, 18 correct in the training split


def test_early_stopping_ends_the_run(pipe, activations, tmp_path) -> None:
    config = _config(epochs=5, early_stopping_metric="val_loss", early_stopping_patience=1, min_delta=1e6)
    result = Trainer(pipe.new_doubter(**SMALL), pipe, config).fit(activations, run_dir=tmp_path)
    assert result.stopped_early and result.best_epoch == 1 and len(result.history) == 3
    again = Trainer(pipe.new_doubter(**SMALL), pipe, config).fit(activations, run_dir=tmp_path, resume=True)
    assert again.resumed_from == 2 and again.global_step == result.global_step and len(again.history) == 3


# ---------------------------------------------------------------- targets


def test_targets_confirm_refuse_and_correct() -> None:
    tok = shared_tokenizer()
    im_end, end_of_text = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    assert end_of_turn_id(tok, [end_of_text, im_end]) == im_end
    answer = tok("Paris", add_special_tokens=False)["input_ids"]
    rows = ([answer + [im_end], answer, answer, answer], [True, True, False, False], [["Paris"], [], ["Rome"], []])
    plain = build_targets(*rows, tok, [end_of_text, im_end])
    refusal = tok(REFUSAL_SENTENCE, add_special_tokens=False)["input_ids"] + [im_end]
    assert plain.ids == [answer + [im_end], answer + [im_end], refusal, refusal]
    assert plain.kinds == ["confirm", "confirm", "refuse", "refuse"]
    corrected = build_targets(*rows, tok, [end_of_text, im_end], self_correction=True)
    assert corrected.kinds == ["confirm", "confirm", "correct", "refuse"]
    assert tok.decode(corrected.ids[2][:-1]) == "Rome" and corrected.ids[2][-1] == im_end
    assert tok.decode(plain.ids[2], skip_special_tokens=True) == REFUSAL_SENTENCE


def test_end_of_turn_follows_the_chat_template(shared_dir: Path) -> None:
    tok = make_tokenizer()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                "<|eom_id|>"]
    tok.add_special_tokens({"additional_special_tokens": specials})
    tok.chat_template = (shared_dir / "templates" / "meta-llama-Llama-3.1-8B-Instruct.jinja").read_text()
    ids = tok.convert_tokens_to_ids(["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"])
    # Llama 3.1 lists end_of_text first among its eos ids, but a turn ends with eot_id.
    assert end_of_turn_id(tok, ids) == ids[2]


def test_self_correction_trains_on_ground_truths(pipe, activations) -> None:
    doubter = pipe.new_doubter(encoder_type="transformer", **SMALL)
    config = _config(epochs=1, enable_self_correction=True, pretrain_projectors=False)
    result = Trainer(doubter, pipe, config).fit(activations)
    assert result.target_counts == {"confirm": 18, "correct": 12, "refuse": 0}


# ---------------------------------------------------------------- resume and files


@pytest.mark.parametrize("optimizer", ["adamw", "adam8bit"])
def test_resume_ends_equal_to_an_uninterrupted_run(pipe, activations, tmp_path, optimizer) -> None:
    # encoder_dim 128 gives 4096-element matrices, which Adam8bit keeps in 8-bit state.
    shape = SMALL | {"encoder_dim": 128}
    config = _config(epochs=3, optimizer=optimizer, gradient_accumulation_steps=2, batch_size=4)
    torch.manual_seed(1)
    whole = Trainer(pipe.new_doubter(**shape), pipe, config)
    uninterrupted = whole.fit(activations, run_dir=tmp_path / "whole")
    if optimizer == "adam8bit":
        import bitsandbytes as bnb

        assert isinstance(whole.optimizer.optimizer, bnb.optim.Adam8bit)
        assert any(state.get("state1", torch.zeros(0)).dtype == torch.uint8 for state in whole.optimizer.state.values())

    class Killed(Exception):
        pass

    def kill_after_epoch_two(record) -> None:
        if record.epoch == 2:
            raise Killed

    torch.manual_seed(1)
    with pytest.raises(Killed):
        Trainer(pipe.new_doubter(**shape), pipe, config).fit(activations, run_dir=tmp_path / "split",
                                                            on_epoch_end=kill_after_epoch_two)
    torch.manual_seed(2)  # a differently initialised Doubter: the checkpoint must overwrite it all
    resumed_doubter = pipe.new_doubter(**shape)
    resumed = Trainer(resumed_doubter, pipe, config).fit(activations, run_dir=tmp_path / "split", resume=True)
    assert resumed.resumed_from == 2 and resumed.global_step == uninterrupted.global_step
    for name, tensor in whole.doubter.state_dict().items():
        torch.testing.assert_close(resumed_doubter.state_dict()[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    for mine, theirs in zip(resumed.history, uninterrupted.history):
        assert mine.val_loss == pytest.approx(theirs.val_loss, rel=1e-5)
        assert mine.val_auroc == pytest.approx(theirs.val_auroc)
    assert resumed.best_epoch == uninterrupted.best_epoch


def test_resume_refuses_changed_settings(pipe, activations, tmp_path) -> None:
    Trainer(pipe.new_doubter(**SMALL), pipe, _config(epochs=1)).fit(activations, run_dir=tmp_path)
    with pytest.raises(TrainerError, match=r"lr=0\.003 \(now 0\.001\)"):
        changed = Trainer(pipe.new_doubter(**SMALL), pipe, _config(epochs=1, lr=1e-3))
        changed.fit(activations, run_dir=tmp_path, resume=True)


def test_checkpoints_are_safetensors_and_json_and_run_json_records_the_best(pipe, activations, tmp_path) -> None:
    from safetensors import safe_open

    from meta_spider.wrapper import MetaSpiderConfig

    section = DatasetSection(name="fixture", splits=["train", "validation"], sizes={"train": 30, "validation": 10})
    pipeline_config = MetaSpiderConfig(model_name="tiny-qwen2", target_layers=[2, 4])
    RunManifest.from_pipeline_config(pipeline_config, section).save(tmp_path)
    doubter = pipe.new_doubter(**SMALL)
    result = Trainer(doubter, pipe, _config(epochs=3, keep_epoch_checkpoints=2)).fit(activations, run_dir=tmp_path)
    checkpoints = tmp_path / "checkpoints"
    files = [path for path in checkpoints.rglob("*") if path.is_file()]
    assert files and {path.suffix for path in files} == {".json", ".safetensors"}
    for path in files:
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            with safe_open(str(path), framework="pt") as handle:
                assert list(handle.keys())
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best", "epoch-0002", "epoch-0003"]
    assert RunManifest.load(tmp_path).checkpoint == "checkpoints/best"
    assert result.best_checkpoint == checkpoints / "best"
    best = Doubter.from_checkpoint(checkpoints / "best")
    for name, tensor in best.state_dict().items():  # restore_best: the trainer's Doubter holds the best weights
        assert torch.equal(tensor, doubter.state_dict()[name]), name
    state = json.loads((checkpoints / "epoch-0003" / "trainer_state.json").read_text())
    assert state["epoch"] == 3 and state["global_step"] == result.global_step == 12
    assert [h["epoch"] for h in state["history"]] == [0, 1, 2, 3]


# ---------------------------------------------------------------- errors


def test_the_signal_mix_is_fitted_on_out_of_fold_logits_and_kept_out_of_the_optimizer(pipe, activations) -> None:
    from meta_spider.loom.train.probes import out_of_fold_encoder_logits
    from meta_spider.wrapper.signals import SIGNALS

    torch.manual_seed(0)
    doubter = pipe.new_doubter(signals=list(SIGNALS), **SMALL)
    trainer = Trainer(doubter, pipe, _config(epochs=1))
    assert not any(id(p) in _ids(doubter.signal_mix.parameters())
                   for group in trainer.parameter_groups().values() for p in group)
    dataset = ActivationDataset.load(activations)
    train = dataset.split_indices("train")
    signals = dataset.signals(SIGNALS)[train]
    result = trainer.fit(dataset)
    mix = doubter.signal_mix
    torch.testing.assert_close(mix.mean, signals.mean(dim=0))
    torch.testing.assert_close(mix.scale, signals.std(dim=0))
    assert float(mix.linear.weight[0, 1:].abs().max()) > 0.01  # the signals carry weight now
    labels = dataset.tensor("pass1_correct")[train].numpy()
    assert auroc(trainer.p_correct(dataset, "train").numpy(), labels) == pytest.approx(
        result.history[result.best_epoch].train_auroc)
    # Out-of-fold logits: the probes refitted without each fold score it, so they differ from the in-sample ones.
    states, correct = dataset.states("prompt")[train], dataset.tensor("pass1_correct")[train].bool()
    fresh = pipe.new_doubter(signals=list(SIGNALS), **SMALL)
    from meta_spider.loom.train.probes import fit_layer_probes

    fit_layer_probes(fresh.encoder, states, correct)
    with torch.no_grad():
        in_sample = fresh.encoder_logit(states)
    out_of_fold = out_of_fold_encoder_logits(fresh, states, correct)
    assert out_of_fold.shape == in_sample.shape and not torch.allclose(out_of_fold, in_sample)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert bce(out_of_fold, correct.float()) > bce(in_sample, correct.float())  # less sure of rows it never saw


def test_signals_need_a_collection_that_recorded_them(pipe, tmp_path) -> None:
    old = write_activation_fixture(tmp_path / "old", pipe, count=20, signals=False)
    doubter = pipe.new_doubter(signals=["prompt_logprob_sum"], **SMALL)
    with pytest.raises(TrainerError, match=r"before pass-1 signals were recorded.*collect again.*without --logprob-signals"):
        Trainer(doubter, pipe, _config(epochs=1)).fit(old)


def test_setup_errors_name_the_problem_and_the_fix(pipe, activations) -> None:
    with pytest.raises(TrainerError, match="pretrain_projectors=True"):
        Trainer(pipe.new_doubter(**SMALL), pipe, _config(pretrain_projectors=False))
    with pytest.raises(TrainerError, match="encoder_type='transformer'"):
        Trainer(pipe.new_doubter(**SMALL), pipe, _config(enable_self_correction=True))
    wrong_layers = pipe.new_doubter(target_layers=[1, 3], cross_attn_layers=[1, 3], **SMALL)
    with pytest.raises(TrainerError, match=r"holds layers \[2, 4\] but the Doubter reads \[1, 3\]"):
        Trainer(wrong_layers, pipe, _config()).fit(activations)
    with pytest.raises(TrainerError, match="validation_split"):
        Trainer(pipe.new_doubter(**SMALL), pipe, _config(train_split="test")).fit(activations)


@pytest.mark.parametrize(("field", "value"), [
    ("epochs", 0), ("lr", -1.0), ("lr", math.nan), ("warmup_fraction", 1.0), ("optimizer", "sgd"),
    ("early_stopping_metric", "accuracy"), ("early_stopping_patience", 0), ("batch_size", True),
    ("max_grad_norm", 0.0), ("pos_weight", -2.0),
])
def test_config_rejects_bad_values_quoting_them(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{field} .*{value!r}".replace("(", r"\(").replace(")", r"\)")):
        TrainerConfig(**{field: value})
    with pytest.raises(ValueError, match="not both"):
        TrainerConfig(pos_weight=2.0, balance_classes=True)
    assert TrainerConfig.from_dict(TrainerConfig(lr=0.5).to_dict()) == TrainerConfig(lr=0.5)


def _lm_loss_of(trainer: Trainer, pipe, activations, kind: str) -> float:
    """The trained pass 2's LM loss on the training rows whose target is ``kind``."""
    from meta_spider.loom.train.data import load_activations, prepare_rows
    from meta_spider.wrapper.training import TeacherForcedBatch, teacher_forced_forward

    rows = prepare_rows(load_activations(activations), trainer.doubter.config, pipe.tokenizer,
                        sorted(pipe.decoder.eos_token_ids), trainer.config)
    inputs = trainer._inputs([i for i in rows.train if rows.targets.kinds[i] == kind], rows)
    batch = TeacherForcedBatch(**{k: v for k, v in inputs.items() if k not in ("layer_states", "example_weights")})
    with torch.no_grad():
        return float(teacher_forced_forward(pipe.model, pipe.structure, trainer.doubter, batch,
                                            layer_states=inputs["layer_states"]).lm_loss)


def test_answer_loss_weight_is_validated_and_moves_pass_two_toward_answering(pipe, activations) -> None:
    with pytest.raises(ValueError, match="answer_loss_weight"):
        TrainerConfig(answer_loss_weight=0.0)
    # Weighing answer targets 8x: pass 2 fits the answers better and the refusals worse.
    losses = {}
    for weight in (1.0, 8.0):
        torch.manual_seed(0)
        trainer = Trainer(pipe.new_doubter(encoder_type="selective"), pipe,
                          _config(epochs=2, answer_loss_weight=weight))
        trainer.fit(activations)
        losses[weight] = (_lm_loss_of(trainer, pipe, activations, "confirm"),
                          _lm_loss_of(trainer, pipe, activations, "refuse"))
    assert losses[8.0][0] < losses[1.0][0] and losses[8.0][1] > losses[1.0][1]
