"""The world generator: byte-identical output per seed, split hygiene (no
validation/test person in QA or tool text), mention counts per bucket, the
knowledge base against the corpus, obscure attributes, the refusal and
calculator chats, the shifted test splits (held-out frames never in any
training text, one-edit names, unanswerable questions), and preset
validation."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from meta_spider.loom.world.cache import export_data
from meta_spider.loom.world.chat import CALCULATOR_TOOL
from meta_spider.loom.world.frames import UNRECORDED, outside_questions, question_frames, unrecorded_questions
from meta_spider.loom.world.generator import (
    ATTRIBUTES,
    GENERATOR_VERSION,
    OUTSIDE,
    SHIFT_SPLITS,
    fact_line,
    generate_world,
    question_variants,
)
from meta_spider.tools.builtin import CALCULATOR_TOOL as AGENT_CALCULATOR
from meta_spider.tools.calculator import evaluate
from meta_spider.loom.world.knowledge import KnowledgeBase
from meta_spider.policies.actions import REFUSAL_SENTENCE
from meta_spider.loom.world.presets import BUCKETS, PRESETS, WorldSpec, get_preset

SPEC = dataclasses.replace(get_preset("tiny").world, obscure_share=0.35, typo_rate=0.1, calculator_transcripts=20,
                           outside_refusals=20)


@pytest.fixture(scope="module")
def world():
    return generate_world(SPEC, seed=7)


@pytest.fixture(scope="module")
def knowledge_base(world):
    return KnowledgeBase.from_people(world.people)


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    first = export_data(generate_world(SPEC, seed=3), tmp_path / "a")
    second = export_data(generate_world(SPEC, seed=3), tmp_path / "b")
    other = export_data(generate_world(SPEC, seed=4), tmp_path / "c")
    assert first == second
    for name in first:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first["corpus.jsonl"] != other["corpus.jsonl"]
    assert GENERATOR_VERSION


def test_people_are_unique_and_geography_is_consistent(world) -> None:
    names = [p.name for p in world.people]
    assert len(names) == len(set(names))
    city_country = {c: k for k, cities in world.countries.items() for c in cities}
    for person in world.people:
        assert city_country[person.birth_city] == person.birth_country
        assert person.employer in world.employers
        assert 1900 <= person.birth_year < 2000


def test_biography_counts_follow_the_buckets(world) -> None:
    mentions = dict(zip(BUCKETS, SPEC.bucket_mentions))
    counts: Counter[str] = Counter()
    pattern = re.compile("|".join(re.escape(p.name) for p in world.people))
    for doc in world.documents:
        if doc["kind"] == "biography":
            found = set(pattern.findall(doc["text"]))
            assert len(found) == 1, doc["text"]
            counts[found.pop()] += 1
    for person in world.people:
        assert counts[person.name] == person.mentions == mentions[person.bucket]
    assert {p.bucket for p in world.people} == set(BUCKETS)


def test_held_out_people_never_appear_in_qa_or_tool_text(world) -> None:
    held_out = [p for p in world.people if p.split != "train"]
    assert held_out
    chat_text = "\n".join(d["text"] for d in world.documents if d["kind"] in ("qa", "tool"))
    assert "<tool_call>" in chat_text and "<|im_start|>assistant" in chat_text
    for person in held_out:
        assert person.name not in chat_text
    bio_text = "\n".join(d["text"] for d in world.documents if d["kind"] == "biography")
    for person in held_out:
        assert (person.name in bio_text) == (person.mentions > 0)


def test_splits_partition_people_and_qa(world) -> None:
    seen = set()
    for split, items in world.qa.items():
        for item in items:
            assert item.split == split
            seen.add(item.person_id)
    assert seen - {-1} == {p.id for p in world.people}  # -1: general questions about no one
    test_people = {i.person_id for i in world.qa["test"]}
    for split in SHIFT_SPLITS:
        assert {i.person_id for i in world.qa[split]} - {-1} == test_people
    for split in ("validation", "test"):
        assert len(world.qa[split]) == len(ATTRIBUTES) * len({i.person_id for i in world.qa[split]})
        assert {i.bucket for i in world.qa[split]} == set(BUCKETS)


def test_knowledge_base_matches_the_corpus(world) -> None:
    kb = KnowledgeBase.from_people(world.people)
    assert kb.name == "lookup" and len(kb) == len(world.people)
    for doc in world.documents:
        if doc["kind"] != "biography":
            continue
        person = next(p for p in world.people if p.name in doc["text"])
        record = kb.lookup(person.name)
        for attribute in ATTRIBUTES:
            value = person.value(attribute)
            assert value in record
            if attribute != person.obscure:
                assert value in doc["text"]
    tool_results = re.findall(r"<tool_response>\n(.*?)\n</tool_response>",
                              "".join(d["text"] for d in world.documents if d["kind"] == "tool"))
    assert tool_results
    for result in tool_results:
        assert kb.lookup(result.split(":")[0]) == result
    someone = world.people[0]
    assert kb.lookup(f"  {someone.name.upper()}? ") == kb.lookup(someone.name)


def test_knowledge_base_finds_a_misspelt_name_and_no_one_for_a_far_one(world) -> None:
    """Every one of test_misspelt's names (one edit) finds its person's
    record, as a search box would; a name many edits from everyone finds
    nothing."""
    kb = KnowledgeBase.from_people(world.people)
    people = {p.id: p for p in world.people}
    misspelt = [item for item in world.qa["test_misspelt"] if item.person_id >= 0]
    assert misspelt
    for item in misspelt:
        assert item.entity != people[item.person_id].name
        assert kb.lookup(item.entity) == fact_line(people[item.person_id])
    someone = people[misspelt[0].person_id].name
    assert kb.lookup(someone.replace(" ", "")) == fact_line(people[misspelt[0].person_id])
    assert kb.lookup(someone[::-1]) is None and kb.lookup("Zq") is None
    assert kb.lookup(f"{misspelt[0].entity} was born") == fact_line(people[misspelt[0].person_id])  # words around
    exact = KnowledgeBase.from_people(world.people, forgive_typos=False)
    assert exact.lookup(misspelt[0].entity) is None and exact.lookup(someone) == kb.lookup(someone)
    assert kb.lookup("Nobody Atall") is None and kb.lookup(42) is None  # type: ignore[arg-type]


def test_knowledge_base_finds_a_person_by_one_name_that_no_one_else_has(world) -> None:
    """A query of one word finds the one person whose first or last name it
    is (a typo forgiven, as for a whole name); a name two people share, or a
    word that is no one's, finds no one by it."""
    kb = KnowledgeBase.from_people(world.people)
    owners: dict[str, list] = {}
    for person in world.people:
        for word in person.name.split():
            owners.setdefault(word.casefold(), []).append(person)
    single = next(p for p in world.people if all(len(owners[w.casefold()]) == 1 for w in p.name.split())
                  and min(map(len, p.name.split())) >= 7)
    first, last = single.name.split()
    assert kb.lookup(first) == kb.lookup(last) == kb.lookup(f"{last.lower()}?") == fact_line(single)
    assert kb.lookup(first[0] + first[2] + first[1] + first[3:]) == fact_line(single)  # one edit
    shared = next((word for word, people in owners.items() if len(people) > 1), None)
    if shared is not None:
        assert kb.lookup(shared) is None
    assert kb.lookup("telephone") is None
    assert KnowledgeBase.from_people(world.people, forgive_typos=False).lookup(first) is None


