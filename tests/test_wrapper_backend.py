"""The transformers inference backend over a local tiny model folder: the
protocol, chat-template prompts, greedy generation with stop strings and
streaming, pass-1 reads and pass-2 injection reusing the read's cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from wrapper_helpers import PROMPTS, chat_ids, save_tiny_model, shared_model, shared_tokenizer

from meta_spider.backends.base import BackendCapabilityError, InferenceBackend, Introspection
from meta_spider.backends.transformers import TransformersBackend
from meta_spider.native import ChatTemplateError

SMALL = {"encoder_dim": 16, "ca_bottleneck_dim": 16, "ca_num_heads": 2}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(shared_model("qwen2"), shared_tokenizer(), tmp_path_factory.mktemp("qwen2"))


@pytest.fixture(scope="module")
def checkpoint(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    backend = TransformersBackend.from_settings(str(model_folder), local_files_only=True, target_layers=[1, 4])
    doubter = backend.pipeline.new_doubter(ca_gate_init=0.9, **SMALL)
    return doubter.save_checkpoint(tmp_path_factory.mktemp("ckpt") / "doubter")


def _base_text(prompt_text: str, max_new_tokens: int) -> tuple[list[int], str]:
    tok = shared_tokenizer()
    ids = tok(prompt_text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = shared_model("qwen2").generate(ids, max_new_tokens=max_new_tokens, do_sample=False)[0, ids.shape[1]:].tolist()
    kept = [t for t in out if t != tok.eos_token_id]
    return out, tok.decode(kept, skip_special_tokens=False)


def test_plain_backend_follows_the_protocol_and_the_base(model_folder: Path) -> None:
    from meta_spider.backends.plugin import transformers_backend

    backend = transformers_backend(model_name=str(model_folder), local_files_only=True)
    assert isinstance(backend, InferenceBackend) and backend.name == "transformers"
    assert backend.chat_template == shared_tokenizer().chat_template
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPTS[2]}]
    prompt = backend.render_prompt(messages)
    assert prompt == shared_tokenizer().apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    tokens, text = _base_text(prompt, 24)
    completion = backend.generate(prompt, max_new_tokens=24)
    assert completion.text == text
    assert completion.num_tokens == len(tokens)
    assert completion.finish_reason == ("eos" if tokens[-1] == shared_tokenizer().eos_token_id else "length")
    with pytest.raises(BackendCapabilityError, match="read"):
        backend.read(prompt)
    with pytest.raises(BackendCapabilityError, match="inject"):
        backend.generate(prompt, inject=Introspection(p_correct=0.5, cognitive_tokens=torch.zeros(2, 32)))


def test_stop_strings_cut_the_text_and_are_never_streamed(model_folder: Path) -> None:
    backend = TransformersBackend.from_settings(str(model_folder), local_files_only=True)
    prompt = backend.render_prompt([{"role": "user", "content": PROMPTS[0]}])
    full = backend.generate(prompt, max_new_tokens=24).text
    assert len(full) >= 6, full
    stop = full[3:6]
    deltas: list[str] = []
    cut = backend.generate(prompt, max_new_tokens=24, stop=[stop], on_text=deltas.append)
    assert cut.finish_reason == "stop"
    assert cut.text == full[: full.index(stop)]
    assert "".join(deltas) == cut.text and all(stop not in d for d in deltas)
    streamed: list[str] = []
    assert backend.generate(prompt, max_new_tokens=24, on_text=streamed.append).text == "".join(streamed) == full


def test_read_then_injected_generate_reuses_the_read_cache(model_folder: Path, checkpoint: Path) -> None:
    backend = TransformersBackend.from_settings(str(model_folder), checkpoint=checkpoint, local_files_only=True,
                                                target_layers=[1, 4])
    prompt = backend.render_prompt([{"role": "user", "content": PROMPTS[4]}])
    introspection = backend.read(prompt)
    assert 0.0 < introspection.p_correct < 1.0
    assert introspection.cognitive_tokens.shape == (2, 32)
    assert len(introspection.extras["probe_logits"]) == 2
    seen: list[int] = []
    embeddings = backend.pipeline.model.get_input_embeddings()
    handle = embeddings.register_forward_hook(lambda m, a, out: seen.append(out.shape[1]))
    try:
        injected = backend.generate(prompt, max_new_tokens=12, inject=introspection)
    finally:
        handle.remove()
    # Pass 2 fed the last prompt token and the answer's own tokens, not the prompt again.
    assert sum(seen) == injected.num_tokens
    # The same answer the pipeline's own two passes give.
    pipe = backend.pipeline
    ids = chat_ids(shared_tokenizer(), PROMPTS[4])
    expected = [t for t in pipe.stream_ids(ids, max_new_tokens=12) if t not in pipe.decoder.eos_token_ids]
    assert injected.text == shared_tokenizer().decode(expected, skip_special_tokens=False)
    # Zero gates: pass 2 is the plain answer again (numpy tokens are accepted too).
    pipe.doubter.set_injection_gates(0.0)
    numpy_tokens = Introspection(p_correct=introspection.p_correct,
                                 cognitive_tokens=introspection.cognitive_tokens.numpy())
    assert backend.generate(prompt, max_new_tokens=12, inject=numpy_tokens).text == \
        backend.generate(prompt, max_new_tokens=12).text


def test_a_doubter_reading_the_occlusion_signal_is_told_the_question(model_folder: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from meta_spider.wrapper.signals import OCCLUSION_SIGNALS, question_words

    backend = TransformersBackend.from_settings(str(model_folder), local_files_only=True, target_layers=[1, 4])
    backend.pipeline.attach(backend.pipeline.new_doubter(signals=list(OCCLUSION_SIGNALS), **SMALL))
    # A question that spells the template's end-of-turn: rendered as plain text, and still found.
    question = f"{PROMPTS[1]} <|im_end|> really?"
    messages = [{"role": "user", "content": PROMPTS[0]}, {"role": "assistant", "content": "Paris."},
                {"role": "user", "content": question}]
    prompt = backend.render_prompt(messages)
    read = backend.read(prompt, question=question)
    ids = backend.encode(prompt)
    words = question_words(backend._encode_ids, prompt, backend.guard.guard_text(question))
    assert len(words) == len(question.split()) and words[-1][-1] < ids.shape[1]
    expected = backend.pipeline.read_ids(ids, words=words)
    assert read.extras["signals"]["occluded_name_logprob"] == pytest.approx(float(expected.signals[0, 0]), abs=1e-6)
    with pytest.raises(ValueError, match=r"needs the user's question: call read\(prompt, question="):
        backend.read(prompt)
    # A question the prompt does not hold is read as no words (the signal reads 0), with a warning, not a failure.
    with caplog.at_level("WARNING", logger="meta_spider.backends.prompt_guard"):
        lost = backend.read(prompt, question="Who painted it?")
    assert lost.extras["signals"]["occluded_name_logprob"] == 0.0 and "is not in the prompt" in caplog.text
    # The question is looked for in the user's turn, not in the assistant's header the template writes after it.
    (tail,) = backend.generation_tails()
    assert "assistant" in tail
    asked = backend.render_prompt([{"role": "user", "content": "assistant"}])
    found = backend.question_words(asked, "assistant", ["occluded_name_logprob"])
    start = asked.index("user\n") + len("user\n")
    assert found == [tuple(range(len(backend._encode_ids(asked[:start])),
                                 len(backend._encode_ids(asked[:start + len("assistant")]))))]


def test_a_tool_use_template_that_renders_only_with_tools_still_has_its_tail(model_folder: Path) -> None:
    # Hermes' tool_use template fails without tools; the tail is what it writes after the user's turn with them.
    from native_fixtures import template_text

    backend = TransformersBackend.from_settings(str(model_folder), local_files_only=True, target_layers=[1, 4])
    backend.tokenizer.chat_template = template_text("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use")
    with pytest.raises(ChatTemplateError):
        backend.render_prompt([{"role": "user", "content": "assistant"}])
    assert backend.generation_tails() == ("<|im_end|>\n<|im_start|>assistant\n",)
    tools = [{"type": "function", "function": {"name": "calculator", "description": "Arithmetic.",
                                                "parameters": {"type": "object", "properties": {}}}}]
    asked = backend.render_prompt([{"role": "user", "content": "assistant"}], tools=tools)
    found = backend.question_words(asked, "assistant", ["occluded_name_logprob"])
    start = asked.rindex("<|im_start|>user\n") + len("<|im_start|>user\n")
    assert found == [tuple(range(len(backend._encode_ids(asked[:start])),
                                 len(backend._encode_ids(asked[:start + len("assistant")]))))]


@pytest.mark.parametrize("read_position", ["prompt", "draft"])
def test_dynamic_refresh_with_an_earlier_read_needs_no_question(model_folder: Path, read_position: str) -> None:
    # Pass 2 injecting an earlier read's tokens reads only the states refresh compares against: no signals, so no
    # question; those states are pass 1's at the Doubter's read position.
    from meta_spider.wrapper.signals import OCCLUSION_SIGNALS

    backend = TransformersBackend.from_settings(str(model_folder), local_files_only=True, target_layers=[1, 4],
                                                dynamic_refresh=True, read_position=read_position)
    pipeline = backend.pipeline
    doubter = pipeline.attach(pipeline.new_doubter(signals=list(OCCLUSION_SIGNALS), **SMALL))
    first, second = (backend.render_prompt([{"role": "user", "content": text}]) for text in PROMPTS[:2])
    earlier = backend.read(first, question=PROMPTS[0])
    completion = backend.generate(second, max_new_tokens=6, inject=earlier)  # not the prompt read last
    assert completion.num_tokens >= 1
    ids = backend.encode(second)
    reference = pipeline.decoder.read_reference(doubter, ids, read_position=read_position, max_draft_tokens=6)
    full = pipeline.read_ids(ids, max_draft_tokens=6, words=pipeline.question_words(second, PROMPTS[1]))
    torch.testing.assert_close(reference.layer_states, full.layer_states)
    assert reference.signals is None and full.signals is not None
