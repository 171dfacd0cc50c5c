"""The llama.cpp backend against the transformers pipeline with the same Doubter.

A tiny Qwen2 (4 layers, hidden 64, briefly trained so top-1 is decisive) is
wrapped in a :class:`MetaSpiderPipeline` with a Doubter whose every
parameter is perturbed (non-zero gates), and exported to an f32 and an f16
GGUF plus the sidecar. Stated tolerances:

- f32 GGUF with an f32 KV cache: P(correct) within ``P_ATOL`` (1e-5),
  cognitive tokens within ``TOKENS_ATOL`` and injected next-token logits
  within ``LOGITS_ATOL`` (1e-4 absolute; measured about 1e-5 on logits of
  magnitude 5-15); greedy texts identical (plain, injected, AGC, dynamic
  refresh, ``inject_positions="all"``, ``read_position="draft"``).
- f16 GGUF with llama.cpp's default f16 KV cache: injected logits within
  ``F16_RELATIVE`` (2e-2) of the largest reference logit, P(correct) within
  ``F16_P_ATOL`` (1e-2).

Also: prompts from the GGUF's template, streaming and stop strings, typed
errors for every bad input, the whole backend plus the doubter policy in a
subprocess where importing torch fails (it answers the confident question
and refuses the uncertain one), ``meta-agent run --backend llamacpp`` on an
exported run directory, and that importing the backend imports no torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gguf_helpers import build_model, build_tokenizer, train_briefly
from torchless import run_without_torch
from meta_spider.backends import BackendCapabilityError
from meta_spider.backends.base import Introspection
from meta_spider.backends.llamacpp import LlamaCppBackend
from meta_spider.backends.llamacpp.errors import GGUFModelError
from meta_spider.backends.llamacpp.sidecar_format import SidecarBaseMismatchError, SidecarError, SidecarLayerRangeError
from meta_spider.backends.transformers import TransformersBackend
from meta_spider.loom.gguf import export_base_gguf
from meta_spider.loom.gguf.sidecar import SIDECAR_FILE, export_sidecar
from meta_spider.wrapper import MetaSpiderConfig, MetaSpiderPipeline
from meta_spider.wrapper.injection import InjectionState, injecting

pytestmark = pytest.mark.llamacpp

P_ATOL = 1e-5
TOKENS_ATOL = 1e-4
LOGITS_ATOL = 1e-4
F16_RELATIVE = 2e-2
F16_P_ATOL = 1e-2
QUESTIONS = ["Where was Ada born?", "What does Lev do?", "Who is Hugo?"]
DOUBTER_SHAPE = dict(encoder_dim=16, ca_bottleneck_dim=16, ca_num_heads=2, encoder_num_heads=2, num_cognitive_tokens=3)


class Tiny:
    """The shared tiny base: model, tokenizer, f32/f16 GGUFs, rendered prompts."""

    def __init__(self, folder: Path) -> None:
        torch.set_num_threads(1)
        self.tokenizer = build_tokenizer(split="qwen2")
        self.model = train_briefly(build_model("qwen2", vocab_size=len(self.tokenizer), layers=4, hidden=64),
                                   self.tokenizer, steps=30)
        # llama.cpp ends generation at every token its vocab marks end-of-generation (<|im_end|> and
        # <|endoftext|> here); the transformers side is told the same set.
        self.model.generation_config.eos_token_id = self.tokenizer.convert_tokens_to_ids(
            ["<|im_end|>", "<|endoftext|>"])
        self.folder = folder
        self.f32 = export_base_gguf((self.model, self.tokenizer), folder / "base-f32.gguf", dtype="f32")
        self.f16 = export_base_gguf((self.model, self.tokenizer), folder / "base-f16.gguf", dtype="f16")
        self.prompts = [self.tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                           add_generation_prompt=True) for q in QUESTIONS]

    def pipeline(self, **doubter_overrides) -> MetaSpiderPipeline:
        """A pipeline with a fresh, fully perturbed Doubter attached (reading layers 1-3, injecting after 2-3)."""
        pipeline = MetaSpiderPipeline(self.model, self.tokenizer,
                                      MetaSpiderConfig(target_layers=[1, 2, 3], cross_attn_layers=[2, 3]),
                                      model_id="tiny-qwen2")
        torch.manual_seed(5)
        doubter = pipeline.new_doubter(**{**DOUBTER_SHAPE, "ca_gate_init": 0.5, **doubter_overrides})
        with torch.no_grad():
            for parameter in doubter.parameters():
                parameter.add_(0.2 * torch.randn_like(parameter))
        pipeline.attach(doubter)
        return pipeline

    def sidecar(self, pipeline: MetaSpiderPipeline, name: str) -> Path:
        return export_sidecar(pipeline.doubter, self.folder / name)

    def backend(self, sidecar: Path | None, *, f16: bool = False, **settings) -> LlamaCppBackend:
        kv = "f16" if f16 else "f32"
        return LlamaCppBackend.from_settings(self.f16 if f16 else self.f32, sidecar, n_ctx=512, n_threads=1,
                                             kv_cache_type=kv, **settings)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return Tiny(tmp_path_factory.mktemp("tiny"))


def reference_injected_logits(pipeline: MetaSpiderPipeline, prompt: str, cognitive_tokens: torch.Tensor) -> np.ndarray:
    """Next-token logits with the pipeline's own injection hooks: every prompt position for
    ``inject_positions="all"``, the last one only for ``"generation"`` (what pass 2 computes)."""
    ids = pipeline.encode(prompt)
    doubter = pipeline.doubter
    mask = torch.ones(1, ids.shape[1])
    if doubter.config.inject_positions == "generation":
        mask[:, :-1] = 0.0
    state = InjectionState(cognitive_tokens=cognitive_tokens.reshape(1, *cognitive_tokens.shape[-2:]),
                           position_mask=mask)
    with torch.no_grad(), injecting(pipeline.structure.layers, doubter, state):
        return pipeline.model(ids).logits[0, -1].numpy().copy()


# ---- numerical parity ----------------------------------------------------------------


@pytest.mark.parametrize("encoder_type,inject_positions", [
    ("selective", "generation"), ("multi_token", "generation"), ("transformer", "generation"), ("selective", "all"),
])
def test_pass1_and_injected_logits_match_transformers_f32(tiny, encoder_type, inject_positions):
    pipeline = tiny.pipeline(encoder_type=encoder_type, inject_positions=inject_positions)
    backend = tiny.backend(tiny.sidecar(pipeline, f"{encoder_type}-{inject_positions}.gguf"))
    reference = TransformersBackend(pipeline)
    worst = 0.0
    for prompt in tiny.prompts:
        assert backend.encode(prompt) == pipeline.encode(prompt)[0].tolist()
        expected, got = reference.read(prompt), backend.read(prompt)
        assert abs(got.p_correct - expected.p_correct) <= P_ATOL
        assert 0.02 < got.p_correct < 0.98  # a live probe, not a saturated one
        np.testing.assert_allclose(got.cognitive_tokens, expected.cognitive_tokens.numpy(), atol=TOKENS_ATOL)
        logits = backend.next_token_logits(prompt, inject=got)
        want = reference_injected_logits(pipeline, prompt, expected.cognitive_tokens)
        worst = max(worst, float(np.abs(logits - want).max()))
        # The injection matters: without it the logits differ by far more than the tolerance.
        assert float(np.abs(backend.next_token_logits(prompt) - want).max()) > 100 * LOGITS_ATOL
    print(f"\n[{encoder_type}/{inject_positions}] max |injected logits diff| f32: {worst:.2e}")
    assert worst <= LOGITS_ATOL
    backend.close()


def test_injected_logits_and_p_correct_from_an_f16_gguf(tiny):
    pipeline = tiny.pipeline()
    backend = tiny.backend(tiny.sidecar(pipeline, "f16.gguf"), f16=True)
    reference = TransformersBackend(pipeline)
    worst = 0.0
    for prompt in tiny.prompts:
        expected, got = reference.read(prompt), backend.read(prompt)
        assert abs(got.p_correct - expected.p_correct) <= F16_P_ATOL
        want = reference_injected_logits(pipeline, prompt, expected.cognitive_tokens)
        relative = float(np.abs(backend.next_token_logits(prompt, inject=got) - want).max() / np.abs(want).max())
        worst = max(worst, relative)
    print(f"\nmax relative injected-logit diff f16: {worst:.2e}")
    assert worst <= F16_RELATIVE
    backend.close()


@pytest.mark.parametrize("settings", [
    {}, {"agc": True}, {"dynamic_refresh": True}, {"dynamic_refresh": True, "agc": True},
])
def test_greedy_generation_matches_the_transformers_backend(tiny, settings):
    # A high refresh threshold makes dynamic refresh fire during these short answers; a short tau makes AGC bite.
    pipeline = tiny.pipeline(refresh_threshold=0.995, agc_floor=0.1, agc_tau=3.0)
    backend = tiny.backend(tiny.sidecar(pipeline, "generation.gguf"), **settings)
    reference = TransformersBackend(pipeline, **settings)
    refreshes = 0
    for prompt in tiny.prompts:
        plain_expected = reference.generate(prompt, max_new_tokens=16)
        plain = backend.generate(prompt, max_new_tokens=16)
        assert (plain.text, plain.finish_reason, plain.num_tokens) == (
            plain_expected.text, plain_expected.finish_reason, plain_expected.num_tokens)
        expected = reference.generate(prompt, max_new_tokens=16, inject=reference.read(prompt))
        got = backend.generate(prompt, max_new_tokens=16, inject=backend.read(prompt))
        assert (got.text, got.finish_reason, got.num_tokens) == (expected.text, expected.finish_reason,
                                                                 expected.num_tokens)
        if settings.get("dynamic_refresh"):
            assert backend.last_refreshes == pipeline.doubter.buffer.refreshes
            refreshes += backend.last_refreshes
        if settings.get("agc"):
            steps = len(backend.last_injection_scales)
            assert backend.last_injection_scales[0] == 1.0 and steps >= 2
            assert backend.last_injection_scales[1] < 1.0
    if settings.get("dynamic_refresh"):
        assert refreshes > 0
    backend.close()


def test_draft_read_position_matches_transformers(tiny):
    pipeline = tiny.pipeline(read_position="draft")
    backend = tiny.backend(tiny.sidecar(pipeline, "draft.gguf"))
    reference = TransformersBackend(pipeline)
    for prompt in tiny.prompts:
        expected, got = reference.read(prompt), backend.read(prompt)
        assert got.extras["draft_text"] == expected.extras["draft_text"]
        assert abs(got.p_correct - expected.p_correct) <= P_ATOL
        np.testing.assert_allclose(got.extras["layer_states"], expected.extras["layer_states"].numpy(), atol=1e-4)
        assert backend.generate(prompt, max_new_tokens=12, inject=got).text == reference.generate(
            prompt, max_new_tokens=12, inject=expected).text
    backend.close()


def test_pass1_signals_match_transformers(tiny):
    # Every signal: the PMI with a p_ref over the prompts, the occlusion one with the user's question.
    from meta_spider.wrapper.signals import KNOWN_SIGNALS

    pipeline = tiny.pipeline(signals=list(KNOWN_SIGNALS))
    pipeline.doubter.set_log_reference(pipeline.reference_logprobs([pipeline.encode(p)[0] for p in tiny.prompts]))
    with torch.no_grad():
        pipeline.doubter.signal_mix.mean.copy_(torch.tensor([-30.0, -2.0, -1.0, -3.0, -6.0, -4.0, -9.0, 2.0, -8.0]))
        pipeline.doubter.signal_mix.scale.copy_(torch.tensor([5.0, 0.5, 0.5, 1.0, 2.0, 1.5, 3.0, 1.0, 4.0]))
    backend = tiny.backend(tiny.sidecar(pipeline, "signals.gguf"))
    reference = TransformersBackend(pipeline)
    for prompt, question in zip(tiny.prompts, QUESTIONS):
        expected, got = reference.read(prompt, question=question), backend.read(prompt, question=question)
        assert list(got.extras["signals"]) == list(KNOWN_SIGNALS)
        np.testing.assert_allclose(list(got.extras["signals"].values()), list(expected.extras["signals"].values()),
                                   rtol=1e-4, atol=1e-3)
        assert got.extras["draft_text"] == expected.extras["draft_text"]  # prompt read, drafted for the signals
        assert abs(got.p_correct - expected.p_correct) <= 1e-4
        assert got.extras["signals"]["occluded_name_logprob"] < 0  # the name's later tokens: a real value
        # The occlusion prefills left the KV cache holding another prompt: pass 2 still starts from this one.
        want = reference_injected_logits(pipeline, prompt, expected.cognitive_tokens)
        np.testing.assert_allclose(backend.next_token_logits(prompt, inject=got), want, atol=LOGITS_ATOL)
        backend.read(prompt, question=question)
        assert backend.generate(prompt, max_new_tokens=12, inject=got).text == reference.generate(
            prompt, max_new_tokens=12, inject=expected).text
    backend.close()


def test_an_introspection_from_the_torch_backend_can_be_injected(tiny):
    pipeline = tiny.pipeline()
    backend = tiny.backend(tiny.sidecar(pipeline, "cross.gguf"))
    reference = TransformersBackend(pipeline)
    prompt = tiny.prompts[0]
    expected = reference.read(prompt)  # torch tensors inside
    got = backend.generate(prompt, max_new_tokens=10, inject=expected)
    assert got.text == reference.generate(prompt, max_new_tokens=10, inject=expected).text
    backend.close()


# ---- prompts and text ------------------------------------------------------------------


def test_prompts_come_from_the_gguf_template_and_text_streams(tiny):
    backend = tiny.backend(None)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where was Ada born?"}]
    assert backend.chat_template == tiny.tokenizer.chat_template
    rendered = backend.render_prompt(messages)
    assert rendered == tiny.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = backend.generate(rendered, max_new_tokens=20)
    assert full.text and full.finish_reason in ("eos", "length")
    pieces: list[str] = []
    streamed = backend.generate(rendered, max_new_tokens=20, on_text=pieces.append)
    assert "".join(pieces) == streamed.text == full.text and len(pieces) > 1
    marker = full.text[len(full.text) // 2: len(full.text) // 2 + 2]
    pieces.clear()
    cut = backend.generate(rendered, max_new_tokens=20, stop=[marker], on_text=pieces.append)
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.index(marker)]
    assert "".join(pieces) == cut.text
    assert backend.generate(rendered, max_new_tokens=1).num_tokens == 1
    with pytest.raises(BackendCapabilityError, match="sidecar_path"):
        backend.read(rendered)
    with pytest.raises(BackendCapabilityError):
        backend.generate(rendered, inject=Introspection(p_correct=0.5, cognitive_tokens=np.zeros((3, 64))))
    backend.close()


def test_tool_prompts_render_with_a_real_template_from_the_gguf(tiny, tmp_path, shared_dir):
    from meta_spider.native import NativeToolPrompt, ToolCallFamily

    tokenizer = build_tokenizer(split="qwen2")
    tokenizer.chat_template = (shared_dir / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text(encoding="utf-8")
    path = export_base_gguf((tiny.model, tokenizer), tmp_path / "qwen-template.gguf", dtype="f16")
    backend = LlamaCppBackend.from_settings(path, n_ctx=2048, n_threads=1)
    tools = [{"type": "function", "function": {
        "name": "lookup", "description": "Look a fact up.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]
    messages = [{"role": "user", "content": "Where was Ada born?"},
                {"role": "assistant", "tool_calls": [{"type": "function", "function": {
                    "name": "lookup", "arguments": {"query": "Ada"}}}]},
                {"role": "tool", "name": "lookup", "content": "Ada was born in Kuba."}]
    expected = NativeToolPrompt.from_tokenizer(tokenizer).render(messages, tools=tools)
    rendered = backend.render_prompt(messages, tools=tools)
    assert rendered == expected and "<tools>" in rendered and "<tool_response>" in rendered
    assert NativeToolPrompt.from_template(backend.chat_template).family is ToolCallFamily.HERMES
    assert backend.generate(rendered, max_new_tokens=4).num_tokens >= 1
    backend.close()


# ---- validation -------------------------------------------------------------------------


def test_bad_inputs_are_typed_errors_naming_the_file_and_the_fix(tiny, tmp_path):
    from test_deploy_sidecar import random_doubter

    pipeline = tiny.pipeline()
    good = tiny.sidecar(pipeline, "good.gguf")
    other = export_sidecar(random_doubter(32, 4, target_layers=(2, 3), cross_attn_layers=(3,), model_id="other"),
                           tmp_path / "other.gguf")
    with pytest.raises(SidecarBaseMismatchError) as info:
        tiny.backend(other)
    assert str(other) in str(info.value) and str(tiny.f32) in str(info.value) and "Fix:" in str(info.value)
    deeper = export_sidecar(random_doubter(64, 8, target_layers=(5, 6, 7), cross_attn_layers=(6, 7)),
                            tmp_path / "deeper.gguf")
    with pytest.raises(SidecarLayerRangeError, match=r"layers \[5, 6, 7\].*0\.\.3"):
        tiny.backend(deeper)
    truncated_sidecar = tmp_path / "truncated-sidecar.gguf"
    truncated_sidecar.write_bytes(good.read_bytes()[:-500])
    with pytest.raises(SidecarError, match="truncated"):
        tiny.backend(truncated_sidecar)
    truncated_base = tmp_path / "truncated-base.gguf"
    truncated_base.write_bytes(tiny.f32.read_bytes()[: tiny.f32.stat().st_size // 2])
    corrupt_base = tmp_path / "corrupt-base.gguf"
    corrupt_base.write_bytes(b"GGUF" + b"\x00" * 64)
    for base in (truncated_base, corrupt_base, tmp_path / "missing.gguf"):
        with pytest.raises(GGUFModelError) as error:
            LlamaCppBackend.from_settings(base, good, n_threads=1)
        assert str(base) in str(error.value)
    with pytest.raises(GGUFModelError, match="model_path"):
        LlamaCppBackend.from_settings(tmp_path / "missing.gguf", n_threads=1)
    with pytest.raises(GGUFModelError, match="sidecar, not a base"):
        LlamaCppBackend.from_settings(good, n_threads=1)
    with pytest.raises(ValueError, match="kv_cache_type"):
        LlamaCppBackend.from_settings(tiny.f32, kv_cache_type="q3")


# ---- deployment: no torch, the agent, the CLI --------------------------------------------


def separating_doubter(tiny: Tiny, confident: str, uncertain: str) -> MetaSpiderPipeline:
    """A pipeline whose Doubter's probes put P(correct) near 1 at ``confident`` and near 0 at ``uncertain``."""
    pipeline = tiny.pipeline()
    doubter = pipeline.doubter
    states = {prompt: pipeline.read_ids(pipeline.encode(prompt)).layer_states for prompt in (confident, uncertain)}
    with torch.no_grad():
        normed = {p: [norm(s[:, i])[0] for i, norm in enumerate(doubter.encoder.norms)] for p, s in states.items()}
        gaps = [a - b for a, b in zip(normed[confident], normed[uncertain], strict=True)]
        scale = 12.0 / float(np.mean([float(gap @ gap) for gap in gaps]))
        for probe, gap, a, b in zip(doubter.encoder.probes, gaps, normed[confident], normed[uncertain],
                                        strict=True):
            probe.weight.copy_(scale * gap[None, :])
            probe.bias.fill_(-float(scale * gap @ (a + b) / 2))
        doubter.encoder.probe_mix.weight.fill_(1.0 / len(gaps))
        doubter.encoder.probe_mix.bias.zero_()
    return pipeline


