"""lit_ffn.experiments.stats against values computed by hand (closed forms, not scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lit_ffn.experiments.stats import format_mean_std, format_p, holm, paired, summarize, welch, welch_from_stats


def test_summary_is_mean_and_sample_std() -> None:
    s = summarize([1.0, 2.0, 3.0, 4.0])
    # mean 10/4; Σ(x − 2.5)² = 2.25 + 0.25 + 0.25 + 2.25 = 5, / (n − 1) = 5/3
    assert (s.mean, s.n) == (2.5, 4)
    assert s.std == pytest.approx(math.sqrt(5 / 3), rel=1e-12)
    one = summarize([4.9])
    assert one.n == 1 and one.mean == 4.9 and math.isnan(one.std)
    assert summarize([]).n == 0


def test_welch_with_two_degrees_of_freedom_matches_closed_form() -> None:
    """a = [1, 3], b = [4, 6]: s² = 2 in both, se² = 2/2 + 2/2 = 2, t = −3/√2,
    ν = se⁴ / ((1)²/1 + (1)²/1) = 2.  For ν = 2 the t distribution has closed
    forms: F(t) = ½ + t / (2√(2 + t²)), so p = 1 − |t|/√(2 + t²), and the
    quantile t_u = (2u − 1)/√(2u(1 − u))."""
    r = welch([1.0, 3.0], [4.0, 6.0])
    t = -3 / math.sqrt(2)
    assert r.diff == -3.0
    assert r.se == pytest.approx(math.sqrt(2), rel=1e-12)
    assert r.t == pytest.approx(t, rel=1e-12)
    assert r.df == pytest.approx(2.0, rel=1e-12)
    assert r.p == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t), rel=1e-9)  # 0.16795
    u = 0.975
    t_crit = (2 * u - 1) / math.sqrt(2 * u * (1 - u))  # 4.302653
    assert r.ci_low == pytest.approx(-3 - t_crit * math.sqrt(2), rel=1e-9)
    assert r.ci_high == pytest.approx(-3 + t_crit * math.sqrt(2), rel=1e-9)
    assert not r.significant  # CI contains 0


def test_welch_satterthwaite_df_with_unequal_variances_and_sizes() -> None:
    """a = [1, 2, 3, 4] (s² = 5/3, n 4), b = [2, 4, 6] (s² = 4, n 3):
    se² = 5/12 + 4/3 = 7/4, t = (2.5 − 4)/√(7/4),
    ν = (7/4)² / ((5/12)²/3 + (4/3)²/2) = (49/16)/(409/432) = 21168/6544."""
    r = welch([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0])
    assert r.se == pytest.approx(math.sqrt(7 / 4), rel=1e-12)
    assert r.t == pytest.approx(-1.5 / math.sqrt(7 / 4), rel=1e-12)
    assert r.df == pytest.approx(21168 / 6544, rel=1e-12)
    # the CI is symmetric around Δ and its half-width / se is the t quantile
    assert (r.ci_low + r.ci_high) / 2 == pytest.approx(-1.5, rel=1e-12)
    half = (r.ci_high - r.ci_low) / 2 / r.se
    assert 2.776445 < half < 3.182446  # ν = 3.23: between t_{.975} for ν = 4 and ν = 3 (tables)


def test_clear_difference_is_significant_and_ci_excludes_zero() -> None:
    r = welch([4.90, 4.91, 4.92], [5.00, 5.01, 5.02])
    # ν = 4 (equal n, equal s² = 1e-4): t = −0.1/√(2e-4/3) = −12.247.  Closed form for ν = 4:
    # F(t) − ½ = (3x − x³)/4 with x = t/√(4 + t²); two-sided p = 1 − (3x − x³)/2 at x = |t|/√(4 + t²).
    t = -0.1 / math.sqrt(2e-4 / 3)
    x = abs(t) / math.sqrt(4 + t * t)
    p = 1 - (3 * x - x**3) / 2
    assert r.df == pytest.approx(4.0, rel=1e-9)
    assert r.p == pytest.approx(p, rel=1e-6)
    assert r.significant and r.ci_high < 0


def test_welch_undefined_cases_are_nan() -> None:
    assert math.isnan(welch([1.0], [2.0, 3.0]).p)  # n = 1: no variance estimate
    same = welch([1.0, 1.0], [2.0, 2.0])  # no spread at all
    assert same.diff == -1.0 and math.isnan(same.p) and not same.significant


def test_welch_from_stats_agrees_with_raw_samples() -> None:
    a, b = [4.9263, 4.9268, 4.9266, 4.9270, 4.9263], [4.9259, 4.9262, 4.9258, 4.9261, 4.9260]
    sa, sb = summarize(a), summarize(b)
    from_stats = welch_from_stats(sa.mean, sa.std, sa.n, sb.mean, sb.std, sb.n)
    raw = welch(a, b)
    assert from_stats.p == pytest.approx(raw.p, rel=1e-12) and from_stats.ci_low == pytest.approx(raw.ci_low)


def test_holm_by_hand() -> None:
    # sorted: 0.01 (×3 = 0.03), 0.02 (×2 = 0.04), 0.04 (×1 = 0.04, running max 0.04)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    # monotone: 0.03·2 = 0.06 then max(0.06, 0.05·1) = 0.06; caps at 1; NaN ignored (m = 2)
    assert holm([0.05, float("nan"), 0.03]) == pytest.approx([0.06, float("nan"), 0.06], nan_ok=True)
    assert holm([0.6, 0.7]) == [1.0, 1.0]


def test_formatting() -> None:
    assert format_mean_std(4.92660, 0.0003) == "4.92660 ± 0.00030"  # two significant digits of the std
    assert format_mean_std(4.9266, 0.012) == "4.9266 ± 0.0120"  # at least 4 decimals
    assert format_mean_std(4.9, float("nan")) == "4.9000"
    assert format_p(0.16796) == "0.1680" and format_p(1e-6) == "<1e-4" and format_p(float("nan")) == "n/a"


def test_paired_t_test_by_hand() -> None:
    """d = a − b over the common seeds 0, 1, 2 = [1, 2, 3] (seed 7 of a has no partner): d̄ = 2, s_d = 1,
    se = 1/√3, t = 2√3, ν = 2; for ν = 2, p = 1 − |t|/√(2 + t²) and t_{.975} = 4.302653 (closed forms
    as in the Welch test above)."""
    r = paired({0: 1.0, 1: 2.5, 2: 4.0, 7: 9.0}, {0: 0.0, 1: 0.5, 2: 1.0})
    t = 2 * math.sqrt(3)
    assert r.diff == 2.0 and r.df == 2.0
    assert r.se == pytest.approx(1 / math.sqrt(3), rel=1e-12)
    assert r.t == pytest.approx(t, rel=1e-12)
    assert r.p == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)  # 0.0742
    u = 0.975
    t_crit = (2 * u - 1) / math.sqrt(2 * u * (1 - u))
    assert r.ci_low == pytest.approx(2 - t_crit / math.sqrt(3), rel=1e-9)
    assert r.ci_high == pytest.approx(2 + t_crit / math.sqrt(3), rel=1e-9)
    # the same numbers unpaired: the seed-to-seed spread (1.5 per seed in a) hides the difference
    assert welch([1.0, 2.5, 4.0], [0.0, 0.5, 1.0]).p > r.p
    # the closed form is scipy's paired test
    from scipy import stats as sps

    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 6), rng.normal(0.3, 1, 6)
    mine = paired(dict(enumerate(a)), dict(enumerate(b)))
    theirs = sps.ttest_rel(a, b)
    assert mine.t == pytest.approx(theirs.statistic, rel=1e-12) and mine.p == pytest.approx(theirs.pvalue, rel=1e-10)


def test_paired_undefined_cases_are_nan() -> None:
    assert math.isnan(paired({0: 1.0}, {0: 0.5}).p)  # one pair
    assert math.isnan(paired({0: 1.0, 1: 2.0}, {2: 0.5, 3: 1.0}).diff)  # no common seed
    constant = paired({0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.5})  # the same difference for every seed
    assert constant.diff == 0.5 and constant.se == 0.0 and math.isnan(constant.p)
    # differences equal up to the values' rounding (float32 scalars) are "no spread" at that precision
    rounded = {0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.5 + 3e-7}
    assert not math.isnan(paired(*rounded).p) and math.isnan(paired(*rounded, rtol=1e-6).p)
