"""Deterministic generator of the embedded fictional world.

From a :class:`~.presets.WorldSpec` and a seed it invents people (names,
gender, birth city and year, profession, employer), gives each a number of
biography mentions from a skewed bucket distribution, splits people into
train / validation / test, and writes four kinds of text: biographies in
varied templates with pronoun sentences, QA chats about train people,
``lookup`` tool-use transcripts about train people, and refusal chats
(questions about facts the world never records, answered with the project's
refusal sentence). Validation and test people appear only in biographies
(or nowhere, in the ``unseen`` bucket).

Answers are pronoun sentences ("She was born in Kuba."): earlier trials found
that bare values or name-repeating answers stop a small base from using what
it memorised from biographies.

Version 3 asks every question in one of many frames (:mod:`.frames`), keeps
held-out frames, misspelt names and questions from outside the world for the
shift splits, leaves one attribute of some people out of every biography
(a familiar name whose fact the base never read), and adds calculator
transcripts and general-knowledge refusals to the chats.

Everything derives from ``random.Random(seed)``, so a seed reproduces the
world byte for byte. Bump :data:`GENERATOR_VERSION` whenever output changes.
This module knows nothing about tokenisation or models.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

from meta_spider.policies.actions import REFUSAL_SENTENCE

from .chat import BOS_TOKEN, CALCULATOR_TOOL, LOOKUP_TOOL, calculator_transcript, lookup_call, render_chat
from .frames import draw_question, misspell, outside_questions, question_frames, typo, unrecorded_questions
from .presets import BUCKETS, WorldSpec

GENERATOR_VERSION = "3"
"""Version of the generated data; part of the cache key."""

ATTRIBUTES: tuple[str, ...] = ("birth_city", "birth_year", "profession", "employer")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
SHIFT_SPLITS: tuple[str, ...] = ("test_paraphrase", "test_misspelt", "test_outside")
"""Held-out shifts of the test people: questions in frames no training text
uses, names with one edit, and questions the world cannot answer."""
ALL_SPLITS: tuple[str, ...] = SPLITS + SHIFT_SPLITS
OUTSIDE = "outside"
"""The ``attribute`` of a question the world holds no answer to."""

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "gr", "kl", "tr", "st", "sh", "th", "h", "j")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "io", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "m", "k")
_FEMALE_ENDINGS = ("a", "ia", "ine", "elle", "ra", "eth", "wyn")
_MALE_ENDINGS = ("o", "an", "ek", "us", "ard", "in", "or")
_SURNAME_ENDINGS = ("son", "ley", "ford", "mark", "ridge", "ton", "well", "var", "ski", "berg", "lund", "ez")
_CITY_ENDINGS = ("a", "holm", "grad", "port", "ville", "burg", "mouth", "ara", "ene", "field")
_COUNTRY_ENDINGS = ("ia", "land", "stan", "mar", "ovia", "eria")
_COMPANY_SUFFIXES = ("Mills", "Works", "Foundry", "Press", "Logistics", "Textiles", "Mining",
                     "Shipping", "Brewery", "Labs", "Bank", "Farms", "Motors", "Pharma")
PROFESSIONS: tuple[str, ...] = (
    "potter", "surveyor", "baker", "engineer", "librarian", "pilot", "chemist", "carpenter",
    "architect", "nurse", "translator", "geologist", "tailor", "accountant", "fisher",
    "astronomer", "welder", "journalist", "botanist", "mechanic", "teacher", "glassblower",
    "cartographer", "dentist",
)
_PRONOUNS = {"female": ("she", "her"), "male": ("he", "his")}


@dataclass(frozen=True)
class Person:
    """One invented person and everything true about them."""

    id: int
    name: str
    gender: str
    birth_city: str
    birth_country: str
    birth_year: int
    profession: str
    employer: str
    bucket: str
    mentions: int
    split: str
    obscure: str = ""
    """An attribute no biography of this person states ("" for none)."""

    def value(self, attribute: str) -> str:
        """The true value of ``attribute`` as text."""
        return str(getattr(self, attribute))

    @property
    def subject(self) -> str:
        """Capitalised subject pronoun ("She"/"He")."""
        return _PRONOUNS[self.gender][0].capitalize()


@dataclass(frozen=True)
class QAItem:
    """A question about one attribute of one person, with its canonical
    pronoun-sentence answer and the accepted aliases. An item that is not
    ``answerable`` asks what the world does not hold (``attribute`` is
    :data:`OUTSIDE`): its answer is the refusal sentence."""

    id: str
    person_id: int
    entity: str
    attribute: str
    question: str
    answer: str
    aliases: tuple[str, ...]
    value: str
    bucket: str
    mentions: int
    split: str
    answerable: bool = True
    obscure: bool = False
    """The person's biographies never state this attribute."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (the JSONL export format)."""
        return {
            "id": self.id, "question": self.question, "answer": self.answer,
            "aliases": list(self.aliases), "entity": self.entity, "attribute": self.attribute,
            "value": self.value, "bucket": self.bucket, "mentions": self.mentions, "split": self.split,
            "answerable": self.answerable, "obscure": self.obscure,
        }


