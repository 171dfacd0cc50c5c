"""The loom's one progress display, as collection, evaluation and the world
build use it: a bar with its count and rate when enabled, nothing at all
when quiet."""

from __future__ import annotations

import io

from rich.console import Console

from meta_spider.loom.progress import ProgressDisplay, progress_bar
from meta_spider.loom.world.progress import BuildProgress


def console() -> tuple[Console, io.StringIO]:
    text = io.StringIO()
    return Console(file=text, width=120), text


def test_a_bar_shows_its_description_count_and_rate() -> None:
    screen, text = console()
    with progress_bar("collecting", 5, console=screen, completed=2) as bar:
        bar.advance(2)
        bar.advance()
    shown = text.getvalue()
    assert "collecting" in shown and "5/5" in shown and "q/s" in shown


def test_a_quiet_bar_prints_nothing(capsys) -> None:
    screen, text = console()
    for target in (screen, None):  # a given console, and rich's own (stdout)
        with progress_bar("collecting", 5, console=target, enabled=False) as bar:
            bar.advance(5)
            bar.update(completed=1, description="ignored")
    assert text.getvalue() == "" and capsys.readouterr().out == ""


def test_a_display_holds_a_stage_line_above_a_bar() -> None:
    screen, text = console()
    with ProgressDisplay(console=screen) as display:
        stage, steps = display.line("world"), display.line("train", 10, unit=None)
        stage.update(description="training base")
        steps.update(completed=10, description="train loss 1.234")
    lines = text.getvalue().splitlines()
    assert lines[0].startswith("training base") and "train loss 1.234" in lines[1] and "10/10" in lines[1]


def test_the_world_build_shows_its_stage_and_loss_and_is_quiet_when_disabled(capsys) -> None:
    with BuildProgress(enabled=True, total_steps=12) as progress:
        progress.stage("training base")
        for step in range(12):
            progress.step(step, 2.0 - step / 10)
    shown = capsys.readouterr().out
    assert "training base" in shown and "12/12" in shown and "train loss 0.900" in shown
    with BuildProgress(enabled=False, total_steps=12) as progress:
        progress.stage("training base")
        progress.step(11, 0.9)
    assert capsys.readouterr().out == ""
