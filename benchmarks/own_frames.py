"""The test questions asked in wordings of the benchmarks' own: frames
written for them outside the world's grammar (``shift_own_frames.json``, per
attribute: new words, dashes, contractions), one per question drawn from the
question's id, so every benchmark that asks them asks the same ones.
Imported as ``from own_frames import own_question`` (the scripts run as
``python benchmarks/NAME.py``, with this folder first on the path)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

FRAMES: dict[str, list[str]] = json.loads(Path(__file__).with_name("shift_own_frames.json").read_text("utf-8"))
"""The frames, per attribute; each holds ``{name}`` once."""


def own_question(example: Any) -> str:
    """A world test question (``meta``: ``attribute``, ``entity``) in one of the benchmarks' own frames."""
    frame = random.Random(example.id).choice(FRAMES[example.meta["attribute"]])
    return frame.format(name=example.meta["entity"])
