"""Helpers for the llama.cpp hook tests: tiny GGUF bases and the transformers references they are checked against.

A tiny base is built with `gguf_helpers` (seeded tokenizer and random-weight
Qwen2 / Llama) and exported with `meta_spider.loom.gguf.export_base_gguf`.
The references run the same model in transformers with forward hooks on the
decoder layers: the output of decoder layer L (what llama.cpp names
``l_out-L``) and next-token logits with a delta added to that output at
chosen positions. Deltas are written twice, once in numpy (what the llama.cpp
hooks call) and once in torch (what the reference hook adds), so a test
compares two independent implementations, not one function with itself.
Nothing here knows how the hooks work.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

GGML_TYPE_F32 = 0

TINY_BASES: dict[str, dict[str, Any]] = {
    # Three layers, so first / middle / last layer each get a check; Llama adds bos and attention biases.
    "qwen2": dict(arch="qwen2", split="qwen2", add_bos=False, layers=3),
    "llama": dict(arch="llama", split="gpt2", add_bos=True, layers=3, attention_bias=True),
}
PROMPT_TEXTS = [
    "Ada was born in Kuba in 1950 and",
    "Where was Greta born? She was born in",
    "<|im_start|>user\nWho is Hugo?<|im_end|>\n<|im_start|>assistant\n",
    "Q: What does Lev do?\nA: Lev is a",
]


@dataclass
class TinyBase:
    """A transformers model, its tokenizer and the f32 GGUF exported from it."""

    name: str
    model: Any
    tokenizer: Any
    gguf_path: Path
    prompts: list[list[int]]

    @property
    def n_layer(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)


def build_tiny_base(name: str, folder: Path, dtype: str = "f32") -> TinyBase:
    """Build the tiny base `name` (a key of TINY_BASES) and export it to `folder`/base-<dtype>.gguf."""
    import torch

    from gguf_helpers import build_model, build_tokenizer
    from meta_spider.loom.gguf import export_base_gguf

    torch.set_num_threads(1)
    spec = dict(TINY_BASES[name])
    tokenizer = build_tokenizer(split=spec.pop("split"), add_bos=spec.pop("add_bos"))
    model = build_model(spec.pop("arch"), vocab_size=len(tokenizer), **spec)
    folder.mkdir(parents=True, exist_ok=True)
    path = export_base_gguf((model, tokenizer), folder / f"base-{dtype}.gguf", dtype=dtype)
    prompts = [tokenizer.encode(text, add_special_tokens=True) for text in PROMPT_TEXTS]
    return TinyBase(name=name, model=model, tokenizer=tokenizer, gguf_path=path, prompts=prompts)


def layer_output(output: Any) -> Any:
    """The hidden-state tensor of a decoder layer's output (a tensor in transformers 5, a tuple before)."""
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def torch_injection(model: Any, deltas: Mapping[int, Callable[[Any], Any]],
                    positions: Sequence[int] | None = None) -> Iterator[None]:
    """Add ``deltas[L](hidden)`` to decoder layer L's output at absolute `positions` (None = all).

    The reference runs whole sequences from position 0, so a sequence index is the position.
    """
    import torch

    handles = []

    def make_hook(layer: int):  # noqa: ANN202 - torch hook signature
        def hook(module: Any, args: Any, output: Any) -> Any:
            hidden = layer_output(output)
            delta = deltas[layer](hidden)
            mask = torch.zeros(hidden.shape[1], 1, dtype=hidden.dtype)
            mask[list(range(hidden.shape[1])) if positions is None else list(positions)] = 1.0
            changed = hidden + delta * mask
            return (changed, *output[1:]) if isinstance(output, tuple) else changed

        return hook

    try:
        for layer in deltas:
            handles.append(model.model.layers[layer].register_forward_hook(make_hook(layer)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def reference_layer_outputs(model: Any, ids: Sequence[int]) -> tuple[dict[int, np.ndarray], Any]:
    """(layer -> decoder layer L's output ``[T, d]``, transformers output with hidden states) for one prompt."""
    import torch

    captured: dict[int, np.ndarray] = {}
    handles = [
        layer.register_forward_hook(
            lambda module, args, output, index=index: captured.__setitem__(
                index, layer_output(output)[0].detach().numpy().copy()))
        for index, layer in enumerate(model.model.layers)
    ]
    try:
        with torch.no_grad():
            result = model(torch.tensor([list(ids)]), output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    return captured, result


def reference_logits(model: Any, ids: Sequence[int], deltas: Mapping[int, Callable[[Any], Any]] | None = None,
                     positions: Sequence[int] | None = None) -> np.ndarray:
    """Logits ``[T, vocab]`` of `ids`, with `deltas` injected at `positions` (None = every position)."""
    import torch

    with torch_injection(model, deltas or {}, positions), torch.no_grad():
        return model(torch.tensor([list(ids)])).logits[0].numpy().copy()


@dataclass
class FixedDelta:
    """The same vector added at every injected position."""

    vector: np.ndarray

    def __call__(self, hidden_rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return self.vector

    def torch(self, hidden: Any) -> Any:
        import torch

        return torch.from_numpy(self.vector)


@dataclass
class LinearDelta:
    """An input-dependent delta ``tanh(h @ weight) * scale``: a stand-in for gated cross-attention."""

    weight: np.ndarray
    scale: float

    def __call__(self, hidden_rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return np.tanh(hidden_rows @ self.weight) * self.scale

    def torch(self, hidden: Any) -> Any:
        import torch

        return torch.tanh(hidden @ torch.from_numpy(self.weight)) * self.scale


def random_fixed_delta(hidden_size: int, seed: int, scale: float = 1.0) -> FixedDelta:
    return FixedDelta((np.random.default_rng(seed).standard_normal(hidden_size) * scale).astype(np.float32))


def random_linear_delta(hidden_size: int, seed: int, scale: float = 1.0) -> LinearDelta:
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((hidden_size, hidden_size)) / np.sqrt(hidden_size)).astype(np.float32)
    return LinearDelta(weight=weight, scale=scale)
