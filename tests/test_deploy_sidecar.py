"""The Doubter's GGUF sidecar and ``metadeploy export``.

Checked: the numpy port of every encoder type, the cross-attention, AGC and
the refresh trigger against the torch modules (random weights and non-zero
gates; tolerance ``NUMPY_ATOL`` = 1e-5, measured below 1e-6); the sidecar
round trip (every tensor bit-exact, config and fingerprint, readable by
``gguf-dump`` and without torch); typed errors for missing, truncated,
corrupt and foreign files; the fingerprint check against a base GGUF; and
``export_from_run_dir`` / ``metadeploy export`` on a run directory whose base
is a local Qwen2 folder (f16 + Q8_0 + 4-bit written and recorded in run.json
with ``backends.llamacpp``), a hub id (sidecar only, the bring-your-own
message) and a given base GGUF (checked, recorded; a foreign one refused).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from torchless import run_without_torch

from meta_spider.backends.llamacpp.numpy_doubter import NumpyDoubter
from meta_spider.backends.llamacpp.sidecar_format import (
    SidecarBaseMismatchError,
    SidecarError,
    SidecarLayerRangeError,
    check_sidecar_fits,
)
from meta_spider.backends.llamacpp.errors import GGUFModelError
from meta_spider.loom.gguf.sidecar import SIDECAR_FILE, export_sidecar, load_sidecar
from meta_spider.wrapper import AdaptiveGateControl, Doubter, DoubterConfig, RefreshGate

NUMPY_ATOL = 1e-5
ENCODER_TYPES = ("selective", "multi_token", "transformer")


def random_doubter(hidden: int = 32, num_layers: int = 6, *, encoder_type: str = "selective",
                   target_layers=(3, 4, 5), cross_attn_layers=(4, 5), model_id: str = "tiny-base", seed: int = 0,
                   scale: float = 0.3, **overrides) -> Doubter:
    """A Doubter with every parameter perturbed (gates included, so none is trivially 0 or its init)."""
    config = DoubterConfig(hidden_size=hidden, num_layers=num_layers, target_layers=list(target_layers),
                           cross_attn_layers=list(cross_attn_layers), encoder_type=encoder_type,
                           encoder_dim=overrides.pop("encoder_dim", 16), encoder_num_heads=2, encoder_num_layers=2,
                           ca_bottleneck_dim=overrides.pop("ca_bottleneck_dim", 16), ca_num_heads=4,
                           num_cognitive_tokens=3, **overrides)
    torch.manual_seed(seed)
    doubter = Doubter(config, model_id=model_id)
    with torch.no_grad():
        for parameter in doubter.parameters():
            parameter.add_(scale * torch.randn_like(parameter))
    return doubter.eval()


def make_run_dir(run_dir: Path, model_name: str, doubter: Doubter, **manifest_fields) -> Path:
    """A run directory with run.json (RunManifest) and the Doubter's checkpoint, as `metaloom train` leaves it."""
    from meta_spider.loom.manifest import RunManifest

    run_dir.mkdir(parents=True, exist_ok=True)
    doubter.save_checkpoint(run_dir / "checkpoints" / "best")
    manifest = RunManifest.from_dict({
        "format_version": 1, "model": {"name": model_name, "dtype": "float32"}, "dataset": {"name": "jsonl"},
        "layers": {"target_layers": list(doubter.config.target_layers),
                   "cross_attn_layers": list(doubter.config.cross_attn_layers)},
        "encoder_type": doubter.config.encoder_type, "read_position": doubter.config.read_position,
        "inject_positions": doubter.config.inject_positions, "checkpoint": "checkpoints/best", **manifest_fields,
    })
    manifest.save(run_dir)
    return run_dir


# ---- numpy port -----------------------------------------------------------------


