"""The optimizer side of training: the Doubter's five parameter groups,
the optimizer (AdamW or bitsandbytes' Adam8bit) and the cosine schedule.

Groups are found by structure, never by parameter names:

- ``injection_gates``: parameters of :class:`TanhGate` modules inside the
  Doubter's cross-attention branch;
- ``encoder_gates``: parameters of every other :class:`TanhGate`;
- ``token_preferences``: free-standing learned vectors owned directly by a
  meta-spider module rather than by a torch layer (the learned query,
  summary and layer-embedding vectors that decide what each cognitive token
  carries);
- ``cross_attention_weights``: every other parameter of the cross-attention
  branch;
- ``encoder_weights``: every other parameter.

The first two weight groups train at the base LR, the rest at
``gate_lr_multiplier`` times it. Weight decay applies to weight matrices
(``dim >= 2`` in the two weight groups) only. This module knows nothing
about data or losses.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from meta_spider.loom.train.config import TrainerConfig, TrainerError
from meta_spider.wrapper.gates import TanhGate

GROUP_NAMES = ("encoder_weights", "cross_attention_weights", "encoder_gates", "injection_gates", "token_preferences")
WEIGHT_GROUPS = ("encoder_weights", "cross_attention_weights")
"""Groups at the base LR; the others get ``gate_lr_multiplier`` x."""


def _is_torch_layer(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.")


def parameter_groups(doubter: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The Doubter's trainable parameters in the five groups (every group
    present, possibly empty), each in module-walk order."""
    cross_attention = getattr(doubter, "cross_attn", None)
    in_cross_attention = {id(m) for m in cross_attention.modules()} if isinstance(cross_attention, nn.Module) else set()
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in GROUP_NAMES}
    seen: set[int] = set()
    for module in doubter.modules():
        injection_side = id(module) in in_cross_attention
        for parameter in module.parameters(recurse=False):
            if id(parameter) in seen or not parameter.requires_grad:
                continue
            seen.add(id(parameter))
            if isinstance(module, TanhGate):
                name = "injection_gates" if injection_side else "encoder_gates"
            elif injection_side:
                name = "cross_attention_weights"
            elif not _is_torch_layer(module) and module is not doubter:
                name = "token_preferences"
            else:
                name = "encoder_weights"
            groups[name].append(parameter)
    trainable = [p for p in doubter.parameters() if p.requires_grad]
    if len(seen) != len(trainable):  # cannot happen with nn.Module's own walk; guards a future custom module
        raise TrainerError(f"the group walk found {len(seen)} of {len(trainable)} trainable parameters",
                           "report this: a Doubter module holds parameters outside its module tree")
    return groups


def optimizer_param_groups(doubter: nn.Module, config: TrainerConfig) -> list[dict[str, Any]]:
    """torch param-group dicts: each carries ``group`` (one of
    :data:`GROUP_NAMES`), ``lr`` and ``weight_decay``; the weight groups are
    split into a decayed (matrices) and an undecayed part. Empty parts are
    left out; the order is fixed, so a saved optimizer state fits again."""
    result: list[dict[str, Any]] = []
    for name, parameters in parameter_groups(doubter).items():
        lr = config.lr if name in WEIGHT_GROUPS else config.lr * config.gate_lr_multiplier
        if name in WEIGHT_GROUPS:
            parts = [([p for p in parameters if p.dim() >= 2], config.weight_decay),
                     ([p for p in parameters if p.dim() < 2], 0.0)]
        else:
            parts = [(parameters, 0.0)]
        for members, decay in parts:
            if members:
                result.append({"params": members, "lr": lr, "weight_decay": decay, "group": name})
    return result


def build_optimizer(doubter: nn.Module, config: TrainerConfig) -> torch.optim.Optimizer:
    """AdamW, or bitsandbytes' Adam8bit (which runs on CPU too with
    bitsandbytes >= 0.45; parameters under 4096 elements keep 32-bit state)."""
    groups = optimizer_param_groups(doubter, config)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    try:
        import bitsandbytes as bnb
    except ImportError as error:
        raise TrainerError(f"optimizer='adam8bit' needs bitsandbytes, which does not import here ({error})",
                           "pip install bitsandbytes (>= 0.45 for CPU support), or use optimizer='adamw'") from None
    try:
        return bnb.optim.Adam8bit(groups, lr=config.lr)
    except (RuntimeError, NotImplementedError) as error:
        raise TrainerError(f"bitsandbytes {getattr(bnb, '__version__', '?')} cannot build Adam8bit here ({error})",
                           "use optimizer='adamw', or a bitsandbytes build for this device") from None


def cosine_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """LR multiplier of update ``step`` (0-based): linear warmup reaching 1
    at the last warmup update, then a cosine decay to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainerConfig,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine schedule with ``warmup_fraction`` of ``total_steps`` as warmup,
    stepped once per optimizer update."""
    warmup = math.ceil(config.warmup_fraction * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_factor(step, total_steps, warmup, config.min_lr_ratio)
    )
