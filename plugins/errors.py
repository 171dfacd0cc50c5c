"""The project's root error class, :class:`MetaSpiderError`.

Every error meta-spider raises on purpose subclasses it through its area's
own root (``AgentError``, ``BackendError``, ``WrapperError``, ``ToolError``,
``JudgeError``, ...), so a host can catch one class and print one line. This
module sits in the lowest layer and imports nothing: every folder may use it.
"""

from __future__ import annotations

__all__ = ["MetaSpiderError"]


class MetaSpiderError(Exception):
    """Base class of every error meta-spider raises on purpose.

    Its text names the problem and the fix on one line; constructors never
    log or print.
    """