def test_numpy_signal_mix_matches_torch(tmp_path):
    from meta_spider.wrapper.signals import SIGNALS

    doubter = random_doubter(seed=4, signals=list(SIGNALS))
    with torch.no_grad():
        doubter.signal_mix.mean.copy_(torch.tensor([-20.0, -1.5, -0.3, -1.0, -5.0, -3.0, -8.0]))
        doubter.signal_mix.scale.copy_(torch.tensor([4.0, 0.5, 0.2, 0.8, 1.5, 1.0, 2.5]))
    assert float(doubter.signal_mix.linear.weight.abs()[0, 1:].min()) > 1e-3  # perturbed: every signal counts
    numpy_doubter = NumpyDoubter.from_sidecar(export_sidecar(doubter, tmp_path / SIDECAR_FILE))
    assert numpy_doubter.signals == SIGNALS and numpy_doubter.drafts
    generator = torch.Generator().manual_seed(12)
    for _ in range(4):
        states = torch.randn(1, 3, 32, generator=generator) * 4.0
        signals = torch.tensor([[-25.0, -1.2, -0.1, -2.0, -6.0, -3.5, -9.0]]) + torch.randn(1, 7, generator=generator)
        with torch.no_grad():
            expected = doubter.encode(states, signals)
        got = numpy_doubter.encode(states[0].numpy(), signals[0].numpy())
        assert abs(got.p_correct_logit - float(expected.p_correct_logit[0])) <= NUMPY_ATOL
        assert abs(got.p_correct_logit - numpy_doubter.encode_tokens(states[0].numpy()).p_correct_logit) > 1e-2
    with pytest.raises(ValueError, match="pass-1 signals"):
        numpy_doubter.encode(states[0].numpy())


