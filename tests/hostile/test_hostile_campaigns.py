"""Bounded hypothesis campaigns over the readers of hostile text: the session
loader, the run.json reader and every tool-call parser. Each case ends in a
result or the reader's own typed error; the figures (cases, crashes, hangs)
print at the end of the run (see conftest.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import campaign_settings, record_campaign
from meta_spider.agentcore import Session, SessionFormatError
from meta_spider.agentcore.rundir import RunFileError, read_run_settings
from meta_spider.native import NativeToolRenderer, ToolCallFamily

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
SESSION_KEYS = ["format", "version", "messages", "tool_results", "metadata", "call_counter"]
VALID_SESSION = json.loads(Session.from_question("q", system="s").to_json())


def _mutations(valid: dict, keys: list[str]) -> st.SearchStrategy[dict]:
    """The valid document with some fields replaced by arbitrary JSON."""
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=3).map(lambda changes: {**valid, **changes})


def _timed(campaign: str, reader, allowed: type[Exception]) -> None:
    figures = record_campaign(campaign)
    started = time.perf_counter()
    crashed = False
    try:
        reader()
    except allowed:
        pass
    except Exception:
        crashed = True
        raise
    finally:
        figures.add(time.perf_counter() - started, crashed=crashed)


@campaign_settings(ci_default=300)
@given(st.one_of(_mutations(VALID_SESSION, SESSION_KEYS), json_values, st.binary(max_size=64)))
def test_session_loader_campaign(document) -> None:
    if isinstance(document, bytes):
        text = document.decode("utf-8", "replace")
    else:
        text = json.dumps(document)
    _timed("session loader (mutated sessions, arbitrary JSON, bytes)",
           lambda: Session.from_json(text, source="campaign"), SessionFormatError)


VALID_RUN = {"format_version": 1, "model": {"name": "tiny"}, "dataset": {"name": "jsonl", "options": {}},
             "backends": {"llamacpp": {"model_path": "base.gguf"}}, "policy": "direct",
             "knowledge_base": {"facts_path": "facts.json"}, "calibration": {}}
RUN_KEYS = [*VALID_RUN, "layers", "prompt", "renderer", "checkpoint", "external_paths"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("campaign-run")


@campaign_settings(ci_default=300)
@given(document=st.one_of(_mutations(VALID_RUN, RUN_KEYS), json_values, st.binary(max_size=64)))
def test_run_json_reader_campaign(run_dir: Path, document) -> None:
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    (run_dir / "run.json").write_bytes(data)
    _timed("run.json reader (mutated run files, arbitrary JSON, bytes)",
           lambda: read_run_settings(run_dir), RunFileError)


FRAGMENTS = ["<tool_call>", "</tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "<function=", "</function>",
             "<think>", "</think>", "{", "}", "[", "]", '"name"', '"arguments"', ":", ",", '"', "\\", "lookup",
             "<|tool_call_begin|>", "<|tool_calls_section_begin|>", "```json", "\n", " ", "\u2028"]


@campaign_settings(ci_default=200)
@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=8), max_size=60).map("".join),
       st.sampled_from(list(ToolCallFamily)))
def test_every_parser_campaign(text: str, family: ToolCallFamily) -> None:
    _timed("tool-call parsers (every family, fragments of their markup)",
           lambda: NativeToolRenderer(family).parse(text), ())


@pytest.mark.parametrize("family", list(ToolCallFamily), ids=lambda family: family.value)
def test_a_megabyte_of_malformed_output_parses(family: ToolCallFamily) -> None:
    figures = record_campaign("tool-call parsers, 1 MB of malformed output per family", hang_s=2.0)
    text = ("<tool_call>{\"name\": [" + "{" * 50 + "[TOOL_CALLS] <function=x>") * (1_000_000 // 80)
    started = time.perf_counter()
    result = NativeToolRenderer(family).parse(text)
    seconds = time.perf_counter() - started
    figures.add(seconds)
    assert sum(span.end - span.start for span in result.spans) == len(text)  # nothing lost, nothing invented
