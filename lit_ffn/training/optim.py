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
    """LR multiplier of optimizer step ``t`` (0-based) of ``S = total_steps``: linear warm-up to the peak
    over ``W = warmup_steps`` steps, then a cosine down to ``r = min_lr_ratio`` at the last step.

    m(t) = (t + 1)/W                               for t < W        (t = W−1 is the peak, m = 1)
    m(t) = r + (1 − r)·½(1 + cos(π·p(t))),         for t ≥ W,  p(t) = min(1, (t − t₀)/(S − 1 − t₀))

    with t₀ = max(W − 1, 0) the step at the peak.  So the peak is used exactly once (at t = W − 1, or at
    t = 0 without warm-up), the cosine starts right after it, and the last step S − 1 trains at
    exactly ``r × lr`` — the floor the config names.  (lit_ffn ≤ 4cee13f measured the cosine from W
    over S − W steps: the peak was used twice and the last step stayed one step short of the floor.)
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    peak_step = max(warmup_steps - 1, 0)
    progress = min(1.0, max(0.0, (step - peak_step) / max(1, total_steps - 1 - peak_step)))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


__all__ = ["WRAPPER_PREFIXES", "unwrapped_parameter_name", "warmup_cosine"]
