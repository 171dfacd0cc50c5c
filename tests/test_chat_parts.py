"""The REPL's parts: fake-backend scripts, the streaming wrapper, the gauge,
and the JSON form of step records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meta_spider.agentcore.render import p_correct_gauge
from meta_spider.agentcore.script import ScriptedBackend, ScriptFormatError, load_script, parse_script
from meta_spider.agentcore.steps import FinalStep, ModelStep
from meta_spider.agentcore.streaming import GenerationInterrupted, StreamingBackend
from meta_spider.backends import Introspection, StopBackend
from meta_spider.policies import Answer, LatentDecision


def test_script_round_trip_and_streaming(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({
        "outputs": ["plain", {"text": "slow reply<|im_end|>user: more", "delay_per_chunk": 0.001}, {"p_correct": 0.4}],
        "facts": {"a": "b"},
    }))
    script = load_script(path)
    assert script.facts == {"a": "b"}
    backend = StopBackend(ScriptedBackend(script))
    pieces: list[str] = []
    assert backend.generate("p1", on_text=pieces.append).text == "plain"
    pieces.clear()
    second = backend.generate("p2", on_text=pieces.append)
    assert (second.text, second.finish_reason) == ("slow reply", "stop")
    assert "".join(pieces) == "slow reply" and len(pieces) > 1  # streamed in chunks, cut at the turn's end
    assert backend.read("p3").p_correct == 0.4


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"outputs": "text"}, "must be a JSON list"),
        ([3], "output #1 is 3"),
        ([{"text": "x", "delay_per_chunk": -1}], "'delay_per_chunk' must be a number >= 0"),
        ([{"what": 1}], "neither 'text' nor 'p_correct'"),
        ({"outputs": [], "facts": {"q": 1}}, "'facts' must be an object"),
    ],
)
def test_bad_scripts_name_the_problem(data: object, fragment: str) -> None:
    with pytest.raises(ScriptFormatError) as info:
        parse_script(data, source="s.json")
    assert fragment in str(info.value) and "s.json" in str(info.value)


def test_streaming_backend_tees_and_interrupts() -> None:
    inner = ScriptedBackend(["abcdefghij", "second"])
    heard: list[str] = []
    stream = StreamingBackend(StopBackend(inner), listener=heard.append)
    own: list[str] = []
    assert stream.generate("p", on_text=own.append).text == "abcdefghij"
    assert "".join(heard) == "".join(own) == "abcdefghij"
    assert stream.history == ["p"]  # backend extras stay reachable through the wrapper

    def stop_after_first(delta: str) -> None:
        stream.interrupt()

    stream.listener = stop_after_first
    with pytest.raises(GenerationInterrupted) as info:
        stream.generate("q")
    assert info.value.emitted == "seco"  # the first chunk went out, the second never did
    with pytest.raises(GenerationInterrupted):  # still set until cleared
        stream.read("r")
    stream.clear_interrupt()
    with pytest.raises(Exception, match="no scripted output left"):
        stream.generate("after")


def test_gauge() -> None:
    assert p_correct_gauge(0.5, width=10).plain == "P(correct) █████░░░░░ 0.50"
    assert p_correct_gauge(1.0, confident=True, width=4).plain == "P(correct) ████ 1.00  confident"
    with pytest.raises(ValueError, match="1.5"):
        p_correct_gauge(1.5)


def test_step_records_serialise_without_backend_arrays() -> None:
    introspection = Introspection(p_correct=0.9, cognitive_tokens=object(), extras={"layer_states": object()})
    decision = LatentDecision("Paris.", p_correct=0.9, confident=True, introspection=introspection,
                              metadata={"policy": "doubter", "scores": (0.1, float("nan")), "tensor": object()})
    model = ModelStep(1, decision, Answer("Paris."))
    record = json.loads(json.dumps(model.to_dict()))
    assert record["decision"]["introspection"] == {"p_correct": 0.9, "extras": ["layer_states"]}
    assert record["decision"]["metadata"]["scores"] == [0.1, None]
    assert record["decision"]["metadata"]["tensor"].startswith("<object object")
    assert FinalStep("max_steps", None, 8).to_dict() == {
        "type": "final", "outcome": "max_steps", "text": None, "model_steps": 8, "action": None}
