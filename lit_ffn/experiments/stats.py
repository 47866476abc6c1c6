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

  (``scipy.stats.ttest_rel``).  Welch's test stays valid but ignores the
  pairing, so it has far less power when seeds differ more than variants do.
* :func:`minimum_detectable_difference` — how small a difference the test
  could see: at two-sided level α and power 1 − β, with the spread observed
  (the usual normal-shift approximation with t quantiles, e.g. Lehr 1992)::

      MDD = (t_{1−α/2, ν} + t_{1−β, ν}) · se
      two-sample (Welch): se = sqrt(s_A²/n_A + s_B²/n_B), ν Welch–Satterthwaite
      paired:             se = s_d/√n,                    ν = n − 1

  so "no detectable difference" can say which differences were ruled out.
* :func:`holm` — Holm–Bonferroni adjusted p-values for the k comparisons of
  one study.  Hand-written because scipy has no Holm correction (it only
  offers Benjamini–Hochberg FDR via ``scipy.stats.false_discovery_control``)
  and statsmodels is not a dependency.
"""

from __future__ import annotations

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
    result = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * se
    return TTestResult(
        diff, diff - half, diff + half, float(result.statistic), float(n - 1), float(result.pvalue), se, confidence
    )


def minimum_detectable_difference(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference a two-sided t-test at level ``alpha`` detects with probability
    ``power``: ``(t_{1−α/2, ν} + t_{power, ν}) · se`` (module docstring); NaN when ``se`` or ``df`` is not
    usable (fewer than 2 runs on a side)."""
    from scipy import stats as scipy_stats

    if not (math.isfinite(se) and math.isfinite(df) and df > 0 and se >= 0):
        return math.nan
    return float((scipy_stats.t.ppf(1 - alpha / 2, df) + scipy_stats.t.ppf(power, df)) * se)


def mdd_welch(a: Sequence[float], b: Sequence[float], alpha: float = 0.05, power: float = 0.8) -> float:
    """:func:`minimum_detectable_difference` of Welch's test for samples ``a`` and ``b``."""
    sa, sb = summarize(a), summarize(b)
    if sa.n < 2 or sb.n < 2:
        return math.nan
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1)) if va + vb > 0 else math.inf
    return minimum_detectable_difference(se, df, alpha, power) if math.isfinite(df) else 0.0


def mdd_paired(differences: Sequence[float], alpha: float = 0.05, power: float = 0.8) -> float:
    """:func:`minimum_detectable_difference` of the paired test for per-seed ``differences``."""
    sd = summarize(differences)
    if sd.n < 2:
        return math.nan
    return minimum_detectable_difference(sd.std / math.sqrt(sd.n), sd.n - 1, alpha, power)


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
    "summarize",
    "welch",
    "welch_from_stats",
]
