"""Question wording of the embedded world: the frames a question about a
person is asked in, split into the frames the base and the Doubter train on
and held-out frames that only the ``test_paraphrase`` split uses; questions
the world cannot answer (``test_outside`` and the refusal chats); arithmetic
questions for the calculator transcripts; and one-edit misspellings of names.

Frames come from a small grammar: direct questions, indirect clauses under a
wrapper ("Tell me where {name} was born."), optional greetings before and
courtesies after. Every held-out frame uses at least one held-out part (a
direct form, a clause, a wrapper, a greeting or a courtesy), so no held-out
frame is ever a string the base or the Doubter saw. The content words stay
within the vocabulary the training frames use: the split tests wording, not
words the base never read. This module knows nothing about people or models.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FRAME_SETS",
    "FrameSet",
    "arithmetic_question",
    "draw_question",
    "misspell",
    "OUTSIDE_BANKS",
    "outside_questions",
    "question_frames",
    "typo",
    "unrecorded_questions",
]


@dataclass(frozen=True)
class FrameSet:
    """The parts of one attribute's questions: ``direct`` questions and
    ``clauses`` (indirect questions for a wrapper), each as (train, held out)."""

    direct: tuple[tuple[str, ...], tuple[str, ...]]
    clauses: tuple[tuple[str, ...], tuple[str, ...]]


def _frame_sets(path: Path) -> dict[str, FrameSet]:
    parts = json.loads(path.read_text(encoding="utf-8"))
    return {attribute: FrameSet(direct=(tuple(sets["direct"][0]), tuple(sets["direct"][1])),
                                clauses=(tuple(sets["clauses"][0]), tuple(sets["clauses"][1])))
            for attribute, sets in parts.items()}


FRAME_SETS: dict[str, FrameSet] = _frame_sets(Path(__file__).with_name("frames.json"))
"""Parts of the question frames per attribute, kept as data in ``frames.json``
(per attribute: ``direct`` and ``clauses``, each [train, held out])."""

_WRAPPERS: tuple[tuple[str, ...], tuple[str, ...]] = (
    ("Tell me {q}.", "Do you know {q}?", "Could you tell me {q}?", "I would like to know {q}.",
     "Please tell me {q}."),
    ("Can you say {q}?", "I wonder {q}.", "Any idea {q}?", "Would you know {q}?", "I need to know {q}."),
)
_GREETINGS: tuple[tuple[str, ...], tuple[str, ...]] = (
    ("Quick question: ", "Hi! ", "Hello, "),
    ("Hey there, ", "One more thing: ", "Excuse me, "),
)
_COURTESIES: tuple[tuple[str, ...], tuple[str, ...]] = ((" Thanks.", " Please."), (" Thank you!", " Cheers."))


def _capitalised(text: str) -> str:
    return text[0].upper() + text[1:] if text and not text.startswith("{") else text


_WH_ONLY = ("I wonder {q}.", "Any idea {q}?")
"""Wrappers that take a wh-clause ("where ... was born"), not a noun phrase."""
_WH_WORDS = ("where", "which", "what", "when", "who", "in ")


def _wrapped(wrappers: tuple[str, ...], clauses: tuple[str, ...]) -> list[str]:
    return [w.format(q=c) for w in wrappers for c in clauses
            if w not in _WH_ONLY or c.startswith(_WH_WORDS)]


def _cores(attribute: str, heldout: bool) -> list[str]:
    parts = FRAME_SETS[attribute]
    if not heldout:
        return list(parts.direct[0]) + _wrapped(_WRAPPERS[0], parts.clauses[0])
    return (list(parts.direct[1]) + _wrapped(_WRAPPERS[1], parts.clauses[0] + parts.clauses[1])
            + _wrapped(_WRAPPERS[0], parts.clauses[1]))


@functools.lru_cache(maxsize=None)
def question_frames(attribute: str, heldout: bool = False) -> tuple[str, ...]:
    """The bare frames (no greeting, no courtesy) of ``attribute``: the
    training frames, or the held-out ones. Each holds ``{name}`` once."""
    if attribute not in FRAME_SETS:
        raise ValueError(f"unknown attribute {attribute!r}; known: {sorted(FRAME_SETS)}")
    return tuple(_capitalised(core) for core in _cores(attribute, heldout))


def draw_question(attribute: str, name: str, rng: random.Random, heldout: bool = False,
                  decorate: float = 0.25, frames: int = 0) -> str:
    """One question about ``name``'s ``attribute`` in a random frame of the
    training (or held-out) set, with a greeting or a courtesy at rate
    ``decorate`` each; ``frames`` > 0 limits the training frames to the
    first ``frames``. A held-out question always has at least one held-out
    part, since every held-out frame does. Nothing is drawn for a rate of 0,
    so such a world's other draws stay where they were."""
    pool = question_frames(attribute, heldout)
    frame = rng.choice(pool if heldout or not frames else pool[:frames])
    index = 1 if heldout else 0
    if decorate > 0 and rng.random() < decorate:
        greeting = rng.choice(_GREETINGS[index])
        # After "Hi! " a sentence starts anew; a name and the pronoun "I" keep their capital anyway.
        keeps_case = greeting.endswith("! ") or frame.startswith(("{", "I "))
        frame = greeting + (frame if keeps_case else frame[0].lower() + frame[1:])
    if decorate > 0 and rng.random() < decorate:
        frame += rng.choice(_COURTESIES[index])
    return frame.format(name=name)