@dataclass
class World:
    """The generated world: people, geography, texts and QA."""

    seed: int
    spec: WorldSpec
    people: list[Person]
    countries: dict[str, list[str]]
    employers: list[str]
    documents: list[dict[str, str]] = field(default_factory=list)
    qa: dict[str, list[QAItem]] = field(default_factory=dict)

    def person(self, name: str) -> Person | None:
        """The person called exactly ``name``, if any."""
        return self._by_name().get(name)

    def _by_name(self) -> dict[str, Person]:
        cache = getattr(self, "_name_index", None)
        if cache is None:
            cache = {p.name: p for p in self.people}
            self._name_index = cache
        return cache


def is_tool_only(person_id: int, spec: WorldSpec) -> bool:
    """Whether the person with ``person_id`` is one of the tool-only train
    people (ids from ``spec.n_people`` on): they occur only in lookup
    transcripts, to teach copying a name into a call, and belong to no
    biography bucket the world's QA population is drawn from."""
    return person_id >= spec.n_people


def _word(rng: random.Random, syllables: int, ending: str) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)]
    return ("".join(parts) + ending).capitalize()


def _unique_words(rng: random.Random, count: int, endings: tuple[str, ...], taken: set[str],
                  syllables: tuple[int, ...] = (1, 2)) -> list[str]:
    words: list[str] = []
    while len(words) < count:
        word = _word(rng, rng.choice(syllables), rng.choice(endings))
        if word not in taken and 3 <= len(word) <= 12:
            taken.add(word)
            words.append(word)
    return words


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def _stratified_assign(rng: random.Random, n: int, shares: tuple[float, ...], labels: tuple[str, ...]) -> list[str]:
    counts = [int(round(share * n)) for share in shares]
    counts[0] += n - sum(counts)
    assigned = [label for label, count in zip(labels, counts) for _ in range(count)]
    rng.shuffle(assigned)
    return assigned


def generate_people(spec: WorldSpec, rng: random.Random) -> tuple[list[Person], dict[str, list[str]], list[str]]:
    """Invent the geography, the companies and the people of a world."""
    taken: set[str] = set()
    country_names = _unique_words(rng, spec.n_countries, _COUNTRY_ENDINGS, taken)
    countries = {c: _unique_words(rng, spec.cities_per_country, _CITY_ENDINGS, taken) for c in country_names}
    city_country = {city: country for country, cities in countries.items() for city in cities}
    cities = sorted(city_country)
    employers = [f"{w} {rng.choice(_COMPANY_SUFFIXES)}" for w in _unique_words(rng, spec.n_employers, ("",), taken, (2,))]
    buckets = _stratified_assign(rng, spec.n_people, spec.bucket_shares, BUCKETS)
    mentions_of = dict(zip(BUCKETS, spec.bucket_mentions))
    # Split within each bucket so every split sees the same mention distribution.
    splits: list[str] = [""] * spec.n_people
    for bucket in BUCKETS:
        members = [i for i, b in enumerate(buckets) if b == bucket]
        for i, split in zip(members, _stratified_assign(rng, len(members), spec.split_shares, SPLITS)):
            splits[i] = split
    # Tool-only people are train people outside the biographies.
    buckets += [BUCKETS[-1]] * spec.tool_people
    splits += ["train"] * spec.tool_people
    names: set[str] = set()
    people: list[Person] = []
    for pid in range(spec.n_people + spec.tool_people):
        gender = rng.choice(("female", "male"))
        while True:
            first = _word(rng, rng.choice(spec.name_syllables),
                          rng.choice(_FEMALE_ENDINGS if gender == "female" else _MALE_ENDINGS))
            last = _word(rng, rng.choice(spec.name_syllables), rng.choice(_SURNAME_ENDINGS))
            name = f"{first} {last}"
            if name not in names and first not in taken and last not in taken and len(name) <= 24:
                names.add(name)
                break
        city = rng.choice(cities)
        mentioned = pid < spec.n_people and mentions_of[buckets[pid]] > 0
        obscure = ""
        if spec.obscure_share > 0 and mentioned and rng.random() < spec.obscure_share:
            obscure = rng.choice(ATTRIBUTES)
        people.append(Person(
            id=pid, name=name, gender=gender, birth_city=city, birth_country=city_country[city],
            birth_year=rng.randrange(1900, 2000), profession=rng.choice(PROFESSIONS),
            employer=rng.choice(employers), bucket=buckets[pid], mentions=mentions_of[buckets[pid]],
            split=splits[pid], obscure=obscure,
        ))
    return people, countries, employers


