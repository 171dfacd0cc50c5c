"""The test backends: FakeBackend's script and history, StopBackend's cut,
and the backends plugin's lazy registration."""

from __future__ import annotations

import subprocess
import sys

import pytest

from meta_spider.backends import (
    BackendCapabilityError,
    Completion,
    FakeBackend,
    InferenceBackend,
    Introspection,
    StopBackend,
    cut_at_stop,
)


def test_fake_backend_script_history_and_reads() -> None:
    probe = Introspection(p_correct=0.25)
    backend = FakeBackend(["first"]).enqueue(Completion("second", finish_reason="length", num_tokens=7), probe)
    assert isinstance(backend, InferenceBackend)
    assert backend.generate("p1").text == "first"
    second = backend.generate("p2", max_new_tokens=9, stop=("</s>",), inject=probe)
    assert (second.text, second.finish_reason, second.num_tokens) == ("second", "length", 7)
    assert backend.history == ["p1", "p2"]
    assert backend.calls[1].stop == ("</s>",) and backend.calls[1].inject is probe
    assert backend.read("p3") is probe and backend.reads == ["p3"]
    with pytest.raises(BackendCapabilityError, match="enqueue an Introspection"):
        backend.read("p4")
    with pytest.raises(TypeError, match="enqueue"):
        backend.enqueue(42)  # type: ignore[arg-type]


def test_fake_backend_streams_in_chunks() -> None:
    pieces: list[str] = []
    FakeBackend(["abcdefghij"], stream_chunk=3).generate("p", on_text=pieces.append)
    assert pieces == ["abc", "def", "ghi", "j"]


def test_fake_backend_renders_with_a_custom_template() -> None:
    backend = FakeBackend(chat_template="{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}")
    assert backend.render_prompt([{"role": "user", "content": "hi"}]) == "[user]hi"
    backend.chat_template = None
    with pytest.raises(BackendCapabilityError, match="chat_template"):
        backend.render_prompt([{"role": "user", "content": "hi"}])


def test_stop_backend_cuts_at_the_turn_end() -> None:
    inner = FakeBackend(["Paris.<|im_end|>\n<|im_start|>user\nThanks!", "No stop here.", "a\nuser: b <|im_end|>"])
    backend = StopBackend(inner)
    cut = backend.generate("p")
    assert (cut.text, cut.finish_reason) == ("Paris.", "stop")
    whole = backend.generate("p")
    assert (whole.text, whole.finish_reason) == ("No stop here.", "eos")
    assert backend.generate("p").text == "a"  # the earliest stop wins
    # The stop strings were passed down, so a capable backend stops early.
    assert "<|im_end|>" in inner.calls[0].stop
    assert backend.chat_template == inner.chat_template and backend.name == "stop(fake)"


def test_stop_backend_custom_stops_and_validation() -> None:
    backend = StopBackend(FakeBackend(["one END two"]), stop=["END"])
    assert backend.generate("p", stop=["two"]).text == "one "
    with pytest.raises(ValueError, match="the string"):
        StopBackend(FakeBackend(), stop="END")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        StopBackend(FakeBackend(), stop=[""])


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
def test_stop_backend_never_streams_part_of_a_marker(chunk: int) -> None:
    text = "The answer is 4.<|im_end|>\n<|im_start|>user\nmore"
    pieces: list[str] = []
    completion = StopBackend(FakeBackend([text], stream_chunk=chunk)).generate("p", on_text=pieces.append)
    assert "".join(pieces) == completion.text == "The answer is 4."
    assert all("<" not in piece for piece in pieces)


def test_stop_backend_flushes_a_held_back_tail() -> None:
    # "<|im" could start a marker, so it is held back; at the end it is text.
    pieces: list[str] = []
    completion = StopBackend(FakeBackend(["x <|im"], stream_chunk=1)).generate("p", on_text=pieces.append)
    assert "".join(pieces) == completion.text == "x <|im"


def test_cut_at_stop() -> None:
    assert cut_at_stop("abc", ["x"]) == ("abc", None)
    assert cut_at_stop("a</s>b[INST]", ["[INST]", "</s>"]) == ("a", "</s>")


def test_backend_registry_is_lazy() -> None:
    # Listing and resolving names must not import torch, llama_cpp or the heavy backend modules.
    code = (
        "import sys\n"
        "from meta_spider.plugins import ComponentRegistry, make_plugin_manager\n"
        "registry = ComponentRegistry.from_plugins(make_plugin_manager(), 'register_backends', 'backend')\n"
        "fake = registry.create('fake', outputs=['hi'])\n"
        "assert fake.generate('p').text == 'hi'\n"
        "heavy = [m for m in ('torch', 'llama_cpp', 'transformers', 'meta_spider.backends.transformers',"
        " 'meta_spider.backends.llamacpp') if m in sys.modules]\n"
        "print(sorted(registry.names()), heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['fake', 'llamacpp', 'transformers'] []"
