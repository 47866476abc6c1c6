"""Statistics for comparing FFN variants over seeds.

A study trains every variant with ``n`` seeds and compares each variant's
final validation loss with the baseline's.  Each variant is a sample
``x_1 … x_n``; "is variant A better than B?" is a two-sample test on means
with possibly unequal variances (Welch), or, since run A and run B with the
same seed see the same data order, a paired test on the per-seed differences:

* :func:`summarize` — mean ``x̄ = Σx_i/n`` and *sample* standard deviation
  ``s = sqrt(Σ(x_i − x̄)²/(n − 1))`` (ddof = 1; undefined for n = 1).
* :func:`welch` — Welch's unequal-variance t-test of ``Δ = x̄_A − x̄_B``::

      se² = s_A²/n_A + s_B²/n_B
      t   = Δ / se
      ν   = se⁴ / ((s_A²/n_A)²/(n_A − 1) + (s_B²/n_B)²/(n_B − 1))   (Welch–Satterthwaite)
      p   = 2·(1 − F_ν(|t|))                                       (two-sided)
      CI  = Δ ± t_{0.975, ν}·se                                    (95 %)

  The t distribution and the test come from :mod:`scipy.stats`
  (``ttest_ind(equal_var=False)``, ``t.ppf``); the CI excludes 0 exactly when
  p < 0.05, since both come from the same t statistic.
* :func:`paired` — the paired t-test of the per-seed differences.  In a
  lit_ffn study the seed fixes the data order (and the initial embedding,
  drawn first) for every variant, so run A with seed s and run B with seed s
  are a matched pair: much of the seed-to-seed spread is shared and cancels
  in ``d_s = x_{A,s} − x_{B,s}``.  Over the n seeds both have::

      d̄  = Σ d_s / n,   s_d = sqrt(Σ(d_s − d̄)²/(n − 1)),   se = s_d/√n
      t   = d̄ / se,     ν = n − 1
      p   = 2·(1 − F_ν(|t|)),   CI = d̄ ± t_{0.975, ν}·se

  (``scipy.stats.ttest_rel``'s numbers, computed in closed form with ``scipy.stats.t``).  Welch's test stays valid but ignores the
  pairing, so it has far less power when seeds differ more than variants do.
* :func:`minimum_detectable_difference` — how small a difference the test
  could see: at two-sided level α and power 1 − β, with the spread observed
  (the usual normal-shift approximation with t quantiles, e.g. Lehr 1992)::

      MDD = (t_{1−α/2, ν} + t_{1−β, ν}) · se
      two-sample (Welch): se = sqrt(s_A²/n_A + s_B²/n_B), ν Welch–Satterthwaite
      paired:             se = s_d/√n,                    ν = n − 1

  so an "inconclusive" verdict can say which differences it could have seen.
* :func:`holm` — Holm–Bonferroni adjusted p-values for the k comparisons of
  one study.  Hand-written because scipy has no Holm correction (it only
  offers Benjamini–Hochberg FDR via ``scipy.stats.false_discovery_control``)
  and statsmodels is not a dependency.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof 1; NaN for n < 2) and size of one sample."""

    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        return format_mean_std(self.mean, self.std)


@dataclass(frozen=True)
class TTestResult:
    """A two-sided t-test of ``diff`` (Welch: mean(a) − mean(b); paired: mean of a_s − b_s) with its
    CI; NaN where undefined (too few values, or se = 0)."""

    diff: float
    ci_low: float
    ci_high: float
    t: float
    df: float
    p: float
    se: float
    confidence: float = 0.95

    @property
    def significant(self) -> bool:
        """p < 1 − confidence (equivalently: the CI excludes 0)."""
        return bool(self.p < 1.0 - self.confidence)


#: Welch's test result (the name the report and older code use).
WelchResult = TTestResult


