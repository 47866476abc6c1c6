"""Scaling ladders: loss against training compute per variant, what a variant is worth in compute, how
sure that is, and whether the ladder can say it at all.

For each variant the rungs of a ladder give points ``(C_r, L_r)``: training compute ``C`` in FLOPs and
the final validation loss ``L`` (mean over seeds).  Fits (:func:`fit_batch`, vectorised over bootstrap
draws):

* saturating power law (Kaplan et al. 2020; Hoffmann et al. 2022, eq. 2 in one variable)::

      L(C) = E + A · C^(−α),      0 ≤ E ≤ min L, A > 0, α ∈ [1e-3, 3]

  by variable projection: for a fixed α the model is linear in (E, A), solved in closed form (E clipped
  to its bounds); the squared error is minimised over α on a log grid of 300 values, refined by a
  parabola through the best grid point and its neighbours.  Needs ≥ :data:`MIN_POWER_LAW_POINTS` rungs;
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
shared by the paired runs; 150 studies each): 99% coverage at 3 seeds, 97% at 5 — conservative; the plain
percentile interval covered 85% and 91%, ν = Σ_r(n_r − 1)/2 92% and 93%.  A draw whose
fit fails or whose M is 0 or ∞ (a curve that never reaches L*) is **counted**, kept at its value in the
percentiles, and reported, never dropped.  Coverage of this interval on synthetic ladders with known M is
measured in ``tests/experiments/test_calibration.py``.  Model error is not in that interval: the
**leave-one-rung-out band** (the range of M over refits that each leave one rung out) shows how much the
answer rests on any single rung.

**Diagnostics** (:func:`diagnose`), with the thresholds a multiplier must pass to be printed:

* rungs ≥ 4 for the power law (3 parameters and a residual degree of freedom), ≥ 3 for log-linear;
* compute span max C / min C ≥ :data:`MIN_COMPUTE_SPAN` (one decade);
* no parameter at a bound (E at 0 or at min L; α at either end of its range);
* every residual within :data:`MAX_RESIDUAL_SE` seed standard errors of its rung mean (se = s/√n);
* the leave-one-rung-out prediction of every rung within :data:`MAX_LOO_SE` of its seed standard errors;

otherwise the multiplier reads "not identifiable from this ladder: <reasons>".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from lit_ffn.errors import UserError

#: Rungs needed for the saturating power law; fewer get the log-linear fit.
MIN_POWER_LAW_POINTS = 4
#: A ladder must span at least this factor of training compute for a multiplier.
MIN_COMPUTE_SPAN = 10.0
#: Largest |residual| of a fit, in seed standard errors of its rung mean.
MAX_RESIDUAL_SE = 3.0
#: Largest |leave-one-rung-out prediction error|, in seed standard errors of the left-out rung's mean.
MAX_LOO_SE = 3.0
#: Seeds per rung below which a CI is flagged as unreliable.
MIN_RELIABLE_SEEDS = 5
#: The α range and grid of the power law.
ALPHA_BOUNDS = (1e-3, 3.0)
_ALPHA_GRID = np.geomspace(*ALPHA_BOUNDS, 300)


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


def fit_batch(log_c: np.ndarray, loss: np.ndarray, kind: str) -> np.ndarray:
    """Least-squares fits of ``D`` loss vectors over the same rungs: ``log_c`` (R,), ``loss`` (D, R) →
    params (D, 3) for the power law (E, A, α; NaN where no fit with A > 0 exists) or (D, 2) for the
    log-linear fit (a, b)."""
    loss = np.atleast_2d(np.asarray(loss, dtype=float))
    x0 = np.asarray(log_c, dtype=float)
    if kind == "log-linear":
        xm, lm = x0.mean(), loss.mean(axis=1)
        b = ((x0 - xm) * (loss - lm[:, None])).sum(axis=1) / ((x0 - xm) ** 2).sum()
        return np.stack([lm - b * xm, b], axis=1)
    shift = x0.min()
    xs = x0 - shift  # C scaled by its smallest value, for conditioning

    def solve(alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sse, E, A_scaled), each (D, G), for α of shape (G,) or (D, G)."""
        alphas = np.broadcast_to(alphas, (loss.shape[0], alphas.shape[-1]))
        x = np.exp(-alphas[..., None] * xs)  # (D, G, R)
        xm, lm = x.mean(axis=-1), loss.mean(axis=1)[:, None]
        dx = x - xm[..., None]
        var = (dx * dx).sum(axis=-1)
        a = np.where(var > 0, (dx * (loss[:, None, :] - lm[..., None])).sum(axis=-1) / np.maximum(var, 1e-300), 0.0)
        e = lm - a * xm
        low, high = 0.0, loss.min(axis=1)[:, None]
        clipped = (e < low) | (e > high)
        e = np.clip(e, low, high)
        a = np.where(clipped, ((loss[:, None, :] - e[..., None]) * x).sum(axis=-1) / (x * x).sum(axis=-1), a)
        sse = (((e[..., None] + a[..., None] * x) - loss[:, None, :]) ** 2).sum(axis=-1)
        return np.where(a > 0, sse, np.inf), e, a

    sse, _, _ = solve(_ALPHA_GRID)
    best = np.argmin(sse, axis=1)
    rows = np.arange(loss.shape[0])
    # a parabola in log α through the best grid point and its neighbours (interior points only)
    inner = np.clip(best, 1, len(_ALPHA_GRID) - 2)
    y0, y1, y2 = sse[rows, inner - 1], sse[rows, inner], sse[rows, inner + 1]
    step = np.log(_ALPHA_GRID[1] / _ALPHA_GRID[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        offset = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    ok = np.isfinite(offset) & (np.abs(offset) < 1) & (best == inner)
    log_alpha = np.log(_ALPHA_GRID[best]) + np.where(ok, offset * step, 0.0) + np.where(ok, (inner - best) * step, 0)
    candidate = np.exp(log_alpha)[:, None]
    sse_c, e_c, a_c = solve(candidate)
    grid_e, grid_a = solve(_ALPHA_GRID[best][:, None])[1:]
    better = sse_c[:, 0] <= sse[rows, best]
    alpha = np.where(better, candidate[:, 0], _ALPHA_GRID[best])
    e = np.where(better, e_c[:, 0], grid_e[:, 0])
    a_scaled = np.where(better, a_c[:, 0], grid_a[:, 0])
    valid = np.isfinite(sse[rows, best])
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


def fit_scaling(compute: Sequence[float], loss: Sequence[float], kind: str | None = None) -> ScalingFit:
    """One fit: the power law with ≥ :data:`MIN_POWER_LAW_POINTS` rungs (log-linear if it has no solution
    with A > 0), else log-linear; ``kind`` forces one (a power law on 3 points interpolates them)."""
    c, l_ = _check_points(compute, loss)
    kind = kind or fit_kind(len(c))
    params = fit_batch(np.log(c), l_[None], kind)[0]
    if np.isnan(params).any():
        if kind == "power law":
            return fit_scaling(c, l_, "log-linear")
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
    residuals_se: list[float]  # (L_r − L̂(C_r)) / se_r
    loo_se: list[float]  # leave-one-rung-out prediction error of each rung, / se_r
    bounds: list[str]
    reasons: list[str] = field(default_factory=list)  # why not identifiable (empty: it passes)

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


def diagnose(compute: Sequence[float], losses: Sequence[Sequence[float]], fit: ScalingFit) -> Diagnostics:
    """The diagnostics of one variant's fit (module docstring: thresholds)."""
    c = np.asarray(compute, dtype=float)
    means = np.array([float(np.mean(x)) for x in losses])
    se = rung_se(losses)
    residuals = (means - np.asarray(fit.loss(c))) / se
    loo = []
    for r in range(len(c)):
        keep = np.arange(len(c)) != r
        if keep.sum() < 2:
            continue
        params = fit_batch(np.log(c[keep]), means[keep][None], fit.kind)[0]
        predicted = curve_loss(fit.kind, params[None], np.array([c[r]]))[0]
        loo.append(float((means[r] - predicted) / se[r]))
    bounds = at_bounds(fit, list(means))
    span = float(c.max() / c.min())
    reasons = []
    need = MIN_POWER_LAW_POINTS if fit.kind == "power law" else 3
    if len(c) < need:
        reasons.append(f"{len(c)} rungs (a {fit.kind} fit needs ≥ {need} to leave a residual to check)")
    if span < MIN_COMPUTE_SPAN:
        reasons.append(f"compute spans {span:.1f}× (< {MIN_COMPUTE_SPAN:.0f}×)")
    reasons += bounds
    if not np.all(np.isfinite(se)):
        reasons.append("the seed spread is unknown (needs ≥ 2 seeds at some rung)")
    else:
        worst = float(np.max(np.abs(residuals)))
        if worst > MAX_RESIDUAL_SE:
            reasons.append(f"residuals up to {worst:.1f} seed SEs (> {MAX_RESIDUAL_SE:g}): the curve misses its points")
        if loo and max(abs(x) for x in loo) > MAX_LOO_SE:
            reasons.append(
                f"leaving a rung out mispredicts it by up to {max(abs(x) for x in loo):.1f} seed SEs (> {MAX_LOO_SE:g})"
            )
    return Diagnostics(len(c), span, [float(x) for x in residuals], loo, bounds, reasons)


# ================================================================== the multiplier and its uncertainty
@dataclass
class MultiplierResult:
    """One variant's compute multiplier against the baseline (module docstring)."""

    point: float
    low: float
    high: float
    draws: int
    nonfinite: int  # draws whose fit failed or whose M is 0 or ∞ (kept in the percentiles, not dropped)
    loo_low: float  # leave-one-rung-out band
    loo_high: float
    min_seeds: int
    diagnostics: Diagnostics | None = None

    @property
    def small_n(self) -> bool:
        return self.min_seeds < MIN_RELIABLE_SEEDS


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
    Every variant must have the same R rungs, in the same order.  Uses the power law with ≥ 4 rungs.
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
    c_top = float(np.max(compute[baseline]))

    def fits(rung_means: np.ndarray) -> dict[str, np.ndarray]:  # rung_means: (V, D, R)
        return {v: fit_batch(log_c[v], rung_means[i], kind) for i, v in enumerate(names)}

    means = np.stack([np.nanmean(g, axis=1) for g in table], axis=-1)[:, None, :]  # (V, 1, R)
    point_fits = fits(means)
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
    draw_fits = fits(draw_means)
    n_min = min(np.isfinite(g).sum(axis=1).min() for g in table)
    nu = int(n_min) - 1  # the fewest seeds at any rung (conservative: simulated coverage in the docstring)
    widen = (
        float(scipy_stats.t.ppf(0.5 + confidence / 2, nu) / scipy_stats.norm.ppf(0.5 + confidence / 2))
        if nu
        else math.nan
    )
    tail = (1 - confidence) / 2
    out: dict[str, MultiplierResult] = {}
    for i, v in enumerate(names):
        if v == baseline:
            out[v] = MultiplierResult(1.0, 1.0, 1.0, resamples, 0, 1.0, 1.0, int(n_min))
            continue
        point = float(_multiplier(kind, point_fits[baseline], point_fits[v], c_top)[0])
        m = _multiplier(kind, draw_fits[baseline], draw_fits[v], c_top)
        bad = ~np.isfinite(m) | (m <= 0)
        with np.errstate(divide="ignore"):  # log 0 = −inf: a curve that never reaches L* ranks first
            log_m = np.where(np.isnan(m), np.inf, np.log(np.where(m > 0, m, 0.0)))  # failed fits rank last
        lo_q, hi_q = np.quantile(np.sort(log_m), [tail, 1 - tail], method="inverted_cdf")
        log_point = math.log(point) if point > 0 and math.isfinite(point) else math.nan
        low, high = _widened(log_point, float(lo_q), float(hi_q), widen)
        loo = []
        for r in range(n_rungs):
            keep = np.arange(n_rungs) != r
            if keep.sum() < 2:
                continue
            b = fit_batch(log_c[baseline][keep], means[names.index(baseline)][:, keep], kind)
            f = fit_batch(log_c[v][keep], means[i][:, keep], kind)
            loo.append(float(_multiplier(kind, b, f, c_top)[0]))
        out[v] = MultiplierResult(point, low, high, resamples, int(bad.sum()), min(loo, default=math.nan),
                                  max(loo, default=math.nan), int(n_min))  # fmt: skip
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
    "compute_for",
    "curve_loss",
    "diagnose",
    "fit_batch",
    "fit_scaling",
    "multipliers",
    "rung_se",
    "training_compute",
]
