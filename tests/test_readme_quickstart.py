"""The README's quickstart runs as written: every ``python`` block of its
Quickstart section, in a fresh namespace, in a scratch folder (the two-pass
snippet saves a checkpoint there), on the shipped ``tiny`` base."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def quickstart_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_quickstart_has_its_three_snippets() -> None:
    blocks = quickstart_blocks()
    assert len(blocks) == 3
    assert "build_agent" in blocks[0] and "MetaSpiderPipeline" in blocks[1] and "Tool.from_function" in blocks[2]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_each_quickstart_snippet_runs(index: int, tiny_world, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme_quickstart"}
    exec(compile(quickstart_blocks()[index], f"README.md quickstart block {index + 1}", "exec"), namespace)
    printed = capsys.readouterr().out
    if index == 0:
        assert printed.startswith("answer ") and "42." in printed  # the calculator's result, stated
    elif index == 1:
        assert "P(correct)=" in printed and len(namespace["answers"]) == 16
        assert all(isinstance(answer, str) for answer in namespace["answers"])
        assert (tmp_path / "my_doubter" / "doubter_config.json").is_file()
    else:
        assert namespace["tool"].name == "population"
