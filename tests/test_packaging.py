"""Packaging: every package folder is listed, everything installs under the
``meta_spider`` namespace (plus the published names ``meta_core``,
``meta_loom``, ``meta_agent``, ``meta_deploy``), nothing installs a
top-level ``tools``, ``plugins`` or ``wrapper``, and a wheel built from the
clone installs and runs."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
ROOT_FOLDERS = ("agentcore", "plugins", "policies", "backends", "wrapper", "loom", "native", "tools")
COMPAT = Path("loom") / "compat"
"""The published import names live here, each installed at the top level."""
COMPAT_PACKAGES = ("meta_spider", "meta_core", "meta_loom", "meta_agent", "meta_deploy")


def pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def tree_packages() -> set[str]:
    """Dotted names of every folder with an __init__.py under the root folders."""
    found = set()
    for root in ROOT_FOLDERS:
        for init in (REPO_ROOT / root).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(REPO_ROOT)
            if relative.is_relative_to(COMPAT):
                found.add(".".join(relative.relative_to(COMPAT).parts))
            else:
                found.add(".".join(("meta_spider", *relative.parts)))
    return found


def test_packages_list_matches_the_tree() -> None:
    setuptools_config = pyproject()["tool"]["setuptools"]
    listed = setuptools_config["packages"]
    assert len(listed) == len(set(listed)), "a package is listed twice"
    assert set(listed) == tree_packages()
    assert "packages.find" not in str(setuptools_config)  # discovery would also find tests/ and scripts


def test_package_dir_maps_each_root_folder_into_the_namespace() -> None:
    mapping = pyproject()["tool"]["setuptools"]["package-dir"]
    assert mapping == {f"meta_spider.{root}": root for root in ROOT_FOLDERS} | {
        name: str(COMPAT / name) for name in COMPAT_PACKAGES}
    listed = pyproject()["tool"]["setuptools"]["packages"]
    assert all(name.startswith("meta_spider.") or name in COMPAT_PACKAGES for name in listed)


def test_console_scripts_point_at_the_cli() -> None:
    scripts = pyproject()["project"]["scripts"]
    assert scripts == {
        "metaspider": "meta_spider.agentcore.cli:main",
        "meta-agent": "meta_spider.agentcore.cli:meta_agent",
        "metaloom": "meta_spider.agentcore.cli:metaloom",
        "metadeploy": "meta_spider.agentcore.cli:metadeploy",
    }
    from meta_spider.agentcore import cli

    for target in scripts.values():
        assert callable(getattr(cli, target.split(":")[1]))


def test_no_top_level_names_leak_into_the_environment(tmp_path: Path) -> None:
    # From a neutral folder (not the repo root, which Python would put on
    # sys.path) the generic names must not resolve to this project.
    code = (
        "import importlib.util, json\n"
        "names = ['tools', 'plugins', 'wrapper', 'agentcore', 'policies', 'backends', 'loom', 'native']\n"
        "specs = {n: importlib.util.find_spec(n) for n in names}\n"
        "print(json.dumps({n: (s.origin or str(list(s.submodule_search_locations or []))) if s else None"
        " for n, s in specs.items()}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert str(REPO_ROOT) not in result.stdout, result.stdout


def _build_wheel(tmp_path: Path) -> Path:
    """The real wheel, built from a copy of the sources (no network)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO_ROOT / name).exists():
            shutil.copy2(REPO_ROOT / name, source / name)
    if not (source / "README.md").exists():  # the readme is metadata only; its absence is not this test's concern
        (source / "README.md").write_text("meta-spider\n")
    for root in ROOT_FOLDERS:
        shutil.copytree(REPO_ROOT / root, source / root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path / "wheel"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("meta_spider-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_installs_only_the_namespace(tmp_path: Path) -> None:
    """Build the real wheel and read its file list."""
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {*COMPAT_PACKAGES, next(t for t in top_level if t.endswith(".dist-info"))}
    for package in tree_packages():
        assert package.replace(".", "/") + "/__init__.py" in names
    assert not any("/compat/" in name for name in names)  # each published name once, at the top
    assert "meta_spider/loom/world/frames.json" in names  # the world's question wording is package data
    shipped = [name for name in names if name.startswith("meta_spider/loom/world/shipped-bases/")]
    assert {name.rsplit("/", 1)[1] for name in shipped} >= {"model.safetensors", "tokenizer.json", "base.json"}
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "meta-agent = meta_spider.agentcore.cli:meta_agent" in entry_points


@pytest.mark.slow
def test_a_non_editable_install_from_the_wheel_runs(tmp_path: Path) -> None:
    """What the README's install from a clone gives: the wheel installed (no
    dependencies, no index: this environment has them) into a scratch
    folder, its own ``meta-agent`` script listing the tools and its own
    files answering ``from meta_spider import ...``."""
    wheel = _build_wheel(tmp_path)
    target = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                             str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    env = {**os.environ, "PYTHONPATH": str(target), "META_SPIDER_PLUGINS": ""}
    tools = subprocess.run([str(target / "bin" / "meta-agent"), "tools", "--json"], capture_output=True, text=True,
                           timeout=120, env=env, cwd=tmp_path)
    assert tools.returncode == 0, tools.stderr
    assert {entry["name"] for entry in json.loads(tools.stdout)} >= {"calculator"}
    code = ("import meta_spider, meta_core, meta_loom, meta_agent, meta_deploy, sys\n"
            "print(meta_spider.__file__); print(meta_core.__file__); print('torch' in sys.modules)\n"
            "from meta_spider import MetaSpiderPipeline, Doubter, Trainer, QABenchmark\n")
    where = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                           cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    umbrella, core, torch_loaded = where.stdout.split()
    assert Path(umbrella).is_relative_to(target) and Path(core).is_relative_to(target)
    assert torch_loaded == "False"  # the published names stay lazy


# ------------------------------------------------------------ import arrows


def readme_arrows() -> dict[str, set[str]]:
    """The folders each root folder may import directly, read from the
    README's "Arrows of import" sentence (``X`` <- everything; ``X`` -> ``Y``,
    ``Z``; ``X`` -> all), closed under following the arrows: what a folder
    may import, it may also import what that imports."""
    text = " ".join((REPO_ROOT / "README.md").read_text(encoding="utf-8").split())
    sentence = re.search(r"Arrows of import: (.*?)\. ", text)
    assert sentence, "the README lost its 'Arrows of import:' sentence"
    direct: dict[str, set[str]] = {root: set() for root in ROOT_FOLDERS}
    for clause in sentence.group(1).split(";"):
        names = re.findall(r"`(\w+)`", clause)
        assert names and set(names) <= set(ROOT_FOLDERS), f"unreadable arrow clause: {clause!r}"
        if "<- everything" in clause:
            for root in ROOT_FOLDERS:
                direct[root].add(names[0])
        elif "-> all" in clause:
            direct[names[0]] |= set(ROOT_FOLDERS)
        else:
            assert "->" in clause, f"unreadable arrow clause: {clause!r}"
            direct[names[0]] |= set(names[1:])
    allowed = {}
    for root in ROOT_FOLDERS:
        seen, todo = set(), [root]
        while todo:
            for target in direct[todo.pop()] - seen:
                seen.add(target)
                todo.append(target)
        allowed[root] = seen - {root}
    return allowed


def project_imports() -> list[tuple[str, str, Path, int]]:
    """(importing folder, imported folder, file, line) for every import of
    another root folder anywhere in a module: top level, inside functions,
    under ``if TYPE_CHECKING``. The compat packages re-export everything by
    design and are left out."""
    found = []
    for root in ROOT_FOLDERS:
        for path in (REPO_ROOT / root).rglob("*.py"):
            if path.relative_to(REPO_ROOT).is_relative_to(COMPAT):
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                for module in modules:
                    parts = module.split(".")
                    if parts[0] == "meta_spider" and len(parts) > 1 and parts[1] in ROOT_FOLDERS and parts[1] != root:
                        found.append((root, parts[1], path, node.lineno))
    return found


def test_the_readme_arrows_read_as_the_layers() -> None:
    allowed = readme_arrows()
    assert allowed["plugins"] == set()
    assert allowed["wrapper"] == {"plugins"}
    assert allowed["loom"] == set(ROOT_FOLDERS) - {"loom"}
    assert "loom" not in set().union(*(allowed[root] for root in ROOT_FOLDERS if root != "loom"))


def test_no_import_runs_against_the_readme_arrows() -> None:
    allowed = readme_arrows()
    against = [f"{path.relative_to(REPO_ROOT)}:{line}: {source} imports {target}"
               for source, target, path, line in project_imports() if target not in allowed[source]]
    assert not against, "\n".join(against)


def test_no_import_cycle_between_folders() -> None:
    graph: dict[str, set[str]] = {root: set() for root in ROOT_FOLDERS}
    for source, target, _, _ in project_imports():
        graph[source].add(target)
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            assert state.get(target) != "open", "folder import cycle: " + " -> ".join([*path, node, target])
            if target not in state:
                visit(target, [*path, node])
        state[node] = "done"

    for root in ROOT_FOLDERS:
        if root not in state:
            visit(root, [])


# ------------------------------------------------------------ the wrapper's private state


def private_names_by_class(path: Path) -> dict[str, tuple[set[str], list[str]]]:
    """class name -> (the private names it owns, its base classes' names) for
    every class in ``path``: methods and class attributes named ``_x``, and
    ``self._x`` it assigns anywhere in its body (dunders are not private)."""
    classes = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ClassDef):
            continue
        owned = set()
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                owned.add(item.name)
            targets = item.targets if isinstance(item, ast.Assign) else [getattr(item, "target", None)]
            owned |= {target.id for target in targets if isinstance(target, ast.Name)}
        for inner in ast.walk(node):
            if isinstance(inner, ast.Attribute) and isinstance(inner.ctx, ast.Store) and \
                    isinstance(inner.value, ast.Name) and inner.value.id == "self":
                owned.add(inner.attr)
        bases = [base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "") for base in node.bases]
        classes[node.name] = ({name for name in owned if _is_private(name)}, bases)
    return classes


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def project_modules(root: str) -> list[Path]:
    return [path for path in (REPO_ROOT / root).rglob("*.py") if "__pycache__" not in path.parts]


