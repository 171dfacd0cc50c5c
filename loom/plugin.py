"""The loom's built-in plugin: the ``loom`` command group (``metaloom``) and
the datasets it ships.

Registration is cheap: the command modules import only click and light
helpers; torch and transformers load when a command runs.
"""

from __future__ import annotations

from typing import Any, Callable

from meta_spider.plugins import hookimpl


@hookimpl
def register_datasets(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from meta_spider.loom.datasets import register_builtin_datasets

    register_builtin_datasets(register)
