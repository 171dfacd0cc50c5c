"""meta-spider: a frozen LLM reads its own activations and learns when to
trust itself.

``from meta_spider import MetaSpiderPipeline, Doubter, ...`` offers the
published names of ``meta_core``, ``meta_loom``, ``meta_agent`` and
``meta_deploy`` in one place; the project's code lives in the subpackages
(``meta_spider.wrapper``, ``loom``, ``agentcore``, ...). Every name is the
project's own object, imported on first use: ``import meta_spider`` loads
neither torch nor llama_cpp.
"""

from __future__ import annotations

import importlib
from typing import Any

PUBLISHED_PACKAGES = ("meta_core", "meta_loom", "meta_agent", "meta_deploy")


def _home(name: str) -> str | None:
    # Looked up on use, not at import: importing any meta_spider subpackage
    # runs this file, and the published packages import meta_spider.plugins.
    for package in PUBLISHED_PACKAGES:
        module = importlib.import_module(package).EXPORTS.get(name)
        if module is not None:
            return module
    return None


def __getattr__(name: str) -> Any:
    module = _home(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    names = set(globals())
    for package in PUBLISHED_PACKAGES:
        names |= set(importlib.import_module(package).EXPORTS)
    return sorted(names)
