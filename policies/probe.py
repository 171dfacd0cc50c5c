"""The ``probe`` baseline: the Doubter's P(correct) without the injection.

Pass 1 is the same read as the ``doubter`` policy (P(correct) from the
Doubter's probe head) and the same calibrated threshold gates it, but the
answer is the base's plain generation: no cognitive tokens are injected.
Comparing ``probe`` with ``doubter`` separates what the confidence gate buys
from what the injection buys. Everything else (threshold sources, prompts,
the skipped gate after a tool result) is :class:`DoubterPolicy`'s.

This module knows nothing about how the probe was trained; it never imports
torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from meta_spider.policies.doubter import DoubterPolicy

__all__ = ["ProbePolicy"]


@dataclass
class ProbePolicy(DoubterPolicy):
    """Gate on pass 1's P(correct); answer with the plain base (no injection)."""

    name: ClassVar[str] = "probe"
    inject: ClassVar[bool] = False
