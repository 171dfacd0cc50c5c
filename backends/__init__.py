"""Inference backends: the :class:`InferenceBackend` contract, the
scriptable :class:`FakeBackend` and the :class:`StopBackend` wrapper.

The torch (``meta_spider.backends.transformers``) and llama.cpp
(``meta_spider.backends.llamacpp``) backends are *not* imported here: import
them, or build them through the ``register_backends`` plugin hook, when you
need them, so that importing this package stays light.
"""

from meta_spider.backends.base import (
    BackendCapabilityError,
    BackendError,
    Completion,
    InferenceBackend,
    Introspection,
    Message,
    ToolSchema,
    WrappedBackend,
    use_tool_family,
)
from meta_spider.backends.fake import FAKE_CHAT_TEMPLATE, FakeBackend, FakeBackendExhausted
from meta_spider.backends.stop import DEFAULT_TURN_STOPS, StopBackend, cut_at_stop, held_back

__all__ = [
    "DEFAULT_TURN_STOPS",
    "FAKE_CHAT_TEMPLATE",
    "BackendCapabilityError",
    "BackendError",
    "Completion",
    "FakeBackend",
    "FakeBackendExhausted",
    "InferenceBackend",
    "Introspection",
    "Message",
    "StopBackend",
    "ToolSchema",
    "WrappedBackend",
    "cut_at_stop",
    "held_back",
    "use_tool_family",
]
