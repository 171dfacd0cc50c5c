"""The project's root error class, :class:`MetaSpiderError`.

Every error meta-spider raises on purpose subclasses it through its area's
own root (``AgentError``, ``BackendError``, ``WrapperError``, ``ToolError``,
``JudgeError``, ...), so a host can catch one class and print one line. This
module sits in the lowest layer and imports nothing: every folder may use it.

An error that carries data declares it as annotated fields and says its
message in :meth:`~MetaSpiderError.describe`; the root binds the
constructor's arguments to the fields (in order, or by name), so no
subclass writes an ``__init__`` that only stores them::

    class CheckpointError(WrapperError):
        path: str
        reason: str

        def describe(self) -> str:
            return f"cannot read Doubter checkpoint {self.path!r}: {self.reason}"
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["MetaSpiderError"]


class MetaSpiderError(Exception):
    """Base class of every error meta-spider raises on purpose.

    Its text names the problem and the fix on one line; constructors never
    log or print. A class without fields takes its message as is
    (``MetaSpiderError("text")``). A class with fields (the annotations of
    the nearest class that declares any; a class attribute is a field's
    default) is built from their values; ``__post_init__``, when defined,
    normalises them before :meth:`describe` writes the message.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = self.field_names()
        if not names:
            super().__init__(*args, **kwargs)
            return
        for name, value in self._bind(names, args, kwargs).items():
            setattr(self, name, value)
        post_init = getattr(self, "__post_init__", None)
        if post_init is not None:
            post_init()
        super().__init__(self.describe())

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The fields, in declaration order: the annotations of the nearest
        class in the hierarchy that declares any (``ClassVar`` excluded)."""
        for klass in cls.__mro__:
            if klass is MetaSpiderError or not issubclass(klass, MetaSpiderError):
                return ()
            names = tuple(name for name, hint in inspect.get_annotations(klass).items()
                          if not str(hint).startswith(("ClassVar", "typing.ClassVar")))
            if names:
                return names
        return ()

    def _bind(self, names: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        kind = type(self).__name__
        if len(args) > len(names):
            raise TypeError(f"{kind} takes {len(names)} arguments ({', '.join(names)}), got {len(args)}")
        values = dict(zip(names, args))
        for name, value in kwargs.items():
            if name not in names or name in values:
                problem = "unknown" if name not in names else "repeated"
                raise TypeError(f"{kind} got an {problem} argument {name!r}; its fields are {', '.join(names)}")
            values[name] = value
        # Only a default the error classes set counts (not, say, OSError's own filename).
        defaults = {name for klass in type(self).__mro__ if issubclass(klass, MetaSpiderError) for name in vars(klass)}
        missing = [name for name in names if name not in values and name not in defaults]
        if missing:
            raise TypeError(f"{kind} is missing {', '.join(missing)}")
        return {name: values[name] if name in values else getattr(type(self), name) for name in names}

    def describe(self) -> str:
        """The one-line message, written from the fields."""
        raise NotImplementedError(f"{type(self).__name__} declares fields but no describe()")
