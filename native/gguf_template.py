"""Read a GGUF file's chat template and BOS/EOS token texts.

A GGUF stores the Hugging Face chat template verbatim under
``tokenizer.chat_template`` and the special tokens as ids into
``tokenizer.ggml.tokens``. This module reads just those fields with the
``gguf`` package's reader (imported inside the function, so importing
:mod:`meta_spider.native` stays light). It knows nothing about tensors.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["read_gguf_chat_template"]

CHAT_TEMPLATE_KEY = "tokenizer.chat_template"
TOKENS_KEY = "tokenizer.ggml.tokens"
BOS_ID_KEY = "tokenizer.ggml.bos_token_id"
EOS_ID_KEY = "tokenizer.ggml.eos_token_id"


def _scalar(fields: dict[str, Any], key: str) -> Any:
    field = fields.get(key)
    return None if field is None else field.contents()


def read_gguf_chat_template(path: str | os.PathLike[str]) -> tuple[str | None, str, str]:
    """``(chat_template or None, bos_token, eos_token)`` from a GGUF's metadata.

    A missing BOS/EOS id gives ``""`` (the template then renders no such
    token), as transformers does for a tokenizer without that token.
    Raises FileNotFoundError for a missing file.
    """
    from gguf import GGUFReader

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no GGUF file at {path!r}")
    # Only the metadata is read; tensors stay memory-mapped and untouched.
    fields = GGUFReader(path, "r").fields
    template = _scalar(fields, CHAT_TEMPLATE_KEY)
    tokens_field = fields.get(TOKENS_KEY)

    def token_text(key: str) -> str:
        token_id = _scalar(fields, key)
        if token_id is None or tokens_field is None:
            return ""
        token_id = int(token_id)
        if not 0 <= token_id < len(tokens_field.data):
            return ""
        return str(tokens_field.contents(token_id))

    return (str(template) if template is not None else None), token_text(BOS_ID_KEY), token_text(EOS_ID_KEY)
