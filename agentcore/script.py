"""Scripts for the ``fake`` backend: ``meta-agent chat --backend fake --script FILE``.

A script plays a model so that the REPL and ``meta-agent run`` work end to
end without one. The file is JSON, either a list of outputs or an object
``{"outputs": [...], "facts": {query: fact, ...}}`` whose ``facts`` become the
``lookup`` tool's knowledge base. Each output is one of

- a string: one completion, returned in full at once;
- ``{"text": "...", "delay_per_chunk": 0.2, "finish_reason": "eos"}``: one
  completion streamed through ``on_text`` in chunks with a pause before each
  (so a test or a demo can press Ctrl-C in the middle of a generation);
- ``{"p_correct": 0.8}``: an introspection for the next pass-1 ``read``.

Outputs are consumed in order by ``generate`` (and ``read``). This module
knows nothing about the agent loop; it only builds a backend.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from meta_spider.agentcore.errors import AgentError
from meta_spider.backends import Completion, FakeBackend, Introspection

__all__ = ["BackendScript", "ScriptFormatError", "ScriptedBackend", "load_script", "parse_script"]


class ScriptFormatError(AgentError, ValueError, fields=("source", "reason")):
    """A fake-backend script cannot be read."""

    template = (
        "cannot read the fake-backend script {source}: {reason}. A script is a JSON list of outputs "
        '(strings, {{"text": ..., "delay_per_chunk": ...}} or {{"p_correct": ...}}), or '
        '{{"outputs": [...], "facts": {{...}}}}'
    )


@dataclass(frozen=True)
class ScriptedOutput:
    """One scripted completion and how slowly it streams."""

    completion: Completion
    delay_per_chunk: float = 0.0


@dataclass
class BackendScript:
    """A parsed script: completions (with delays), introspections, facts."""

    outputs: list[ScriptedOutput | Introspection] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)


def _output(item: Any, position: int, source: str) -> ScriptedOutput | Introspection:
    if isinstance(item, str):
        return ScriptedOutput(Completion(item, finish_reason="eos", num_tokens=len(item.split())))
    if not isinstance(item, dict):
        raise ScriptFormatError(source, f"output #{position} is {item!r:.60}, not a string or an object")
    if "text" in item:
        text, delay = item["text"], item.get("delay_per_chunk", 0.0)
        if not isinstance(text, str):
            raise ScriptFormatError(source, f"output #{position}: 'text' must be a string, got {text!r:.60}")
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
            raise ScriptFormatError(source, f"output #{position}: 'delay_per_chunk' must be a number >= 0, "
                                    f"got {delay!r}")
        finish = item.get("finish_reason", "eos")
        return ScriptedOutput(Completion(text, finish_reason=finish, num_tokens=len(text.split())), float(delay))
    if "p_correct" in item:
        try:
            return Introspection(p_correct=float(item["p_correct"]))
        except (TypeError, ValueError) as exc:
            raise ScriptFormatError(source, f"output #{position}: bad p_correct ({exc})") from exc
    raise ScriptFormatError(source, f"output #{position} has neither 'text' nor 'p_correct': {item!r:.80}")


def parse_script(data: Any, *, source: str = "a script") -> BackendScript:
    """Build a :class:`BackendScript` from decoded JSON; raises
    :class:`ScriptFormatError` naming the bad entry."""
    facts: Any = {}
    if isinstance(data, dict):
        facts, data = data.get("facts", {}), data.get("outputs")
        if not isinstance(facts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in facts.items()):
            raise ScriptFormatError(source, "'facts' must be an object of query -> fact strings")
    if not isinstance(data, list):
        raise ScriptFormatError(source, f"the outputs must be a JSON list, got {type(data).__name__}")
    return BackendScript([_output(item, position, source) for position, item in enumerate(data, 1)], dict(facts))


def load_script(path: str | os.PathLike[str]) -> BackendScript:
    """Read a script file (UTF-8 JSON)."""
    target = Path(path)
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScriptFormatError(str(target), f"cannot open it ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise ScriptFormatError(str(target), f"invalid JSON ({exc})") from exc
    return parse_script(data, source=str(target))


class ScriptedBackend(FakeBackend):
    """A :class:`FakeBackend` whose scripted outputs may stream slowly.

    The pause happens before each chunk reaches ``on_text``, inside
    ``generate``, exactly where a real backend spends its time, so an
    interrupt lands in the middle of a generation.
    """

    def __init__(self, script: BackendScript | Sequence[Any] = (), **fake_settings: Any) -> None:
        if "outputs" in fake_settings:
            raise ValueError("ScriptedBackend takes its outputs from the script, not from outputs=")
        if not isinstance(script, BackendScript):
            script = parse_script(list(script))
        self.script = script
        self._delays: deque[float] = deque()
        super().__init__(**fake_settings)
        for output in script.outputs:
            if isinstance(output, ScriptedOutput):
                self.enqueue(output.completion)
                self._delays.append(output.delay_per_chunk)
            else:
                self.enqueue(output)

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 256,
        stop: Sequence[str] = (),
        inject: Introspection | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        delay = self._delays.popleft() if self._delays and self.pending else 0.0
        sink = on_text
        if on_text is not None and delay > 0:

            def sink(delta: str) -> None:
                time.sleep(delay)
                on_text(delta)

        return super().generate(prompt, max_new_tokens=max_new_tokens, stop=stop, inject=inject, on_text=sink)