@pytest.fixture(scope="module")
def exported_run(tiny, tmp_path_factory):
    """A run directory as `metadeploy export` leaves it: local base folder, checkpoint, GGUFs, run.json."""
    from test_deploy_sidecar import make_run_dir

    from meta_spider.loom.gguf.deploy import export_from_run_dir

    root = tmp_path_factory.mktemp("run")
    base_folder = root / "tiny-qwen2"
    tiny.model.save_pretrained(base_folder)
    tiny.tokenizer.save_pretrained(base_folder)
    pipeline = separating_doubter(tiny, tiny.prompts[0], tiny.prompts[1])
    reference = TransformersBackend(pipeline)
    assert reference.read(tiny.prompts[0]).p_correct > 0.95 and reference.read(tiny.prompts[1]).p_correct < 0.05
    run_dir = make_run_dir(root / "run", str(base_folder), pipeline.doubter,
                           policy={"name": "doubter", "settings": {"threshold": 0.5, "max_new_tokens": 12}})
    paths = export_from_run_dir(run_dir)
    assert {"sidecar", "base_f16", "base_q8", "base_q4"} <= set(paths)
    return run_dir


_TORCHLESS_AGENT = '''
    from meta_spider.agentcore.launch import AgentLauncher
    from meta_spider.agentcore.rundir import read_run_settings
    from meta_spider.agentcore.steps import FinalStep
    from meta_spider.plugins import make_plugin_manager

    run_dir, questions = sys.argv[1], json.loads(sys.argv[2])
    launcher = AgentLauncher(make_plugin_manager(), read_run_settings(run_dir), max_steps=2)
    agent = launcher.build_agent(policy="doubter", backend="llamacpp")
    results = []
    for question in questions:
        steps = list(agent.run(question))
        final = [s for s in steps if isinstance(s, FinalStep)][-1]
        decision = steps[0].to_dict()
        results.append({"outcome": final.outcome, "text": final.text, "first_step": decision})
    print(json.dumps({"torch": any(m == "torch" or m.startswith("torch.") for m in sys.modules),
                      "llama_cpp": "llama_cpp" in sys.modules, "results": results}))
'''