# ---------------------------------------------------------------- misspellings

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def misspell(name: str, rng: random.Random) -> str:
    """``name`` with one edit inside one of its words (a letter replaced,
    dropped, doubled or swapped with its neighbour), never the first letter
    and never giving ``name`` back."""
    words = name.split(" ")
    for _ in range(100):
        index = rng.randrange(len(words))
        word = words[index]
        if len(word) < 4:
            continue
        pos = rng.randrange(1, len(word) - 1)
        kind = rng.choice(("replace", "drop", "double", "swap"))
        if kind == "replace":
            edited = word[:pos] + rng.choice(_LETTERS.replace(word[pos].lower(), "")) + word[pos + 1:]
        elif kind == "drop":
            edited = word[:pos] + word[pos + 1:]
        elif kind == "double":
            edited = word[:pos] + word[pos] + word[pos:]
        else:
            edited = word[:pos] + word[pos + 1] + word[pos] + word[pos + 2:]
        if edited != word:
            return " ".join(words[:index] + [edited] + words[index + 1:])
    raise ValueError(f"cannot misspell {name!r}: no word of four letters or more")


# ---------------------------------------------------------------- outside the world

UNRECORDED: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] = ((
    "What is {name}'s favourite colour?", "What is the phone number of {name}?", "How tall is {name}?",
    "What is {name}'s favourite food?", "Where does {name} go on holiday?", "What is the name of {name}'s dog?",
    "How many children does {name} have?", "What car does {name} drive?", "What is {name}'s email address?",
    "Which school did {name} go to?", "What music does {name} like?", "Who is {name}'s best friend?",
), (
    "What is {name}'s shoe size?", "Which sport does {name} play?", "What is {name}'s middle name?",
    "How much does {name} earn?", "What is {name}'s favourite book?", "Where does {name} live now?",
), (
    "What is {name}'s blood type?", "What does {name} eat for breakfast?", "Which party does {name} vote for?",
    "What is {name}'s star sign?", "Which instrument does {name} play?", "What is {name}'s nickname?",
    "Where did {name} meet their partner?", "Which films does {name} like?", "What is {name}'s hobby?",
    "How old is {name}'s mother?", "What is {name}'s house number?", "Which newspaper does {name} read?",
))
"""Questions about people the world never answers (base, held out, Doubter).

The refusal chats ask the training ones. Without them the refusal sentence
never occurs in the corpus and the base cannot say it at all: with tied
embeddings, tokens never seen as targets end up where no hidden state makes
them likely (four of the sentence's tokens stayed under 1.5% probability
whatever the residual stream held), so no injection could make pass 2
refuse. Real chat models know the sentence; these chats give the world's
base the same starting point while every recorded attribute is still
always answered.

The held-out ones are ``test_outside``'s. The Doubter's bank is neither: the
base never read those questions, so its answers to them are what it does
with an unfamiliar question, the case the Doubter has to learn to refuse
(``WorldDataset(train_outside=...)``), while the held-out bank stays unseen
by both."""

_Bank = tuple[tuple[str, tuple[str, ...]], ...]