def wrapper_private_uses() -> list[str]:
    """Every ``x._name`` (or ``getattr(x, "_name")``) outside ``wrapper/`` whose
    name is a private attribute of a wrapper class: ``self._name`` counts too,
    unless the class using it (or a non-wrapper class it derives from) owns
    that name itself."""
    wrapper_private = set()
    for path in project_modules("wrapper"):
        for owned, _ in private_names_by_class(path).values():
            wrapper_private |= owned
    outside = {path: private_names_by_class(path) for root in ROOT_FOLDERS if root != "wrapper"
               for path in project_modules(root)}
    project_classes: dict[str, tuple[set[str], list[str]]] = {}
    for classes in outside.values():
        for name, (owned, bases) in classes.items():
            known = project_classes.setdefault(name, (set(), []))
            known[0].update(owned)
            known[1].extend(bases)

    def owned_with_bases(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        owned, bases = project_classes.get(name, (set(), []))
        return owned.union(*(owned_with_bases(base, seen | {name}) for base in bases if base not in seen))

    uses = []
    for path, classes in outside.items():

        def visit(node: ast.AST, owner: set[str]) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef):
                    visit(child, owned_with_bases(child.name))
                    continue
                if isinstance(child, ast.Attribute) and child.attr in wrapper_private:
                    own = isinstance(child.value, ast.Name) and child.value.id in ("self", "cls")
                    if not (own and child.attr in owner):
                        uses.append(f"{path.relative_to(REPO_ROOT)}:{child.lineno}: .{child.attr}")
                named = child.args[1] if isinstance(child, ast.Call) and len(child.args) > 1 and \
                    getattr(child.func, "id", None) in ("getattr", "setattr", "hasattr", "delattr") else None
                if isinstance(named, ast.Constant) and named.value in wrapper_private:
                    uses.append(f"{path.relative_to(REPO_ROOT)}:{child.lineno}: {child.func.id}(..., {named.value!r})")
                visit(child, owner)

        visit(ast.parse(path.read_text(encoding="utf-8")), set())
    return uses


def test_wrapper_private_names_are_found() -> None:
    """The rule below knows the wrapper's private state: the decoder's and the
    pipeline's attributes, and private methods."""
    classes = private_names_by_class(REPO_ROOT / "wrapper" / "passes.py")
    assert {"_cache_kwarg", "_keeps_logits", "_continue"} <= classes["TwoPassDecoder"][0]
    assert {"_doubters", "_require_doubter"} <= private_names_by_class(REPO_ROOT / "wrapper" / "pipeline.py")[
        "MetaSpiderPipeline"][0]


def test_nothing_outside_the_wrapper_names_its_private_state() -> None:
    """Other folders use the wrapper's public API only, so a change inside a
    wrapper class cannot silently break them."""
    uses = wrapper_private_uses()
    assert not uses, "private attributes of wrapper classes used outside wrapper/:\n" + "\n".join(uses)