def test_the_doubter_agent_runs_on_llamacpp_where_importing_torch_fails(exported_run, tmp_path):
    result = run_without_torch(_TORCHLESS_AGENT, tmp_path, str(exported_run), json.dumps(QUESTIONS[:2]), timeout=600)
    assert result["torch"] is False and result["llama_cpp"] is True
    confident, uncertain = result["results"]
    assert confident["outcome"] == "answer", confident
    assert uncertain["outcome"] == "refuse", uncertain


def test_meta_agent_run_switches_to_llamacpp_by_name(exported_run):
    command = Path(sys.executable).parent / "meta-agent"
    completed = subprocess.run(
        [str(command), "run", QUESTIONS[1], "--run-dir", str(exported_run), "--backend", "llamacpp", "--json"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    document = json.loads(completed.stdout)
    assert document["backend"] == "llamacpp" and document["policy"] == "doubter"
    assert document["outcome"] == "refuse"


def test_importing_the_backend_imports_neither_torch_nor_llama_cpp():
    code = ("import sys, meta_spider.backends.llamacpp, meta_spider.backends.llamacpp.numpy_doubter; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'llama_cpp')))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


# ---- the embedded world ----------------------------------------------------------------------


@pytest.mark.world
@pytest.mark.slow
def test_tiny_world_pass1_injected_logits_and_decisions_match_transformers(tmp_path):
    """On the tiny world's trained base and validation questions: f32 within the f32 tolerances (and the
    same greedy answers), f16 within the f16 tolerances, and the answer/abstain decision at a threshold
    in the middle of the P(correct) range agreeing on at least 95% of the questions."""
    from meta_spider.loom.world.cache import build_world

    world = build_world("tiny", seed=0, progress=False)
    model, tokenizer = world.load_model()
    f32 = export_base_gguf(world.model_dir, tmp_path / "world-f32.gguf", dtype="f32")
    f16 = export_base_gguf(world.model_dir, tmp_path / "world-f16.gguf", dtype="f16")
    probe = LlamaCppBackend.from_settings(f32, n_ctx=512, n_threads=1)
    # Both sides stop at the tokens llama.cpp's vocab marks end-of-generation.
    model.generation_config.eos_token_id = [t for t in range(probe.context.n_vocab)
                                            if probe.context.is_end_of_generation(t)]
    probe.close()
    layers = list(range(model.config.num_hidden_layers))
    pipeline = MetaSpiderPipeline(model.eval(), tokenizer,
                                  MetaSpiderConfig(target_layers=layers, cross_attn_layers=layers[1:]),
                                  model_id="world-tiny")
    torch.manual_seed(7)
    doubter = pipeline.new_doubter(encoder_dim=32, ca_bottleneck_dim=32, ca_num_heads=4, ca_gate_init=0.5)
    with torch.no_grad():
        for parameter in doubter.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    pipeline.attach(doubter)
    sidecar = export_sidecar(doubter, tmp_path / SIDECAR_FILE)
    reference = TransformersBackend(pipeline)
    exact = LlamaCppBackend.from_settings(f32, sidecar, n_ctx=512, n_threads=1, kv_cache_type="f32")
    half = LlamaCppBackend.from_settings(f16, sidecar, n_ctx=512, n_threads=1)
    prompts = [pipeline.render(item.question) for item in world.qa("validation")[:40]]
    rows = []
    for prompt in prompts:
        expected = reference.read(prompt)
        want = reference_injected_logits(pipeline, prompt, expected.cognitive_tokens)
        got32, got16 = exact.read(prompt), half.read(prompt)
        assert abs(got32.p_correct - expected.p_correct) <= P_ATOL
        assert float(np.abs(exact.next_token_logits(prompt, inject=got32) - want).max()) <= LOGITS_ATOL
        relative = float(np.abs(half.next_token_logits(prompt, inject=got16) - want).max() / np.abs(want).max())
        assert relative <= F16_RELATIVE and abs(got16.p_correct - expected.p_correct) <= F16_P_ATOL
        rows.append((expected.p_correct, got16.p_correct))
    for prompt in prompts[:5]:
        assert exact.generate(prompt, max_new_tokens=24, inject=exact.read(prompt)).text == reference.generate(
            prompt, max_new_tokens=24, inject=reference.read(prompt)).text
    # the gate after a lookup scores a llama.cpp read as it scores the same read through transformers
    from meta_spider.wrapper.after_lookup import AfterLookupGate

    width = 1 + model.config.hidden_size  # the P(correct) logit and the second target layer's state
    rng = np.random.default_rng(0)
    gate = AfterLookupGate("lookup", (), 1, np.zeros(width), np.ones(width), rng.normal(size=width) / width**0.5,
                           0.0, 0.0)
    for prompt in prompts[:5]:
        want, got = reference.read(prompt), exact.read(prompt)
        expected = gate.score(want.p_correct, want.extras.get("signals", {}), want.extras["layer_states"])
        assert gate.score(got.p_correct, got.extras.get("signals", {}), got.extras["layer_states"]) == pytest.approx(
            expected, abs=1e-3)
    threshold = float(np.median([p for p, _ in rows]))
    agreement = float(np.mean([(p >= threshold) == (q >= threshold) for p, q in rows]))
    print(f"\ntiny world: f16 decision agreement {agreement:.3f} over {len(rows)} questions")
    assert agreement >= 0.95


def test_the_sidecar_carries_the_calibration_and_the_run_defaults_to_the_doubter(exported_run, tmp_path):
    """A run whose run.json has neither a policy nor a calibration: `meta-agent run` takes the doubter policy
    (the backend has a Doubter) and gates on the threshold the sidecar carries, as metaloom eval wrote it
    into the checkpoint: the confident question is answered, the uncertain one refused."""
    import shutil

    from meta_spider.loom.gguf.sidecar import export_sidecar, load_sidecar
    from meta_spider.wrapper.checkpoint import write_calibration

    run = Path(shutil.copytree(exported_run, tmp_path / "run"))
    document = json.loads((run / "run.json").read_text())
    document.pop("policy", None)
    document.pop("calibration", None)
    (run / "run.json").write_text(json.dumps(document))
    gate = {"tool": "lookup", "signals": [], "layer_index": None, "mean": [0.0], "scale": [1.0], "weight": [1.0],
            "bias": 0.0, "threshold": 0.0}  # the gate after a lookup travels in the same entry
    entry = {"threshold": 0.5, "split": "validation", "rule": "goals", "score": "p_correct", "after_lookup": gate}
    write_calibration(run / "checkpoints" / "best", entry)
    sidecar = Path(document["backends"]["llamacpp"]["sidecar_path"])
    sidecar = sidecar if sidecar.is_absolute() else run / sidecar
    export_sidecar(run / "checkpoints" / "best", sidecar)
    assert load_sidecar(sidecar).calibration == entry
    command = Path(sys.executable).parent / "meta-agent"
    outcomes = []
    for question in QUESTIONS[:2]:
        completed = subprocess.run([str(command), "run", question, "--run-dir", str(run), "--backend", "llamacpp",
                                    "--json"], capture_output=True, text=True, timeout=600,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert completed.returncode == 0, completed.stderr[-3000:]
        record = json.loads(completed.stdout)
        metadata = record["steps"][0]["decision"]["metadata"]
        assert record["policy"] == "doubter" and metadata["threshold"] == 0.5
        assert metadata["threshold_source"] == "calibration:checkpoint"
        outcomes.append(record["outcome"])
    assert outcomes == ["answer", "refuse"]
