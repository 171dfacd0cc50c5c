"""The loom commands' own error: a standard-library error a command meets
(an option value a dataset refuses, a base that cannot load with these
settings) turned into one line that names the problem and the fix. The host
CLI prints it as it prints every project error; project errors themselves
pass through the commands untouched."""

from __future__ import annotations

from meta_spider.plugins.errors import MetaSpiderError

__all__ = ["CommandError"]


class CommandError(MetaSpiderError, fields=("problem", "fix")):
    """A ``metaloom`` command cannot go on: ``problem`` (usually the
    standard-library error it met, with what the command was doing) and
    ``fix``."""

    template = "{problem}; {fix}"
