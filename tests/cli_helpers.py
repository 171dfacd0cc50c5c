"""Run a console script's command group in this process as the script
runs it: through the host CLI, whose one-line handling of project errors
(``<prog>: error: ...``, status 1) is part of what a command's user sees."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from meta_spider.agentcore.cli import run_group


@dataclass
class HostResult:
    """What the script did: its exit status and its stdout then stderr."""

    exit_code: int
    output: str


def run_host(capsys: pytest.CaptureFixture[str], group: str, prog_name: str, *args: object) -> HostResult:
    """``prog_name ARGS`` (the host's ``group`` group), output captured by ``capsys``."""
    capsys.readouterr()  # what the test printed before is not the command's
    with pytest.raises(SystemExit) as info:
        run_group(group, [str(arg) for arg in args], prog_name)
    captured = capsys.readouterr()
    return HostResult(int(info.value.code or 0), captured.out + captured.err)


def metaloom(capsys: pytest.CaptureFixture[str], *args: object) -> HostResult:
    """``metaloom ARGS``."""
    return run_host(capsys, "loom", "metaloom", *args)


def metadeploy(capsys: pytest.CaptureFixture[str], *args: object) -> HostResult:
    """``metadeploy ARGS``."""
    return run_host(capsys, "deploy", "metadeploy", *args)
