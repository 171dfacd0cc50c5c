"""The chat REPL in-process: prompt_toolkit pipe input, a recorded rich console.

The loop, the plugins, the tools and the scripted fake backend are all real;
only the terminal is replaced.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from meta_spider.agentcore import Session
from meta_spider.agentcore.chat import ChatLoop
from meta_spider.agentcore.launch import AgentLauncher
from meta_spider.agentcore.script import parse_script
from meta_spider.plugins import hookimpl
from meta_spider.policies import LatentDecision

CAPITAL_CALL = '<tool_call>\n{"name": "lookup", "arguments": {"query": "capital of Veloria"}}\n</tool_call>'
CAPITAL_FACT = "The capital of Veloria is Amberhold."
FACTS = {"capital of Veloria": CAPITAL_FACT}
SLOW = {"text": "Once upon a time " + "and on " * 60, "delay_per_chunk": 0.05}


def launcher_for(pm: Any, outputs: list[Any]) -> AgentLauncher:
    return AgentLauncher(pm, script=parse_script({"outputs": outputs, "facts": FACTS}))


def recorded_console() -> Console:
    return Console(file=io.StringIO(), width=120, color_system=None, highlight=False)


def run_chat(launcher: AgentLauncher, keys: str, tmp_path: Path, **options: Any) -> tuple[ChatLoop, str]:
    """Type ``keys`` (Enter is \\r) into a fresh ChatLoop and run it to the end."""
    console = recorded_console()
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        chat = ChatLoop(launcher, console=console, input=pipe, output=DummyOutput(),
                        history=tmp_path / "history", **options)
        assert chat.run() == 0
    return chat, console.file.getvalue()  # type: ignore[attr-defined]


def fake_of(launcher: AgentLauncher) -> Any:
    return launcher.make_backend("fake").inner  # the ScriptedBackend under its StopBackend


def test_tools_marks_the_tools_whose_result_is_the_answer(plugin_manager, tmp_path: Path) -> None:
    launcher = AgentLauncher(plugin_manager, script=parse_script({"outputs": [], "facts": FACTS}),
                             direct_tools=["calculator"])
    _chat, out = run_chat(launcher, "/tools\r/exit\r", tmp_path)
    assert "The result of calculator is the answer" in out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    assert rows["calculator"].rstrip(" │").endswith("yes") and not rows["lookup"].rstrip(" │").endswith("yes")


def test_ask_trace_switch_policy_save_load_tools(plugin_manager, tmp_path: Path) -> None:
    saved = tmp_path / "session.json"
    launcher = launcher_for(plugin_manager, [CAPITAL_CALL, CAPITAL_FACT, "Amberhold lies on the river Sel."])
    keys = (
        "hello from the echo policy\r"
        "/policy direct\r"
        "What is the capital of Veloria?\r"
        f"/save {saved}\r"
        "/reset\r"
        f"/load {saved}\r"
        "/tools\r"
        "Where is Amberhold?\r"
        "/exit\r"
    )
    chat, out = run_chat(launcher, keys, tmp_path, policy="echo-policy")

    # The third-party policy ran through the loop and answered.
    assert chat.turns[0].policy == "echo-policy" and chat.turns[0].text == "hello from the echo policy"
    assert "policy echo-policy" in out
    # After /policy direct: the trace shows the call with its arguments, the result, then the answer.
    assert "policy: direct" in out
    assert 'tool call lookup({"query": "capital of Veloria"})' in out
    assert "tool [ok] lookup" in out and f"result  {CAPITAL_FACT}" in out
    assert [(t.policy, t.outcome, t.tool_calls, t.model_steps) for t in chat.turns[:2]] == [
        ("echo-policy", "answer", 0, 1),
        ("direct", "answer", 1, 2),
    ]
    # /save wrote the session; /load restored exactly it.
    on_disk = Session.load(saved)
    assert [m["role"] for m in on_disk.messages] == ["user", "assistant", "user", "assistant", "tool", "assistant"]
    assert f"loaded {len(on_disk.messages)} messages (2 turns)" in out
    # /tools lists the built-ins and the third-party tool.
    for tool in ("calculator", "lookup", "reverse_text"):
        assert tool in out
    # The question after /load was asked in the restored conversation.
    last_prompt = fake_of(launcher).history[-1]
    assert "hello from the echo policy" in last_prompt and CAPITAL_FACT in last_prompt
    assert last_prompt.rstrip().endswith("Where is Amberhold?<|im_end|>\n<|im_start|>assistant")
    assert chat.session.messages[-1] == {"role": "assistant", "content": "Amberhold lies on the river Sel."}
    assert (tmp_path / "history").read_text().count("What is the capital of Veloria?") == 1


def test_policy_completion_includes_builtin_and_third_party(plugin_manager, tmp_path: Path) -> None:
    chat, _ = run_chat(launcher_for(plugin_manager, []), "/exit\r", tmp_path)
    completer = chat.prompt_session.completer
    assert completer is not None

    def candidates(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text), CompleteEvent(completion_requested=True))]

    assert {"direct", "echo-policy"} <= set(candidates("/policy "))
    assert candidates("/policy ec") == ["echo-policy"]
    assert {"fake", "transformers", "llamacpp"} <= set(candidates("/backend "))
    assert candidates("/trace o") == ["on", "off"]
    assert candidates("/ba") == ["/backend"]
    assert {"/tools", "/policy", "/save", "/load", "/reset", "/help", "/exit"} <= set(candidates("/"))
    assert candidates("plain question") == []


@dataclass
class ReadThenAnswer:
    """A two-pass-shaped test policy: pass 1 reads P(correct), pass 2 generates with it injected."""

    def decide(self, session: Any, backend: Any, tools: Any) -> LatentDecision:
        prompt = backend.render_prompt(list(session.messages), tools=tools.schemas() or None)
        introspection = backend.read(prompt)
        completion = backend.generate(prompt, inject=introspection)
        return LatentDecision(completion.text, p_correct=introspection.p_correct,
                              confident=introspection.p_correct >= 0.5, introspection=introspection,
                              metadata={"policy": "read-then-answer"})


def two_pass_plugin() -> types.ModuleType:
    module = types.ModuleType("two_pass_test_plugin")

    @hookimpl
    def register_policies(register):  # type: ignore[no-untyped-def]
        register("read-then-answer", ReadThenAnswer)

    module.register_policies = register_policies  # type: ignore[attr-defined]
    return module


def test_p_correct_gauge_and_a_plugin_policy_chosen_by_name(plugin_manager, tmp_path: Path) -> None:
    plugin_manager.register(two_pass_plugin(), name="two-pass-test")
    # No facts: with no lookup tool over a real knowledge base, an uncertain decision is refused.
    launcher = AgentLauncher(plugin_manager, script=parse_script(
        {"outputs": [{"p_correct": 0.85}, "Amberhold.", {"p_correct": 0.2}, "I don't know."]}))
    assert "read-then-answer" in launcher.policy_names()
    chat, out = run_chat(launcher, "capital?\rmoons?\r/exit\r", tmp_path, policy="read-then-answer")
    assert "P(correct) █████████████████░░░ 0.85  confident" in out
    assert "P(correct) ████░░░░░░░░░░░░░░░░ 0.20  uncertain" in out
    assert [t.outcome for t in chat.turns] == ["answer", "refuse"]
    # Pass 2 got pass 1's introspection.
    assert [call.inject.p_correct for call in fake_of(launcher).calls] == [0.85, 0.2]


def test_streamed_text_the_agent_sets_aside_is_marked(plugin_manager, tmp_path: Path) -> None:
    # The doubter policy: pass 2 writes a guess under a low P(correct); with a lookup over real facts the
    # renderer asks for the call instead, so the streamed guess is not the reply and the chat says so.
    call = CAPITAL_CALL.split("\n", 1)[1]  # the renderer prefills "<tool_call>\n"
    launcher = launcher_for(plugin_manager, [{"p_correct": 0.2}, "Emberhold.", call, CAPITAL_FACT,
                                             {"p_correct": 0.9}, "Amberhold."])
    chat, out = run_chat(launcher, "/trace off\rWhat is the capital of Veloria?\rAnd again?\r/exit\r", tmp_path,
                         policy="doubter")
    assert [(t.outcome, t.text) for t in chat.turns] == [("answer", CAPITAL_FACT), ("answer", "Amberhold.")]
    guess = out.index("Emberhold.")
    note = out.index("(set aside: p_correct 0.200 below threshold", guess)
    assert "the agent calls a tool instead)" in out[note:] and out.index(CAPITAL_FACT, note) > note
    # A confident step's streamed text is the reply: no note.
    assert out.count("set aside") == 1
    # Without a lookup over real facts the unsure guess is refused instead.
    launcher = AgentLauncher(plugin_manager, script=parse_script({"outputs": [{"p_correct": 0.2}, "Emberhold."]}))
    chat, out = run_chat(launcher, "What is the capital of Veloria?\r/exit\r", tmp_path, policy="doubter")
    assert chat.turns[0].outcome == "refuse"
    assert out.index("(set aside: p_correct 0.200 below threshold") > out.index("Emberhold.")
    assert "the agent refuses instead)" in out


def test_trace_off_shows_only_the_answer(plugin_manager, tmp_path: Path) -> None:
    launcher = launcher_for(plugin_manager, [CAPITAL_CALL, CAPITAL_FACT])
    chat, out = run_chat(launcher, "/trace off\rWhat is the capital of Veloria?\r/trace\r/exit\r", tmp_path)
    assert "trace: off" in out and "trace is off" in out
    assert "step 1" not in out and "tool [ok]" not in out
    assert "answer" in out and chat.turns[0].text == CAPITAL_FACT


def test_multiline_input_with_backslash_and_escape_enter(plugin_manager, tmp_path: Path) -> None:
    keys = "first line\\\rsecond line\rthird\x1b\rfourth\r/exit\r"
    chat, _ = run_chat(launcher_for(plugin_manager, []), keys, tmp_path, policy="echo-policy")
    assert [t.text for t in chat.turns] == ["first line\nsecond line", "third\nfourth"]


def test_ctrl_c_at_the_prompt_does_not_leave_and_ctrl_d_does(plugin_manager, tmp_path: Path) -> None:
    chat, out = run_chat(launcher_for(plugin_manager, []), "half a questi\x03still here\r\x04", tmp_path,
                         policy="echo-policy")
    assert "(Ctrl-D or /exit to leave)" in out
    assert [t.text for t in chat.turns] == ["still here"]  # the cleared line was never asked


def _interrupt_when_streaming(chat_box: list[ChatLoop], console: Console, action: str) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if chat_box and "Once" in console.file.getvalue():  # type: ignore[attr-defined]
                if action == "signal":
                    os.kill(os.getpid(), signal.SIGINT)  # exactly what Ctrl-C in a terminal does
                else:
                    chat_box[0].interrupt()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("action", ["signal", "interrupt"])
def test_interrupting_a_generation_keeps_the_session(plugin_manager, tmp_path: Path, action: str,
                                                     request: pytest.FixtureRequest) -> None:
    # Ctrl-C raises KeyboardInterrupt only where SIGINT is not ignored (a suite
    # started as a background job inherits it ignored): restore it here.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    launcher = launcher_for(plugin_manager, [CAPITAL_CALL, CAPITAL_FACT, SLOW, "Amberhold lies on the river Sel."])
    console = recorded_console()
    chat_box: list[ChatLoop] = []
    with create_pipe_input() as pipe:
        chat = ChatLoop(launcher, console=console, input=pipe, output=DummyOutput(), history=tmp_path / "h")
        chat_box.append(chat)
        first = chat.ask("What is the capital of Veloria?")
        before = [dict(m) for m in chat.session.messages]
        watcher = _interrupt_when_streaming(chat_box, console, action)
        started = time.monotonic()
        turn = chat.ask("Tell me a long story.")
        watcher.join()
        assert time.monotonic() - started < 30  # stopped long before the ~7 s the stream would take... or a hang
        assert turn.outcome == "interrupted"
        assert chat.session.messages == before  # earlier turns kept, the interrupted question rolled back
        after = chat.ask("Where is Amberhold?")
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert first.outcome == "answer" and after.outcome == "answer"
    assert "interrupted" in out and "Once" in out
    assert chat.session.messages[-1]["content"] == "Amberhold lies on the river Sel."
    assert [t.outcome for t in chat.turns] == ["answer", "interrupted", "answer"]
    prompt = fake_of(launcher).history[-1]
    assert "Tell me a long story." not in prompt and CAPITAL_FACT in prompt


def test_backend_errors_are_reported_and_the_session_rolls_back(plugin_manager, tmp_path: Path) -> None:
    # One scripted output for two questions: the second exhausts the fake backend.
    launcher = launcher_for(plugin_manager, ["Amberhold."])
    chat, out = run_chat(launcher, "first?\rsecond?\r/backend nosuch\r/backend\r/policy nosuch\r/exit\r", tmp_path)
    assert [t.outcome for t in chat.turns] == ["answer", "error"]
    assert "error: FakeBackend has no scripted output left" in out
    assert [m["content"] for m in chat.session.messages] == ["first?", "Amberhold."]
    assert "cannot switch to backend 'nosuch': no backend named 'nosuch'" in out
    assert "backend: fake; available: fake, llamacpp, transformers" in out
    assert "cannot switch to policy 'nosuch'" in out and chat.policy_name == "direct"


def test_load_reports_a_bad_file_and_keeps_the_session(plugin_manager, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    chat, out = run_chat(launcher_for(plugin_manager, []), f"kept\r/load {bad}\r/load\r/exit\r", tmp_path,
                         policy="echo-policy")
    said = " ".join(out.split())  # rich wraps long lines
    assert f"cannot load session from {bad}" in said and "format is 'something-else'" in said
    assert "the current session is kept" in said
    assert "usage: /load FILE" in out
    assert [m["content"] for m in chat.session.messages] == ["kept", "kept"]


def test_the_run_system_prompt_opens_the_session(plugin_manager, tmp_path: Path) -> None:
    launcher = AgentLauncher(plugin_manager, script=parse_script(["Amberhold."]), system_prompt="Answer briefly.")
    chat, _ = run_chat(launcher, "capital?\r/reset\r/exit\r", tmp_path)
    assert fake_of(launcher).history[0].startswith("<|im_start|>system\nAnswer briefly.")
    assert chat.session.messages == []  # /reset started over
