"""The world's QA as a loom dataset (name ``world``): train / validation /
test splits of :class:`~meta_spider.loom.datasets.QAExample` and the shifted
test splits (``test_paraphrase``, ``test_misspelt``, ``test_outside``; an
example the world cannot answer has ``meta["answerable"]`` false), scored by
normalised exact match with aliases, plus a JSONL export and the
``register_world_dataset(register)`` body of the ``register_datasets`` hook.

The QA is regenerated from preset and seed (cheap and deterministic); the
trained base is built or loaded only when asked (``build=True``). This module
knows nothing about collection or training.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from meta_spider.loom.datasets import QAExample, SplitDataset, export_jsonl

from .chat import LOOKUP_TOOL
from .generator import ALL_SPLITS, QAItem, generate_world, is_tool_only
from .knowledge import KnowledgeBase
from .presets import Preset, get_preset
from .scorer import check_answer

if TYPE_CHECKING:
    from .cache import WorldArtifacts

DATASET_NAME = "world"


def to_example(item: QAItem) -> QAExample:
    """A world QA item as a loom ``QAExample`` (metadata in ``meta``)."""
    record = item.to_dict()
    record["aliases"] = [a for a in item.aliases if a != item.answer]
    return QAExample.from_mapping(record)


class WorldDataset(SplitDataset):
    """QA of one world; ``model_dir`` is the trained base's folder when the
    dataset was created with ``build=True``."""

    def __init__(self, preset: "str | Preset" = "small", seed: int = 0, model_dir: Optional[Path] = None) -> None:
        spec = get_preset(preset) if isinstance(preset, str) else preset
        world = generate_world(spec.world, seed)
        # Tool-only people are a device of the base's training (name copying),
        # not part of the population questions are asked about: kept in, they
        # would be most of the train split, all unanswerable.
        splits = {split: [to_example(item) for item in world.qa[split] if not is_tool_only(item.person_id, spec.world)]
                  for split in ALL_SPLITS}
        super().__init__(DATASET_NAME, splits, options={"preset": spec.name, "seed": seed})
        self.model_dir = model_dir
        self._people = world.people

    lookup_tool_schema = LOOKUP_TOOL
    """The ``lookup`` tool as the world's base saw it in its tool transcripts."""

    def knowledge_base(self) -> KnowledgeBase:
        """The world's full truth, behind the agent's ``lookup`` tool."""
        return KnowledgeBase.from_people(self._people)

    def check_fn(self, prediction: str, example: QAExample) -> bool:
        """Normalised exact match against the answer sentence and aliases."""
        return check_answer(prediction, example.ground_truths)


def world_dataset(preset: str = "small", seed: int = 0, build: bool = False) -> WorldDataset:
    """Factory registered as ``world``; with ``build`` the base is built (or
    loaded from the cache) and its folder recorded as ``model_dir``."""
    model_dir = None
    if build:
        from .cache import build_world

        model_dir = build_world(preset, seed=seed, progress=False).model_dir
    return WorldDataset(preset=preset, seed=seed, model_dir=model_dir)


def export_qa_jsonl(artifacts: "WorldArtifacts", split: str, path: str | Path) -> int:
    """Write the QA of ``split`` of a built world as JSONL in the format the
    ``jsonl`` dataset reads; returns the number of records."""
    dataset = WorldDataset(preset=artifacts.preset, seed=artifacts.seed, model_dir=artifacts.model_dir)
    return export_jsonl(dataset, split, path)


def register_world_dataset(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Body of the ``register_datasets`` hook: registers ``world``, whose
    factory takes ``preset``, ``seed`` and ``build``."""
    register(DATASET_NAME, world_dataset)
