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

The **compute multiplier** of a variant against the baseline compares the two *fitted curves at a
common loss*: ``L* = L_base,fit(C_top)``, the baseline's fitted loss at the ladder's top compute, and::

      M = C_base,fit(L*) / C_var,fit(L*) = C_top / C_var,fit(L*)      (M > 1: the variant saves compute)

the compute ratio at equal loss of Primer's "compute savings" (So et al. 2021, Fig. 1) and of Marin's
speedrun gates, whose baseline curve passes through its own point.  Because both sides are fitted
curves, the baseline against itself is **exactly 1** by construction, and a variant whose curve is the
baseline's shifted by a factor k in compute, ``L_var(C) = L_base(k·C)``, gets exactly M = k
(:func:`curve_multiplier`; tests/experiments/test_multiplier.py).  (An earlier version compared the
variant's *measured* top point with the baseline's fitted curve, which gave the baseline
``exp(residual/slope)`` against itself: 1.41 on the old CPU ladder.)

Uncertainty (:func:`paired_bootstrap`): seeds are paired (the same seed index at every rung for baseline
and variant), so each draw resamples seed indices **jointly** per rung, refits **both** curves and
recomputes M; draws in which a fit fails or M is not finite are **counted and reported**, not dropped
silently.  A percentile interval needs many seeds: with fewer than :data:`MIN_RELIABLE_SEEDS` the
interval is flagged as unreliable (simulated coverage of a nominal 95 % percentile bootstrap of a mean is
~49 % at n = 2, ~76 % at n = 3).  :func:`leave_one_rung_out` gives the model-error band: M recomputed
with each rung left out of both fits in turn.

Diagnostics (:func:`diagnose`): number of rungs, compute span in decades, residuals of the mean losses
in units of the pooled seed SD, the top rung predicted by a fit without it, parameters at their bounds.
A multiplier is shown only when they pass :data:`THRESHOLDS`; otherwise the report says "not
identifiable from this ladder: <reasons>".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lit_ffn.errors import UserError

#: Rungs needed for the saturating power law; fewer get the log-linear fit.
MIN_POWER_LAW_POINTS = 4
#: Seeds per rung below which a percentile bootstrap interval is flagged as unreliable.
MIN_RELIABLE_SEEDS = 5
#: What a fit must show before a multiplier is printed (:func:`diagnose`).
THRESHOLDS = {
    "min_rungs": 4,  # a 3-parameter power law with at least one degree of freedom left
    "min_span_decades": 1.0,  # compute span of the ladder
    "max_residual_sd": 3.0,  # largest |mean loss − fit| in pooled seed SDs
    "max_loo_top_sd": 3.0,  # |top rung − fit without it| in pooled seed SDs …
    "loo_top_floor_nats": 0.02,  # … or this many nats, whichever is larger
}
#: Search range of the power law's exponent (:func:`_fit_power_law`): α at either end is "at a bound".
ALPHA_BOUNDS = (1e-4, 5.0)


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
            if loss <= e:
                return math.inf
            try:
                return (a / (loss - e)) ** (1.0 / alpha)
            except OverflowError:  # a flat curve (tiny α): beyond any float compute
                return math.inf
        a, b = self.params
        if b >= 0:
            return math.inf
        try:
            return math.exp((loss - a) / b)
        except OverflowError:  # a nearly flat line: beyond any float compute
            return math.inf


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

    grid = np.geomspace(*ALPHA_BOUNDS, 120)
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


def curve_multiplier(baseline: ScalingFit, variant: ScalingFit, top_compute: float) -> float:
    """``M = C_base(L*) / C_var(L*)`` with ``L* = L_base(top_compute)`` (module docstring): 1 for the
    baseline's own curve, k for a curve shifted by k in compute, 0 for a curve that never reaches ``L*``."""
    target = float(baseline.loss(top_compute))
    base_c, var_c = baseline.compute_for(target), variant.compute_for(target)
    if not math.isfinite(var_c):
        return 0.0
    return base_c / var_c