def test_the_scope_gate_vetoes_alike_in_torch_numpy_and_after_a_checkpoint_round_trip(tmp_path):
    """A fitted scope gate turns P(correct) into the veto logit wherever its
    read of one target layer and the signals falls below its threshold; the
    checkpoint and the sidecar carry it and the numpy Doubter decides the
    same questions."""
    from meta_spider.wrapper.scope import VETO_LOGIT

    doubter = random_doubter(seed=5, signals=["draft_logprob_mean", "draft_logprob_min"], scope_layer=4)
    gate = doubter.scope_gate
    assert gate is not None and gate.layer_index == 1 and not gate.fitted  # unfitted: never vetoes
    generator = torch.Generator().manual_seed(3)
    states = torch.randn(64, 3, 32, generator=generator) * 2.0
    signals = torch.randn(64, 2, generator=generator) - 1.0
    with torch.no_grad():
        plain = doubter.encode(states, signals).p_correct_logit
        gate.weight.copy_(torch.randn(34, generator=generator))
        gate.mean.copy_(torch.randn(34, generator=generator))
        gate.scale.uniform_(0.5, 2.0, generator=generator)
        scores = gate.logit(states, signals)
        # halfway between the two middle scores: no row lies within rounding of the threshold, so
        # torch and numpy (whose float sums may differ in the last bits) veto the same rows
        ordered = scores.sort().values
        gate.threshold.fill_(float(ordered[31] + ordered[32]) / 2)
        assert float(ordered[32] - ordered[31]) > 1e-4
        vetoed = doubter.encode(states, signals).p_correct_logit
        unvetoed = doubter.encode(states, signals, scope=False).p_correct_logit
    outside = scores < gate.threshold
    assert 20 < int(outside.sum()) < 44
    assert torch.equal(vetoed[outside], torch.full_like(vetoed[outside], VETO_LOGIT))
    assert torch.equal(vetoed[~outside], plain[~outside]) and torch.equal(unvetoed, plain)
    reloaded = Doubter.from_checkpoint(doubter.save_checkpoint(tmp_path / "ckpt")).eval()
    with torch.no_grad():
        assert torch.equal(reloaded.encode(states, signals).p_correct_logit, vetoed)
    numpy_doubter = NumpyDoubter.from_sidecar(export_sidecar(doubter, tmp_path / SIDECAR_FILE))
    for row in range(64):
        got = numpy_doubter.encode(states[row].numpy(), signals[row].numpy()).p_correct_logit
        if bool(outside[row]):
            assert got == VETO_LOGIT
        else:
            assert abs(got - float(vetoed[row])) <= NUMPY_ATOL
    with pytest.raises(ValueError, match="scope_layer must be one of the target layers"):
        random_doubter(scope_layer=2)
    # A sidecar whose scope gate names a layer it does not read, or lacks the gate's tensors: typed errors.
    import dataclasses

    from meta_spider.backends.llamacpp.sidecar_format import check_sidecar_structure, read_sidecar

    contents = read_sidecar(tmp_path / SIDECAR_FILE)
    check_sidecar_structure(contents)
    for config, tensors, problem in (
            ({**contents.config, "scope_layer": 0}, contents.tensors, "scope_layer 0 is not one of its target"),
            ({**contents.config, "scope_layer": "4"}, contents.tensors, "scope_layer '4' is not one of"),
            (contents.config, {k: v for k, v in contents.tensors.items() if k != "scope_gate.threshold"},
             "lacks tensors ..scope_gate.threshold")):
        with pytest.raises(SidecarError, match=problem):
            check_sidecar_structure(dataclasses.replace(contents, config=config, tensors=tensors))
    # Hand-edited gate tensors: a typed error from the sidecar reader and from the checkpoint reader alike.
    from meta_spider.backends.llamacpp.sidecar_format import sidecar_format_version
    from meta_spider.wrapper.errors import CheckpointError

    assert contents.format_version == 2 == sidecar_format_version(contents.config)
    assert read_sidecar(export_sidecar(random_doubter(), tmp_path / "plain.gguf")).format_version == 1
    edits = {"scope_gate.threshold": (np.array(np.nan), "threshold of nan"),
             "scope_gate.scale": (np.zeros(34), "scale that is not positive"),
             "scope_gate.mean": (np.zeros(1), r"scope_gate.mean \[1\] \(expected \[34\]\)"),
             "scope_gate.weight": (np.full(34, np.inf), "non-finite scope gate weights")}
    for name, (value, problem) in edits.items():
        with pytest.raises(SidecarError, match=problem):
            check_sidecar_structure(dataclasses.replace(contents, tensors={**contents.tensors, name: value}))
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "ckpt"
    weights = load_file(str(folder / "doubter.safetensors"))
    weights["scope_gate.threshold"] = torch.tensor(float("inf"))
    save_file(weights, str(folder / "doubter.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="threshold of inf"):
        Doubter.from_checkpoint(folder)


@pytest.mark.parametrize("encoder_type", ENCODER_TYPES)
def test_numpy_encoder_and_cross_attention_match_torch(encoder_type, tmp_path):
    doubter = random_doubter(encoder_type=encoder_type, seed=3)
    gates = [float(torch.tanh(p.detach())) for name, p in doubter.named_parameters() if name.endswith(".raw")]
    assert gates and all(abs(g) > 1e-3 for g in gates)
    numpy_doubter = NumpyDoubter.from_sidecar(export_sidecar(doubter, tmp_path / SIDECAR_FILE))
    generator = torch.Generator().manual_seed(11)
    worst = 0.0
    for _ in range(4):
        states = torch.randn(1, 3, 32, generator=generator) * 4.0
        with torch.no_grad():
            expected = doubter.encode(states)
        encoded = numpy_doubter.encode(states[0].numpy())
        assert encoded.cognitive_tokens.shape == tuple(expected.cognitive_tokens.shape[1:])
        worst = max(worst, float(np.abs(encoded.cognitive_tokens - expected.cognitive_tokens[0].numpy()).max()))
        assert abs(encoded.p_correct_logit - float(expected.p_correct_logit[0])) <= NUMPY_ATOL
        if expected.probe_logits is not None:
            np.testing.assert_allclose(encoded.probe_logits, expected.probe_logits[0].numpy(), atol=NUMPY_ATOL)
        hidden = torch.randn(1, 5, 32, generator=generator) * 6.0
        for layer in doubter.config.cross_attn_layers:
            with torch.no_grad():
                delta = doubter.cross_attention(layer)(hidden, expected.cognitive_tokens)[0].numpy()
            got = numpy_doubter.cross_attention(layer, hidden[0].numpy(), expected.cognitive_tokens[0].numpy())
            assert np.abs(delta).max() > 0.05  # a real, non-trivial injection
            worst = max(worst, float(np.abs(got - delta).max()))
    print(f"\n[{encoder_type}] max |numpy - torch| = {worst:.2e}")
    assert worst <= NUMPY_ATOL


def test_agc_and_refresh_trigger_match_the_torch_gates(tmp_path):
    doubter = random_doubter(agc_floor=0.2, agc_tau=5.0, refresh_threshold=0.7)
    numpy_doubter = NumpyDoubter.from_sidecar(export_sidecar(doubter, tmp_path / SIDECAR_FILE))
    agc = AdaptiveGateControl(0.2, 5.0)
    assert [numpy_doubter.agc_alpha(step) for step in range(40)] == pytest.approx([agc.alpha(s) for s in range(40)])
    gate = RefreshGate(0.7)
    generator = torch.Generator().manual_seed(2)
    reference = torch.randn(1, 3, 32, generator=generator)
    decisions = []
    for noise in (0.0, 0.3, 0.8, 1.5, 3.0):
        live = reference + noise * torch.randn(1, 3, 32, generator=generator)
        decisions.append(gate.should_refresh(live, reference))
        assert numpy_doubter.should_refresh(live[0].numpy(), reference[0].numpy()) == decisions[-1]
    assert True in decisions and False in decisions
    assert numpy_doubter.injection_gate_values() == pytest.approx(doubter.injection_gate_values(), abs=1e-6)


# ---- the file -------------------------------------------------------------------


@pytest.mark.parametrize("encoder_type", ENCODER_TYPES)
def test_sidecar_round_trips_every_tensor_config_and_fingerprint(encoder_type, tmp_path):
    doubter = random_doubter(encoder_type=encoder_type, read_position="draft", inject_positions="all")
    folder = doubter.save_checkpoint(tmp_path / "checkpoint")
    single = doubter.save_checkpoint(tmp_path / "checkpoint.safetensors")
    for source in (doubter, folder, single):
        path = export_sidecar(source, tmp_path / f"{encoder_type}.gguf")
        contents = load_sidecar(path)
        state = doubter.state_dict()
        assert set(contents.tensors) == set(state)
        for name, tensor in state.items():
            assert contents.tensors[name].shape == tuple(tensor.shape), name
            assert np.array_equal(contents.tensors[name], tensor.numpy()), name
        assert DoubterConfig.from_dict(contents.config) == doubter.config
        assert contents.fingerprint == doubter.fingerprint()
        assert contents.metadata["general.architecture"] == "meta-spider"
        assert contents.metadata["meta-spider.target_layers"] == [3, 4, 5]
        assert contents.metadata["meta-spider.base_model_id"] == "tiny-base"
        assert contents.num_parameters() == doubter.num_parameters()
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_gguf_dump_reads_the_sidecar(tmp_path):
    path = export_sidecar(random_doubter(), tmp_path / SIDECAR_FILE)
    dump = Path(sys.executable).parent / "gguf-dump"
    completed = subprocess.run([str(dump), "--json", "--json-array", str(path)], capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    metadata = document["metadata"]
    assert metadata["general.architecture"]["value"] == "meta-spider"
    assert metadata["meta-spider.hidden_size"]["value"] == 32
    assert metadata["meta-spider.cross_attn_layers"]["value"] == [4, 5]
    assert "cross_attn.4.q_proj.weight" in document["tensors"]


_TORCHLESS = '''
    import numpy as np
    from meta_spider.loom.gguf.sidecar import load_sidecar
    from meta_spider.backends.llamacpp.numpy_doubter import NumpyDoubter

    contents = load_sidecar(sys.argv[1])
    encoded = NumpyDoubter.from_sidecar(contents).encode(np.ones((3, 32), dtype=np.float32))
    print(json.dumps({"torch": any(m == "torch" or m.startswith("torch.") for m in sys.modules),
                      "tensors": len(contents.tensors), "logit": encoded.p_correct_logit}))
'''


def test_sidecar_loads_and_encodes_where_importing_torch_fails(tmp_path):
    doubter = random_doubter()
    path = export_sidecar(doubter, tmp_path / SIDECAR_FILE)
    result = run_without_torch(_TORCHLESS, tmp_path, str(path))
    assert result["torch"] is False and result["tensors"] == len(doubter.state_dict())
    with torch.no_grad():
        expected = float(doubter.encode(torch.ones(1, 3, 32)).p_correct_logit[0])
    assert abs(result["logit"] - expected) <= NUMPY_ATOL


def test_missing_truncated_corrupt_and_foreign_sidecars_are_typed_errors(tmp_path):
    path = export_sidecar(random_doubter(), tmp_path / SIDECAR_FILE)
    data = path.read_bytes()
    cases = {
        "missing.gguf": None,
        "truncated.gguf": data[: len(data) // 2],
        "header-only.gguf": data[:40],
        "corrupt.gguf": b"not a gguf file at all" * 10,
    }
    for name, payload in cases.items():
        target = tmp_path / name
        if payload is not None:
            target.write_bytes(payload)
        with pytest.raises(SidecarError) as info:
            load_sidecar(target)
        assert str(target) in str(info.value) and "Fix:" in str(info.value), name
        assert info.value.path == target
    base = tmp_path / "base.gguf"
    from gguf_helpers import build_model, build_tokenizer
    from meta_spider.loom.gguf import export_base_gguf

    tokenizer = build_tokenizer()
    export_base_gguf((build_model("qwen2", len(tokenizer), layers=2, hidden=32), tokenizer), base)
    with pytest.raises(SidecarError, match="architecture 'qwen2'.*sidecar_path"):
        load_sidecar(base)


# ---- fitting a base ---------------------------------------------------------------


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory):
    """A local Qwen2 transformers folder (hidden 64, 4 layers) the exporter supports."""
    from gguf_helpers import save_base

    return save_base(tmp_path_factory.mktemp("base") / "tiny-qwen2", "qwen2", "qwen2", train_steps=0,
                     layers=4, hidden=64)


def test_the_fingerprint_check_names_both_files(tmp_path, base_folder):
    from meta_spider.loom.gguf import export_base_gguf

    base = export_base_gguf(base_folder, tmp_path / "base.gguf", dtype="f16")
    fits = load_sidecar(export_sidecar(random_doubter(64, 4, target_layers=(2, 3), cross_attn_layers=(3,)),
                                       tmp_path / "fits.gguf"))
    assert check_sidecar_fits(fits, base)["num_layers"] == 4
    other = load_sidecar(export_sidecar(random_doubter(32, 4, target_layers=(2, 3), cross_attn_layers=(3,),
                                                       model_id="other-base"), tmp_path / "other.gguf"))
    with pytest.raises(SidecarBaseMismatchError) as info:
        check_sidecar_fits(other, base)
    message = str(info.value)
    assert str(other.path) in message and str(base) in message and "other-base" in message
    assert info.value.fields == ("hidden_size",) and "sidecar 32 vs base 64" in message
    deeper = load_sidecar(export_sidecar(random_doubter(64, 8, target_layers=(5, 6, 7), cross_attn_layers=(7,)),
                                         tmp_path / "deeper.gguf"))
    with pytest.raises(SidecarLayerRangeError, match=r"layers \[5, 6, 7\], beyond the base's 4 decoder layers"):
        check_sidecar_fits(deeper, base)
    for bad in (tmp_path / "absent.gguf", tmp_path / "fits.gguf"):
        with pytest.raises(GGUFModelError) as error:
            check_sidecar_fits(fits, bad)
        assert str(bad) in str(error.value)
    truncated = tmp_path / "truncated-base.gguf"
    truncated.write_bytes(base.read_bytes()[:2000])
    with pytest.raises(GGUFModelError, match="corrupt or truncated"):
        check_sidecar_fits(fits, truncated)


def test_the_pmi_reference_travels_in_the_sidecar_and_must_fit_the_base_vocabulary(tmp_path, base_folder):
    import dataclasses

    from meta_spider.backends.llamacpp.sidecar_format import base_gguf_fingerprint, check_sidecar_structure
    from meta_spider.loom.gguf import export_base_gguf

    base = export_base_gguf(base_folder, tmp_path / "base.gguf", dtype="f16")
    vocab = base_gguf_fingerprint(base)["vocab_size"]
    doubter = random_doubter(64, 4, target_layers=(2, 3), cross_attn_layers=(3,),
                             signals=["draft_logprob_mean", "prompt_pmi_top4"])
    log_reference = torch.log_softmax(torch.randn(vocab, generator=torch.Generator().manual_seed(3)), 0)
    doubter.set_log_reference(log_reference)
    sidecar = load_sidecar(export_sidecar(doubter, tmp_path / "pmi.gguf"))
    np.testing.assert_array_equal(sidecar.tensors["log_reference"], log_reference.numpy())
    np.testing.assert_array_equal(NumpyDoubter.from_sidecar(sidecar).log_reference, log_reference.numpy())
    assert check_sidecar_fits(sidecar, base)["vocab_size"] == vocab
    doubter.set_log_reference(log_reference[:-3])  # exported for a base with another vocabulary
    narrow = load_sidecar(export_sidecar(doubter, tmp_path / "narrow.gguf"))
    with pytest.raises(SidecarBaseMismatchError, match=f"vocab_size: sidecar {vocab - 3} vs base {vocab}"):
        check_sidecar_fits(narrow, base)
    stripped = dataclasses.replace(sidecar, tensors={k: v for k, v in sidecar.tensors.items() if k != "log_reference"})
    with pytest.raises(SidecarError, match=r"lacks tensors \['log_reference'\]"):
        check_sidecar_structure(stripped)


# ---- metadeploy export -------------------------------------------------------------


def test_export_from_a_local_base_writes_and_records_every_file(tmp_path, base_folder):
    from gguf import GGUFReader

    from meta_spider.loom.gguf.deploy import export_from_run_dir
    from meta_spider.loom.gguf import tensor_type_counts
    from meta_spider.loom.manifest import RunManifest

    doubter = random_doubter(64, 4, target_layers=(2, 3), cross_attn_layers=(3,), model_id=str(base_folder))
    run_dir = make_run_dir(tmp_path / "run", str(base_folder), doubter)
    paths = export_from_run_dir(run_dir)
    assert sorted(paths) == ["base_f16", "base_q4", "base_q8", "sidecar"]
    assert paths["sidecar"] == run_dir / "gguf" / SIDECAR_FILE
    assert "Q8_0" in tensor_type_counts(paths["base_q8"]) and "F16" in tensor_type_counts(paths["base_f16"])
    assert set(tensor_type_counts(paths["base_q4"])) & {"Q4_K", "Q5_0", "Q4_0", "Q5_1", "Q4_1"}
    manifest = RunManifest.load(run_dir)
    assert manifest.gguf.sidecar == f"gguf/{SIDECAR_FILE}" and manifest.gguf.base_q8 == "gguf/base-q8_0.gguf"
    assert manifest.gguf.base_q4 == "gguf/base-q4_k_m.gguf" and manifest.gguf.base_f16 == "gguf/base-f16.gguf"
    assert list(manifest.backends) == ["transformers", "llamacpp"]  # the run's default backend is unchanged
    assert manifest.backends["llamacpp"] == {"model_path": "gguf/base-q8_0.gguf",
                                             "sidecar_path": f"gguf/{SIDECAR_FILE}"}
    sidecar = load_sidecar(paths["sidecar"])
    assert sidecar.metadata["meta-spider.base_vocab_size"] == len(GGUFReader(str(paths["base_f16"])).fields[
        "tokenizer.ggml.tokens"].data)
    for key in ("base_f16", "base_q8", "base_q4"):
        check_sidecar_fits(sidecar, paths[key])


def test_export_of_a_hub_base_writes_the_sidecar_and_checks_a_given_gguf(tmp_path, base_folder, caplog, capsys):
    from cli_helpers import metadeploy
    from click.testing import CliRunner

    from meta_spider.loom.cli.deploy import export
    from meta_spider.loom.gguf.deploy import export_from_run_dir
    from meta_spider.loom.gguf import export_base_gguf
    from meta_spider.loom.manifest import RunManifest

    doubter = random_doubter(64, 4, target_layers=(2, 3), cross_attn_layers=(3,), model_id="org/some-model")
    run_dir = make_run_dir(tmp_path / "run", "org/some-model", doubter)
    result = CliRunner().invoke(export, ["--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "sidecar" in result.output and "--base-gguf PATH" in result.output
    assert RunManifest.load(run_dir).gguf.sidecar == f"gguf/{SIDECAR_FILE}"
    assert "llamacpp" not in RunManifest.load(run_dir).backends

    own = export_base_gguf(base_folder, tmp_path / "mine-f16.gguf", dtype="f16")
    paths = export_from_run_dir(run_dir, ("Q8_0",), base_gguf=own)
    assert paths["base_f16"] == own and paths["base_q8"] == run_dir / "gguf" / "base-q8_0.gguf"
    manifest = RunManifest.load(run_dir)
    assert manifest.gguf.base_f16 == str(own.resolve())
    assert manifest.backends["llamacpp"]["model_path"] == "gguf/base-q8_0.gguf"

    foreign_folder = tmp_path / "foreign"
    from gguf_helpers import save_base

    save_base(foreign_folder, "qwen2", "qwen2", train_steps=0, layers=3, hidden=32)
    foreign = export_base_gguf(foreign_folder, tmp_path / "foreign.gguf")
    result = metadeploy(capsys, "export", "--run-dir", run_dir, "--base-gguf", foreign, "--no-quantize")
    assert result.exit_code != 0
    assert "does not fit the base GGUF" in result.output and str(foreign) in result.output
    result = metadeploy(capsys, "export", "--run-dir", tmp_path / "nowhere")
    assert result.exit_code != 0 and "run.json" in result.output


def test_export_without_a_checkpoint_says_to_train(tmp_path):
    from meta_spider.loom.gguf.deploy import DeployError, export_from_run_dir
    from meta_spider.loom.manifest import RunManifest

    run_dir = make_run_dir(tmp_path / "run", "org/model", random_doubter())
    RunManifest.update_file(run_dir, checkpoint=None)
    with pytest.raises(DeployError, match="metaloom train --run-dir"):
        export_from_run_dir(run_dir)
    RunManifest.update_file(run_dir, checkpoint="checkpoints/missing")
    with pytest.raises(DeployError, match="does not exist"):
        export_from_run_dir(run_dir)


def test_register_deploy_exporters_registers_the_gguf_exporter():
    from meta_spider.loom.gguf.deploy import export_from_run_dir, register_deploy_exporters

    registered = {}
    register_deploy_exporters(lambda name, export: registered.__setitem__(name, export))
    assert registered == {"gguf": export_from_run_dir}
