"""The optimizer's side of training: the learning-rate schedules and which parameters decay.

Two schedules, chosen by ``model.schedule``:

* ``cosine`` (the default, :func:`warmup_cosine`): warm-up, then a cosine over the whole run.  Its shape
  depends on the run's length at every step, so a run cannot be made longer without changing the
  learning rate of steps already planned: "train longer" re-fits the cosine to the new length.
* ``wsd`` (:func:`warmup_stable_decay`): warm-up, a constant peak, and a decay over the last
  ``decay_fraction`` of the run.  Every step before the decay is independent of the run's length, so a
  checkpoint taken in the stable phase continues into a longer run exactly as if that run had been
  planned from the start (``lit_ffn.training.schedule``).
"""

from __future__ import annotations

import math
from typing import Literal

#: ``model.schedule``: the learning-rate schedules :func:`lr_multiplier` knows.
Schedule = Literal["cosine", "wsd"]


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


def decay_start(total_steps: int, decay_fraction: float) -> int:
    """The first step of the warmup-stable-decay's decay: ``S − D`` with ``D = max(1, round(f·S))``."""
    return total_steps - max(1, round(decay_fraction * total_steps))


def warmup_stable_decay(
    step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float, decay_fraction: float
) -> float:
    """LR multiplier of optimizer step ``t`` (0-based) of ``S = total_steps`` under warmup-stable-decay
    (WSD; Hu et al. 2024, MiniCPM; Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond
    Fixed Training Durations", whose 1 − sqrt cooldown this uses):

    m(t) = (t + 1)/W                                for t < W
    m(t) = 1                                        for W ≤ t < t_d,   t_d = S − D,  D = max(1, round(f·S))
    m(t) = r + (1 − r)·(1 − sqrt(p(t))),            for t ≥ t_d,       p(t) = min(1, (t − t_d + 1)/D)

    with ``f = decay_fraction`` and ``r = min_lr_ratio``: the last step S − 1 trains at exactly ``r × lr``.
    m(t) for t < t_d does not depend on S, so the stable phase of a short run is the stable phase of any
    longer one: resuming from a checkpoint at step ≤ t_d with a larger S reproduces the longer run.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    start = decay_start(total_steps, decay_fraction)
    if step < start:
        return 1.0
    progress = min(1.0, (step - start + 1) / max(1, total_steps - start))
    return min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - math.sqrt(progress))


def lr_multiplier(
    schedule: Schedule, step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float, decay_fraction: float
) -> float:
    """The multiplier of the peak learning rate at optimizer step ``step`` under ``schedule``."""
    if schedule == "wsd":
        return warmup_stable_decay(step, warmup_steps, total_steps, min_lr_ratio, decay_fraction)
    return warmup_cosine(step, warmup_steps, total_steps, min_lr_ratio)


__all__ = [
    "Schedule",
    "decay_start",
    "lr_multiplier",
    "warmup_cosine",
    "warmup_stable_decay",
]
