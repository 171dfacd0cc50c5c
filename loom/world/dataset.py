"""The world's QA as a loom dataset (name ``world``): train / validation /
test splits of :class:`~meta_spider.loom.datasets.QAExample`, the shifted
test splits (``test_paraphrase``, ``test_misspelt``, ``test_outside``; an
example the world cannot answer has ``meta["answerable"]`` false) and the
questions asked with their lookup (``train_lookup``, ``validation_lookup``:
the conversation up to the record the lookup finds, what the gate after a
lookup is fitted and calibrated on), scored by normalised exact match with
aliases, plus a JSONL export and the ``register_world_dataset(register)``
body of the ``register_datasets`` hook.

The QA is regenerated from preset and seed (cheap and deterministic); the
trained base is built or loaded only when asked (``build=True``). This module
knows nothing about collection or training.
"""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from meta_spider.loom.datasets import QAExample, QAPrompt, SplitDataset, export_jsonl

from .chat import LOOKUP_TOOL
from .frames import draw_question, misspell, outside_questions, typo, unrecorded_questions
from .generator import (ALL_SPLITS, Person, QAItem, generate_world, is_tool_only, lookup_exchange,
                        outside_item)
from .knowledge import KnowledgeBase
from .presets import Preset, get_preset
from .scorer import check_answer

if TYPE_CHECKING:
    from .cache import WorldArtifacts

DATASET_NAME = "world"

_VARIANT = re.compile(r"-v\d+$")
"""The suffix of a question's id asked in another frame (:func:`_wording_variants`)."""
LOOKUP_QUESTIONS = 240
"""At most this many answerable questions of train and of validation are
asked with their lookup (drawn at random; every unanswerable train question
about a person is too)."""


def to_example(item: QAItem) -> QAExample:
    """A world QA item as a loom ``QAExample`` (metadata in ``meta``)."""
    record = item.to_dict()
    record["aliases"] = [a for a in item.aliases if a != item.answer]
    return QAExample.from_mapping(record)


class WorldDataset(SplitDataset):
    """QA of one world; ``model_dir`` is the trained base's folder when the
    dataset was created with ``build=True``."""

    def __init__(self, preset: "str | Preset" = "small", seed: int = 0, model_dir: Optional[Path] = None,
                 train_frames: int = 1, train_typos: float = 0.0, train_outside: int = 0,
                 train_misspelt: float = 0.0, validation_frames: int = 1) -> None:
        spec = get_preset(preset) if isinstance(preset, str) else preset
        for name, frames in (("train_frames", train_frames), ("validation_frames", validation_frames)):
            if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {frames!r}")
        for name, share in (("train_typos", train_typos), ("train_misspelt", train_misspelt)):
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {share!r}")
        if isinstance(train_outside, bool) or not isinstance(train_outside, int) or train_outside < 0:
            raise ValueError(f"train_outside must be a whole number >= 0, got {train_outside!r}")
        world = generate_world(spec.world, seed)
        # Tool-only people are a device of the base's training (name copying),
        # not part of the population questions are asked about: kept in, they
        # would be most of the train split, all unanswerable.
        qa = {split: [item for item in world.qa[split] if not is_tool_only(item.person_id, spec.world)]
              for split in ALL_SPLITS}
        first_frame, validation_first = list(qa["train"]), list(qa["validation"])
        qa["train"] = _wording_variants(qa["train"], spec, seed, train_frames, train_typos)
        qa["validation"] = _wording_variants(qa["validation"], spec, seed, validation_frames, 0.0, "validation")
        if train_misspelt:
            qa["train"] += _misspelt_variants(qa["train"], seed, train_misspelt)
        if train_outside:
            asked = {item.person_id for item in qa["train"]}
            unanswerable = outside_training_items([p for p in world.people if p.id in asked], train_outside, seed)
            qa["train"] += unanswerable
            first_frame += unanswerable
        splits = {split: [to_example(item) for item in items] for split, items in qa.items()}
        # Built on first use: the typo-forgiving lookups of misspelt names cost
        # about half a second, and only collection reads these splits.
        splits["train_lookup"] = lambda: _train_with_lookup(first_frame, spec, seed, self.knowledge_base())
        splits["validation_lookup"] = lambda: _validation_with_lookup(validation_first, qa["validation"], seed,
                                                                      self.knowledge_base())
        options: dict[str, Any] = {"preset": spec.name, "seed": seed}
        if train_frames > 1 or train_typos:
            options.update(train_frames=train_frames, train_typos=train_typos)
        if train_outside:
            options.update(train_outside=train_outside)
        if train_misspelt:
            options.update(train_misspelt=train_misspelt)
        if validation_frames > 1:
            options.update(validation_frames=validation_frames)
        super().__init__(DATASET_NAME, splits, options=options)
        self.model_dir = model_dir
        self._people = world.people
        calculator = spec.world.calculator_transcripts > 0
        self.agent_tools: tuple[str, ...] = ("calculator", "lookup") if calculator else ("lookup",)
        """The tools the base's tool chats offered: the agent offers only these
        by default (a third tool's schema in the prompt derails the base)."""
        self.agent_direct_tools: tuple[str, ...] = ("calculator",) if calculator else ()
        """The base answers a calculator question by restating the result
        ("The answer is N."), and copies some results wrongly: the agent
        gives the calculator's result as the answer instead."""
        self.agent_ground_arguments = True
        """The base miscopies names and numbers from the question into its
        calls ("Beastruin Gromton" for "Beastruinwyn Gromton"): the agent
        grounds them in the question's words."""
        self.agent_grounded_tools: tuple[str, ...] = ("lookup", "calculator") if calculator else ("lookup",)
        """A lookup is of a person the question names: one of a name the
        base made up ("Who invented the telephone?" -> "Zithan Bruford")
        searches the question instead, which names no one there, even when a
        person's name is a typo away from the made-up one; a
        calculation is of the question's numbers: a number the base
        miscopied an edit away is put back ("What's 12 plus 30?" -> "14 +
        30" runs "12 + 30"), and a calculation it made up computes the
        arithmetic the question states plainly, or, for a question with no
        number and no operation word ("what year was he born" -> "30 - 34"),
        searches the question."""
        self.agent_context = "question"
        """The base was trained on one question per chat: the agent shows it
        only the current question (earlier turns change its answers)."""

    lookup_tool_schema = LOOKUP_TOOL
    """The ``lookup`` tool as the world's base saw it in its tool transcripts."""

    def knowledge_base(self) -> KnowledgeBase:
        """The world's full truth, behind the agent's ``lookup`` tool."""
        return KnowledgeBase.from_people(self._people)

    def check_fn(self, prediction: str, example: QAExample) -> bool:
        """Normalised exact match against the answer sentence and aliases."""
        return check_answer(prediction, example.ground_truths)

    def prompt(self, example: QAExample) -> QAPrompt:
        """The question alone, or for a question asked with its lookup the
        conversation up to the record the lookup found."""
        lookup = example.meta.get("lookup")
        if lookup is None:
            return super().prompt(example)
        return QAPrompt(messages=tuple(lookup_exchange(example.question, lookup["query"], lookup["record"])))


