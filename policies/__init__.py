"""Decision policies and action renderers.

A :class:`Policy` proposes what the model would say (a
:class:`LatentDecision`); an :class:`ActionRenderer` turns that into an
``Answer``, ``ToolCall`` or ``Refuse``. Importing this package loads no
torch: backends do the heavy work.
"""

from meta_spider.policies.actions import (
    REFUSAL_SENTENCE, Action, Answer, Refuse, ToolCall, ToolInvocation, UnparsedCall, is_refusal,
)
from meta_spider.policies.base import ActionRenderer, LatentDecision, Policy, SessionView, ToolCatalog
from meta_spider.policies.direct import DirectPolicy
from meta_spider.policies.renderer import DefaultRenderer

__all__ = [
    "REFUSAL_SENTENCE",
    "Action",
    "ActionRenderer",
    "Answer",
    "DefaultRenderer",
    "DirectPolicy",
    "LatentDecision",
    "Policy",
    "Refuse",
    "SessionView",
    "ToolCall",
    "ToolCatalog",
    "ToolInvocation",
    "UnparsedCall",
    "is_refusal",
]