@dataclass(frozen=True)
class Bootstrap:
    """A multiplier with its paired percentile interval and how many draws could not be used."""

    point: float
    low: float
    high: float
    draws: int
    failed: int  # draws whose refit failed or whose M was not finite (counted, not silently dropped)
    seeds: int  # seeds per rung (the smallest rung)

    @property
    def unreliable(self) -> bool:
        return self.seeds < MIN_RELIABLE_SEEDS


def _means(losses: Sequence[Sequence[float]], index: Sequence[np.ndarray] | None = None) -> list[float]:
    if index is None:
        return [float(np.mean(seeds)) for seeds in losses]
    return [float(np.asarray(seeds, dtype=float)[i].mean()) for seeds, i in zip(losses, index)]


def paired_bootstrap(
    compute: Sequence[float],
    base_losses: Sequence[Sequence[float]],
    variant_losses: Sequence[Sequence[float]],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    variant_compute: Sequence[float] | None = None,
) -> Bootstrap:
    """M of a variant against the baseline on the same rungs (``compute``), with a percentile interval
    from a paired bootstrap: per rung the **same** resampled seed indices for both (``base_losses[r][i]``
    and ``variant_losses[r][i]`` are seed i of rung r), both curves refitted in every draw.  ``compute``
    is the baseline's compute per rung, ``variant_compute`` the variant's (default: the same; a variant
    with fewer parameters trains with less compute on the same rung)."""
    var_compute = list(compute if variant_compute is None else variant_compute)
    sizes = [min(len(b), len(v)) for b, v in zip(base_losses, variant_losses)]
    base = [list(b)[:n] for b, n in zip(base_losses, sizes)]
    var = [list(v)[:n] for v, n in zip(variant_losses, sizes)]
    top = float(max(compute))
    point = curve_multiplier(fit_scaling(compute, _means(base)), fit_scaling(var_compute, _means(var)), top)
    rng = np.random.default_rng(seed)
    values, failed = [], 0
    for _ in range(resamples):
        index = [rng.integers(0, n, size=n) for n in sizes]
        try:
            m = curve_multiplier(
                fit_scaling(compute, _means(base, index)), fit_scaling(var_compute, _means(var, index)), top
            )
        except UserError:
            m = math.nan
        if math.isfinite(m) and m > 0:
            values.append(m)
        else:
            failed += 1
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail]) if values else (math.nan, math.nan)
    return Bootstrap(point, float(low), float(high), resamples, failed, min(sizes) if sizes else 0)


def leave_one_rung_out(
    compute: Sequence[float],
    base_losses: Sequence[Sequence[float]],
    variant_losses: Sequence[Sequence[float]],
    variant_compute: Sequence[float] | None = None,
) -> list[float]:
    """M with each rung left out of both fits in turn (at the remaining top compute): the model-error band."""
    var_compute = list(compute if variant_compute is None else variant_compute)
    out = []
    for drop in range(len(compute)):
        keep = [i for i in range(len(compute)) if i != drop]
        c = [compute[i] for i in keep]
        if len(c) < 2:
            continue
        base_fit = fit_scaling(c, _means([base_losses[i] for i in keep]))
        var_fit = fit_scaling([var_compute[i] for i in keep], _means([variant_losses[i] for i in keep]))
        out.append(curve_multiplier(base_fit, var_fit, max(c)))
    return out


