"""``meta-agent chat`` in a real pseudo-terminal fed hostile session files
and paths: each ``/load`` says what is wrong and the chat goes on with its
session; a path holding rich markup is printed as it is."""

from __future__ import annotations

import json
from pathlib import Path

import pexpect
import pytest

from meta_spider.agentcore import Session, SessionFormatError
from test_chat_pty import spawn_chat

VALID_HEAD = '{"format": "meta-spider-session", "version": 1, '


def hostile_session_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words of the one-line complaint)."""
    files = {
        "binary": (b"\x89PNG\r\n\x1a\n\xff\xfe\x00garbage", "not UTF-8 text"),
        "deep": (("[" * 100_000 + "]" * 100_000).encode(), "nests too deeply"),
        "deep-message": ((VALID_HEAD + '"messages": ' + "[" * 200 + "]" * 200 + "}").encode(), "nests deeper"),
        "metadata-list": ((VALID_HEAD + '"messages": [], "metadata": [1, 2]}').encode(), "'metadata' must be"),
        "content-object": (
            (VALID_HEAD + '"messages": [{"role": "user", "content": {"text": 1}}]}').encode(),
            "content must be a string",
        ),
        "counter-bool": ((VALID_HEAD + '"messages": [], "call_counter": true}').encode(), "call_counter"),
        "results-object": ((VALID_HEAD + '"messages": [], "tool_results": {"a": 1}}').encode(), "'tool_results'"),
    }
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, (content, complaint) in files.items():
        path = folder / f"{name}.json"
        path.write_bytes(content)
        written[name] = (path, complaint)
    written["directory"] = (folder, "cannot be read")
    written["missing"] = (folder / "nothing-here.json", "cannot be read")
    return written


def test_every_hostile_session_file_is_a_typed_error(tmp_path: Path) -> None:
    for name, (path, complaint) in hostile_session_files(tmp_path).items():
        with pytest.raises(SessionFormatError) as info:
            Session.load(path)
        assert complaint in str(info.value), name
        assert str(path) in str(info.value), name


def test_the_chat_survives_hostile_loads_and_markup_in_paths(tmp_path: Path) -> None:
    files = hostile_session_files(tmp_path / "files")
    markup_folder = tmp_path / "a[" / "]b[bold]"  # the path reads ".../a[/]b[bold]/..."
    markup_folder.mkdir(parents=True)
    saved = markup_folder / "s[red].json"
    child = spawn_chat(tmp_path, ["First answer.", "Second answer."], {})
    try:
        child.expect("direct>")
        child.sendline("First question?")
        child.expect("First answer")
        child.expect("direct>")
        for name, (path, complaint) in files.items():
            child.sendline(f"/load '{path}'")
            child.expect_exact(complaint.split()[0])
            child.expect("kept")
            child.expect("direct>")
        child.sendline(f"/save '{saved}'")
        child.expect_exact("saved 2 messages to")
        child.expect_exact("a[/]b[bold]/s[red].json")
        child.expect("direct>")
        child.sendline("Second question?")  # the chat still works, on the same session
        child.expect("Second answer")
        child.expect("direct>")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    log = (tmp_path / "terminal.log").read_text()
    assert child.exitstatus == 0, log
    assert "Traceback" not in log
    assert [m["content"] for m in Session.load(saved).messages] == ["First question?", "First answer."]


def test_saving_where_no_file_can_be_written_is_a_typed_error(tmp_path: Path) -> None:
    session = Session.from_question("q")
    for target in (tmp_path / "missing-folder" / "s.json", tmp_path, tmp_path / "nul\0byte.json"):
        with pytest.raises(SessionFormatError.__mro__[1]) as info:  # AgentError
            session.save(target)
        assert "cannot save the session" in str(info.value)
    session.add_user("lone \ud800 surrogate")
    with pytest.raises(SessionFormatError.__mro__[1]):
        session.save(tmp_path / "s.json")


def test_a_valid_session_still_round_trips(tmp_path: Path) -> None:
    session = Session.from_question("q", system="s")
    session.add_assistant("a")
    session.metadata["note"] = {"nested": [1, 2]}
    assert Session.load(session.save(tmp_path / "s.json")).to_dict() == json.loads(session.to_json())