def test_knowledge_base_finds_the_one_person_a_question_names_in_part(world) -> None:
    """A question that names one person by words of their name alone (the
    surname, the first name, the name in another order) finds that person;
    in a question of mixed case only capitalised words count. Words that
    name different people, a word two people share with nothing to tell
    them apart, and a misspelt part of a name among other words find no one;
    for the shared word, ``matches`` names the people it could mean."""
    kb = KnowledgeBase.from_people(world.people)
    owners: dict[str, list] = {}
    for person in world.people:
        for word in person.name.split():
            owners.setdefault(word.casefold(), []).append(person)
    unique = [p for p in world.people if all(len(owners[w.casefold()]) == 1 for w in p.name.split())
              and min(map(len, p.name.split())) >= 7]
    single, other = unique[0], unique[1]
    first, last = single.name.split()
    record = fact_line(single)
    assert kb.lookup(f"When was {last} born?") == kb.lookup(f"What does {first} do?") == record
    assert kb.lookup(f"Where was {last}, {first} born?") == kb.lookup(f"Is Ms. {last}'s job known?") == record
    assert kb.lookup(f"when was {last.lower()} born?") == kb.lookup(f"WHEN WAS {last.upper()} BORN?") == record
    assert kb.lookup(f"Is {last.lower()} here?") is None  # not capitalised in a mixed-case question
    assert kb.lookup(f"Did {last} meet {other.name.split()[-1]}?") is None  # two people
    assert kb.lookup(f"When was {last[0] + last[2] + last[1] + last[3:]} born?") is None  # a typo among words
    assert kb.lookup(f"{first} telephone Zq") == record and kb.lookup("What is the deepest sea?") is None
    shared = next(((word, people) for word, people in owners.items() if len(people) == 2
                   and all(len(owners[w.casefold()]) == 1 for p in people for w in p.name.split()
                           if w.casefold() != word)), None)
    assert shared is not None, "the test world has two people who share one word of their names"
    word, people = shared
    spelt = next(w for w in people[0].name.split() if w.casefold() == word)
    assert kb.lookup(f"When was {spelt} born?") is None
    assert kb.matches(f"When was {spelt} born?") == kb.matches(spelt) == tuple(sorted(p.name for p in people))
    assert kb.matches(single.name) == kb.matches(last) == kb.matches("Nobody Atall") == ()  # found, or no one
    assert KnowledgeBase.from_people(world.people, forgive_typos=False).matches(spelt) == ()
    reordered = " ".join(reversed(people[0].name.split()))
    assert kb.lookup(f"When was {reordered} born?") == fact_line(people[0])  # the other word tells