@dataclass(frozen=True)
class Diagnostics:
    """What a fit of one variant's ladder shows (:func:`diagnose`); ``problems`` empty: it passes."""

    rungs: int
    span_decades: float
    seed_sd: float  # pooled within-rung SD of the final loss (nan with one seed per rung)
    max_residual_sd: float  # max |mean − fit| / seed_sd
    loo_top_error: float  # |top rung's mean − the fit without the top rung at its compute| (nats)
    at_bounds: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def diagnose(compute: Sequence[float], losses: Sequence[Sequence[float]]) -> Diagnostics:
    """Rungs, span, residuals in seed-SD units, leave-the-top-rung-out error and parameters at their
    bounds of the fit of ``losses`` (per rung, per seed) against ``compute``, checked against
    :data:`THRESHOLDS`."""
    c = np.asarray(compute, dtype=float)
    means = np.asarray(_means(losses))
    rungs = len(c)
    span = float(np.log10(c.max() / c.min())) if rungs > 1 else 0.0
    variances = [np.var(s, ddof=1) for s in losses if len(s) > 1]
    sd = float(math.sqrt(np.mean(variances))) if variances else math.nan
    problems, at_bounds = [], []
    if rungs < THRESHOLDS["min_rungs"]:
        problems.append(f"{rungs} rungs (needs ≥ {THRESHOLDS['min_rungs']})")
    if span < THRESHOLDS["min_span_decades"]:
        problems.append(f"compute spans {span:.3f} decades (needs ≥ {THRESHOLDS['min_span_decades']:g})")
    if math.isnan(sd):
        problems.append("one seed per rung: no seed SD to judge the fit by")
    max_resid, loo = math.nan, math.nan
    if rungs >= 2:
        fit = fit_scaling(c, means)
        resid = means - np.asarray(fit.loss(c))
        max_resid = float(np.max(np.abs(resid)) / sd) if sd > 0 else math.nan
        if fit.kind == "power law":
            e, _, alpha = fit.params
            if e <= 0.0:
                at_bounds.append("E = 0 (its lower bound)")
            if e >= means.min() - 1e-12:
                at_bounds.append("E = the lowest mean loss (its upper bound)")
            if alpha <= ALPHA_BOUNDS[0] * 1.001 or alpha >= ALPHA_BOUNDS[1] * 0.999:
                at_bounds.append(f"α = {alpha:.3g} (a bound of its search range)")
                problems.append(f"α at a bound of its search range ({alpha:.3g})")
        else:
            problems.append(f"{fit.kind} fit, not the power law")
        if sd > 0 and max_resid > THRESHOLDS["max_residual_sd"]:
            problems.append(f"residuals up to {max_resid:.1f} seed SDs (allowed {THRESHOLDS['max_residual_sd']:g})")
        if rungs >= 3:
            top = int(np.argmax(c))
            keep = [i for i in range(rungs) if i != top]
            # the same family as the full fit (a power law through 3 points has no dof left, but predicts)
            held = _fit_power_law(np.log(c[keep]), means[keep]) if fit.kind == "power law" else None
            held = held or fit_scaling(c[keep], means[keep])
            loo = float(abs(means[top] - held.loss(c[top])))
            allowed = max(THRESHOLDS["max_loo_top_sd"] * (sd if sd > 0 else 0.0), THRESHOLDS["loo_top_floor_nats"])
            if loo > allowed:
                problems.append(f"the fit without the top rung misses it by {loo:.3f} nats (allowed {allowed:.3f})")
    return Diagnostics(rungs, span, sd, max_resid, loo, tuple(at_bounds), tuple(problems))


def training_compute(flops_per_token: float, tokens: float) -> float:
    """Training FLOPs of a run: ``flops_per_token × tokens trained`` (:func:`lit_ffn.flops.flops_per_token`)."""
    return float(flops_per_token) * float(tokens)


__all__ = [
    "ALPHA_BOUNDS",
    "MIN_POWER_LAW_POINTS",
    "MIN_RELIABLE_SEEDS",
    "THRESHOLDS",
    "Bootstrap",
    "Diagnostics",
    "ScalingFit",
    "bootstrap_multiplier",
    "bootstrap_multipliers",
    "compute_multiplier",
    "curve_multiplier",
    "diagnose",
    "fit_scaling",
    "leave_one_rung_out",
    "multiplier_at_top",
    "paired_bootstrap",
    "training_compute",
]
