"""Statistics for comparing FFN variants over seeds.

A study trains every variant with ``n`` seeds and compares each variant's
final validation loss with the baseline's.  The seeds are independent runs, so
each variant is a sample ``x_1 … x_n`` and the question "is variant A better
than B?" is a two-sample test on means with possibly unequal variances:

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
* :func:`holm` — Holm–Bonferroni adjusted p-values for the k comparisons of
  one study.  Hand-written because scipy has no Holm correction (it only
  offers Benjamini–Hochberg FDR via ``scipy.stats.false_discovery_control``)
  and statsmodels is not a dependency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

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
class WelchResult:
    """Welch's t-test of ``diff = mean(a) − mean(b)``; NaN where undefined (n < 2 or se = 0)."""

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
    return max(default, 1 - int(math.floor(math.log10(std))))


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
    "WelchResult",
    "format_mean_std",
    "format_p",
    "holm",
    "summarize",
    "welch",
    "welch_from_stats",
]
