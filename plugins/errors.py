"""The project's root error class, :class:`MetaSpiderError`.

Every error meta-spider raises on purpose subclasses it through its area's
own root (``AgentError``, ``BackendError``, ``WrapperError``, ``ToolError``,
``JudgeError``, ...), so a host can catch one class and print one line. This
module sits in the lowest layer and imports nothing: every folder may use it.

An error that carries data names its fields in its header and its message
as a ``str.format`` template over its attributes: the fields, and what a
``__post_init__`` derives from them for display (or a
:meth:`~MetaSpiderError.describe` method where the message needs more code);
the root binds the constructor's arguments to the fields (in order, or by
name), so no subclass writes an ``__init__`` that only stores them::

    class CheckpointError(WrapperError, fields=("path", "reason")):
        template = "cannot read Doubter checkpoint {path!r}: {reason}"
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence

__all__ = ["MetaSpiderError"]


class MetaSpiderError(Exception):
    """Base class of every error meta-spider raises on purpose.

    Its text names the problem and the fix on one line; constructors never
    log or print. A class without fields takes its message as is
    (``MetaSpiderError("text")``). A class with fields (``fields=`` in its
    header, inherited by its subclasses; a class attribute of a field's name
    is its default) is built from their values; ``__post_init__``, when
    defined, normalises them and may derive more attributes, then
    :meth:`describe` writes the message (by default ``template`` formatted
    with the instance's attributes).
    """

    field_names: ClassVar[tuple[str, ...]] = ()
    """The fields, in constructor order (set by ``fields=`` in a class header)."""
    template: ClassVar[Optional[str]] = None

    def __init_subclass__(cls, fields: Optional[Sequence[str]] = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if fields is not None:
            cls.field_names = tuple(fields)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not self.field_names:
            super().__init__(*args, **kwargs)
            return
        for name, value in self._bind(args, kwargs).items():
            setattr(self, name, value)
        post_init = getattr(self, "__post_init__", None)
        if post_init is not None:
            post_init()
        super().__init__(self.describe())

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        kind, names = type(self).__name__, self.field_names
        if len(args) > len(names):
            raise TypeError(f"{kind} takes {len(names)} arguments ({', '.join(names)}), got {len(args)}")
        values = dict(zip(names, args))
        for name, value in kwargs.items():
            if name not in names or name in values:
                problem = "unknown" if name not in names else "repeated"
                raise TypeError(f"{kind} got an {problem} argument {name!r}; its fields are {', '.join(names)}")
            values[name] = value
        # Only a default the error classes set counts (not, say, OSError's own filename).
        defaults = {name for klass in type(self).__mro__ if issubclass(klass, MetaSpiderError)
                    and klass is not MetaSpiderError for name in vars(klass)}
        missing = [name for name in names if name not in values and name not in defaults]
        if missing:
            raise TypeError(f"{kind} is missing {', '.join(missing)}")
        return {name: values[name] if name in values else getattr(type(self), name) for name in names}

    def describe(self) -> str:
        """The one-line message, written from the fields."""
        if self.template is None:
            raise NotImplementedError(f"{type(self).__name__} has fields but neither a template nor describe()")
        return self.template.format(**vars(self))
