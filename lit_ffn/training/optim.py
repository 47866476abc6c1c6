"""The optimizer's side of training: the learning-rate schedule and which parameters decay."""

from __future__ import annotations

import math

#: Name components that wrappers insert into parameter names: FSDP1, activation checkpointing, torch.compile.
WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def unwrapped_parameter_name(name: str) -> str:
    """``layers.0._checkpoint_wrapped_module.ffn.w_up.weight`` → ``layers.0.ffn.w_up.weight``."""
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier: linear warmup from 1/warmup to 1, then cosine decay to ``min_lr_ratio``.

    m(t) = (t+1)/W                                   for t < W
    m(t) = r + (1 − r)·½(1 + cos(π·(t − W)/(S − W)))  for W ≤ t ≤ S, r = min_lr_ratio
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


__all__ = ["WRAPPER_PREFIXES", "unwrapped_parameter_name", "warmup_cosine"]