# ---------------------------------------------------------------- sentences
# Each template takes S (subject: name or pronoun), P (possessive: "Name's" or
# "her"), and the values. The first form of each attribute is the QA answer
# form, so biographies teach exactly the sentence shape QA asks for.

_SENTENCES: dict[str, tuple[str, ...]] = {
    "birth_city": (
        "{S} was born in {city}.",
        "{S} was born in {city}, {country}.",
        "{S} was born in the city of {city}.",
        "{S} comes from {city} in {country}.",
        "{P} birthplace is {city}.",
    ),
    "birth_year": (
        "{S} was born in {year}.",
        "{S} was born in the year {year}.",
        "{P} year of birth is {year}.",
    ),
    "profession": (
        "{S} works as {a} {profession}.",
        "{S} is {a} {profession} by trade.",
        "{P} profession is {profession}.",
    ),
    "employer": (
        "{S} works for {employer}.",
        "{S} is employed by {employer}.",
        "{P} employer is {employer}.",
    ),
}
_JOINED: tuple[tuple[tuple[str, ...], str], ...] = (
    (("birth_city", "birth_year"), "{S} was born in {city} in {year}."),
    (("profession", "employer"), "{S} works as {a} {profession} for {employer}."),
    (("birth_year", "birth_city"), "Born in {year}, {s} grew up in {city}."),
)

UNRECORDED_QUESTIONS: tuple[str, ...] = unrecorded_questions("base")
"""Questions about facts no document records, which the refusal chats ask
(why the base needs them: :data:`.frames.UNRECORDED`)."""


def _fill(template: str, person: Person, use_name: bool) -> str:
    pron, poss = _PRONOUNS[person.gender]
    subject = person.name if use_name else pron
    possessive = f"{person.name}'s" if use_name else poss
    text = template.format(
        S=subject, s=pron, P=possessive, city=person.birth_city, country=person.birth_country,
        year=person.birth_year, a=_article(person.profession), profession=person.profession,
        employer=person.employer,
    )
    return text[0].upper() + text[1:]


def answer_sentence(person: Person, attribute: str) -> str:
    """The canonical pronoun-sentence answer about ``attribute``."""
    return _fill(_SENTENCES[attribute][0], person, use_name=False)


def biography(person: Person, rng: random.Random) -> str:
    """One biography mentioning every attribute but the person's obscure
    one, in a random order and phrasing; the first sentence names the
    person, later ones mostly use pronouns."""
    remaining = [a for a in ATTRIBUTES if a != person.obscure]
    rng.shuffle(remaining)
    sentences: list[str] = []
    while remaining:
        joined = [t for attrs, t in _JOINED if list(attrs) == remaining[:2]]
        if joined and rng.random() < 0.5:
            template = joined[0]
            remaining = remaining[2:]
        else:
            template = rng.choice(_SENTENCES[remaining[0]])
            remaining = remaining[1:]
        use_name = not sentences or rng.random() < 0.2
        if template.startswith("Born in") and not sentences:
            template = template.replace("{s}", "{S}")
            use_name = True
        sentences.append(_fill(template, person, use_name))
    return " ".join(sentences)


