"""The compute multiplier compares fitted curves at a common loss (lit_ffn.experiments.scaling):
1 for the baseline by construction, k for a curve shifted by k in compute; paired bootstrap with failed
draws counted; diagnostics that withhold a multiplier the ladder cannot identify."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lit_ffn.experiments import scaling

COMPUTE = [1e11, 4e11, 1.6e12, 6.4e12, 2.56e13]  # 2.4 decades


def curve(c: float | np.ndarray, e: float = 2.0, a: float = 40.0, alpha: float = 0.12) -> float | np.ndarray:
    return e + a * np.asarray(c, dtype=float) ** (-alpha)


def seeds(means: list[float], sd: float, n: int, rng: np.random.Generator) -> list[list[float]]:
    return [list(m + sd * rng.standard_normal(n)) for m in means]


def test_the_baseline_against_itself_is_exactly_one() -> None:
    fit = scaling.fit_scaling(COMPUTE, [float(curve(c)) for c in COMPUTE])
    assert scaling.curve_multiplier(fit, fit, max(COMPUTE)) == 1.0
    rng = np.random.default_rng(0)
    losses = seeds([float(curve(c)) for c in COMPUTE], 0.01, 3, rng)
    boot = scaling.paired_bootstrap(COMPUTE, losses, losses, resamples=50)
    # seeds resampled jointly: every draw refits the same data for both, so the interval is [1, 1] too
    assert (boot.point, boot.low, boot.high, boot.failed) == (1.0, 1.0, 1.0, 0)


@pytest.mark.parametrize("k", [0.5, 2.0, 3.0])
def test_a_curve_shifted_by_k_in_compute_gets_k(k: float) -> None:
    base = scaling.fit_scaling(COMPUTE, [float(curve(c)) for c in COMPUTE])
    variant = scaling.fit_scaling(COMPUTE, [float(curve(k * c)) for c in COMPUTE])  # reaches each loss k× sooner
    assert scaling.curve_multiplier(base, variant, max(COMPUTE)) == pytest.approx(k, rel=1e-3)


def test_the_paired_bootstrap_counts_draws_it_cannot_use() -> None:
    rng = np.random.default_rng(1)
    base = seeds([float(curve(c)) for c in COMPUTE], 0.01, 3, rng)
    flat = [[9.0, 9.0, 9.0] for _ in COMPUTE]  # never reaches the baseline's loss: M = 0 in every draw
    boot = scaling.paired_bootstrap(COMPUTE, base, flat, resamples=40)
    assert boot.point == 0.0 and boot.failed == 40 and math.isnan(boot.low)
    assert boot.unreliable  # 3 seeds < MIN_RELIABLE_SEEDS


def test_a_good_ladder_passes_the_diagnostics() -> None:
    rng = np.random.default_rng(3)
    diag = scaling.diagnose(COMPUTE, seeds([float(curve(c)) for c in COMPUTE], 0.01, 3, rng))
    assert diag.ok, diag.problems
    assert diag.rungs == 5 and diag.span_decades == pytest.approx(math.log10(256))


def test_a_ladder_the_fit_cannot_identify_is_withheld_with_its_reasons() -> None:
    rng = np.random.default_rng(4)
    few = scaling.diagnose(COMPUTE[:3], seeds([float(curve(c)) for c in COMPUTE[:3]], 0.01, 3, rng))
    assert not few.ok and any("3 rungs" in p for p in few.problems)
    # a kink the power law cannot follow, with seeds far tighter than the misfit
    kinked = [float(curve(c)) for c in COMPUTE]
    kinked[2] += 0.3
    bad = scaling.diagnose(COMPUTE, seeds(kinked, 0.005, 3, rng))
    assert not bad.ok and any("seed SDs" in p for p in bad.problems)
    one_seed = scaling.diagnose(COMPUTE, [[float(curve(c))] for c in COMPUTE])
    assert any("one seed per rung" in p for p in one_seed.problems)


def test_leave_one_rung_out_stays_at_k_on_exact_curves() -> None:
    base = [[float(curve(c))] for c in COMPUTE]
    variant = [[float(curve(2 * c))] for c in COMPUTE]
    band = scaling.leave_one_rung_out(COMPUTE, base, variant)
    assert len(band) == len(COMPUTE) and all(m == pytest.approx(2.0, rel=1e-3) for m in band)


def test_a_variant_on_less_compute_per_rung_is_fitted_on_its_own_compute() -> None:
    """A smaller FFN trains each rung with less compute: its curve is fitted at its own C, not the baseline's."""
    base = [[float(curve(c))] * 2 for c in COMPUTE]
    half = [c / 2 for c in COMPUTE]
    same_losses_on_half = [[float(curve(c))] * 2 for c in COMPUTE]  # the baseline's losses at half the compute
    boot = scaling.paired_bootstrap(COMPUTE, base, same_losses_on_half, resamples=20, variant_compute=half)
    assert boot.point == pytest.approx(2.0, rel=1e-3)
    assert all(m == pytest.approx(2.0, rel=1e-3) for m in scaling.leave_one_rung_out(COMPUTE, base, base, half))
