"""The README and docs/ name only constants that exist: every ALL_CAPS name
with an underscore they mention (a module constant, an environment variable,
a preset field) appears in the repository's code or scripts, so a renamed
constant or a placeholder left in a table is caught."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
CODE_SUFFIXES = (".py", ".sh", ".toml", ".cfg", ".json", ".yml", ".yaml")
SKIPPED_PARTS = {".venv", "build", "dist", "__pycache__", ".git", "node_modules"}
CONSTANT = re.compile(r"(?<![\w./-])([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(?![\w(])")


def constants_named(text: str) -> set[str]:
    """The ALL_CAPS names with an underscore in ``text``, not inside a path nor called."""
    return set(CONSTANT.findall(text))


def code_text() -> str:
    """Every code and script file but this one (whose examples name placeholders)."""
    files = [path for path in REPO_ROOT.rglob("*")
             if path.is_file() and path != Path(__file__).resolve()
             and not SKIPPED_PARTS & set(path.relative_to(REPO_ROOT).parts)
             and (path.suffix in CODE_SUFFIXES or path.parent.name == ".ci")]
    return "\n".join(path.read_text(encoding="utf-8", errors="ignore") for path in files)


def test_constants_are_found_in_prose_and_tables() -> None:
    text = "| f16 | GGUF_NEW | set `META_SPIDER_WORLD_CACHE=/tmp/x`; see loom/DEMO_NOTES.md and OCCLUSION_MAX_WORDS; MAKE_IT(x)"
    assert constants_named(text) == {"GGUF_NEW", "META_SPIDER_WORLD_CACHE", "OCCLUSION_MAX_WORDS"}


def test_docs_name_only_constants_the_code_has() -> None:
    code = code_text()
    missing = sorted(f"{doc.relative_to(REPO_ROOT)}: {name}" for doc in DOCS
                     for name in constants_named(doc.read_text(encoding="utf-8")) if name not in code)
    assert not missing, "named in the docs, found nowhere in the code:\n" + "\n".join(missing)
