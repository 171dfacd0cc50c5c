"""An example third-party meta-spider plugin (installed by scripts/test.sh).

It contributes the ``reverse_text`` tool and the ``echo-policy`` policy
through the entry-point group ``meta_spider``, exactly as an outside package
would, to prove the plugin host loads foreign distributions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from meta_spider.plugins import hookimpl
from meta_spider.policies import LatentDecision
from meta_spider.tools import Tool


def reverse_text(text: str) -> str:
    """Reverse a piece of text character by character.

    Args:
        text: The text to reverse.
    """
    return text[::-1]


@dataclass
class EchoPolicy:
    """Proposes the last user message back, without running the model."""

    prefix: str = ""

    def decide(self, session: Any, backend: Any, tools: Any) -> LatentDecision:
        last_user = next(
            (m.get("content", "") for m in reversed(list(session.messages)) if m.get("role") == "user"), ""
        )
        return LatentDecision(text=f"{self.prefix}{last_user}", metadata={"policy": "echo-policy"})


@hookimpl
def register_tools(register: Callable[[Tool], None]) -> None:
    register(Tool.from_function(reverse_text))


@hookimpl
def register_policies(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("echo-policy", EchoPolicy)
