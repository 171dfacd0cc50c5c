"""The hostile-input suite's campaign settings and figures.

Every hypothesis campaign here runs :func:`campaign_examples` cases: a few
hundred in CI, as many as ``META_SPIDER_HOSTILE_EXAMPLES`` says when it is set
(``META_SPIDER_HOSTILE_EXAMPLES=10000 pytest tests/hostile``). Each campaign
records its figures (cases tried, crashes, hangs, the slowest case) with
:func:`record_campaign`; pytest prints them at the end of the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import HealthCheck, settings

EXAMPLES_ENV_VAR = "META_SPIDER_HOSTILE_EXAMPLES"


@dataclass
class CampaignFigures:
    name: str
    cases: int = 0
    crashes: int = 0
    hangs: int = 0
    slowest_s: float = 0.0
    hang_s: float = 1.0
    """A case slower than this counts as a hang."""

    def add(self, seconds: float, *, crashed: bool = False) -> None:
        self.cases += 1
        self.crashes += int(crashed)
        self.hangs += int(seconds > self.hang_s)
        self.slowest_s = max(self.slowest_s, seconds)


_FIGURES: dict[str, CampaignFigures] = {}


def campaign_examples(ci_default: int) -> int:
    """Cases per campaign: ``ci_default``, or the environment variable's number."""
    value = os.environ.get(EXAMPLES_ENV_VAR, "").strip()
    return int(value) if value else ci_default


def campaign_settings(ci_default: int) -> settings:
    """Hypothesis settings for one bounded campaign (no per-case deadline:
    the campaign measures time itself and counts hangs)."""
    return settings(
        max_examples=campaign_examples(ci_default),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


def record_campaign(name: str, hang_s: float = 1.0) -> CampaignFigures:
    """The figures of campaign ``name`` (created on first use)."""
    return _FIGURES.setdefault(name, CampaignFigures(name, hang_s=hang_s))


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's own hook signature
    if not _FIGURES:
        return
    terminalreporter.section("hostile-input campaigns")
    for figures in _FIGURES.values():
        terminalreporter.write_line(
            f"{figures.name}: {figures.cases} cases, {figures.crashes} crashes, "
            f"{figures.hangs} over {figures.hang_s:g} s, slowest {figures.slowest_s:.3f} s"
        )