def lookup_example(item: QAItem, query: str, record: str) -> QAExample:
    """``item`` asked with its lookup: the name looked up (``query``) and the
    ``record`` found, in ``meta["lookup"]``; the same true answer (for a
    question the world cannot answer, still the refusal sentence)."""
    return with_lookup(to_example(item), query, record)


def with_lookup(example: QAExample, query: str, record: str) -> QAExample:
    """``example`` asked with its lookup: id suffixed ``-lookup``, the name
    looked up and the record found in ``meta["lookup"]`` (what
    :meth:`WorldDataset.prompt` renders)."""
    return dataclasses.replace(example, id=f"{example.id}-lookup",
                               meta={**example.meta, "lookup": {"query": query, "record": record}})


def _chosen_for_lookup(items: Sequence[QAItem], seed: int, split: str) -> list[QAItem]:
    """The questions of ``split`` about a person to ask with their lookup: up
    to :data:`LOOKUP_QUESTIONS` answerable ones drawn at random, and every
    unanswerable one, in their order."""
    answerable = [index for index, item in enumerate(items) if item.answerable and item.person_id >= 0]
    if len(answerable) > LOOKUP_QUESTIONS:
        answerable = random.Random(f"{seed}-{split}-lookup").sample(answerable, LOOKUP_QUESTIONS)
    chosen = set(answerable)
    return [item for index, item in enumerate(items)
            if index in chosen or (not item.answerable and item.person_id >= 0)]


def _validation_with_lookup(first_frame: Sequence[QAItem], asked: Sequence[QAItem], seed: int,
                            knowledge: KnowledgeBase) -> list[QAExample]:
    """The chosen validation questions (of ``first_frame``) asked with their
    lookup in every frame ``asked`` holds them in."""
    chosen = {item.id for item in _chosen_for_lookup(first_frame, seed, "validation")}
    return [lookup_example(item, item.entity, knowledge.lookup(item.entity))
            for item in asked if _VARIANT.sub("", item.id) in chosen]


def _train_with_lookup(items: Sequence[QAItem], spec: Preset, seed: int, knowledge: KnowledgeBase) -> list[QAExample]:
    """The chosen train questions asked with their lookup three ways: as
    asked, in another training frame (an unanswerable one: another question
    of the Doubter's bank), and with the name misspelt by one edit, looked up
    as misspelt (the knowledge base forgives it, or the question is left out)
    -- the gate learns what a record that answers looks like in more than one
    wording, and under a name written wrong."""
    rng = random.Random(f"{seed}-train-lookup-variants")
    unrecorded = unrecorded_questions("doubter")
    out: list[QAExample] = []
    for item in _chosen_for_lookup(items, seed, "train"):
        name = item.entity
        record = knowledge.lookup(name)
        out.append(lookup_example(item, name, record))
        reworded = (draw_question(item.attribute, name, rng, decorate=spec.world.decorate, frames=spec.world.frames)
                    if item.answerable else rng.choice(unrecorded).format(name=name))
        out.append(lookup_example(dataclasses.replace(item, id=f"{item.id}-f", question=reworded), name, record))
        wrong = misspell(name, rng)
        found = knowledge.lookup(wrong)
        if found is not None and name in item.question:
            out.append(lookup_example(dataclasses.replace(item, id=f"{item.id}-m",
                                                          question=item.question.replace(name, wrong)), wrong, found))
    return out


