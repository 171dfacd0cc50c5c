"""Built-in backends plugin: ``fake``, ``transformers`` and ``llamacpp``.

The heavy backends are registered by factories that import their module only
when called, so loading this plugin (and listing backends) never imports
torch or llama_cpp.
"""

from __future__ import annotations

from typing import Any, Callable

from meta_spider.plugins import hookimpl


def fake_backend(**settings: Any) -> Any:
    """Build a :class:`~meta_spider.backends.fake.FakeBackend` (``outputs=``, ``chat_template=``)."""
    from meta_spider.backends.fake import FakeBackend

    return FakeBackend(**settings)


def transformers_backend(**settings: Any) -> Any:
    """Build the transformers backend (imports torch now, not at plugin load)."""
    from meta_spider.backends.transformers import TransformersBackend

    return TransformersBackend.from_settings(**settings)


def llamacpp_backend(**settings: Any) -> Any:
    """Build the llama.cpp backend (imports llama_cpp now, not at plugin load)."""
    from meta_spider.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend.from_settings(**settings)


@hookimpl
def register_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register ``fake``, ``transformers`` and ``llamacpp``."""
    register("fake", fake_backend)
    register("transformers", transformers_backend)
    register("llamacpp", llamacpp_backend)
