"""Typed errors of the wrapper. Each carries the data needed to act on it
and a message naming the problem and the fix; none logs or prints."""

from __future__ import annotations

from typing import Any, Mapping

from meta_spider.plugins.errors import MetaSpiderError


class WrapperError(MetaSpiderError):
    """Base class of every error the wrapper raises on purpose."""


class LayerDiscoveryError(WrapperError):
    """The decoder blocks of a model could not be found structurally."""

    def __init__(self, model_class: str, reason: str) -> None:
        self.model_class = model_class
        self.reason = reason
        super().__init__(
            f"cannot find the decoder layers of {model_class}: {reason}. "
            "Fix: the model must hold its decoder blocks in one torch ModuleList "
            "whose length is the text config's num_hidden_layers."
        )


class FingerprintMismatchError(WrapperError):
    """A Doubter checkpoint was trained on a base with another shape."""

    def __init__(self, checkpoint: Mapping[str, Any], base: Mapping[str, Any], fields: list[str]) -> None:
        self.checkpoint = dict(checkpoint)
        self.base = dict(base)
        self.fields = list(fields)
        diffs = ", ".join(f"{f}: checkpoint {self.checkpoint.get(f)!r} vs base {self.base.get(f)!r}" for f in fields)
        super().__init__(
            f"Doubter checkpoint for base {self.checkpoint.get('model_id')!r} does not fit base "
            f"{self.base.get('model_id')!r} ({diffs}). Fix: attach it to the base it was trained on, "
            "or train a Doubter for this base."
        )


class CheckpointError(WrapperError):
    """A checkpoint file is missing, malformed or of an unknown format."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot read Doubter checkpoint {path!r}: {reason}")


class NoDoubterError(WrapperError):
    """An operation needs an attached Doubter and none is attached."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(
            f"{operation} needs a Doubter: call pipeline.attach(Doubter(...)) or "
            "pipeline.attach('<checkpoint folder>') first"
        )


class DoubterNotAttachedError(WrapperError):
    """``detach`` was asked for a Doubter the pipeline does not hold."""

    def __init__(self, what: str, attached: list[str]) -> None:
        self.what = what
        self.attached = list(attached)
        held = ", ".join(repr(name) for name in attached) if attached else "none"
        super().__init__(f"cannot detach {what}: it is not attached to this pipeline (attached: {held}). "
                         "Fix: detach the object pipeline.attach returned, or one of the attached names")