def summarize(values: Iterable[float]) -> Summary:
    """Mean and sample standard deviation (ddof = 1) of ``values``."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        return Summary(math.nan, math.nan, 0)
    std = float(x.std(ddof=1)) if x.size > 1 else math.nan
    return Summary(float(x.mean()), std, int(x.size))


def welch_from_stats(
    mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int, confidence: float = 0.95
) -> WelchResult:
    """Welch's t-test and CI of ``mean_a − mean_b`` from summary statistics (sample stds)."""
    from scipy import stats

    diff = mean_a - mean_b
    if n_a < 2 or n_b < 2:
        return WelchResult(diff, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, confidence)
    va, vb = std_a**2 / n_a, std_b**2 / n_b
    se = math.sqrt(va + vb)
    if se == 0.0:  # every seed gave the same value in both groups: no test is possible
        return WelchResult(diff, math.nan, math.nan, math.nan, math.nan, math.nan, 0.0, confidence)
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    result = stats.ttest_ind_from_stats(mean_a, std_a, n_a, mean_b, std_b, n_b, equal_var=False)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, df)) * se
    return WelchResult(
        diff, diff - half, diff + half, float(result.statistic), df, float(result.pvalue), se, confidence
    )


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> WelchResult:
    """Welch's two-sided t-test of ``mean(a) − mean(b)`` with its ``confidence`` CI."""
    sa, sb = summarize(a), summarize(b)
    return welch_from_stats(sa.mean, sa.std, sa.n, sb.mean, sb.std, sb.n, confidence)


