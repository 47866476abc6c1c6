"""Scaling ladders: loss against training compute per variant, what a variant is worth in compute, how
sure that is, and whether the ladder can say it at all.

For each variant the rungs of a ladder give points ``(C_r, L_r)``: training compute ``C`` in FLOPs and
the final validation loss ``L`` (mean over seeds).  Fits (:func:`fit_batch`, vectorised over bootstrap
draws):

* saturating power law (Kaplan et al. 2020; Hoffmann et al. 2022, eq. 2 in one variable)::

      L(C) = E + A · C^(−α),      0 ≤ E ≤ min L, A > 0, α ∈ [1e-3, 3]

  by weighted variable projection (weights 1/se_r², below): for a fixed α the model is linear in (E, A),
  solved in closed form (E clipped to its bounds); the weighted squared error is minimised over α on a log
  grid of 60 values, then 21 values between the best one's neighbours, refined by a parabola through the
  best fine point and its neighbours.  Needs ≥ :data:`MIN_POWER_LAW_POINTS` rungs;
* log-linear otherwise (2–3 rungs): ``L(C) = a + b · ln C``.

**The compute multiplier** (:func:`multipliers`) compares the two *fitted* curves at a common loss, the
baseline's fitted loss at its top rung ``L* = L̂_base(C_top)``::

      M_v = Ĉ_base(L*) / Ĉ_v(L*) = C_top / Ĉ_v(L*)         (Ĉ: the inverse of the fitted curve)

i.e. how many times less compute the variant's curve needs to reach the loss the baseline's curve reaches
at the top rung (M > 1: the variant saves compute).  The baseline's own M is ``C_top / Ĉ_base(L̂_base(C_top))
= 1`` by construction, whatever its residuals; a variant whose curve is the baseline's shifted by a factor
k in compute (L_v(C) = L_base(k·C)) gets M = k.  This is the "compute savings" read off two fitted curves
at equal loss, as Primer reports it (So et al. 2021, Fig. 1), rather than a measured point against a
fitted curve (the definition used before, which gave the baseline 1.41 against itself on the committed
CPU ladder: its own residual).  Marin's speedrun re-centres the baseline curve through the baseline's
point for the same purpose; comparing two fits also puts the variant's curve uncertainty into M.

**Uncertainty** (:func:`multipliers`): a paired joint seed bootstrap.  A seed fixes the data order of
every variant, so within a rung the runs with the same seed are matched; each draw resamples, at every
rung, the seed indices with replacement — the same indices for every variant — and refits **every**
curve.  Each rung's resampled deviations from its mean are scaled by sqrt(n/(n−1)), so that the draws'
variance is the unbiased one (a plain bootstrap of n values has (n−1)/n of it: 2/3 at n = 3).  The interval
is the percentile interval of log M widened about the point estimate by t_{0.975,ν}/z_{0.975} with
ν = n_min − 1, n_min the fewest seeds at any rung (t rather than normal quantiles: the spread is estimated
from few seeds).  Simulated on 5-rung power-law ladders with a 1.5× shifted variant (seed SD 0.02, 70% of it
shared by the paired runs; 150 studies each, 1,000 draws): 95.3% coverage at 3 seeds, 94.7% at 5 with the
weighted fits (99% and 97% with the earlier unweighted ones); the plain percentile interval covered 85% and 91%,
ν = Σ_r(n_r − 1)/2 92% and 93%.  A draw whose M is 0 or ∞ (a
curve that never reaches L*) is **counted** and kept at its value in the percentiles; a draw whose fit
**fails** could have given any M, so it is put at −∞ for the lower bound and at +∞ for the upper
(conservative on both sides); both are reported, never dropped.  Coverage of this interval on synthetic ladders with known M is
measured in ``tests/experiments/test_calibration.py``.  Model error is not in that interval: the
**leave-one-rung-out band** (the range of M over refits that each leave one rung out) shows how much the
answer rests on any single rung.

**Diagnostics** (:func:`diagnose`), with the thresholds a multiplier must pass to be printed.  Every fit
is **weighted** by 1/se_r² (se_r = s_r/√n_r, the seed standard error of rung r's mean), so that it is
judged in the units it was fitted in:

* rungs ≥ 4 for the power law (3 parameters and a residual degree of freedom), ≥ 3 for log-linear;
* compute span max C / min C ≥ :data:`MIN_COMPUTE_SPAN` (one decade);
* no parameter at a bound that makes the curve meaningless: E at min L (a curve that has already
  saturated) or α at either end of its range (E = 0 is allowed: a pure power law);
* every residual within :data:`MAX_RESIDUAL_SE` seed standard errors of its rung mean;
* the leave-one-rung-out prediction error of every rung within :data:`MAX_LOO_SE` standard errors **of that
  error**, √(se_r² + Var(L̂_{−r}(C_r))): the prediction of a 3-parameter curve through the other rungs'
  noisy means (often an extrapolation) has its own variance, estimated from 200 seed bootstrap draws
  (:func:`diagnostic_statistics`).  Dividing by se_r alone (the first version) withheld a correctly
  specified power law 78–99% of the time.

The thresholds (2.5 and 2.5) were chosen by simulation (:func:`simulate_withholding`, the report's own
code path) at the CPU ladder's computes (1.14e11–9.35e12 FLOPs, 4 rungs) and the study's noise: a
correctly specified power law (E, A, α = 0.313, 101.6, 0.118, swiglu's fit) is withheld 3% of the time at
seed SD 0.05 and 6.5% with the observed per-rung SDs (0.029, 0.184, 0.061, 0.011) at 5 seeds (6% and
12.5% at 3 seeds); a misspecified curve whose exponent changes after the second rung (0.118 → 0.2) is
withheld 100% and 96% of the time at 5 seeds (0.118 → 0.16: 99% and 58%).  200 ladders per setting, 60
bootstrap draws; ``tests/experiments/test_scaling.py`` checks both rates (≤ 10%, ≥ 80%) at the observed SDs.

otherwise the multiplier reads "not identifiable from this ladder: <reasons>".  A multiplier read off the
variant's curve beyond its own fitted compute range is flagged ("extrapolated": the curve reaches L* at
k× its top rung's compute).  With a rung of one seed there is no CI (the seed bootstrap cannot vary it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lit_ffn.errors import UserError

#: Rungs needed for the saturating power law; fewer get the log-linear fit.
MIN_POWER_LAW_POINTS = 4
#: A ladder must span at least this factor of training compute for a multiplier.
MIN_COMPUTE_SPAN = 10.0
#: Largest |residual| of the weighted fit, in seed standard errors of its rung mean (chosen by simulation:
#: module docstring).
MAX_RESIDUAL_SE = 2.5
#: Largest |leave-one-rung-out prediction error|, in standard errors of that error,
#: √(se_r² + Var(prediction_r)) (chosen by simulation: module docstring).
MAX_LOO_SE = 2.5
#: Seeds per rung below which a CI is flagged as unreliable.
MIN_RELIABLE_SEEDS = 5
#: The α range and grid of the power law.
ALPHA_BOUNDS = (1e-3, 3.0)
_COARSE, _FINE = 60, 21
_ALPHA_GRID = np.geomspace(*ALPHA_BOUNDS, _COARSE)


@dataclass(frozen=True)
class ScalingFit:
    """A fitted ``L(C)``: ``kind`` "power law" (E, A, alpha) or "log-linear" (a, b)."""

    kind: str
    params: tuple[float, ...]

    def loss(self, compute: float | np.ndarray) -> float | np.ndarray:
        return curve_loss(self.kind, np.asarray(self.params, dtype=float)[None], np.asarray(compute, float)[None])[0]

    def compute_for(self, loss: float) -> float:
        """The compute at which the curve reaches ``loss`` (inf when it never does)."""
        return float(compute_for(self.kind, np.asarray(self.params, dtype=float)[None], np.array([loss]))[0])


# ================================================================== fits, vectorised over draws
def fit_kind(rungs: int) -> str:
    return "power law" if rungs >= MIN_POWER_LAW_POINTS else "log-linear"


def fit_batch(log_c: np.ndarray, loss: np.ndarray, kind: str, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares fits of ``D`` loss vectors over the same rungs: ``log_c`` (R,), ``loss`` (D, R),
    ``weights`` (R,) or (D, R) (default 1; :func:`rung_weights`: 1/se², so a noisy rung counts less) → params
    (D, 3) for the power law (E, A, α; NaN where no fit with A > 0 exists) or (D, 2) for the log-linear fit
    (a, b).  Minimises Σ_r w_r (L_r − L̂(C_r))².

    The power law by variable projection: for each α the model is linear in (E, A), solved in closed form
    (weighted means; E clipped to [0, min L] and A refitted); α on a coarse log grid of
    :data:`_COARSE` values over :data:`ALPHA_BOUNDS`, then a fine grid of :data:`_FINE` values between the
    best coarse point's neighbours, then a parabola through the best fine point and its neighbours."""
    loss = np.atleast_2d(np.asarray(loss, dtype=float))
    x0 = np.asarray(log_c, dtype=float)
    w = np.ones(loss.shape) if weights is None else np.broadcast_to(np.asarray(weights, dtype=float), loss.shape)
    w = w / w.sum(axis=1, keepdims=True)  # normalised: Σ_r w_r = 1 per fit
    if kind == "log-linear":
        xm, lm = (w * x0).sum(axis=1), (w * loss).sum(axis=1)
        dx = x0[None, :] - xm[:, None]
        b = (w * dx * (loss - lm[:, None])).sum(axis=1) / (w * dx * dx).sum(axis=1)
        return np.stack([lm - b * xm, b], axis=1)
    shift = x0.min()
    xs = x0 - shift  # C scaled by its smallest value, for conditioning
    rows = np.arange(loss.shape[0])

    def solve(alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sse, E, A_scaled), each (D, G), for α of shape (G,) or (D, G)."""
        alphas = np.broadcast_to(alphas, (loss.shape[0], alphas.shape[-1]))
        x = np.exp(-alphas[..., None] * xs)  # (D, G, R)
        ww = w[:, None, :]
        xm, lm = (ww * x).sum(axis=-1), (w * loss).sum(axis=1)[:, None]
        dx = x - xm[..., None]
        var = (ww * dx * dx).sum(axis=-1)
        cov = (ww * dx * (loss[:, None, :] - lm[..., None])).sum(axis=-1)
        a = np.where(var > 0, cov / np.maximum(var, 1e-300), 0.0)
        e = lm - a * xm
        low, high = 0.0, loss.min(axis=1)[:, None]
        clipped = (e < low) | (e > high)
        e = np.clip(e, low, high)
        a = np.where(clipped, (ww * (loss[:, None, :] - e[..., None]) * x).sum(axis=-1) / (ww * x * x).sum(axis=-1), a)
        sse = (ww * ((e[..., None] + a[..., None] * x) - loss[:, None, :]) ** 2).sum(axis=-1)
        return np.where(a > 0, sse, np.inf), e, a

    sse, _, _ = solve(_ALPHA_GRID)
    best = np.argmin(sse, axis=1)
    valid = np.isfinite(sse[rows, best])
    log_grid = np.log(_ALPHA_GRID)
    lo = log_grid[np.clip(best - 1, 0, len(log_grid) - 1)]
    hi = log_grid[np.clip(best + 1, 0, len(log_grid) - 1)]
    fine = np.exp(lo[:, None] + (hi - lo)[:, None] * np.linspace(0, 1, _FINE)[None, :])  # (D, F)
    sse_f, e_f, a_f = solve(fine)
    best_f = np.argmin(sse_f, axis=1)
    # a parabola in log α through the best fine point and its neighbours (interior points only)
    inner = np.clip(best_f, 1, _FINE - 2)
    y0, y1, y2 = sse_f[rows, inner - 1], sse_f[rows, inner], sse_f[rows, inner + 1]
    step = (hi - lo) / (_FINE - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        offset = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    ok = np.isfinite(offset) & (np.abs(offset) < 1) & (best_f == inner)
    candidate = np.exp(np.log(fine[rows, best_f]) + np.where(ok, offset * step, 0.0))[:, None]
    sse_c, e_c, a_c = solve(candidate)
    better = sse_c[:, 0] <= sse_f[rows, best_f]
    alpha = np.where(better, candidate[:, 0], fine[rows, best_f])
    e = np.where(better, e_c[:, 0], e_f[rows, best_f])
    a_scaled = np.where(better, a_c[:, 0], a_f[rows, best_f])
    # A·C^(−α) = A_scaled·(C / C_min)^(−α)  ⇒  A = A_scaled · C_min^α
    params = np.stack([e, a_scaled * np.exp(alpha * shift), alpha], axis=1)
    params[~valid] = np.nan
    return params


def curve_loss(kind: str, params: np.ndarray, compute: np.ndarray) -> np.ndarray:
    """L(C) of fits ``params`` (D, k) at ``compute`` (D, …) or (…) broadcastable."""
    c = np.asarray(compute, dtype=float)
    extra = (None,) * max(c.ndim - 1, 0)
    if kind == "power law":
        e, a, alpha = (params[:, i][(slice(None), *extra)] for i in range(3))
        return e + a * c ** (-alpha)
    a, b = (params[:, i][(slice(None), *extra)] for i in range(2))
    return a + b * np.log(c)


def compute_for(kind: str, params: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """The compute (D,) at which each fit reaches ``loss`` (D,): +inf when it never does, NaN for no fit."""
    loss = np.asarray(loss, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if kind == "power law":
            e, a, alpha = params[:, 0], params[:, 1], params[:, 2]
            out = np.where(loss > e, (a / (loss - e)) ** (1.0 / alpha), np.inf)
        else:
            a, b = params[:, 0], params[:, 1]
            out = np.where(b < 0, np.exp((loss - a) / b), np.inf)
    return np.where(np.isnan(params).any(axis=1), np.nan, out)


def _check_points(compute: Sequence[float], loss: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    c, l_ = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    if len(c) < 2:
        raise UserError(f"a scaling fit needs at least 2 rungs, got {len(c)}: add rungs to --ladder")
    if np.any(c <= 0):
        raise UserError("training compute must be positive at every rung")
    return c, l_


def fit_scaling(
    compute: Sequence[float], loss: Sequence[float], kind: str | None = None, weights: Sequence[float] | None = None
) -> ScalingFit:
    """One fit: the power law with ≥ :data:`MIN_POWER_LAW_POINTS` rungs (log-linear if it has no solution
    with A > 0), else log-linear; ``kind`` forces one (a power law on 3 points interpolates them);
    ``weights`` per rung (:func:`rung_weights`; default equal)."""
    c, l_ = _check_points(compute, loss)
    kind = kind or fit_kind(len(c))
    w = None if weights is None else np.asarray(weights, dtype=float)[None]
    params = fit_batch(np.log(c), l_[None], kind, w)[0]
    if np.isnan(params).any():
        if kind == "power law":
            return fit_scaling(c, l_, "log-linear", weights)
        raise UserError("the scaling fit failed")
    return ScalingFit(kind, tuple(float(p) for p in params))


def at_bounds(fit: ScalingFit, loss: Sequence[float]) -> list[str]:
    """The fit's parameters that sit at a bound of their range."""
    if fit.kind != "power law":
        return []
    e, _, alpha = fit.params
    scale = max(abs(min(loss)), 1e-12)
    flags = []
    if e <= 1e-6 * scale:
        flags.append("E at its lower bound 0")
    elif e >= min(loss) - 1e-6 * scale:
        flags.append("E at its upper bound min L")
    if alpha <= ALPHA_BOUNDS[0] * 1.01 or alpha >= ALPHA_BOUNDS[1] / 1.01:
        flags.append(f"α at the end of its range ({alpha:.3g})")
    return flags


