"""Typed errors of the wrapper. Each carries the data needed to act on it
and a message naming the problem and the fix; none logs or prints."""

from __future__ import annotations

from meta_spider.plugins.errors import MetaSpiderError


class WrapperError(MetaSpiderError):
    """Base class of every error the wrapper raises on purpose."""


class LayerDiscoveryError(WrapperError, fields=("model_class", "reason")):
    """The decoder blocks of a model could not be found structurally."""

    template = (
        "cannot find the decoder layers of {model_class}: {reason}. "
        "Fix: the model must hold its decoder blocks in one torch ModuleList "
        "whose length is the text config's num_hidden_layers."
    )


class FingerprintMismatchError(WrapperError, fields=("checkpoint", "base", "fields")):
    """A Doubter checkpoint was trained on a base with another shape."""

    template = ("Doubter checkpoint for base {checkpoint_model!r} does not fit base {base_model!r} ({diffs}). "
                "Fix: attach it to the base it was trained on, or train a Doubter for this base.")

    def __post_init__(self) -> None:
        self.checkpoint, self.base, self.fields = dict(self.checkpoint), dict(self.base), list(self.fields)
        self.checkpoint_model, self.base_model = self.checkpoint.get("model_id"), self.base.get("model_id")
        self.diffs = ", ".join(f"{f}: checkpoint {self.checkpoint.get(f)!r} vs base {self.base.get(f)!r}"
                               for f in self.fields)


class ReferenceVocabularyError(WrapperError, fields=("reference_size", "vocab_size", "model_id")):
    """A Doubter reading the PMI signals carries a reference distribution
    over another vocabulary than its base's."""

    template = (
        "this Doubter's reference distribution (log p_ref, for its PMI signals) covers {reference_size} tokens, "
        "but base {model_id!r} has a vocabulary of {vocab_size}. Fix: attach it to the base it was trained on, "
        "or collect again on this base (metaloom collect --pmi-signals) and train a Doubter on that collection."
    )


class CheckpointError(WrapperError, fields=("path", "reason")):
    """A checkpoint file is missing, malformed or of an unknown format."""

    template = "cannot read Doubter checkpoint {path!r}: {reason}"


class NoDoubterError(WrapperError, fields=("operation",)):
    """An operation needs an attached Doubter and none is attached."""

    template = (
        "{operation} needs a Doubter: call pipeline.attach(Doubter(...)) or "
        "pipeline.attach('<checkpoint folder>') first"
    )


class DoubterNotAttachedError(WrapperError, fields=("what", "attached")):
    """``detach`` was asked for a Doubter the pipeline does not hold."""

    def __post_init__(self) -> None:
        self.attached = list(self.attached)

    def describe(self) -> str:
        held = ", ".join(repr(name) for name in self.attached) if self.attached else "none"
        return (f"cannot detach {self.what}: it is not attached to this pipeline (attached: {held}). "
                "Fix: detach the object pipeline.attach returned, or one of the attached names")