def paired(
    a: Mapping[int, float], b: Mapping[int, float], confidence: float = 0.95, rtol: float = 1e-13
) -> TTestResult:
    """Paired two-sided t-test of ``a_s − b_s`` over the keys (seeds) both have (module docstring).

    A standard error below ``rtol · max |value|`` counts as zero (the same difference for every
    seed up to the values' rounding: no test); pass the values' own precision, e.g. ~1e-6 for
    float32 TensorBoard scalars."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    d = np.asarray([a[s] - b[s] for s in seeds], dtype=np.float64)
    n = int(d.size)
    diff = float(d.mean()) if n else math.nan
    if n < 2:
        return TTestResult(diff, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, confidence)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    if se <= rtol * max(max(abs(a[s]), abs(b[s])) for s in seeds):  # no spread (up to rounding): no test
        return TTestResult(diff, math.nan, math.nan, math.nan, float(n - 1), math.nan, 0.0, confidence)
    # ttest_rel's statistic and p in closed form (the same numbers; tests/experiments/test_stats.py checks them
    # against scipy.stats.ttest_rel): the report runs thousands of these in its calibration tests
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), n - 1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * se
    return TTestResult(diff, diff - half, diff + half, t, float(n - 1), p, se, confidence)


@functools.lru_cache(maxsize=1024)
def t_quantile(q: float, df: float) -> float:
    """``scipy.stats.t.ppf(q, df)``, cached: a report asks for the same few quantiles over and over."""
    from scipy import stats as scipy_stats

    return float(scipy_stats.t.ppf(q, df))


def minimum_detectable_difference(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference a two-sided t-test at level ``alpha`` detects with probability
    ``power``: ``(t_{1−α/2, ν} + t_{power, ν}) · se`` (module docstring); NaN when ``se`` or ``df`` is not
    usable (fewer than 2 runs on a side)."""
    if not (math.isfinite(se) and math.isfinite(df) and df > 0 and se >= 0):
        return math.nan
    return float((t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * se)


def mdd_welch(a: Sequence[float], b: Sequence[float], alpha: float = 0.05, power: float = 0.8) -> float:
    """:func:`minimum_detectable_difference` of Welch's test for samples ``a`` and ``b``."""
    sa, sb = summarize(a), summarize(b)
    if sa.n < 2 or sb.n < 2:
        return math.nan
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    if va + vb <= 0:  # no spread: Welch's test is NaN, so is what it could detect
        return math.nan
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    return minimum_detectable_difference(se, df, alpha, power)


def mdd_paired(
    differences: Sequence[float], alpha: float = 0.05, power: float = 0.8, scale: float = 0.0, rtol: float = 1e-13
) -> float:
    """:func:`minimum_detectable_difference` of the paired test for per-seed ``differences``; NaN where
    :func:`paired` is NaN (fewer than 2 pairs, or a standard error below ``rtol · scale``: no spread)."""
    sd = summarize(differences)
    if sd.n < 2:
        return math.nan
    se = sd.std / math.sqrt(sd.n)
    if not se > rtol * scale:
        return math.nan
    return minimum_detectable_difference(se, sd.n - 1, alpha, power)


def seed_block_difference(
    d: np.ndarray, confidence: float = 0.95, clusters: Sequence[int] | np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """CI and test of a variant − baseline difference with the seed noise **and** the validation set's
    noise in it, from per-(seed, block) paired differences ``d[..., s, b] = ℓ_var[s, b] − ℓ_base[s, b]``
    (S seeds, B validation blocks; leading axes are independent studies, vectorised).

    The model is d_{s,b} = δ + u_s + w_b + e_{s,b}: u the seed effect (init, data order), w the block
    effect (which text the validation set happened to hold), e their interaction.  The estimate
    d̄ = mean(d) has Var = σ_u²/S + Var(mean_b w_b) + σ_e²/(SB).  Its two components are estimated from
    the seed means m_s = mean_b d_{s,b} and the block means c_b = mean_s d_{s,b}::

        v_seed  = var_s(m_s)/S                                  (ddof 1)
        v_block = C/(C − 1) · Σ_g (Σ_{b∈g} (c_b − c̄))² / B²      (blocks resampled by cluster g)
        se²     = v_seed + v_block                              (σ_e² counted twice: conservative)
        ν       = min(se⁴ / (v_seed²/(S − 1) + v_block²/(C − 1)),  S − 1)
        CI      = d̄ ± t_{(1+confidence)/2, ν} · se,   p = 2·(1 − F_ν(|d̄|/se))

    ``clusters`` (B,) labels the blocks that are not independent of each other — the document each block
    starts in (adjacent blocks of one document share its topic and style) — and ``v_block`` is the
    cluster (document) bootstrap's variance in closed form (the cluster-robust "sandwich" variance of a
    mean; resampling whole clusters with replacement, the same clusters for both runs).  Without
    ``clusters`` every block is its own cluster and v_block = var_b(c_b)/B.  ``v_seed`` is the paired
    seed bootstrap's variance; the two-way (crossed) bootstrap adds the two (Owen 2007, "The pigeonhole
    bootstrap").  **ν never exceeds S − 1**: the seed part is estimated from S seeds whatever the number
    of blocks, and Satterthwaite's ν, which grows towards C − 1 when the block term dominates, would claim
    a precision the seeds cannot support (with 3 seeds it gave ν = 16.5; the cap makes it 2).  Simulated
    coverage (tests/experiments/test_calibration.py; docs/experiments.md): ≥ 95% at 3 and at 5 seeds,
    conservative where the block term dominates.  NaN for S < 2.

    Returns arrays ``diff, se, df, ci_low, ci_high, p, se_seed, se_block`` of the leading shape."""
    from scipy import stats as scipy_stats

    d = np.asarray(d, dtype=np.float64)
    s_count, b_count = d.shape[-2], d.shape[-1]
    diff = d.mean(axis=(-2, -1))
    nan = np.full(diff.shape, np.nan)
    if s_count < 2:
        return {"diff": diff, "se": nan, "df": nan, "ci_low": nan, "ci_high": nan, "p": nan, "se_seed": nan,
                "se_block": nan}  # fmt: skip
    v_seed = d.mean(axis=-1).var(axis=-1, ddof=1) / s_count
    labels = np.arange(b_count) if clusters is None else np.unique(np.asarray(clusters), return_inverse=True)[1]
    if len(labels) != b_count:
        raise ValueError(f"clusters has {len(labels)} labels for {b_count} blocks")
    n_clusters = int(labels.max()) + 1 if b_count else 0
    if n_clusters > 1:
        centred = d.mean(axis=-2) - diff[..., None]  # c_b − c̄, (..., B)
        totals = np.zeros((*centred.shape[:-1], n_clusters))
        np.add.at(totals, (..., labels), centred)
        v_block = n_clusters / (n_clusters - 1) * (totals**2).sum(axis=-1) / b_count**2
    else:
        v_block = np.zeros_like(v_seed)
    var = v_seed + v_block
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = v_seed**2 / (s_count - 1) + (v_block**2 / (n_clusters - 1) if n_clusters > 1 else 0.0)
        df = np.minimum(np.where(denominator > 0, var**2 / denominator, np.nan), s_count - 1)
        se = np.sqrt(var)
        t = np.where(se > 0, diff / se, np.nan)
        half = scipy_stats.t.ppf(0.5 + confidence / 2.0, df) * se
        p = 2 * scipy_stats.t.sf(np.abs(t), df)
    return {"diff": diff, "se": se, "df": df, "ci_low": diff - half, "ci_high": diff + half, "p": p,
            "se_seed": np.sqrt(v_seed), "se_block": np.sqrt(v_block)}  # fmt: skip


def seed_block_test(
    d: np.ndarray, confidence: float = 0.95, clusters: Sequence[int] | np.ndarray | None = None
) -> TTestResult:
    """:func:`seed_block_difference` of one study (``d``: (S, B)) as a :class:`TTestResult`."""
    r = {k: float(v) for k, v in seed_block_difference(np.asarray(d), confidence, clusters).items()}
    return TTestResult(r["diff"], r["ci_low"], r["ci_high"], r["diff"] / r["se"] if r["se"] > 0 else math.nan,
                       r["df"], r["p"], r["se"], confidence)  # fmt: skip


@dataclass(frozen=True)
class RankResult:
    """A rank-based paired comparison in which a diverged run (+∞) ranks last: the sign test of
    ``a_s − b_s`` over the seeds both ran (a tie — both diverged, or equal — is left out)."""

    better: int  # seeds where a < b (a lower loss)
    worse: int  # seeds where a > b (a diverged and b did not counts here)
    ties: int
    p: float  # two-sided exact binomial test of better vs worse at 1/2 (scipy.stats.binomtest); NaN with no untied pair


def sign_test(a: Mapping[int, float], b: Mapping[int, float]) -> RankResult:
    """Paired sign test of per-seed outcomes with +∞ for a diverged run (:class:`RankResult`).  Its smallest
    possible two-sided p is 2^(1−n): below 0.05 only from n ≥ 6 untied pairs."""
    from scipy import stats as scipy_stats

    seeds = sorted(set(a) & set(b))
    better = sum(a[s] < b[s] for s in seeds)
    worse = sum(a[s] > b[s] for s in seeds)
    ties = len(seeds) - better - worse
    n = better + worse
    p = float(scipy_stats.binomtest(better, n, 0.5).pvalue) if n else math.nan
    return RankResult(better, worse, ties, p)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as given; NaNs stay NaN, not counted).

    Sort the m valid p-values ascending, p_(1) ≤ … ≤ p_(m); the adjusted value
    is ``max_{j ≤ i} min(1, (m − j + 1)·p_(j))`` — reject where it is < α.
    """
    valid = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(valid)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(valid)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def _decimals(std: float, default: int = 4) -> int:
    """Decimals that show the std with two significant digits (at least ``default``)."""
    if math.isnan(std) or std <= 0:
        return default
    return max(default, 1 - math.floor(math.log10(std)))


def format_mean_std(mean: float, std: float) -> str:
    """``4.9266 ± 0.0003``; the std's two leading digits decide the decimals (n = 1: no ±)."""
    if math.isnan(mean):
        return "—"
    d = _decimals(std)
    return f"{mean:.{d}f}" if math.isnan(std) else f"{mean:.{d}f} ± {std:.{d}f}"


def format_p(p: float) -> str:
    """``0.0123``, ``<1e-4``, ``n/a``."""
    if math.isnan(p):
        return "n/a"
    return "<1e-4" if p < 1e-4 else f"{p:.4f}"


__all__ = [
    "RankResult",
    "Summary",
    "TTestResult",
    "WelchResult",
    "format_mean_std",
    "format_p",
    "holm",
    "mdd_paired",
    "mdd_welch",
    "minimum_detectable_difference",
    "paired",
    "seed_block_difference",
    "seed_block_test",
    "sign_test",
    "summarize",
    "t_quantile",
    "welch",
    "welch_from_stats",
]