# ================================================================== diagnostics
@dataclass
class Diagnostics:
    """How well one variant's fit describes its ladder, and whether a multiplier may be read off it."""

    rungs: int
    span: float  # max C / min C
    residuals_se: list[float]  # (L_r − L̂(C_r)) / se_r of the weighted fit
    loo_se: list[float]  # leave-one-rung-out error of each rung / √(se_r² + Var(prediction_r))
    bounds: list[str]
    reasons: list[str] = field(default_factory=list)  # why not identifiable (empty: it passes)
    loo_failed: int = 0  # bootstrap draws whose leave-one-out refit failed (left out of Var(prediction))

    @property
    def passes(self) -> bool:
        return not self.reasons


def rung_se(losses: Sequence[Sequence[float]]) -> np.ndarray:
    """Seed standard error of each rung's mean, s_r/√n_r; a rung with one seed gets the pooled s."""
    sds = [np.std(x, ddof=1) if len(x) > 1 else np.nan for x in losses]
    dof = [len(x) - 1 for x in losses if len(x) > 1]
    pooled = (
        math.sqrt(sum(d * s * s for d, s in zip(dof, [s for s in sds if not np.isnan(s)])) / sum(dof))
        if dof
        else math.nan
    )
    return np.array([(pooled if np.isnan(s) else s) / math.sqrt(len(x)) for s, x in zip(sds, losses)])