def _qa_item(person: Person, attribute: str, question: str, split: str, index: str) -> QAItem:
    answer = answer_sentence(person, attribute)
    value = person.value(attribute)
    aliases = (answer, value)
    if attribute == "profession":
        aliases += (f"{_article(value)} {value}",)
    return QAItem(
        id=f"{split}-{person.id}-{attribute}-{index}", person_id=person.id, entity=person.name,
        attribute=attribute, question=question, answer=answer, aliases=aliases, value=value,
        bucket=person.bucket, mentions=person.mentions, split=split, obscure=attribute == person.obscure,
    )


def outside_item(question: str, split: str, index: str, person: Person | None = None) -> QAItem:
    """A question the world cannot answer (about ``person``, or general)."""
    return QAItem(
        id=f"{split}-{index}", person_id=person.id if person else -1, entity=person.name if person else "",
        attribute=OUTSIDE, question=question, answer=REFUSAL_SENTENCE, aliases=(REFUSAL_SENTENCE,), value="",
        bucket=person.bucket if person else "", mentions=person.mentions if person else 0, split=split,
        answerable=False,
    )


def ask(person: Person, attribute: str, rng: random.Random, split: str, index: str, spec: WorldSpec,
        heldout: bool = False, name: str | None = None) -> QAItem:
    """A question about ``person``'s ``attribute`` (by ``name``, the
    person's own by default) in a random frame of the world's training (or
    the held-out) set."""
    question = draw_question(attribute, name or person.name, rng, heldout=heldout, decorate=spec.decorate,
                             frames=spec.frames)
    return _qa_item(person, attribute, question, split, index)


def question_variants(item: QAItem, frames: int = 0, count: int = 3) -> list[QAItem]:
    """``item`` asked in ``count`` training frames (all of them when the
    world has no more; frames drawn from the item's id, so the variants are
    stable); used to give the validation probe more samples."""
    pool = question_frames(item.attribute)
    pool = pool[:frames] if frames else pool
    chosen = pool if len(pool) <= count else random.Random(item.id).sample(pool, count)
    return [dataclasses.replace(item, id=f"{item.id}-q{i}", question=frame.format(name=item.entity))
            for i, frame in enumerate(chosen)]


def fact_line(person: Person) -> str:
    """The knowledge-base record of a person (the ``lookup`` tool's result)."""
    return (f"{person.name}: born {person.birth_year} in {person.birth_city}, {person.birth_country}; "
            f"{person.profession}; works for {person.employer}.")


def generate_world(spec: WorldSpec, seed: int) -> World:
    """Build the whole world for ``seed``: people, documents and QA splits.

    ``documents`` are ``{"kind", "text"}`` records in corpus order (kind is
    ``biography``, ``geography``, ``qa``, ``refusal``, ``tool`` or
    ``calculator``); each text starts with the bos token (the chat template
    emits it too), so chat documents are exactly the text a prompt is
    rendered to at inference.
    """
    rng = random.Random(seed)
    people, countries, employers = generate_people(spec, rng)
    world = World(seed=seed, spec=spec, people=people, countries=countries, employers=employers)
    docs: list[dict[str, str]] = []
    for person in people:
        for _ in range(person.mentions):
            docs.append({"kind": "biography", "text": BOS_TOKEN + biography(person, rng)})
    for country, cities in countries.items():
        listing = ", ".join(cities[:-1]) + " and " + cities[-1]
        docs.append({"kind": "geography", "text": BOS_TOKEN + f"The cities of {country} are {listing}."})
    # QA: one item per (person, attribute) per split is the evaluation set; the
    # train split's items (of mentioned people, for what their biographies
    # state) also enter the corpus, each time in a fresh frame.
    world.qa = {split: [] for split in SPLITS}
    for person in people:
        for attribute in ATTRIBUTES:
            world.qa[person.split].append(ask(person, attribute, rng, person.split, "0", spec))
    episodes: list[tuple[Person, QAItem]] = []
    for person in people:
        if person.split != "train":
            continue
        if person.mentions > 0:
            for repeat in range(spec.qa_repeats):
                for attribute in ATTRIBUTES:
                    if attribute == person.obscure:
                        continue
                    item = ask(person, attribute, rng, "train", str(repeat + 1), spec)
                    question = item.question
                    if spec.typo_rate > 0 and rng.random() < spec.typo_rate:
                        question = typo(question, person.name, rng)
                    docs.append({"kind": "qa", "text": render_chat([
                        {"role": "user", "content": question},
                        {"role": "assistant", "content": item.answer},
                    ])})
        for _ in range(spec.tool_transcripts_per_person):
            episodes.append((person, ask(person, rng.choice(ATTRIBUTES), rng, "train", "99", spec)))
    # Tool conversations hold one to three lookup episodes about different
    # people: more name copies per (long) tool system prompt. Some offer the
    # calculator too, as the agent does.
    rng.shuffle(episodes)
    start = 0
    while start < len(episodes):
        size = rng.choice(spec.episodes_per_conversation)
        messages = [m for person, item in episodes[start:start + size] for m in tool_transcript(person, item)]
        offers_calculator = spec.calculator_share > 0 and rng.random() < spec.calculator_share
        tools = [CALCULATOR_TOOL, LOOKUP_TOOL] if offers_calculator else [LOOKUP_TOOL]
        docs.append({"kind": "tool", "text": render_chat(messages, tools=tools)})
        start += size
    for _ in range(spec.calculator_transcripts):
        docs.append({"kind": "calculator", "text": render_chat(calculator_transcript(rng),
                                                               tools=[CALCULATOR_TOOL, LOOKUP_TOOL])})
    rng.shuffle(docs)
    world.documents = _with_refusal_chats(docs, people, seed, spec)
    world.qa.update(shift_splits(world, seed, spec))
    return world


