"""Structural discovery of a causal LM's decoder blocks.

No per-family name table: the text config comes from
``config.get_text_config(decoder=True)``; the decoder blocks are the
``ModuleList`` of identical blocks whose length is that config's layer count
(or the only list of that length, for hybrids that mix block classes);
when several lists qualify (a vision tower as deep as the text decoder) the
one closest to the input embedding module wins, which is always the text
model inside a multimodal wrapper. This module knows nothing about hooks or
the Doubter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from meta_spider.wrapper.errors import LayerDiscoveryError


@dataclass(frozen=True)
class DecoderStructure:
    """Where a base keeps its decoder and how big it is."""

    layers: nn.ModuleList
    """The decoder blocks, in order; hooks go on these modules."""
    layers_path: str
    """Dotted module path of ``layers`` (for messages and tests)."""
    hidden_size: int
    num_layers: int
    text_config: Any


def text_config_of(model: nn.Module) -> Any:
    """The decoder text config of ``model`` (itself for text-only models)."""
    config = model.config
    getter = getattr(config, "get_text_config", None)
    return getter(decoder=True) if getter is not None else config


def _first_int(text_config: Any, names: tuple[str, ...]) -> int | None:
    # Architectures spell the same size differently (GPT-2's n_embd, T5's d_model).
    for name in names:
        value = getattr(text_config, name, None)
        if isinstance(value, int):
            return value
    return None


def _common_prefix_len(a: str, b: str) -> int:
    parts_a, parts_b = a.split("."), b.split(".")
    n = 0
    for x, y in zip(parts_a, parts_b):
        if x != y:
            break
        n += 1
    return n


def discover_decoder(model: nn.Module) -> DecoderStructure:
    """Find the decoder blocks of ``model``.

    Raises :class:`LayerDiscoveryError` naming the model class and why.
    """
    model_class = type(model).__name__
    text_config = text_config_of(model)
    hidden = _first_int(text_config, ("hidden_size", "n_embd", "d_model"))
    count = _first_int(text_config, ("num_hidden_layers", "n_layer", "num_layers"))
    if hidden is None or count is None:
        raise LayerDiscoveryError(model_class, f"its text config has no hidden size / layer count ({type(text_config).__name__})")
    lists = [(path, module) for path, module in model.named_modules()
             if isinstance(module, nn.ModuleList) and len(module) == count]
    candidates = [(path, module) for path, module in lists if len({type(block) for block in module}) == 1]
    if not candidates:
        # Hybrids (Jamba) alternate attention and state-space block classes in
        # one list; take it when it is the only list of the right length.
        candidates = lists if len(lists) == 1 else []
    if not candidates:
        raise LayerDiscoveryError(model_class, f"no ModuleList of {count} identical blocks")
    if len(candidates) > 1:
        embeddings = model.get_input_embeddings()
        embed_path = next((p for p, m in model.named_modules() if m is embeddings), "")
        candidates.sort(key=lambda item: -_common_prefix_len(item[0], embed_path))
        best = _common_prefix_len(candidates[0][0], embed_path)
        if _common_prefix_len(candidates[1][0], embed_path) == best:
            paths = [p for p, _ in candidates]
            raise LayerDiscoveryError(model_class, f"ambiguous decoder block lists {paths}")
    path, layers = candidates[0]
    return DecoderStructure(layers=layers, layers_path=path, hidden_size=hidden, num_layers=count,
                            text_config=text_config)


def layer_output_tensor(output: Any) -> torch.Tensor:
    """The hidden-state tensor of a decoder block's output (a tensor in
    transformers 5, the first element of a tuple in older blocks)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"unexpected decoder block output type {type(output).__name__}")


def replace_layer_output(output: Any, hidden: torch.Tensor) -> Any:
    """``output`` with its hidden-state tensor replaced by ``hidden``."""
    if isinstance(output, torch.Tensor):
        return hidden
    return type(output)((hidden, *output[1:])) if isinstance(output, tuple) else [hidden, *output[1:]]