def rung_weights(losses: Sequence[Sequence[float]]) -> np.ndarray | None:
    """Fit weights 1/se_r² (:func:`rung_se`); None (equal weights) when some se is unknown or 0."""
    se = rung_se(losses)
    if not (np.all(np.isfinite(se)) and np.all(se > 0)):
        return None
    return 1.0 / se**2


def bootstrap_means(
    losses: Sequence[Sequence[float]] | np.ndarray, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Rung means of seed bootstrap draws: each rung's seeds resampled with replacement, the deviations from
    the rung mean scaled by √(n/(n − 1)) (the unbiased variance; a 1-seed rung stays put).  ``losses``: one
    ladder, a list of per-rung seed losses → (resamples, R); or an array (S, R, n) of S ladders with n seeds
    at every rung → (S, resamples, R)."""
    if isinstance(losses, np.ndarray) and losses.ndim == 3:
        n = losses.shape[-1]
        scale = math.sqrt(n / (n - 1)) if n > 1 else 1.0
        idx = rng.integers(0, n, size=(losses.shape[0], resamples, losses.shape[1], n))
        drawn = np.take_along_axis(losses[:, None, :, :], idx, axis=-1).mean(axis=-1)  # (S, D, R)
        centre = losses.mean(axis=-1)[:, None, :]
        return centre + scale * (drawn - centre)
    out = np.empty((resamples, len(losses)))
    for r, rung in enumerate(losses):
        x = np.asarray(rung, dtype=float)
        n = len(x)
        scale = math.sqrt(n / (n - 1)) if n > 1 else 1.0
        draws = x[rng.integers(0, n, size=(resamples, n))]
        out[:, r] = x.mean() + scale * (draws.mean(axis=1) - x.mean())
    return out


def diagnostic_statistics(
    compute: np.ndarray, means: np.ndarray, se: np.ndarray, draws: np.ndarray | None, kind: str
) -> dict[str, np.ndarray]:
    """The diagnostics' statistics of S ladders at once (one code path for a report and for the simulation
    that chose the thresholds): ``means``, ``se`` (S, R) rung means and their seed SEs, ``draws`` (S, D, R)
    seed bootstrap rung means (None: no Var(prediction)).  Returns

    * ``params`` (S, k): the weighted fit (weights 1/se²; equal where an se is unknown or 0);
    * ``residual_z`` (S, R): (L_r − L̂(C_r)) / se_r;
    * ``loo_z`` (S, R): leave-one-rung-out error (L_r − L̂_{−r}(C_r)) / √(se_r² + Var(L̂_{−r}(C_r))), the
      variance over the draws' leave-one-out refits (failed refits left out; all failed: ∞ → z = 0);
    * ``loo_failed`` (S,): failed leave-one-out refits over all draws."""
    c = np.asarray(compute, dtype=float)
    log_c = np.log(c)
    n_studies, n_rungs = means.shape
    usable = np.all(np.isfinite(se) & (se > 0), axis=1, keepdims=True)
    w = np.where(usable, 1.0 / np.where(usable, se, 1.0) ** 2, 1.0)
    params = fit_batch(log_c, means, kind, w)
    residual_z = (means - curve_loss(kind, params, np.broadcast_to(c, means.shape))) / se
    loo_z = np.full((n_studies, n_rungs), np.nan)
    failed = np.zeros(n_studies, dtype=int)
    for r in range(n_rungs):
        keep = np.arange(n_rungs) != r
        if keep.sum() < 2:
            continue
        fit_r = fit_batch(log_c[keep], means[:, keep], kind, w[:, keep])
        predicted = curve_loss(kind, fit_r, np.full(n_studies, c[r]))
        var = np.zeros(n_studies)
        if draws is not None:
            n_draws = draws.shape[1]
            refits = fit_batch(log_c[keep], draws[:, :, keep].reshape(-1, keep.sum()), kind,
                               np.repeat(w[:, keep], n_draws, axis=0))  # fmt: skip
            at_r = curve_loss(kind, refits, np.full(len(refits), c[r])).reshape(n_studies, n_draws)
            finite = np.isfinite(at_r)
            failed += (~finite).sum(axis=1)
            count = finite.sum(axis=1)
            centred = np.where(finite, at_r - np.nanmean(np.where(finite, at_r, np.nan), axis=1, keepdims=True), 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                var = np.where(count > 1, (centred**2).sum(axis=1) / np.maximum(count - 1, 1), np.inf)
        with np.errstate(invalid="ignore"):
            loo_z[:, r] = (means[:, r] - predicted) / np.sqrt(se[:, r] ** 2 + var)
    return {"params": params, "residual_z": residual_z, "loo_z": loo_z, "loo_failed": failed}


def withholding_flags(
    compute: np.ndarray, means: np.ndarray, se: np.ndarray, statistics: Mapping[str, np.ndarray], kind: str
) -> dict[str, np.ndarray]:
    """Boolean (S,) per reason a multiplier is withheld (module docstring), from
    :func:`diagnostic_statistics`: ``rungs``, ``span``, ``E upper``, ``alpha``, ``se``, ``residual``, ``loo``."""
    c = np.asarray(compute, dtype=float)
    n = means.shape[0]
    need = MIN_POWER_LAW_POINTS if kind == "power law" else 3
    flags = {
        "rungs": np.full(n, len(c) < need),
        "span": np.full(n, c.max() / c.min() < MIN_COMPUTE_SPAN),
        "E upper": np.zeros(n, bool),
        "alpha": np.zeros(n, bool),
    }
    if kind == "power law":
        e, alpha = statistics["params"][:, 0], statistics["params"][:, 2]
        low = means.min(axis=1)
        flags["E upper"] = (e >= low - 1e-6 * np.maximum(np.abs(low), 1e-12)) & (e > 1e-6 * np.abs(low))
        flags["alpha"] = (alpha <= ALPHA_BOUNDS[0] * 1.01) | (alpha >= ALPHA_BOUNDS[1] / 1.01)
    known = np.all(np.isfinite(se), axis=1)
    flags["se"] = ~known
    with np.errstate(invalid="ignore"):
        flags["residual"] = known & (np.nanmax(np.abs(statistics["residual_z"]), axis=1) > MAX_RESIDUAL_SE)
        loo = np.abs(np.nan_to_num(statistics["loo_z"], nan=0.0))
        flags["loo"] = known & (loo.max(axis=1) > MAX_LOO_SE)
    return flags


def diagnose(
    compute: Sequence[float],
    losses: Sequence[Sequence[float]],
    fit: ScalingFit | None = None,
    resamples: int = 200,
    rng_seed: int = 0,
    kind: str | None = None,
) -> Diagnostics:
    """The diagnostics of one variant's weighted fit (module docstring: what each checks, and the thresholds
    chosen by simulation).  ``kind``: the fit's kind (default ``fit.kind``, else by the number of rungs);
    ``resamples``: seed bootstrap draws for Var(prediction) of each leave-one-rung-out refit."""
    c = np.asarray(compute, dtype=float)
    kind = kind or (fit.kind if fit is not None else fit_kind(len(c)))
    means = np.array([[float(np.mean(x)) for x in losses]])
    se = rung_se(losses)[None]
    draws = (
        bootstrap_means(losses, resamples, np.random.default_rng(rng_seed))[None] if np.all(np.isfinite(se)) else None
    )
    found = diagnostic_statistics(c, means, se, draws, kind)
    flags = {k: bool(v[0]) for k, v in withholding_flags(c, means, se, found, kind).items()}
    weighted = ScalingFit(kind, tuple(float(p) for p in found["params"][0]))
    bounds = at_bounds(weighted, list(means[0]))
    residual_z, loo_z = found["residual_z"][0], found["loo_z"][0]
    loo = [float(x) for x in loo_z if np.isfinite(x)]
    reasons = []
    need = MIN_POWER_LAW_POINTS if kind == "power law" else 3
    if flags["rungs"]:
        reasons.append(f"{len(c)} rungs (a {kind} fit needs ≥ {need} to leave a residual to check)")
    if flags["span"]:
        reasons.append(f"compute spans {c.max() / c.min():.1f}× (< {MIN_COMPUTE_SPAN:.0f}×)")
    reasons += [
        b
        for b in bounds
        if (b.startswith("E at its upper") and flags["E upper"]) or (b.startswith("α") and flags["alpha"])
    ]
    if flags["se"]:
        reasons.append("the seed spread is unknown (needs ≥ 2 seeds at some rung)")
    if flags["residual"]:
        worst = float(np.nanmax(np.abs(residual_z)))
        reasons.append(f"residuals up to {worst:.1f} seed SEs (> {MAX_RESIDUAL_SE:g}): the curve misses its points")
    if flags["loo"]:
        reasons.append(
            f"leaving a rung out mispredicts it by up to {max(abs(x) for x in loo):.1f} SEs of the difference "
            f"(> {MAX_LOO_SE:g})"
        )
    return Diagnostics(len(c), float(c.max() / c.min()), [float(x) for x in residual_z], loo, bounds, reasons,
                       int(found["loo_failed"][0]))  # fmt: skip


def simulate_withholding(
    compute: Sequence[float],
    truth: Any,
    sd: float | Sequence[float],
    seeds: int,
    reps: int,
    rng_seed: int = 0,
    resamples: int = 100,
    chunk: int = 50,
) -> float:
    """The fraction of ``reps`` simulated ladders whose fit the diagnostics withhold (the report's code path:
    :func:`diagnostic_statistics` and :func:`withholding_flags`, vectorised over ladders): at every rung
    ``seeds`` losses truth(C_r) + N(0, sd_r²); ``truth``: a callable C → L (a correctly specified power law,
    or a misspecified curve).  How the thresholds were chosen (module docstring) and what the test checks."""
    c = np.asarray(compute, dtype=float)
    sd = np.broadcast_to(np.asarray(sd, dtype=float), c.shape)
    rng = np.random.default_rng(rng_seed)
    mean = np.asarray(truth(c), dtype=float)
    kind = fit_kind(len(c))
    withheld = 0
    for start in range(0, reps, chunk):
        size = min(chunk, reps - start)
        losses = mean[None, :, None] + sd[None, :, None] * rng.standard_normal((size, len(c), seeds))
        means = losses.mean(axis=-1)
        se = losses.std(axis=-1, ddof=1) / math.sqrt(seeds)
        draws = bootstrap_means(losses, resamples, rng)
        found = diagnostic_statistics(c, means, se, draws, kind)
        flags = withholding_flags(c, means, se, found, kind)
        withheld += int(np.any(np.stack(list(flags.values())), axis=0).sum())
    return withheld / reps


# ================================================================== the multiplier and its uncertainty
@dataclass
class MultiplierResult:
    """One variant's compute multiplier against the baseline (module docstring)."""

    point: float
    low: float  # NaN: no CI (a rung with < 2 seeds)
    high: float
    draws: int
    nonfinite: int  # draws whose fit failed or whose M is 0 or ∞ (kept in the percentiles, not dropped)
    loo_low: float  # leave-one-rung-out band
    loo_high: float
    min_seeds: int
    diagnostics: Diagnostics | None = None
    extrapolation: float = 1.0  # Ĉ_v(L*) / the variant's top rung's compute (> 1: beyond its range)
    below_range: float = 1.0  # the variant's smallest rung's compute / Ĉ_v(L*) (> 1: below its range)

    @property
    def small_n(self) -> bool:
        return self.min_seeds < MIN_RELIABLE_SEEDS

    @property
    def no_ci(self) -> str:
        """Why there is no CI ("" when there is one)."""
        if self.min_seeds < 2:
            return f"no CI: a rung has {self.min_seeds} seed (the seed bootstrap needs ≥ 2 at every rung)"
        return ""

    @property
    def extrapolated(self) -> str:
        """A flag when M is read off the variant's curve outside its own fitted compute range ("" inside)."""
        if self.extrapolation > 1.0 + 1e-9:
            return f"extrapolated: the variant's curve reaches L* at {self.extrapolation:.2g}× its top rung's compute"
        if self.below_range > 1.0 + 1e-9:
            return f"extrapolated: the variant's curve reaches L* {self.below_range:.2g}× below its smallest rung's compute"
        return ""