def _wording_variants(items: list[QAItem], spec: Preset, seed: int, frames: int, typos: float,
                    split: str = "train") -> list[QAItem]:
    """Each question of ``split`` asked in ``frames`` training frames (the
    first as generated), a share ``typos`` of them with one typo outside the
    name: wordings for the Doubter to learn from (train) or to calibrate on
    (validation), never a held-out frame."""
    if frames == 1 and not typos:
        return items
    rng = random.Random(f"{seed}-{split}-variants")
    out: list[QAItem] = []
    for item in items:
        for index in range(frames):
            question = item.question if index == 0 else draw_question(
                item.attribute, item.entity, rng, decorate=spec.world.decorate, frames=spec.world.frames)
            if typos and rng.random() < typos:
                question = typo(question, item.entity, rng)
            out.append(item if (index, question) == (0, item.question)
                       else dataclasses.replace(item, id=f"{item.id}-v{index}", question=question))
    return out


def _misspelt_variants(items: list[QAItem], seed: int, share: float) -> list[QAItem]:
    """A share ``share`` of the train questions asked once more with the
    name misspelt by one edit (:func:`.frames.misspell`, the rule of
    ``test_misspelt``, drawn with an RNG of its own): the same fact, so the
    Doubter sees when the base still knows a name written wrong."""
    rng = random.Random(f"{seed}-train-misspelt")
    out = []
    for item in items:
        if rng.random() < share and item.entity in item.question:
            wrong = misspell(item.entity, rng)
            out.append(dataclasses.replace(item, id=f"{item.id}-m", question=item.question.replace(item.entity, wrong)))
    return out


def outside_training_items(people: Sequence[Person], count: int, seed: int) -> list[QAItem]:
    """``count`` train questions the world cannot answer, from the Doubter's
    own bank (:data:`.frames.OUTSIDE_BANKS`): up to half of them general
    knowledge (each question of the bank at most once), the rest about an
    unrecorded fact of one of ``people``. The base never read them, so its
    answers show the Doubter what it does with an unfamiliar question;
    ``test_outside``'s bank stays unseen."""
    general = list(outside_questions("doubter"))
    if count and not people and count > len(general):
        raise ValueError(f"{count} unanswerable train questions need people to ask about: only "
                         f"{len(general)} general ones exist")
    rng = random.Random(f"{seed}-doubter-outside")
    rng.shuffle(general)
    general = general[:count // 2] if people else general[:count]
    unrecorded = unrecorded_questions("doubter")
    items = [outside_item(question, "train", f"g{index}") for index, question in enumerate(general)]
    for index in range(count - len(general)):
        person = rng.choice(people)
        items.append(outside_item(rng.choice(unrecorded).format(name=person.name), "train", f"p{person.id}-{index}",
                                  person))
    return items


def world_dataset(preset: str = "small", seed: int = 0, build: bool = False, train_frames: int = 1,
                  train_typos: float = 0.0, train_outside: int = 0, train_misspelt: float = 0.0,
                  validation_frames: int = 1) -> WorldDataset:
    """Factory registered as ``world``; with ``build`` the base is built (or
    loaded from the cache) and its folder recorded as ``model_dir``;
    ``train_frames`` and ``train_typos`` vary the train questions' wording
    (:func:`_wording_variants`); ``train_outside`` adds that many questions the
    world cannot answer to the train split
    (:func:`outside_training_items`), ``train_misspelt`` a share of the train
    questions again with the name misspelt (:func:`_misspelt_variants`);
    ``validation_frames`` asks each validation question in that many
    training frames (what the answer threshold and the scope gate's veto
    are calibrated on)."""
    model_dir = None
    if build:
        from .cache import build_world

        model_dir = build_world(preset, seed=seed, progress=False).model_dir
    # Passed on as given: the dataset checks each (a cast here would read 1.5 frames as 1).
    return WorldDataset(preset=preset, seed=seed, model_dir=model_dir, train_frames=train_frames,
                        train_typos=train_typos, train_outside=train_outside, train_misspelt=train_misspelt,
                        validation_frames=validation_frames)


def export_qa_jsonl(artifacts: "WorldArtifacts", split: str, path: str | Path) -> int:
    """Write the QA of ``split`` of a built world as JSONL in the format the
    ``jsonl`` dataset reads; returns the number of records."""
    dataset = WorldDataset(preset=artifacts.preset, seed=artifacts.seed, model_dir=artifacts.model_dir)
    return export_jsonl(dataset, split, path)


def register_world_dataset(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Body of the ``register_datasets`` hook: registers ``world``, whose
    factory takes ``preset``, ``seed`` and ``build``."""
    register(DATASET_NAME, world_dataset)
