"""``meta-agent chat`` through a real pseudo-terminal (pexpect).

The installed console script runs with its real terminal handling: raw-mode
input by prompt_toolkit at the prompt, and Ctrl-C as a SIGINT from the tty
driver during a generation. Rich styles each streamed chunk separately, so
the patterns below are words that arrive whole.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pexpect

from meta_spider.agentcore import Session
from meta_spider.plugins import PLUGINS_ENV_VAR

CAPITAL_CALL = '<tool_call>\n{"name": "lookup", "arguments": {"query": "capital of Veloria"}}\n</tool_call>'
CAPITAL_FACT = "The capital of Veloria is Amberhold."


def spawn_chat(tmp_path: Path, outputs: list, facts: dict) -> pexpect.spawn:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"outputs": outputs, "facts": facts}))
    env = {key: value for key, value in os.environ.items() if key != PLUGINS_ENV_VAR}
    # No cursor-position requests: pexpect is not a terminal emulator that answers them.
    env.update(PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", COLUMNS="120", LINES="40", HOME=str(tmp_path))
    command = str(Path(sys.executable).parent / "meta-agent")
    child = pexpect.spawn(
        command,
        ["chat", "--backend", "fake", "--script", str(script), "--history", str(tmp_path / "history")],
        env=env, encoding="utf-8", timeout=90, dimensions=(40, 120),
        # A suite started as a background job inherits SIGINT ignored, and so
        # would the child: Ctrl-C must reach it as it does in a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    child.logfile_read = (tmp_path / "terminal.log").open("w", encoding="utf-8")
    return child


def test_chat_in_a_real_terminal(tmp_path: Path) -> None:
    saved = tmp_path / "session.json"
    outputs = [
        CAPITAL_CALL,
        CAPITAL_FACT,
        {"text": "Once upon a time " + "and on " * 100, "delay_per_chunk": 0.1},
        "Amberhold lies on the river Sel.",
    ]
    child = spawn_chat(tmp_path, outputs, {"capital of Veloria": CAPITAL_FACT})
    try:
        child.expect("direct>")
        child.sendline("What is the capital of Veloria?")
        child.expect_exact('lookup({"query": "capital of Veloria"})')  # the call, with its arguments
        child.expect_exact(CAPITAL_FACT)  # the tool's result in the trace
        child.expect("answer")
        child.expect("direct>")

        # Typing "/" opens the completion menu; Tab takes the third-party
        # policy's name into the line.
        child.send("/policy ec")
        child.expect("echo-policy")  # the menu's entry
        child.send("\t")
        child.expect("ho-policy")  # the line redrawn: prompt_toolkit writes only what changed
        child.send("\r")
        child.expect("policy: ")
        child.expect("echo-policy>")
        child.sendline("echo me")
        child.expect("policy echo-policy")
        child.expect("echo-policy>")
        child.sendline("/policy direct")
        child.expect("direct>")
        child.sendline(f"/save {saved}")
        child.expect("saved 6 messages")
        child.expect("direct>")

        # Ctrl-C in the middle of a streamed generation stops it, not the chat.
        child.sendline("Tell me a long story.")
        child.expect("Once")
        child.sendintr()
        child.expect("interrupted")
        child.expect("direct>")
        child.sendline("Where is Amberhold?")
        child.expect("river")
        child.expect("direct>")

        child.sendline(f"/load {saved}")
        child.expect(r"loaded 6 messages \(2 turns\)")
        child.expect("direct>")
        child.sendcontrol("c")  # at the prompt: a hint, no exit
        child.expect("to leave")
        child.expect("direct>")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, (tmp_path / "terminal.log").read_text()
    session = Session.load(saved)
    assert [m["content"] for m in session.messages if m["role"] == "user"] == [
        "What is the capital of Veloria?",
        "echo me",
    ]
    assert session.messages[-1] == {"role": "assistant", "content": "echo me"}
    assert "Where is Amberhold?" in (tmp_path / "history").read_text()