def _multiplier(kind: str, base: np.ndarray, var: np.ndarray, c_top: float) -> np.ndarray:
    """M = C_top / Ĉ_var(L̂_base(C_top)) for fits (D, k); 0 where the variant never reaches L*."""
    target = curve_loss(kind, base, np.full(base.shape[0], c_top))
    needed = compute_for(kind, var, target)
    with np.errstate(divide="ignore", invalid="ignore"):
        return c_top / needed


def multipliers(
    compute: Mapping[str, Sequence[float]],
    losses: Mapping[str, Sequence[Sequence[float]]],
    baseline: str,
    seeds: Mapping[str, Sequence[Sequence[int]]] | None = None,
    resamples: int = 2000,
    confidence: float = 0.95,
    rng_seed: int = 0,
) -> dict[str, MultiplierResult]:
    """Every variant's :class:`MultiplierResult` (the baseline's is exactly 1).

    ``compute[v]``: its compute per rung (R,); ``losses[v][r]``: its per-seed final losses at rung r;
    ``seeds[v][r]``: the seeds those losses came from (default 0, 1, …: the same seeds for every variant).
    Every variant must have the same R rungs, in the same order.  Uses the power law with ≥ 4 rungs; every
    curve is the weighted fit (1/se² per rung, :func:`rung_weights`; the same weights in every draw).
    """
    from scipy import stats as scipy_stats

    names = list(compute)
    n_rungs = len(compute[baseline])
    if any(len(compute[v]) != n_rungs for v in names):
        raise UserError("every variant needs the same rungs for a multiplier")
    kind = fit_kind(n_rungs)
    seeds = seeds or {v: [list(range(len(x))) for x in losses[v]] for v in names}
    # per rung: the union of seeds, and each variant's loss per seed (NaN where it has none)
    table = []
    for r in range(n_rungs):
        union = sorted({s for v in names for s in seeds[v][r]})
        grid = np.full((len(names), len(union)), np.nan)
        for i, v in enumerate(names):
            for s, x in zip(seeds[v][r], losses[v][r]):
                grid[i, union.index(s)] = x
        table.append(grid)
    log_c = {v: np.log(np.asarray(compute[v], dtype=float)) for v in names}
    weights = {v: rung_weights(losses[v]) for v in names}
    c_top = float(np.max(compute[baseline]))

    def fit(v: str, rung_means: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        keep = np.ones(n_rungs, bool) if keep is None else keep
        w = None if weights[v] is None else weights[v][keep][None]
        return fit_batch(log_c[v][keep], rung_means[:, keep], kind, w)

    means = np.stack([np.nanmean(g, axis=1) for g in table], axis=-1)[:, None, :]  # (V, 1, R)
    point_fits = {v: fit(v, means[i]) for i, v in enumerate(names)}
    # draws: the same seed indices for every variant at a rung; deviations scaled by sqrt(n/(n−1))
    rng = np.random.default_rng(rng_seed)
    drawn = []
    for grid in table:
        n = grid.shape[1]
        idx = rng.integers(0, n, size=(resamples, n))
        centre = np.nanmean(grid, axis=1, keepdims=True)
        scale = math.sqrt(n / (n - 1)) if n > 1 else 1.0
        sample = centre[:, None, :] + scale * (grid[:, idx] - centre[:, None, :])  # (V, D, n)
        with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
            sup.filter(RuntimeWarning)
            drawn.append(np.nanmean(sample, axis=2))  # (V, D)
    draw_means = np.stack(drawn, axis=-1)  # (V, D, R)
    draw_fits = {v: fit(v, draw_means[i]) for i, v in enumerate(names)}
    n_min = int(min(np.isfinite(g).sum(axis=1).min() for g in table))
    nu = n_min - 1  # the fewest seeds at any rung (conservative: simulated coverage in the docstring)
    widen = (
        float(scipy_stats.t.ppf(0.5 + confidence / 2, nu) / scipy_stats.norm.ppf(0.5 + confidence / 2))
        if nu >= 1
        else math.nan
    )
    tail = (1 - confidence) / 2
    out: dict[str, MultiplierResult] = {}
    for i, v in enumerate(names):
        if v == baseline:
            out[v] = MultiplierResult(1.0, 1.0, 1.0, resamples, 0, 1.0, 1.0, n_min)
            continue
        point = float(_multiplier(kind, point_fits[baseline], point_fits[v], c_top)[0])
        m = _multiplier(kind, draw_fits[baseline], draw_fits[v], c_top)
        bad = ~np.isfinite(m) | (m <= 0)
        with np.errstate(divide="ignore"):  # log 0 = −inf: a curve that never reaches L* ranks first
            log_m = np.log(np.where(m > 0, m, 0.0))
        # a failed fit (NaN) could have been anything: it ranks first for the lower bound, last for the upper
        lo_q = np.quantile(np.where(np.isnan(m), -np.inf, log_m), tail, method="inverted_cdf")
        hi_q = np.quantile(np.where(np.isnan(m), np.inf, log_m), 1 - tail, method="inverted_cdf")
        log_point = math.log(point) if point > 0 and math.isfinite(point) else math.nan
        low, high = _widened(log_point, float(lo_q), float(hi_q), widen) if n_min >= 2 else (math.nan, math.nan)
        loo = []
        for r in range(n_rungs):
            keep = np.arange(n_rungs) != r
            if keep.sum() < 2:
                continue
            loo.append(float(_multiplier(kind, fit(baseline, means[names.index(baseline)], keep),
                                         fit(v, means[i], keep), c_top)[0]))  # fmt: skip
        target = curve_loss(kind, point_fits[baseline], np.array([c_top]))
        needed = float(compute_for(kind, point_fits[v], target)[0])
        c_v = np.asarray(compute[v], dtype=float)
        out[v] = MultiplierResult(
            point, low, high, resamples, int(bad.sum()), min(loo, default=math.nan), max(loo, default=math.nan), n_min,
            extrapolation=needed / c_v.max() if math.isfinite(needed) else math.inf,
            below_range=c_v.min() / needed if math.isfinite(needed) and needed > 0 else 1.0,
        )  # fmt: skip
    return out


def _widened(centre: float, low: float, high: float, factor: float) -> tuple[float, float]:
    """exp of a log-scale interval [low, high] stretched about ``centre`` by ``factor`` (±∞ stay)."""
    if not (math.isfinite(centre) and math.isfinite(factor)):
        return (math.exp(low) if math.isfinite(low) else 0.0), (math.exp(high) if math.isfinite(high) else math.inf)
    lo = math.exp(centre - factor * (centre - low)) if math.isfinite(low) else 0.0
    hi = math.exp(centre + factor * (high - centre)) if math.isfinite(high) else math.inf
    return lo, hi


def training_compute(flops_per_token: float, tokens: float) -> float:
    """Training FLOPs of a run: ``flops_per_token × tokens trained`` (:func:`lit_ffn.flops.flops_per_token`)."""
    return float(flops_per_token) * float(tokens)


__all__ = [
    "MAX_LOO_SE",
    "MAX_RESIDUAL_SE",
    "MIN_COMPUTE_SPAN",
    "MIN_POWER_LAW_POINTS",
    "MIN_RELIABLE_SEEDS",
    "Diagnostics",
    "MultiplierResult",
    "ScalingFit",
    "bootstrap_means",
    "compute_for",
    "curve_loss",
    "diagnose",
    "diagnostic_statistics",
    "fit_batch",
    "fit_scaling",
    "multipliers",
    "rung_se",
    "rung_weights",
    "simulate_withholding",
    "training_compute",
    "withholding_flags",
]