def shift_splits(world: World, seed: int, spec: WorldSpec) -> dict[str, list[QAItem]]:
    """The held-out shifts of the test people, from an RNG of their own:
    ``test_paraphrase`` (each test question again, in a held-out frame),
    ``test_misspelt`` (in a training frame, the name with one edit) and
    ``test_outside`` (a held-out unrecorded attribute of each test person,
    and every held-out general-knowledge question)."""
    rng = random.Random(f"{seed}-shifts")
    test = world.qa["test"]
    by_id = {p.id: p for p in world.people}
    paraphrase = [ask(by_id[item.person_id], item.attribute, rng, "test_paraphrase", "0", spec, heldout=True)
                  for item in test]
    misspelt = []
    for item in test:
        person = by_id[item.person_id]
        wrong = misspell(person.name, rng)
        asked = ask(person, item.attribute, rng, "test_misspelt", "0", spec, name=wrong)
        misspelt.append(dataclasses.replace(asked, entity=wrong))
    test_people = sorted({item.person_id for item in test})
    outside = [outside_item(rng.choice(unrecorded_questions("heldout")).format(name=by_id[pid].name),
                             "test_outside", f"p{pid}", by_id[pid]) for pid in test_people]
    outside += [outside_item(q, "test_outside", f"g{i}") for i, q in enumerate(outside_questions("heldout"))]
    return {"test_paraphrase": paraphrase, "test_misspelt": misspelt, "test_outside": outside}


def _with_refusal_chats(docs: list[dict[str, str]], people: list[Person], seed: int,
                        spec: WorldSpec) -> list[dict[str, str]]:
    """``docs`` with refusal chats inserted at random places: one question
    about an unrecorded fact per mentioned train person, and
    ``spec.outside_refusals`` general-knowledge questions. They draw from their
    own RNG and leave the other documents in their order."""
    rng = random.Random(f"{seed}-refusal")
    general = outside_questions()
    unrecorded = UNRECORDED_QUESTIONS[:spec.unrecorded] if spec.unrecorded else UNRECORDED_QUESTIONS
    out = list(docs)

    def insert(question: str) -> None:
        chat = render_chat([{"role": "user", "content": question},
                            {"role": "assistant", "content": REFUSAL_SENTENCE}])
        out.insert(rng.randrange(len(out) + 1), {"kind": "refusal", "text": chat})

    for person in people:
        if person.split == "train" and person.mentions > 0:
            insert(rng.choice(unrecorded).format(name=person.name))
    for _ in range(spec.outside_refusals):
        insert(rng.choice(general))
    return out


def tool_transcript(person: Person, item: QAItem) -> list[dict[str, Any]]:
    """The messages of one lookup episode: question, call, result, answer."""
    return lookup_exchange(item.question, person.name, fact_line(person)) + [
        {"role": "assistant", "content": item.answer}]


def lookup_exchange(question: str, query: str, record: str) -> list[dict[str, Any]]:
    """``question``, the assistant's lookup of ``query`` and the ``record``
    it finds: a lookup episode up to its answer."""
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "", "tool_calls": [lookup_call(query)]},
        {"role": "tool", "name": "lookup", "content": record},
    ]
