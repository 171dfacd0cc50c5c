"""``meta-agent chat`` in a real pseudo-terminal, with the fake backend
streaming a tool call chunk by chunk: the terminal shows the model's words
and the parsed call in the trace, never the call's markup."""

from __future__ import annotations

import re
from pathlib import Path

import pexpect
from test_chat_pty import spawn_chat

CALL = '<tool_call>\n{"name": "lookup", "arguments": {"query": "capital of Veloria"}}\n</tool_call>'
FACT = "The capital of Veloria is Amberhold."


def test_a_streamed_call_shows_no_markup_on_screen(tmp_path: Path) -> None:
    outputs = [
        # The call arrives in 4-character chunks, slowly enough that each
        # reaches the terminal on its own.
        {"text": "Let me look that up.\n" + CALL, "delay_per_chunk": 0.01},
        {"text": "Amberhold, by the lookup.", "delay_per_chunk": 0.01},
    ]
    child = spawn_chat(tmp_path, outputs, {"capital of Veloria": FACT})
    try:
        child.expect("direct>")
        child.sendline("What is the capital of Veloria?")
        child.expect_exact('lookup({"query": "capital of Veloria"})')  # the call, parsed, in the trace
        child.expect("answer")
        child.expect("direct>")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    # Rich styles each streamed piece on its own: read the text without the escapes.
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", (tmp_path / "terminal.log").read_text(encoding="utf-8"))
    assert child.exitstatus == 0, screen
    assert "Let me look that up." in screen  # the model's own words streamed
    assert "Amberhold, by the lookup." in screen
    for markup in ("<tool_call>", "</tool_call>", "<tool_", '{"name": "lookup"', '"arguments"'):
        assert markup not in screen, (markup, screen)