_GENERAL: tuple[_Bank, _Bank, _Bank] = ((
    ("What is the capital of {x}?", ("France", "Japan", "Brazil", "Canada", "Egypt", "Kenya", "Peru", "Norway",
                                     "India", "Mexico", "Spain", "Chile")),
    ("Who wrote {x}?", ("Hamlet", "Don Quixote", "War and Peace", "Moby Dick", "Pride and Prejudice",
                        "The Odyssey", "Faust", "Ulysses")),
    ("How many legs does {x} have?", ("a spider", "an ant", "a crab", "a horse", "a bird", "an octopus")),
    ("What is the chemical symbol of {x}?", ("gold", "iron", "sodium", "silver", "lead", "tin", "copper")),
    ("Who painted {x}?", ("the Mona Lisa", "The Starry Night", "The Scream", "Guernica", "The Night Watch")),
    ("What is the boiling point of {x}?", ("water", "ethanol", "nitrogen", "mercury")),
    ("How far is {x} from the Sun?", ("Mars", "Venus", "Jupiter", "the Earth", "Saturn")),
    ("Which language is spoken in {x}?", ("Brazil", "Austria", "Chile", "Quebec", "Flanders", "Mexico")),
    ("Who discovered {x}?", ("penicillin", "gravity", "radium", "America", "the electron")),
    ("What is the population of {x}?", ("London", "Tokyo", "Cairo", "Lagos", "Lima", "Berlin", "Sydney")),
    ("When did {x} happen?", ("the French Revolution", "the Moon landing", "the fall of Rome", "the Big Bang")),
    ("What is the tallest mountain in {x}?", ("Africa", "Europe", "Asia", "Japan", "Alaska")),
), (
    ("Who invented {x}?", ("the telephone", "the printing press", "the light bulb", "the bicycle", "the radio")),
    ("What is the currency of {x}?", ("Japan", "Sweden", "Mexico", "Turkey", "Poland", "Thailand")),
    ("How long is {x}?", ("the Nile", "the Amazon", "the Danube", "the Great Wall of China")),
    ("Who composed {x}?", ("the Moonlight Sonata", "The Four Seasons", "Carmen", "The Magic Flute")),
    ("What is the largest city in {x}?", ("Australia", "Turkey", "Canada", "Brazil", "Scotland")),
    ("Which planet is {x}?", ("closest to the Sun", "the largest", "known as the red planet")),
), (
    ("Who directed {x}?", ("Casablanca", "Psycho", "Metropolis", "Jaws", "Vertigo")),
    ("What is the national animal of {x}?", ("Scotland", "Australia", "India", "Wales", "China")),
    ("Which river flows through {x}?", ("Paris", "Vienna", "Cairo", "Budapest", "Baghdad")),
    ("What does {x} eat?", ("a panda", "a koala", "a blue whale", "a hedgehog", "a flamingo")),
    ("Who founded {x}?", ("Rome", "the Red Cross", "the Olympic Games", "Buddhism")),
    ("What year did {x} end?", ("the Second World War", "the Cold War", "the Roman Empire", "the Ice Age")),
    ("Who sang {x}?", ("Yesterday", "Imagine", "Respect", "Thriller", "Hallelujah")),
    ("What colour is {x}?", ("the sky on Mars", "a ruby", "chlorophyll", "copper sulphate")),
    ("How deep is {x}?", ("the Pacific Ocean", "Lake Baikal", "the Dead Sea", "the Mariana Trench")),
    ("Which ocean borders {x}?", ("Portugal", "Chile", "Somalia", "Iceland", "Vietnam")),
    ("What is the speed of {x}?", ("light", "sound", "a cheetah", "the wind in a hurricane")),
    ("Who was the first person to {x}?", ("walk on the Moon", "climb Everest", "reach the South Pole",
                                          "fly across the Atlantic")),
    ("What is the main ingredient of {x}?", ("hummus", "guacamole", "pesto", "tofu", "marzipan")),
    ("Which country is {x} in?", ("Timbuktu", "Machu Picchu", "Angkor Wat", "Petra", "the Alhambra")),
    ("Who played {x} in the first film?", ("James Bond", "Tarzan", "Dracula", "Sherlock Holmes")),
    ("What is the atomic number of {x}?", ("carbon", "oxygen", "helium", "uranium", "neon")),
    ("Which team won {x}?", ("the 1966 World Cup", "the first Tour de France", "the 1998 World Cup")),
    ("What does {x} stand for?", ("NASA", "UNESCO", "DNA", "laser", "radar")),
    ("How many {x}?", ("bones are in the human body", "players are on a rugby team", "keys does a piano have",
                       "strings does a violin have", "moons does Mars have")),
    ("Where was {x} signed?", ("the Magna Carta", "the Treaty of Versailles", "the Declaration of Independence")),
    ("What is the official language of {x}?", ("Brazil", "Iran", "Ethiopia", "Haiti", "Malta")),
    ("Who built {x}?", ("the pyramids of Giza", "the Eiffel Tower", "the Taj Mahal", "Stonehenge")),
    ("Which element is {x}?", ("a noble gas", "liquid at room temperature", "the lightest")),
    ("When was {x} invented?", ("paper", "the wheel", "the compass", "gunpowder", "the telescope")),
    ("What is the name of {x}?", ("the longest river in Asia", "the deepest lake in Africa",
                                  "the highest waterfall", "the largest moon of Saturn")),
    ("Who painted the ceiling of {x}?", ("the Sistine Chapel", "the Paris Opera")),
    ("What sport is played at {x}?", ("Wimbledon", "Augusta", "Lord's", "the Tour de France")),
    ("Why is {x}?", ("the sky blue", "the sea salty", "snow white", "grass green")),
))
"""General-knowledge questions about a world the embedded world is not (base, held out, Doubter)."""

