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

with a 95 % bootstrap interval over seeds (:func:`bootstrap_multipliers`: resample the seeds of
each rung with replacement, refit the baseline, recompute M; percentile interval).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
    power = _fit_power_law(log_c, l_)
    return linear if power is None else power


def _fit_power_law(log_c: np.ndarray, loss: np.ndarray) -> ScalingFit | None:
    """Least squares of ``L = E + A·C^(−α)`` by variable projection: for a fixed α the model is
    linear in (E, A), solved in closed form with 0 ≤ E ≤ min L and A ≥ 0; the squared error is then
    minimised over α ∈ [1e-4, 5] (a log grid, refined by bounded Brent).  Written here rather than
    calling ``scipy.optimize.curve_fit`` on all three parameters: that took ~22 ms per fit and
    depended on its starting point, too slow for 2,000 bootstrap refits; this takes ~2 ms (the grid is
    one vectorised solve) and finds the global α on the grid.  C is scaled by its smallest value for conditioning."""
    x0 = log_c - log_c.min()
    loss_min = float(loss.min())

    def solve(alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(squared error, E, A_scaled) for each α (closed-form 2-parameter least squares, vectorised)."""
        x = np.exp(-np.outer(alphas, x0))  # (len(alphas), rungs)
        xm, lm = x.mean(axis=1), loss.mean()
        var = ((x - xm[:, None]) ** 2).sum(axis=1)
        a = np.where(var > 0, ((x - xm[:, None]) * (loss - lm)).sum(axis=1) / np.maximum(var, 1e-300), 0.0)
        e = lm - a * xm
        clipped = (e < 0) | (e > loss_min)
        e = np.clip(e, 0.0, loss_min)
        a = np.where(clipped, ((loss - e[:, None]) * x).sum(axis=1) / (x * x).sum(axis=1), a)
        sse = (((e[:, None] + a[:, None] * x) - loss) ** 2).sum(axis=1)
        return np.where(a > 0, sse, np.inf), e, a

    from scipy.optimize import minimize_scalar

    grid = np.geomspace(1e-4, 5.0, 120)
    errors = solve(grid)[0]
    best = int(np.argmin(errors))
    if not math.isfinite(errors[best]):
        return None
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    refined = minimize_scalar(lambda alpha: float(solve(np.array([alpha]))[0][0]), bounds=(lo, hi), method="bounded",
                              options={"xatol": 1e-7})  # fmt: skip
    alpha = float(refined.x) if refined.fun <= errors[best] else float(grid[best])
    _, e_, a_ = solve(np.array([alpha]))
    e, a_scaled = float(e_[0]), float(a_[0])
    # A·C^(−α) = A_scaled·(C / C_min)^(−α)  ⇒  A = A_scaled · C_min^α
    return ScalingFit("power law", (e, float(a_scaled * math.exp(alpha * log_c.min())), alpha))


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


def bootstrap_multipliers(
    base_compute: Sequence[float],
    base_losses: Sequence[Sequence[float]],
    variants: Mapping[str, tuple[Sequence[float], Sequence[Sequence[float]]]],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float, float]]:
    """``{name: (M, low, high)}`` for each ``variants[name] = (compute, per-rung seed losses)``: the
    multiplier at its top rung and a percentile bootstrap interval over seeds.  Each draw resamples
    the baseline's seeds at every rung (with replacement) and refits it, and resamples the variant's
    seeds at its top rung; the ``resamples`` baseline refits are shared by all variants."""
    rng = np.random.default_rng(seed)

    def resample(seeds: Sequence[float]) -> np.ndarray:
        return rng.choice(np.asarray(seeds, dtype=float), size=len(seeds), replace=True)

    base_fit = fit_scaling(*_rung_means(base_compute, base_losses))
    base_draws = []
    for _ in range(resamples):
        try:
            base_draws.append(fit_scaling(list(base_compute), [float(resample(s).mean()) for s in base_losses]))
        except UserError:  # pragma: no cover - positive computes and ≥ 2 rungs were checked by the point fit
            continue
    tail = 100 * (1 - confidence) / 2
    out = {}
    for name, (compute, losses) in variants.items():
        top = int(np.argmax(compute))
        point = compute_multiplier(base_fit, float(np.mean(losses[top])), float(compute[top]))
        draws = [
            compute_multiplier(fit, float(resample(losses[top]).mean()), float(compute[top])) for fit in base_draws
        ]
        finite = [m for m in draws if math.isfinite(m)]
        if not finite:
            out[name] = (point, math.nan, math.nan)
            continue
        low, high = np.percentile(finite, [tail, 100 - tail])
        out[name] = (point, float(low), float(high))
    return out


def bootstrap_multiplier(
    base_compute: Sequence[float],
    base_losses: Sequence[Sequence[float]],
    variant_compute: Sequence[float],
    variant_losses: Sequence[Sequence[float]],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(M, low, high)`` of one variant (:func:`bootstrap_multipliers`)."""
    variants = {"variant": (variant_compute, variant_losses)}
    return bootstrap_multipliers(base_compute, base_losses, variants, resamples, confidence, seed)["variant"]


def training_compute(flops_per_token: float, tokens: float) -> float:
    """Training FLOPs of a run: ``flops_per_token × tokens trained`` (:func:`lit_ffn.flops.flops_per_token`)."""
    return float(flops_per_token) * float(tokens)


__all__ = [
    "MIN_POWER_LAW_POINTS",
    "ScalingFit",
    "bootstrap_multiplier",
    "bootstrap_multipliers",
    "compute_multiplier",
    "fit_scaling",
    "multiplier_at_top",
    "training_compute",
]
