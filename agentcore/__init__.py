"""The agent loop: :class:`MetaAgent`, :class:`Session`, step records,
actions and errors.

Importing this package loads no torch and no llama_cpp: backends bring
those in when they are built.
"""

from meta_spider.agentcore.errors import ActionTypeError, AgentError, SessionFormatError
from meta_spider.agentcore.factory import build_agent
from meta_spider.agentcore.loop import MetaAgent
from meta_spider.agentcore.session import Session, ToolResultRecord
from meta_spider.agentcore.steps import FinalStep, ModelStep, ObservationKind, Outcome, Step, ToolStep
from meta_spider.policies.actions import (
    REFUSAL_SENTENCE, Action, Answer, Refuse, ToolCall, ToolInvocation, UnparsedCall,
)

__all__ = [
    "REFUSAL_SENTENCE",
    "Action",
    "ActionTypeError",
    "AgentError",
    "Answer",
    "FinalStep",
    "MetaAgent",
    "ModelStep",
    "ObservationKind",
    "Outcome",
    "Refuse",
    "Session",
    "SessionFormatError",
    "Step",
    "ToolCall",
    "ToolInvocation",
    "ToolResultRecord",
    "ToolStep",
    "UnparsedCall",
    "build_agent",
]
