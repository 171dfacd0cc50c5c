"""Lazy re-exports for package ``__init__`` modules: a name is imported from
its home module on first use, so importing the package stays light (no
torch, no llama_cpp) however heavy the names it offers are.

Used by the published import names (``meta_core``, ``meta_loom``,
``meta_agent``, ``meta_deploy``, the ``meta_spider`` umbrella), which are
thin: every name is the project's own object, found where it lives. This
module knows nothing about which names those are.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, Sequence


def lazy_exports(package: str, exports: Mapping[str, str],
                 namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose ``exports`` map a
    public name to the module that defines it (``"meta_spider.wrapper.doubter"``);
    a loaded name is cached in the package's ``namespace``."""
    exports = dict(exports)

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__


def publish(namespace: dict[str, Any], homes: Mapping[str, Sequence[str]]) -> None:
    """Make the package whose globals are ``namespace`` offer, lazily, the
    names listed under each home module (``{"meta_spider.wrapper.config":
    ("MetaSpiderConfig", ...)}``): sets its ``EXPORTS`` (name to module),
    ``__all__``, ``__getattr__`` and ``__dir__``."""
    exports = {name: module for module, names in homes.items() for name in names}
    namespace["EXPORTS"] = exports
    namespace["__all__"] = sorted(exports)
    namespace["__getattr__"], namespace["__dir__"] = lazy_exports(namespace["__name__"], exports, namespace)
