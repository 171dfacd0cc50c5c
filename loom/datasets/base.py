"""The common question-answer types: :class:`QAExample` (one question with
its reference answer), :class:`QAPrompt` (the chat messages and template
switches to ask it with) and :class:`SplitDataset`, a base class that holds
splits in memory. The :class:`QADataset` protocol every dataset plugin
satisfies is defined below the agent, in :mod:`meta_spider.plugins.datasets`.

A dataset is what ``register_datasets`` factories return: the collector asks
it for a split, builds each prompt with :meth:`QADataset.prompt`, and scores
the base's answer with :meth:`QADataset.check_fn` (which a judge can
replace). This module knows nothing about file formats or models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from meta_spider.loom.datasets.errors import UnknownSplitError
from meta_spider.loom.datasets.mcq import extract_choice_letter, format_mcq, mcq_template_kwargs
from meta_spider.loom.datasets.scoring import check_answer
from meta_spider.plugins.datasets import QADataset

__all__ = ["QADataset", "QAExample", "QAPrompt", "SplitDataset", "SPLIT_ALIASES", "as_bool", "canonical_split"]

SPLIT_ALIASES: dict[str, str] = {"val": "validation", "valid": "validation"}
"""Other spellings of split names, mapped to the canonical ones
(``train``, ``validation``, ``test``; MMLU adds ``dev`` and
``auxiliary_train``)."""


def canonical_split(name: str) -> str:
    """``"val"`` -> ``"validation"``; other names unchanged."""
    return SPLIT_ALIASES.get(name, name)


def as_bool(value: Any, name: str) -> bool:
    """A bool option that may arrive as text from a command line
    (``"true"``/``"false"``, ``"1"``/``"0"``, ``"yes"``/``"no"``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ValueError(f"{name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class QAExample:
    """One question and what counts as a right answer.

    ``answer`` is the reference answer (for multiple choice, the letter of
    the right choice); ``aliases`` are other accepted answers; ``choices``
    the options of a multiple-choice question (None for free-form);
    ``meta`` anything else the source carried (subject, entity, bucket...).
    """

    id: str
    question: str
    answer: str
    aliases: tuple[str, ...] = ()
    choices: Optional[tuple[str, ...]] = None
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("id", "question", "answer"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"QAExample.{name} must be a non-empty string, got {value!r}")
        if isinstance(self.aliases, str) or not all(isinstance(a, str) for a in self.aliases):
            raise ValueError(f"QAExample.aliases must be a sequence of strings, got {self.aliases!r}")
        object.__setattr__(self, "aliases", tuple(self.aliases))
        if self.choices is not None:
            if isinstance(self.choices, str) or len(self.choices) < 2 or not all(
                isinstance(c, str) for c in self.choices
            ):
                raise ValueError(f"QAExample.choices must hold at least two strings, got {self.choices!r}")
            object.__setattr__(self, "choices", tuple(self.choices))
        if not isinstance(self.meta, Mapping):
            raise ValueError(f"QAExample.meta must be a mapping, got {self.meta!r}")

    @property
    def ground_truths(self) -> tuple[str, ...]:
        """The answer followed by its aliases (what a ``check_fn`` accepts)."""
        return (self.answer, *self.aliases)

    def to_dict(self) -> dict[str, Any]:
        """The JSONL record of this example (see :func:`export_jsonl`)."""
        record: dict[str, Any] = {"id": self.id, "question": self.question, "answer": self.answer}
        if self.aliases:
            record["aliases"] = list(self.aliases)
        if self.choices is not None:
            record["choices"] = list(self.choices)
        if self.meta:
            record["meta"] = dict(self.meta)
        return record

    @classmethod
    def from_mapping(cls, record: Mapping[str, Any], default_id: str = "") -> "QAExample":
        """Build from a record such as the world's ``QAItem.to_dict()``:
        ``id``, ``question``, ``answer``, optional ``aliases``, ``choices`` and
        ``meta``; every other key goes into ``meta``. Raises ValueError."""
        known = {"id", "question", "answer", "aliases", "choices", "meta"}
        meta = dict(record.get("meta") or {})
        meta.update({k: v for k, v in record.items() if k not in known})
        choices = record.get("choices")
        return cls(
            id=str(record.get("id", default_id)),
            question=record.get("question"),  # type: ignore[arg-type]
            answer=record.get("answer"),  # type: ignore[arg-type]
            aliases=tuple(record.get("aliases") or ()),
            choices=None if choices is None else tuple(choices),
            meta=meta,
        )


@dataclass(frozen=True)
class QAPrompt:
    """How to ask one question: chat ``messages`` for the model's chat
    template and the ``template_kwargs`` to render them with (for example
    ``{"enable_thinking": False, "thinking": False}`` to switch reasoning off
    under both names templates use)."""

    messages: tuple[Mapping[str, str], ...]
    template_kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def as_text(self) -> str:
        """The messages' contents joined by blank lines, for a base used
        without a chat template."""
        return "\n\n".join(m["content"] for m in self.messages)


class SplitDataset:
    """A dataset whose splits are lists held in memory.

    Subclasses set the splits in their constructor (a split may be given
    as a function returning its examples, built on first use: one that is
    costly to build and only some commands read) and override
    :meth:`prompt` / :meth:`check_fn` where the defaults do not fit. The
    defaults: a free-form question is the user message and is scored by
    normalised exact match against the answer and aliases (first line only);
    a multiple-choice question (``choices`` set) is formatted with lettered
    choices (letter only and reasoning switched off when ``mcq_direct``) and
    scored by the strictly read letter. ``options`` are the keyword arguments that
    rebuild the dataset (recorded in ``run.json``).
    """

    def __init__(
        self,
        name: str,
        splits: Mapping[str, Sequence[QAExample] | Callable[[], Sequence[QAExample]]],
        options: Optional[Mapping[str, Any]] = None,
        system_prompt: Optional[str] = None,
        mcq_direct: bool = False,
    ) -> None:
        if not name:
            raise ValueError(f"a dataset needs a name, got {name!r}")
        if not isinstance(mcq_direct, bool):
            raise ValueError(f"mcq_direct must be a bool, got {mcq_direct!r}")
        self.name = name
        self.options = dict(options or {})
        self.system_prompt = system_prompt
        self.mcq_direct = mcq_direct
        self._splits: dict[str, Any] = {canonical_split(k): v if callable(v) else list(v)
                                        for k, v in splits.items()}

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self._splits)

    def add_split(self, name: str,
                  examples: Sequence[QAExample] | Callable[[], Sequence[QAExample]]) -> None:
        """Add (or replace) split ``name``, asked as every split is (:meth:`prompt`);
        ``examples`` may be a function building them on first use."""
        self._splits[canonical_split(name)] = examples if callable(examples) else list(examples)

    def split(self, name: str) -> list[QAExample]:
        key = canonical_split(name)
        if key not in self._splits:
            raise UnknownSplitError(self.name, name, self.splits)
        if callable(self._splits[key]):  # built on first use
            self._splits[key] = list(self._splits[key]())
        return list(self._splits[key])

    def _messages(self, user_text: str) -> tuple[dict[str, str], ...]:
        messages = [{"role": "user", "content": user_text}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return tuple(messages)

    def prompt(self, example: QAExample) -> QAPrompt:
        if example.choices is not None:
            text = format_mcq(example.question, example.choices, example.meta.get("subject"), self.mcq_direct)
            return QAPrompt(messages=self._messages(text), template_kwargs=mcq_template_kwargs(self.mcq_direct))
        return QAPrompt(messages=self._messages(example.question))

    def check_fn(self, prediction: str, example: QAExample) -> bool:
        if example.choices is not None:
            return extract_choice_letter(prediction, len(example.choices)) == example.answer
        return check_answer(prediction, example.ground_truths)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "options": dict(self.options),
            "splits": list(self.splits),
            "sizes": {name: len(self.split(name)) for name in self.splits},
        }

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(self.split(name))}" for name in self.splits)
        return f"{type(self).__name__}(name={self.name!r}, {sizes})"