OUTSIDE_BANKS: tuple[str, ...] = ("base", "heldout", "doubter")
"""The three banks of questions the world cannot answer: the base's refusal
chats, ``test_outside``, and the Doubter's training questions."""


def _bank_index(bank: str) -> int:
    if bank not in OUTSIDE_BANKS:
        raise ValueError(f"unknown bank of outside questions {bank!r}: choose one of {OUTSIDE_BANKS}")
    return OUTSIDE_BANKS.index(bank)


def outside_questions(bank: str = "base") -> tuple[str, ...]:
    """Every general-knowledge question of one bank (:data:`OUTSIDE_BANKS`)."""
    return tuple(template.format(x=x) for template, fillers in _GENERAL[_bank_index(bank)] for x in fillers)


def unrecorded_questions(bank: str = "base") -> tuple[str, ...]:
    """The ``{name}`` templates of one bank's questions about a person's unrecorded facts."""
    return UNRECORDED[_bank_index(bank)]


# ---------------------------------------------------------------- arithmetic

_ARITHMETIC: tuple[tuple[str, str], ...] = (
    ("What is {a}*{b}?", "{a}*{b}"), ("What is {a} * {b}?", "{a} * {b}"), ("What is {a} times {b}?", "{a} * {b}"),
    ("What is {a}+{b}?", "{a}+{b}"), ("What is {a} plus {b}?", "{a} + {b}"), ("What is {a}-{b}?", "{a}-{b}"),
    ("What is {a} minus {b}?", "{a} - {b}"), ("What is {a}/{b}?", "{a}/{b}"),
    ("Compute {a}*{b}.", "{a}*{b}"), ("Calculate {a} + {b}.", "{a} + {b}"), ("How much is {a}*{b}?", "{a}*{b}"),
    ("What is {a} multiplied by {b}?", "{a} * {b}"), ("What do you get for {a} * {b}?", "{a} * {b}"),
    ("What is {a} divided by {b}?", "{a} / {b}"), ("Work out {a}-{b}.", "{a}-{b}"),
)


def arithmetic_question(rng: random.Random) -> tuple[str, str]:
    """(question, calculator expression) for a random sum, difference,
    product or exact quotient of small whole numbers."""
    template, expression = rng.choice(_ARITHMETIC)
    a, b = rng.randrange(2, 100), rng.randrange(2, 100)
    if "/" in expression:  # whole quotients: a short result the base can copy
        a = b * rng.randrange(2, 20)
    return template.format(a=a, b=b), expression.format(a=a, b=b)


def typo(text: str, keep: str, rng: random.Random) -> str:
    """``text`` with one :func:`misspell` edit in a word outside ``keep``
    (the name the question is about); unchanged when no word qualifies."""
    head, sep, tail = text.partition(keep)
    words = [(i, w) for i, w in enumerate((head + "\0" + tail).split(" ")) if w.isalpha() and len(w) >= 4]
    if not words:
        return text
    index, word = rng.choice(words)
    parts = (head + "\0" + tail).split(" ")
    parts[index] = misspell(word, rng)
    return " ".join(parts).replace("\0", keep if sep else "")