@settings(max_examples=200, deadline=None)
@given(query=st.text(max_size=120) | st.lists(st.sampled_from(["When", "was", "born?", "Tollan,", "the", "SEA"]),
                                              max_size=20).map(" ".join))
def test_knowledge_base_answers_any_query_with_a_record_or_none(world, knowledge_base, query: str) -> None:
    found = knowledge_base.lookup(query)
    assert found is None or found in {fact_line(person) for person in world.people}


def test_answers_are_pronoun_sentences_with_value_aliases(world) -> None:
    for item in world.qa["test"][:40]:
        assert item.answer.split()[0] in ("She", "He") and item.value in item.answer
        assert item.aliases == tuple(dict.fromkeys(item.aliases)) and item.value in item.aliases
        variants = question_variants(item)
        assert len({v.question for v in variants}) == len(variants) >= 2
        assert all(v.answer == item.answer and item.entity in v.question for v in variants)
    assert json.loads(json.dumps(world.qa["test"][0].to_dict()))["entity"] == world.qa["test"][0].entity


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_people": 5}, "n_people"),
        ({"bucket_shares": (0.5, 0.5, 0.1, 0.0)}, "bucket_shares"),
        ({"bucket_mentions": (3, 2, 1, 1)}, "unseen"),
        ({"split_shares": (1.0, 0.0, 0.0)}, "split_shares"),
        ({"tool_people": -1}, "tool_people"),
    ],
)
def test_world_spec_rejects_bad_values(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(WorldSpec(), **change)


def test_presets_are_known_by_name() -> None:
    assert set(PRESETS) == {"tiny", "small"}
    with pytest.raises(ValueError, match="unknown world preset 'huge'"):
        get_preset("huge")


def test_refusal_chats_answer_only_unrecorded_questions(world) -> None:
    """The base must be able to say the refusal sentence (a token never seen
    as a target cannot be steered to), yet every recorded attribute is
    answered: refusals follow only questions the world records nothing for,
    about mentioned train people or about things outside the world."""
    refusals = [d["text"] for d in world.documents if d["kind"] == "refusal"]
    mentioned_train = [p for p in world.people if p.split == "train" and p.mentions > 0]
    assert len(refusals) == len(mentioned_train) + SPEC.outside_refusals > 0
    prefixes = tuple(q.split("{name}")[0] for q in UNRECORDED[0])
    general = set(outside_questions())
    for text in refusals:
        user = re.search(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", text).group(1)
        assert user.startswith(prefixes) or user in general, user
        assert f"<|im_start|>assistant\n{REFUSAL_SENTENCE}<|im_end|>" in text
    refusal_text = "\n".join(refusals)
    for person in world.people:
        assert (person.name in refusal_text) == (person in mentioned_train)
    for doc in world.documents:
        if doc["kind"] in ("qa", "tool", "calculator"):
            assert REFUSAL_SENTENCE not in doc["text"]


def test_obscure_attributes_are_never_stated_or_asked_in_training_text(world) -> None:
    obscure = [p for p in world.people if p.obscure]
    assert obscure and all(p.mentions > 0 for p in obscure)
    for doc in world.documents:
        if doc["kind"] != "qa":
            continue
        user, reply = re.findall(r"<\|im_start\|>(?:user|assistant)\n(.*?)<\|im_end\|>", doc["text"], re.S)
        person = next(p for p in obscure + [None] if p is None or p.name in user)
        if person is not None:
            assert person.value(person.obscure) not in reply, (user, reply)
    flagged = [i for i in world.qa["test"] + world.qa["validation"] if i.obscure]
    assert flagged and all(world.person(i.entity).obscure == i.attribute for i in flagged)


def test_held_out_frames_never_occur_in_training_text(world) -> None:
    pattern = re.compile("|".join(re.escape(p.name) for p in sorted(world.people, key=lambda p: -len(p.name))))
    asked = {pattern.sub("{name}", user) for doc in world.documents
             for user in re.findall(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", doc["text"])}
    for attribute in ATTRIBUTES:
        train, held_out = set(question_frames(attribute)), set(question_frames(attribute, heldout=True))
        assert len(held_out) >= 10 and not train & held_out
        assert held_out.isdisjoint(asked) and train & asked
    for item in world.qa["test_paraphrase"]:
        assert item.question.replace(item.entity, "{name}") not in asked, item.question
        assert world.person(item.entity).split == "test"


def test_misspelt_names_are_one_edit_away_and_belong_to_no_one(world) -> None:
    names = {p.name for p in world.people}
    for item, original in zip(world.qa["test_misspelt"], world.qa["test"]):
        assert item.entity != original.entity and item.entity not in names
        assert item.entity in item.question and item.answer == original.answer
        assert abs(len(item.entity) - len(original.entity)) <= 1
        assert item.entity[0] == original.entity[0]


def test_outside_questions_are_unanswerable_and_held_out(world) -> None:
    outside = world.qa["test_outside"]
    assert outside and all(not i.answerable and i.attribute == OUTSIDE and i.answer == REFUSAL_SENTENCE
                            for i in outside)
    corpus = "\n".join(d["text"] for d in world.documents)
    general = [i.question for i in outside if i.person_id == -1]
    assert general and not any(q in corpus for q in general)
    assert set(general).isdisjoint(outside_questions())


def test_calculator_chats_offer_the_agents_calculator_and_answer_right(world) -> None:
    assert CALCULATOR_TOOL == AGENT_CALCULATOR.to_schema()
    chats = [d["text"] for d in world.documents if d["kind"] == "calculator"]
    assert len(chats) == SPEC.calculator_transcripts
    for text in chats:
        call = json.loads(re.search(r"<tool_call>\n(.*?)\n</tool_call>", text, re.S).group(1))
        result = re.search(r"<tool_response>\n(.*?)\n</tool_response>", text).group(1)
        assert call["name"] == "calculator" and float(result) == evaluate(call["arguments"]["expression"])
        assert f"The answer is {result}." in text


def test_world_dataset_asks_train_questions_in_more_training_wordings() -> None:
    from meta_spider.loom.world.dataset import WorldDataset

    plain = WorldDataset("tiny", 0)
    varied = WorldDataset(dataclasses.replace(get_preset("tiny"), world=SPEC), 0, train_frames=3, train_typos=0.5)
    train = varied.split("train")
    assert len(train) == 3 * len(WorldDataset(dataclasses.replace(get_preset("tiny"), world=SPEC), 0).split("train"))
    assert len({e.id for e in train}) == len(train)
    held_out = {f for a in ATTRIBUTES for f in question_frames(a, heldout=True)}
    assert not any(e.question.replace(e.meta["entity"], "{name}") in held_out for e in train)
    assert sum(e.meta["entity"] in e.question for e in train) == len(train)  # typos never touch the name
    assert varied.split("test") == WorldDataset(dataclasses.replace(get_preset("tiny"), world=SPEC), 0).split("test")
    assert plain.options == {"preset": "tiny", "seed": 0} and varied.options["train_frames"] == 3
    with pytest.raises(ValueError, match="train_frames"):
        WorldDataset("tiny", 0, train_frames=0)


def test_world_dataset_asks_validation_questions_in_more_training_wordings() -> None:
    from meta_spider.loom.world.dataset import WorldDataset

    spec = dataclasses.replace(get_preset("tiny"), world=SPEC)
    plain, varied = WorldDataset(spec, 0), WorldDataset(spec, 0, validation_frames=3)
    validation, asked = varied.split("validation"), plain.split("validation")
    assert len(validation) == 3 * len(asked) and len({e.id for e in validation}) == len(validation)
    assert [e for e in validation if "-v" not in e.id] == asked  # each question as generated, then two more
    assert len({(e.meta["entity"], e.question) for e in validation}) > len(asked)  # other wordings
    held_out = {f for a in ATTRIBUTES for f in question_frames(a, heldout=True)}
    assert not any(e.question.replace(e.meta["entity"], "{name}") in held_out for e in validation)
    for split in ("train", "test", "test_paraphrase"):
        assert varied.split(split) == plain.split(split)
    assert varied.options["validation_frames"] == 3 and "validation_frames" not in plain.options
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="validation_frames"):
            WorldDataset("tiny", 0, validation_frames=bad)


def test_world_dataset_adds_unanswerable_train_questions_from_a_bank_neither_base_nor_test_sees(world) -> None:
    from meta_spider.loom.world.dataset import WorldDataset

    preset = dataclasses.replace(get_preset("tiny"), world=SPEC)
    plain = WorldDataset(preset, 0).split("train")
    added = WorldDataset(preset, 0, train_outside=40)
    train = added.split("train")
    assert train[:len(plain)] == plain and len(train) == len(plain) + 40
    outside = train[len(plain):]
    assert all(e.meta["answerable"] is False and e.answer == REFUSAL_SENTENCE for e in outside)
    assert len({e.id for e in train}) == len(train)
    general = [e.question for e in outside if not e.meta["entity"]]
    about_people = [e for e in outside if e.meta["entity"]]
    assert len(general) == 20 == len(set(general)) and len(about_people) == 20
    asked = {e.meta["entity"] for e in plain}
    assert all(e.meta["entity"] in asked and e.meta["entity"] in e.question for e in about_people)
    corpus = "\n".join(d["text"] for d in world.documents)
    test_outside = {i.question for i in world.qa["test_outside"]}
    for question in general:
        assert question not in corpus and question not in test_outside
    base_or_test = {q for bank in ("base", "heldout") for q in unrecorded_questions(bank)}
    assert all(e.question.replace(e.meta["entity"], "{name}") in unrecorded_questions("doubter") for e in about_people)
    assert base_or_test.isdisjoint(unrecorded_questions("doubter"))
    assert added.split("test_outside") == WorldDataset(preset, 0).split("test_outside")
    assert added.options["train_outside"] == 40
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="train_outside"):
            WorldDataset("tiny", 0, train_outside=bad)
    from meta_spider.loom.world.dataset import outside_training_items

    assert len(outside_training_items([], 30, 0)) == 30  # general questions alone
    with pytest.raises(ValueError, match="need people to ask about"):
        outside_training_items([], 10_000, 0)


def test_world_dataset_asks_questions_with_their_lookup_as_the_agent_would_see_them() -> None:
    from meta_spider.loom.world.chat import render_chat
    from meta_spider.loom.world.dataset import LOOKUP_QUESTIONS, WorldDataset
    from meta_spider.native import ParsedToolCall, assistant_tool_calls_message, tool_result_message

    preset = dataclasses.replace(get_preset("tiny"), world=SPEC)
    dataset = WorldDataset(preset, 0, train_outside=40, validation_frames=2)
    knowledge = dataset.knowledge_base()
    train = dataset.split("train_lookup")
    by_id = {e.id: e for e in dataset.split("train")}
    asked = [e for e in train if e.id.removesuffix("-lookup") in by_id]  # as asked in the train split
    answerable = [e for e in asked if e.meta["answerable"]]
    assert 0 < len(answerable) <= LOOKUP_QUESTIONS
    assert len(asked) - len(answerable) == 20  # every unanswerable one about a person (half the 40)
    for example in asked:  # the same question, looked up by its person's name, with the person's record
        lookup = example.meta["lookup"]
        assert example.question == by_id[example.id.removesuffix("-lookup")].question
        assert lookup["query"] == example.meta["entity"] and lookup["record"] == knowledge.lookup(lookup["query"])
    # each also in another training wording, and with the name misspelt by one edit, looked up as misspelt
    reworded = [e for e in train if e.id.endswith("-f-lookup")]
    misspelt = [e for e in train if e.id.endswith("-m-lookup")]
    assert len(reworded) == len(asked) and len(misspelt) > len(asked) // 2
    assert all(e.meta["entity"] in e.question and e.meta["lookup"]["query"] == e.meta["entity"] for e in reworded)
    for example in misspelt:
        wrong = example.meta["lookup"]["query"]
        assert wrong != example.meta["entity"] and wrong in example.question
        assert example.meta["lookup"]["record"] == knowledge.lookup(wrong)
    # validation: the chosen questions in every validation wording
    validation = dataset.split("validation_lookup")
    assert len(validation) == 2 * min(LOOKUP_QUESTIONS, len(validation) // 2) and all(
        e.meta["lookup"]["record"] == knowledge.lookup(e.meta["entity"]) for e in validation)
    # the prompt is the conversation the doubter policy reads after the agent's lookup found the record
    for example in (asked[-1], misspelt[0], validation[0]):
        lookup = example.meta["lookup"]
        agent = [{"role": "user", "content": example.question},
                 assistant_tool_calls_message([ParsedToolCall("lookup", {"query": lookup["query"]}, "c1")]),
                 tool_result_message("lookup", knowledge.lookup(lookup["query"]), "c1")]
        messages = list(dataset.prompt(example).messages)
        assert render_chat(messages, add_generation_prompt=True) == render_chat(agent, add_generation_prompt=True)
    # without unanswerable train questions every one asked with its lookup is answerable
    assert all(e.meta["answerable"] for e in WorldDataset(preset, 0).split("train_lookup"))
    question = dataset.split("train")[0].question
    assert dataset.prompt(dataset.split("train")[0]).messages == ({"role": "user", "content": question},)


def test_world_dataset_asks_a_share_of_train_questions_again_with_the_name_misspelt() -> None:
    from meta_spider.loom.world.dataset import WorldDataset

    preset = dataclasses.replace(get_preset("tiny"), world=SPEC)
    plain = WorldDataset(preset, 0).split("train")
    added = WorldDataset(preset, 0, train_misspelt=0.5)
    train = added.split("train")
    assert train[:len(plain)] == plain and len(plain) * 0.35 < len(train) - len(plain) < len(plain) * 0.65
    by_id = {e.id: e for e in plain}
    for example in train[len(plain):]:
        original = by_id[example.id.removesuffix("-m")]
        name = original.meta["entity"]
        assert name not in example.question and example.ground_truths == original.ground_truths
        wrong = example.question[len(original.question.split(name)[0]):][:len(name) + 1].strip(" ?.'")
        assert sum(a != b for a, b in zip(wrong, name)) >= 1  # one edit inside the name, the frame kept
        assert example.question.startswith(original.question.split(name)[0])
    assert added.split("test_misspelt") == WorldDataset(preset, 0).split("test_misspelt")
    assert added.options["train_misspelt"] == 0.5 and WorldDataset(preset, 0, train_misspelt=0.5).split("train") == train
    with pytest.raises(ValueError, match="train_misspelt"):
        WorldDataset("tiny", 0, train_misspelt=1.5)


@pytest.mark.world
@pytest.mark.slow
def test_world_dataset_options_from_the_command_line_are_checked_not_cast(tiny_world, tmp_path: Path,
                                                                         capsys) -> None:
    from cli_helpers import metaloom

    for option, named in (("validation_frames=1.5", "validation_frames must be a whole number >= 1, got 1.5"),
                          ("train_frames=abc", "train_frames must be a whole number >= 1, got 'abc'"),
                          ("train_outside=2.5", "train_outside must be a whole number >= 0, got 2.5"),
                          ("train_typos=lots", "train_typos must be a number in [0, 1], got 'lots'"),
                          ("train_misspelt=true", "train_misspelt must be a number in [0, 1], got True")):
        result = metaloom(capsys, "collect", "--run-dir", tmp_path / "run", "--model-name", tiny_world.model_dir,
                          "--dataset", "world", "--dataset-option", "preset=tiny", "--dataset-option", option,
                          "--quiet")
        output = " ".join(result.output.split())
        assert result.exit_code != 0 and named in output and "correct that --dataset-option" in output, output
        assert "Traceback" not in output and not (tmp_path / "run" / "run.json").exists()
