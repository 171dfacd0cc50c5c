"""The scripted demo runs end to end through the real loop and tools."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console

from meta_spider.agentcore.demo import run_demo


def test_demo_traces(monkeypatch) -> None:
    monkeypatch.delenv("META_SPIDER_PLUGINS", raising=False)
    buffer = io.StringIO()
    finals = run_demo(Console(file=buffer, width=120, color_system=None))
    assert [final.outcome for final in finals] == ["answer", "answer", "refuse"]
    # StopBackend cut the scripted reply where it ran on into a user turn.
    assert finals[0].text == "17 * 23 + 4 = 395."
    output = buffer.getvalue()
    assert "calculator -> 395" in output
    assert "lookup -> The capital of Veloria is Amberhold." in output
    assert "lookup -> No entry found for 'moons of Veloria'." in output


def test_demo_module_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "meta_spider.agentcore.demo"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "=> refuse: I don't know." in result.stdout
