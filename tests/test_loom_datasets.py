"""Datasets: the JSONL loader and its errors, MMLU in the CSV and Hugging
Face file layouts (tests/fixtures/mmlu, invented questions), missing
optional packages, multiple-choice prompts and the strict letter reader, the
JSONL export round trip, and registration through a real plugin manager."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

from meta_spider.loom.datasets import (
    DatasetDependencyError,
    DatasetFormatError,
    DatasetNotFoundError,
    JsonlDataset,
    MMLUDataset,
    QADataset,
    QAExample,
    UnknownSplitError,
    create_dataset,
    dataset_registry,
    export_jsonl,
    extract_choice_letter,
    read_jsonl,
    register_builtin_datasets,
)
from meta_spider.plugins import PluginManager, UnknownComponentError, hookimpl

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mmlu"


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------ JSONL


def test_read_jsonl_fields_defaults_and_meta(tmp_path: Path) -> None:
    file = write_lines(
        tmp_path / "qa.jsonl",
        json.dumps({"id": "q1", "question": "Who wrote Dune?", "answer": "Frank Herbert", "aliases": ["Herbert"]}),
        "",
        json.dumps({"question": "Year of the moon landing?", "answer": 1969, "topic": "space"}),
    )
    first, second = read_jsonl(file)
    assert first == QAExample("q1", "Who wrote Dune?", "Frank Herbert", ("Herbert",))
    assert second.id == "qa-3" and second.answer == "1969" and second.meta == {"topic": "space"}


@pytest.mark.parametrize(
    ("line", "field", "problem"),
    [
        ('{"question": "Q?"}', "answer", "missing"),
        ('{"answer": "A"}', "question", "missing"),
        ('{"question": "", "answer": "A"}', "question", "non-empty string"),
        ('{"question": "Q?", "answer": "A", "aliases": "B"}', "aliases", "list of strings"),
        ('{"question": "Q?", "answer": "A", "id": [1]}', "id", "string or a number"),
        ('{"question": "Q?", "answer": "E", "choices": ["x", "y"]}', "answer", "one of A, B"),
        ('["question", "answer"]', None, "JSON object"),
        ('{"question": "Q?", "answer": "A"', None, "not valid JSON"),
    ],
)
def test_read_jsonl_errors_name_file_line_and_field(tmp_path: Path, line: str, field: str, problem: str) -> None:
    file = write_lines(tmp_path / "bad.jsonl", '{"question": "Fine?", "answer": "yes"}', line)
    with pytest.raises(DatasetFormatError) as caught:
        read_jsonl(file)
    error = caught.value
    assert (error.path, error.line, error.field) == (file, 2, field)
    assert problem in str(error) and str(file) in str(error) and "line 2" in str(error)


def test_read_jsonl_repeated_id_empty_and_missing_file(tmp_path: Path) -> None:
    repeated = write_lines(tmp_path / "r.jsonl", '{"id": 7, "question": "a?", "answer": "b"}',
                           '{"id": "7", "question": "c?", "answer": "d"}')
    with pytest.raises(DatasetFormatError, match="repeats the one on line 1") as caught:
        read_jsonl(repeated)
    assert caught.value.field == "id"
    with pytest.raises(DatasetFormatError, match="holds no examples"):
        read_jsonl(write_lines(tmp_path / "empty.jsonl", "", "  "))
    with pytest.raises(DatasetNotFoundError, match="JSONL file not found"):
        read_jsonl(tmp_path / "absent.jsonl")


def test_jsonl_single_file_gives_all_and_stable_hash_splits(tmp_path: Path) -> None:
    records = [{"id": f"q{i}", "question": f"Question {i}?", "answer": f"a{i}"} for i in range(200)]
    file = write_lines(tmp_path / "qa.jsonl", *map(json.dumps, records))
    dataset = JsonlDataset.from_options(path=str(file))
    assert set(dataset.splits) == {"all", "train", "validation", "test"}
    parts = [dataset.split(name) for name in ("train", "validation", "test")]
    ids = [e.id for part in parts for e in part]
    assert sorted(ids) == sorted(e.id for e in dataset.split("all")) and len(set(ids)) == 200
    assert 90 < len(parts[0]) < 150  # roughly 60%
    # A question keeps its split when more questions are added.
    more = records + [{"id": f"new{i}", "question": f"New {i}?", "answer": "x"} for i in range(50)]
    grown = JsonlDataset.from_options(path=write_lines(tmp_path / "more.jsonl", *map(json.dumps, more)))
    assert {e.id for e in parts[2]} <= {e.id for e in grown.split("test")}
    description = dataset.describe()
    assert description["sizes"]["all"] == 200 and description["options"]["split_fractions"] == [0.6, 0.2, 0.2]
    with pytest.raises(UnknownSplitError, match="no split 'dev'"):
        dataset.split("dev")


def test_jsonl_folder_and_explicit_split_files(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    write_lines(folder / "train.jsonl", '{"question": "a?", "answer": "b"}')
    write_lines(folder / "val.jsonl", '{"question": "c?", "answer": "d"}')
    dataset = JsonlDataset.from_options(path=folder)
    assert dataset.splits == ("train", "validation")
    explicit = JsonlDataset.from_options(train=folder / "train.jsonl", test=folder / "val.jsonl")
    assert explicit.splits == ("train", "test") and explicit.split("test")[0].question == "c?"
    with pytest.raises(ValueError, match="not both"):
        JsonlDataset.from_options(path=folder, train=folder / "train.jsonl")
    with pytest.raises(ValueError, match="needs path="):
        JsonlDataset.from_options()
    with pytest.raises(ValueError, match="split_fractions"):
        JsonlDataset.from_options(path=folder / "train.jsonl", split_fractions="0.5,0.5,0.5")


def test_free_form_check_is_normalised_exact_match(tmp_path: Path) -> None:
    file = write_lines(tmp_path / "qa.jsonl",
                       '{"question": "Which river flows through Cairo?", "answer": "The Nile", "aliases": ["Nile river"]}')
    dataset = JsonlDataset.from_options(path=file, split_fractions="1,0,0", system_prompt="Be brief.")
    example = dataset.split("all")[0]
    assert dataset.check_fn("the nile.", example)
    assert dataset.check_fn("Nile River\nIt is long.", example)  # only the first line counts
    assert not dataset.check_fn("It is the Nile, I think", example)
    prompt = dataset.prompt(example)
    assert [m["role"] for m in prompt.messages] == ["system", "user"] and prompt.template_kwargs == {}
    assert isinstance(dataset, QADataset)


# ------------------------------------------------------------------ MMLU


def test_mmlu_csv_layout() -> None:
    dataset = MMLUDataset.load(FIXTURES / "csv")
    assert set(dataset.splits) == {"test", "validation", "dev"}
    assert dataset.describe()["sizes"] == {"test": 8, "validation": 4, "dev": 2}
    test = dataset.split("test")
    by_question = {e.question: e for e in test}
    kenya = next(e for e in test if "Kenya" in e.question)
    assert kenya.question.startswith('Read the statement "Kenya, a country, lies on the equator."\n')
    assert kenya.choices == ("Asia", "Africa", "Europe", "Oceania") and kenya.answer == "B"
    assert kenya.meta == {"subject": "tiny_geography", "source": "tiny_geography_test.csv"}
    assert by_question["What is 2 to the power of 5?"].answer == "D"
    assert test[0].id == "tiny_arithmetic/test/0"  # files in sorted order, ids per subject
    assert len({e.id for e in test}) == 8


def test_mmlu_hf_file_layout_matches_the_csv_layout() -> None:
    hf = MMLUDataset.from_options(path=str(FIXTURES / "hf"))
    csv_copy = MMLUDataset.load(FIXTURES / "csv")
    for split in ("test", "validation", "dev"):
        # all/ is read and the per-subject copy beside it is not.
        def content(ds: MMLUDataset) -> set:
            return {(e.meta["subject"], e.question, e.choices, e.answer) for e in ds.split(split)}

        assert content(hf) == content(csv_copy)
    assert len(hf.split("test")) == 8


def test_mmlu_subject_filter_and_errors(tmp_path: Path) -> None:
    only = MMLUDataset.from_options(path=FIXTURES / "csv", subjects="tiny_arithmetic")
    assert {e.meta["subject"] for e in only.split("test")} == {"tiny_arithmetic"}
    assert only.describe()["options"]["subjects"] == ["tiny_arithmetic"]
    with pytest.raises(ValueError, match="not in this MMLU copy"):
        MMLUDataset.from_options(path=FIXTURES / "csv", subjects=["astrology"])
    with pytest.raises(DatasetNotFoundError, match="MMLU folder not found"):
        MMLUDataset.from_options(path=tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError, match="known layout"):
        MMLUDataset.from_options(path=tmp_path)
    with pytest.raises(ValueError, match="exactly one of path="):
        MMLUDataset.from_options()
    with pytest.raises(ValueError, match="mcq_direct must be true or false, got 'maybe'"):
        MMLUDataset.from_options(path=FIXTURES / "csv", mcq_direct="maybe")
    (tmp_path / "test").mkdir()
    bad = write_lines(tmp_path / "test" / "x_test.csv", "Q1?,a,b,c,d,A", "Q2?,a,b,c,d,F")
    with pytest.raises(DatasetFormatError) as caught:
        MMLUDataset.from_options(path=tmp_path)
    assert (caught.value.path, caught.value.line, caught.value.field) == (bad, 2, "answer")
    write_lines(bad, "Q1?,a,b,c,A")
    with pytest.raises(DatasetFormatError, match="expected 6 columns"):
        MMLUDataset.from_options(path=tmp_path)


def test_mmlu_record_errors_name_the_record(tmp_path: Path) -> None:
    write_lines(tmp_path / "test.jsonl",
                json.dumps({"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 2}),
                json.dumps({"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 9}))
    with pytest.raises(DatasetFormatError, match="record 2: field 'answer': answer index 9 is out of range"):
        MMLUDataset.from_options(path=tmp_path)


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "test-00000-of-00001.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import fails whether or not it is installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DatasetDependencyError, match="needs the 'pyarrow' package") as caught:
        MMLUDataset.from_options(path=tmp_path)
    assert caught.value.package == "pyarrow" and "test-00000-of-00001.parquet" in str(caught.value)


def test_hf_sources_without_datasets_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with pytest.raises(DatasetDependencyError, match="needs the 'datasets' package"):
        MMLUDataset.from_options(hf_name="cais/mmlu")
    (tmp_path / "dataset_dict.json").write_text('{"splits": ["test"]}')
    with pytest.raises(DatasetDependencyError, match="saved Hugging Face dataset"):
        MMLUDataset.from_options(path=tmp_path)
    assert "HF_DATASETS_OFFLINE" not in os.environ  # the offline switch is set only while loading


class _StandInDatasets(types.ModuleType):
    """Stands in for the `datasets` package, which is not installed here:
    records what the offline switches were during each load."""

    def __init__(self, cached: bool) -> None:
        super().__init__("datasets")
        self.config = types.SimpleNamespace(HF_DATASETS_OFFLINE=False, HF_HUB_OFFLINE=False)
        self.cached = cached
        self.calls: list[tuple] = []

    def _record(self, *call: object) -> None:
        import huggingface_hub.constants

        self.calls.append((*call, self.config.HF_DATASETS_OFFLINE, self.config.HF_HUB_OFFLINE,
                           huggingface_hub.constants.HF_HUB_OFFLINE, os.environ.get("HF_DATASETS_OFFLINE")))

    def load_from_disk(self, path: str) -> dict:
        self._record("load_from_disk", path)
        rows = [{"question": "What is 1 + 1?", "subject": "tiny_arithmetic", "choices": ["1", "2", "3", "4"],
                 "answer": 1}]
        return {"test": rows, "validation": rows[:1]}

    def load_dataset(self, name: str, config: str, cache_dir: str | None = None) -> dict:
        self._record("load_dataset", name, config, cache_dir)
        if not self.cached:
            raise ConnectionError("Couldn't reach 'cais/mmlu' on the Hub (offline mode is enabled)")
        return self.load_from_disk("cache")


def test_hf_copies_load_with_the_offline_switches_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    hub_offline_before = huggingface_hub.constants.HF_HUB_OFFLINE
    stand_in = _StandInDatasets(cached=True)
    monkeypatch.setitem(sys.modules, "datasets", stand_in)
    (tmp_path / "dataset_dict.json").write_text('{"splits": ["test", "validation"]}')
    saved = MMLUDataset.from_options(path=tmp_path, mcq_direct=True)
    assert saved.describe()["sizes"] == {"test": 1, "validation": 1}
    assert saved.split("test")[0].answer == "B" and saved.split("test")[0].meta["subject"] == "tiny_arithmetic"
    cached = MMLUDataset.from_options(hf_name="cais/mmlu", cache_dir=tmp_path / "cache")
    assert cached.describe()["options"]["hf_name"] == "cais/mmlu"
    assert stand_in.calls[0] == ("load_from_disk", str(tmp_path), True, True, True, "1")
    assert stand_in.calls[1] == ("load_dataset", "cais/mmlu", "all", str(tmp_path / "cache"), True, True, True, "1")
    # Everything is switched back afterwards.
    assert stand_in.config.HF_DATASETS_OFFLINE is False and "HF_DATASETS_OFFLINE" not in os.environ
    assert huggingface_hub.constants.HF_HUB_OFFLINE == hub_offline_before
    monkeypatch.setitem(sys.modules, "datasets", _StandInDatasets(cached=False))
    with pytest.raises(DatasetNotFoundError, match="cached copy of 'cais/mmlu'.*nothing is downloaded"):
        MMLUDataset.from_options(hf_name="cais/mmlu")


# ------------------------------------------------------------------ prompts and letters


def test_mcq_prompt_direct_and_reasoned() -> None:
    direct = MMLUDataset.from_options(path=FIXTURES / "csv", mcq_direct="true", system_prompt="You are careful.")
    example = next(e for e in direct.split("test") if e.question == "What is 7 + 5?")
    prompt = direct.prompt(example)
    assert prompt.template_kwargs == {"enable_thinking": False, "thinking": False}
    assert prompt.messages[0] == {"role": "system", "content": "You are careful."}
    assert prompt.messages[1]["content"] == (
        "The following is a multiple choice question about tiny arithmetic.\n\n"
        "What is 7 + 5?\nA. 10\nB. 11\nC. 12\nD. 13\n\n"
        "Answer with the letter of the correct choice only."
    )
    reasoned = MMLUDataset.from_options(path=FIXTURES / "csv")
    prompt = reasoned.prompt(example)
    assert prompt.template_kwargs == {} and prompt.messages[-1]["content"].endswith(
        "end with a line of the form 'Answer: X', where X is the letter of the correct choice."
    )
    assert direct.check_fn("C", example) and direct.check_fn("Answer: C", example)
    assert not direct.check_fn("B", example) and not direct.check_fn("12", example)


def test_mcq_prompt_renders_through_a_real_chat_template(shared_dir: Path) -> None:
    from meta_spider.native import compile_chat_template

    dataset = MMLUDataset.from_options(path=FIXTURES / "csv", mcq_direct=True)
    example = dataset.split("dev")[0]
    prompt = dataset.prompt(example)
    template = compile_chat_template((shared_dir / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text())
    text = template.render(messages=list(prompt.messages), add_generation_prompt=True, **prompt.template_kwargs)
    assert "A. 20\nB. 25\nC. 30\nD. 35" in text and text.rstrip().endswith("<|im_start|>assistant")


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"), ("B.", "B"), (" (C)", "C"), ("D) Madrid", "D"), ("[A]", "A"), ("A", "A"), ("A. Atlantic", "A"),
        ("C\nBecause 7 + 5 = 12.", "C"), ("Answer: C", "C"), ("The answer: B", "B"), ("answer: (d)", None),
        ("**Answer:** skipped", None), ("Answer: **B**", "B"), ("**B**", "B"), ("**C. 12**", "C"),
        ("First I thought Answer: A, but no.\nAnswer: D", "D"),
        ("<think>Maybe A? No.</think>\nC", "C"), ("I think it is B", None), ("A cat sat", None),
        ("E", None), ("Answer: E", None), ("", None), ("Both B and C", None), ("BC", None),
    ],
)
def test_extract_choice_letter_golden_strings(text: str, letter: str | None) -> None:
    assert extract_choice_letter(text, n_choices=4) == letter


def test_extract_choice_letter_respects_the_number_of_choices() -> None:
    assert extract_choice_letter("E", n_choices=5) == "E"
    assert extract_choice_letter("C", n_choices=2) is None


# ------------------------------------------------------------------ export


def test_export_jsonl_round_trips_through_the_jsonl_loader(tmp_path: Path) -> None:
    mmlu = MMLUDataset.load(FIXTURES / "csv")
    target = tmp_path / "out" / "mmlu_test.jsonl"
    assert export_jsonl(mmlu, "test", target) == 8
    first = json.loads(target.read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"id", "question", "answer", "choices", "meta"}
    reloaded = JsonlDataset.from_options(test=target, mcq_direct="true")
    assert reloaded.split("test") == mmlu.split("test")
    direct = MMLUDataset.load(FIXTURES / "csv", mcq_direct=True)
    assert [reloaded.prompt(e) for e in reloaded.split("test")] == [direct.prompt(e) for e in direct.split("test")]
    example = reloaded.split("test")[0]
    assert reloaded.check_fn(f"Answer: {example.answer}", example)  # choices keep it multiple choice
    assert list(tmp_path.joinpath("out").iterdir()) == [target]  # no temporary left behind


# ------------------------------------------------------------------ registration


class _LoomDatasetsForTest:
    """Stands where loom/plugin.py will: registers the built-ins."""

    @hookimpl
    def register_datasets(self, register) -> None:
        register_builtin_datasets(register)


def test_register_builtin_datasets_through_a_plugin_manager() -> None:
    pm = PluginManager()
    pm.register(_LoomDatasetsForTest(), name="loom-datasets-test")
    registry = dataset_registry(pm)
    assert registry.names() == ("jsonl", "mmlu")
    assert registry.entry("mmlu").plugin == "loom-datasets-test"
    dataset = create_dataset(pm, "mmlu", path=str(FIXTURES / "hf"), mcq_direct=True)
    assert isinstance(dataset, MMLUDataset) and dataset.describe()["options"]["mcq_direct"] is True
    with pytest.raises(UnknownComponentError, match="available: jsonl, mmlu"):
        create_dataset(pm, "world")


def test_a_split_given_as_a_function_is_built_once_on_first_use() -> None:
    from meta_spider.loom.datasets import SplitDataset, UnknownSplitError

    built = []

    def costly() -> list[QAExample]:
        built.append(1)
        return [QAExample(id="1", question="Q?", answer="A")]

    dataset = SplitDataset("lazy", {"train": [QAExample(id="0", question="P?", answer="B")], "extra": costly})
    assert dataset.splits == ("train", "extra") and built == []  # naming the splits builds nothing
    assert dataset.split("train")[0].id == "0" and built == []
    assert [e.id for e in dataset.split("extra")] == ["1"] and [e.id for e in dataset.split("extra")] == ["1"]
    assert built == [1] and dataset.describe()["sizes"] == {"train": 1, "extra": 1}
    with pytest.raises(UnknownSplitError):
        dataset.split("nope")


def test_a_split_can_be_added_and_is_asked_as_the_others() -> None:
    from meta_spider.loom.datasets import SplitDataset

    dataset = SplitDataset("added", {"train": [QAExample(id="0", question="P?", answer="B")]})
    dataset.add_split("held_lookup", [QAExample(id="1", question="Q?", answer="A")])
    assert dataset.splits == ("train", "held_lookup")
    assert dataset.prompt(dataset.split("held_lookup")[0]).messages == ({"role": "user", "content": "Q?"},)
    dataset.add_split("later", lambda: [QAExample(id="2", question="R?", answer="C")])
    assert [e.id for e in dataset.split("later")] == ["2"]
