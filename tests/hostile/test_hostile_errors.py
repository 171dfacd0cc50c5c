"""One root for the project's errors: every exception class in the tree
derives from :class:`~meta_spider.plugins.MetaSpiderError` (read with
``ast``), and the host CLI turns an error of any area into one line and
status 1. Also the root's own contract: fields bound from the constructor,
the message from a template or ``describe``."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path
from typing import Callable

import pytest

from meta_spider.agentcore.cli import run_group
from meta_spider.plugins import PLUGINS_ENV_VAR, MetaSpiderError
from test_packaging import COMPAT, REPO_ROOT, ROOT_FOLDERS
from test_plugins_broken import fake_distribution

def project_classes() -> dict[str, list[tuple[Path, ast.ClassDef]]]:
    """Every class defined in the project's modules (the compat re-exports
    left out), by name."""
    modules = [path for root in ROOT_FOLDERS for path in sorted((REPO_ROOT / root).rglob("*.py"))
               if not path.relative_to(REPO_ROOT).is_relative_to(COMPAT)]
    found: dict[str, list[tuple[Path, ast.ClassDef]]] = {}
    for path in modules:
        classes = [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                   if isinstance(node, ast.ClassDef)]
        for node in classes:
            found.setdefault(node.name, []).append((path, node))
    return found


def base_names(node: ast.ClassDef) -> list[str]:
    return [ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases]


def test_every_project_exception_derives_from_the_root() -> None:
    classes = project_classes()

    def reaches(name: str, goal: Callable[[str], bool], seen: frozenset[str] = frozenset()) -> bool:
        if goal(name):
            return True
        if name in seen or name not in classes:
            return False
        return any(reaches(base, goal, seen | {name}) for _, node in classes[name] for base in base_names(node))

    def builtin_exception(name: str) -> bool:
        value = getattr(builtins, name, None)
        return isinstance(value, type) and issubclass(value, BaseException) and not issubclass(value, Warning)

    outside, escaping = [], []
    for name, places in classes.items():
        for path, node in places:
            if name == "MetaSpiderError" or not any(reaches(base, builtin_exception) for base in base_names(node)):
                continue
            if reaches(name, lambda n: n == "MetaSpiderError"):
                continue
            where = f"{path.relative_to(REPO_ROOT)}:{node.lineno} {name}"
            if not name.startswith("_"):
                outside.append(where)
            elif f"except {name}" not in path.read_text() and f"except ({name}" not in path.read_text():
                escaping.append(where)  # a private signal must be caught where it is raised
    assert not outside, "exceptions outside MetaSpiderError:\n" + "\n".join(outside)
    assert not escaping, "private exceptions that leave their module:\n" + "\n".join(escaping)


FAILING_COMMANDS = '''
import click

from meta_spider.agentcore.errors import SessionFormatError
from meta_spider.backends.base import BackendCapabilityError
from meta_spider.loom.datasets.errors import DatasetFormatError
from meta_spider.native.errors import MissingChatTemplateError
from meta_spider.plugins import hookimpl
from meta_spider.plugins.registry import UnknownComponentError
from meta_spider.tools.limits import ToolTimeoutError
from meta_spider.wrapper.errors import CheckpointError

ERRORS = {
    "plugins": UnknownComponentError("backend", "nope", ("fake", "transformers")),
    "wrapper": CheckpointError("/runs/a/checkpoints/best", "doubter_config.json is missing"),
    "backends": BackendCapabilityError("fake", "read", "attach a Doubter first"),
    "native": MissingChatTemplateError("tiny-tokenizer"),
    "tools": ToolTimeoutError("calculator", 2.0),
    "agentcore": SessionFormatError("session.json", "not JSON"),
    "loom": DatasetFormatError("qa.jsonl", "not a JSON object", line=3, fix="write one object per line"),
}


@click.group("agent")
def group():
    pass


@group.command("fail")
@click.argument("area")
def fail(area):
    raise ERRORS[area]


@hookimpl
def register_commands(register):
    register(group)
'''

AREAS = ("plugins", "wrapper", "backends", "native", "tools", "agentcore", "loom")


@pytest.fixture(scope="module")
def failing_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_distribution(tmp_path_factory.mktemp("site"), "meta-spider-failing", "failing", "meta_spider_failing",
                             FAILING_COMMANDS)


@pytest.mark.parametrize("area", AREAS)
def test_the_host_cli_turns_any_area_error_into_one_line(area: str, failing_site: Path, capsys,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PLUGINS_ENV_VAR, raising=False)
    monkeypatch.syspath_prepend(str(failing_site))
    with pytest.raises(SystemExit) as info:
        run_group("agent", ["fail", area], "meta-agent")
    import meta_spider_failing

    error = meta_spider_failing.ERRORS[area]
    assert isinstance(error, MetaSpiderError) and error.__module__.split(".")[1] == area
    captured = capsys.readouterr()
    assert info.value.code == 1
    assert captured.out == "" and captured.err == f"meta-agent: error: {error}\n"


class Mismatch(MetaSpiderError, fields=("expected", "got")):
    """A test error with two fields, one defaulted, and a normalising hook."""

    template = "expected one of {expected}, got {got}; pick one of those"
    got = "nothing"

    def __post_init__(self) -> None:
        self.expected = ", ".join(self.expected)


class Described(Mismatch):
    """Fields inherited, the message written by code."""

    def describe(self) -> str:
        return f"{self.got!r} is not {self.expected}"


def test_fields_bind_in_order_or_by_name_and_the_message_comes_from_the_template() -> None:
    error = Mismatch(["a", "b"], got="c")
    assert error.expected == "a, b" and error.got == "c"
    assert str(error) == error.args[0] == "expected one of a, b, got c; pick one of those"
    assert Mismatch(expected=["a"]).got == "nothing"
    assert str(Described(["a"], "b")) == "'b' is not a"
    assert str(MetaSpiderError("a plain message")) == "a plain message"


@pytest.mark.parametrize(("args", "kwargs", "complaint"), [
    ((["a"], "b", "c"), {}, "takes 2 arguments"),
    ((), {"got": "c"}, "missing expected"),
    ((["a"],), {"expected": ["b"]}, "repeated argument 'expected'"),
    ((["a"],), {"colour": "red"}, "unknown argument 'colour'"),
])
def test_a_wrong_construction_names_the_fields(args, kwargs, complaint) -> None:
    with pytest.raises(TypeError, match=complaint) as info:
        Mismatch(*args, **kwargs)
    assert "Mismatch" in str(info.value)
