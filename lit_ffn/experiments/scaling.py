"""Scaling ladders: loss against training compute per variant, and what a variant is worth in compute.

For each variant the rungs of a ladder (model sizes / token budgets) give points ``(C_i, L_i)``:
training compute ``C`` in FLOPs (``lit_ffn.flops.flops_per_token`` × tokens trained — the full count,
LM head included, embedding lookup excluded, as ``train/mfu`` counts it) and final validation loss
``L`` (mean over seeds).  Two fits:

* saturating power law (Kaplan et al. 2020; Hoffmann et al. 2022, eq. 2 in one variable)::

      L(C) = E + A · C^(−α),      E ≥ 0 the irreducible loss, A > 0, α > 0

  fitted by least squares in ``log C`` (``scipy.optimize.curve_fit``); it needs at least
  :data:`MIN_POWER_LAW_POINTS` rungs (3 parameters and one degree of freedom left);
* log-linear otherwise (2 or 3 rungs): ``L(C) = a + b · ln C``.

The **compute multiplier** of a variant against the baseline at the top rung: the compute the
baseline's fitted curve needs to reach the variant's loss there, divided by the variant's compute::

      M = C_base(L_var(C_top)) / C_var,top        (M > 1: the variant saves compute)

with a 95 % bootstrap interval over seeds (:func:`bootstrap_multiplier`: resample each variant's
seeds per rung with replacement, refit the baseline, recompute M; percentile interval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lit_ffn.errors import UserError

#: Rungs needed for the saturating power law; fewer get the log-linear fit.
MIN_POWER_LAW_POINTS = 4


@dataclass(frozen=True)
class ScalingFit:
    """A fitted ``L(C)``: ``kind`` "power law" (E, A, alpha) or "log-linear" (a, b)."""

    kind: str
    params: tuple[float, ...]

    def loss(self, compute: float | np.ndarray) -> float | np.ndarray:
        c = np.asarray(compute, dtype=float)
        if self.kind == "power law":
            e, a, alpha = self.params
            return e + a * c ** (-alpha)
        a, b = self.params
        return a + b * np.log(c)

    def compute_for(self, loss: float) -> float:
        """The compute at which the curve reaches ``loss`` (inf when it never does)."""
        if self.kind == "power law":
            e, a, alpha = self.params
            return math.inf if loss <= e else (a / (loss - e)) ** (1.0 / alpha)
        a, b = self.params
        return math.inf if b >= 0 else math.exp((loss - a) / b)


def fit_scaling(compute: Sequence[float], loss: Sequence[float]) -> ScalingFit:
    """The power law when there are :data:`MIN_POWER_LAW_POINTS` rungs or more (falling back to the
    log-linear fit if it does not converge), else the log-linear fit; at least 2 rungs."""
    c, l_ = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    if len(c) < 2:
        raise UserError(f"a scaling fit needs at least 2 rungs, got {len(c)}: add rungs to --ladder")
    if np.any(c <= 0):
        raise UserError("training compute must be positive at every rung")
    log_c = np.log(c)
    b, a = np.polyfit(log_c, l_, 1)
    linear = ScalingFit("log-linear", (float(a), float(b)))
    if len(c) < MIN_POWER_LAW_POINTS:
        return linear
    from scipy.optimize import curve_fit

    def model(x: np.ndarray, e: float, log_a: float, alpha: float) -> np.ndarray:
        return e + np.exp(log_a - alpha * x)

    e0 = max(0.0, float(l_.min()) - 0.5 * float(np.ptp(l_)) - 1e-3)
    alpha0 = 0.1
    log_a0 = math.log(max(float(l_.max()) - e0, 1e-6)) + alpha0 * float(log_c.min())
    try:
        (e, log_a, alpha), _ = curve_fit(
            model, log_c, l_, p0=(e0, log_a0, alpha0),
            bounds=([0.0, -np.inf, 1e-6], [float(l_.min()), np.inf, 5.0]), maxfev=20000,
        )  # fmt: skip
    except (RuntimeError, ValueError):
        return linear
    return ScalingFit("power law", (float(e), float(math.exp(log_a)), float(alpha)))


def compute_multiplier(baseline: ScalingFit, variant_loss: float, variant_compute: float) -> float:
    """``C_base(L_var) / C_var`` (module docstring)."""
    return baseline.compute_for(variant_loss) / variant_compute


def _rung_means(compute: Sequence[float], losses: Sequence[Sequence[float]]) -> tuple[list[float], list[float]]:
    return list(compute), [float(np.mean(seeds)) for seeds in losses]


def multiplier_at_top(
    base_compute: Sequence[float],
    base_losses: Sequence[Sequence[float]],
    variant_compute: Sequence[float],
    variant_losses: Sequence[Sequence[float]],
) -> float:
    """The compute multiplier at the variant's top rung, from per-rung lists of per-seed losses."""
    base = fit_scaling(*_rung_means(base_compute, base_losses))
    top = int(np.argmax(variant_compute))
    return compute_multiplier(base, float(np.mean(variant_losses[top])), float(variant_compute[top]))


def bootstrap_multiplier(
    base_compute: Sequence[float],
    base_losses: Sequence[Sequence[float]],
    variant_compute: Sequence[float],
    variant_losses: Sequence[Sequence[float]],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(M, low, high)``: the multiplier and its percentile bootstrap interval over seeds."""
    rng = np.random.default_rng(seed)
    point = multiplier_at_top(base_compute, base_losses, variant_compute, variant_losses)

    def resample(losses: Sequence[Sequence[float]]) -> list[list[float]]:
        return [list(rng.choice(np.asarray(seeds, dtype=float), size=len(seeds), replace=True)) for seeds in losses]

    draws = []
    for _ in range(resamples):
        m = multiplier_at_top(base_compute, resample(base_losses), variant_compute, resample(variant_losses))
        if math.isfinite(m):
            draws.append(m)
    if not draws:
        return point, math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return point, float(low), float(high)


def training_compute(flops_per_token: float, tokens: float) -> float:
    """Training FLOPs of a run: ``flops_per_token × tokens trained`` (:func:`lit_ffn.flops.flops_per_token`)."""
    return float(flops_per_token) * float(tokens)


__all__ = [
    "MIN_POWER_LAW_POINTS",
    "ScalingFit",
    "bootstrap_multiplier",
    "compute_multiplier",
    "fit_scaling",
    "multiplier_at_top",
    "training_compute",
]
