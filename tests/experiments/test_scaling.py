"""Scaling fits recover known curves; the compute multiplier and minimum detectable differences are right."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from lit_ffn.errors import UserError
from lit_ffn.experiments.scaling import diagnose, fit_scaling, multipliers
from lit_ffn.experiments.stats import mdd_paired, mdd_welch, minimum_detectable_difference

E, A, ALPHA = 1.8, 40.0, 0.12
COMPUTE = np.geomspace(1e15, 1e19, 6)


def law(c: np.ndarray | float) -> np.ndarray | float:
    return E + A * np.asarray(c) ** (-ALPHA)


def test_power_law_recovers_known_parameters_from_noisy_points() -> None:
    rng = np.random.default_rng(0)
    loss = law(COMPUTE) + rng.normal(0, 0.002, size=len(COMPUTE))
    fit = fit_scaling(COMPUTE, loss)
    assert fit.kind == "power law"
    e, _a, alpha = fit.params
    assert e == pytest.approx(E, abs=0.1) and alpha == pytest.approx(ALPHA, rel=0.15)
    assert fit.loss(3e17) == pytest.approx(law(3e17), abs=0.005)  # interpolates the true curve


def test_few_rungs_get_the_log_linear_fit() -> None:
    c = np.array([1e15, 1e16, 1e17])
    loss = 5.0 - 0.1 * np.log(c)
    fit = fit_scaling(c, loss)
    assert fit.kind == "log-linear" and fit.params == pytest.approx((5.0, -0.1))
    assert fit.compute_for(5.0 - 0.1 * math.log(3e16)) == pytest.approx(3e16, rel=1e-9)
    with pytest.raises(UserError, match="at least 2 rungs"):
        fit_scaling([1e15], [3.0])


def test_a_curve_shifted_by_2x_in_compute_is_worth_2x_and_the_baseline_exactly_1() -> None:
    """Variant = baseline needing half the compute for every loss: L_var(C) = L_base(2C) -> M = 2; the baseline
    against itself is 1 by construction, and a variant with the baseline's own data is 1 too."""
    spread = np.array([-0.001, 0.0, 0.001])
    base = [list(law(c) + spread) for c in COMPUTE]
    shifted = [list(law(2 * c) + spread) for c in COMPUTE]
    compute = {"base": COMPUTE, "shifted": COMPUTE, "same": COMPUTE}
    found = multipliers(compute, {"base": base, "shifted": shifted, "same": base}, "base", resamples=300)
    assert found["base"].point == 1.0 and (found["base"].low, found["base"].high) == (1.0, 1.0)
    assert found["same"].point == pytest.approx(1.0, abs=1e-9)
    m = found["shifted"]
    assert m.point == pytest.approx(2.0, rel=2e-3) and m.low <= m.point <= m.high and m.low < 2.0 < m.high
    assert m.nonfinite == 0 and m.loo_low == pytest.approx(2.0, rel=1e-2) and m.loo_high == pytest.approx(2.0, rel=1e-2)


def test_a_bad_fit_is_withheld_with_its_reason() -> None:
    """Points that no saturating power law describes (loss falling faster at large compute, as on the old CPU
    ladder): residuals far beyond the seed noise are named (E at its bound 0 is reported, not a reason: a pure
    power law is a fine curve)."""
    c = np.geomspace(1e11, 1e13, 4)
    loss = [[11.7, 11.6], [11.0, 10.9], [10.1, 10.2], [8.2, 8.25]]
    fit = fit_scaling(c, [np.mean(x) for x in loss])
    found = diagnose(c, loss, fit)
    assert not found.passes
    assert any(r.startswith("residuals up to") for r in found.reasons)
    good = diagnose(COMPUTE, [[law(x) - 0.001, law(x) + 0.001] for x in COMPUTE], fit_scaling(COMPUTE, law(COMPUTE)))
    assert good.passes, good.reasons


def test_minimum_detectable_difference_by_hand() -> None:
    # MDD = (t_{0.975, ν} + t_{0.8, ν}) · se; ν = 4, se = 0.01
    by_hand = (sps.t.ppf(0.975, 4) + sps.t.ppf(0.8, 4)) * 0.01
    assert by_hand == pytest.approx((2.7764451 + 0.9409646) * 0.01, rel=1e-6)
    assert minimum_detectable_difference(0.01, 4) == pytest.approx(by_hand)
    # paired: d = [0.01, 0.03, 0.02, 0.00, 0.04]: s_d = 0.015811, se = s_d/√5, ν = 4
    d = [0.01, 0.03, 0.02, 0.00, 0.04]
    se = np.std(d, ddof=1) / math.sqrt(5)
    assert mdd_paired(d) == pytest.approx((2.7764451 + 0.9409646) * se, rel=1e-6)
    # Welch with equal spreads and n = 3 + 3: se = sqrt(2 s²/3), ν = 4
    a, b = [4.40, 4.50, 4.60], [4.10, 4.20, 4.30]
    se = math.sqrt(2 * 0.01 / 3)
    assert mdd_welch(a, b) == pytest.approx((2.7764451 + 0.9409646) * se, rel=1e-6)
    assert math.isnan(mdd_welch([1.0], [2.0, 3.0])) and math.isnan(mdd_paired([0.1]))


def test_the_report_says_how_small_a_difference_it_could_see(tmp_path) -> None:
    from pathlib import Path

    from lit_ffn.experiments import report
    from lit_ffn.experiments.study import Pair, Study
    from tests.experiments.test_ablate import write_run

    repo = Path(__file__).resolve().parents[2] / "configs" / "ffn"
    study = Study(tmp_path / "s", ["base.yaml"], {"swiglu": str(repo / "swiglu.yaml"), "relu": str(repo / "relu.yaml")},
                  [0, 1, 2], experiment="x")  # fmt: skip
    study.save()
    final = {"swiglu": [4.4, 4.5, 4.6], "relu": [4.1, 4.22, 4.28]}
    for variant, values in final.items():
        for seed, value in enumerate(values):
            write_run(study, Pair(variant, seed), [(0, 6.0), (9, value)])
    md = report.write_report(study)["md"].read_text()
    row = next(line for line in md.splitlines() if line.startswith("| relu | 3 |"))
    # d = −0.30, −0.28, −0.32: s_d = 0.02, se = s_d/√3, ν = 2: MDD = (t_{.975,2} + t_{.8,2})·se, in the main table
    # and in the inconclusive verdict beside it (the float32 scalars: 4 decimals)
    mdd = (sps.t.ppf(0.975, 2) + sps.t.ppf(0.8, 2)) * 0.02 / math.sqrt(3)
    assert row.endswith(f"| {mdd:.4f} |")


def test_a_variant_on_less_compute_per_rung_is_fitted_on_its_own_compute() -> None:
    """A smaller FFN trains each rung with less compute: its curve is fitted at its own C, not the baseline's.
    The baseline's losses reached at half the compute are worth M = 2, in the point, the CI and the LOO band."""
    spread = np.array([-0.001, 0.0, 0.001])
    base = [list(law(c) + spread) for c in COMPUTE]
    half = [c / 2 for c in COMPUTE]
    found = multipliers({"base": COMPUTE, "small": half}, {"base": base, "small": base}, "base", resamples=100)
    m = found["small"]
    assert m.point == pytest.approx(2.0, rel=1e-3) and m.low <= 2.0 <= m.high
    assert m.loo_low == pytest.approx(2.0, rel=1e-3) and m.loo_high == pytest.approx(2.0, rel=1e-3)


def test_failed_draws_are_counted_not_dropped() -> None:
    """A variant whose curve is flat above the baseline's top loss never reaches L*: its draws are 0 and counted."""
    spread = np.array([-0.001, 0.0, 0.001])
    base = [list(law(c) + spread) for c in COMPUTE]
    flat = [list(10.0 + spread) for _ in COMPUTE]
    m = multipliers({"base": COMPUTE, "flat": COMPUTE}, {"base": base, "flat": flat}, "base", resamples=50)["flat"]
    assert m.draws == 50 and m.nonfinite > 0


# the CPU ladder's computes (swiglu, configs/ladder/cpu/) and swiglu's fit there; the observed per-rung seed SDs
CPU_COMPUTE = np.array([1.137e11, 1.530e12, 4.673e12, 9.345e12])
CPU_SD = np.array([0.029, 0.184, 0.061, 0.011])


def cpu_law(c: np.ndarray) -> np.ndarray:
    return 0.313 + 101.6 * np.asarray(c) ** (-0.118)


def kinked(c: np.ndarray) -> np.ndarray:
    """Misspecified: the exponent changes from 0.118 to 0.2 after the second rung (continuous there)."""
    c = np.asarray(c, dtype=float)
    knee = CPU_COMPUTE[1]
    return np.where(c <= knee, cpu_law(c), 0.313 + (cpu_law(knee) - 0.313) * (c / knee) ** (-0.2))


def test_the_diagnostics_withhold_a_correct_power_law_rarely_and_a_misspecified_one_mostly() -> None:
    """Issue 30: the thresholds are calibrated by simulation.  At the CPU ladder's computes and observed noise,
    5 seeds: a correctly specified power law is withheld ≤ 10% of the time (measured 6.5% at 200 ladders, 60
    draws), a curve whose exponent changes between rungs ≥ 80% (measured 96%).  100 ladders and 40 bootstrap
    draws here (fixed seeds; seconds).  The old diagnostics (LOO error / the rung's SE only, unweighted fit)
    withheld the correct law 97–99% of the time."""
    from lit_ffn.experiments.scaling import simulate_withholding

    correct = simulate_withholding(CPU_COMPUTE, cpu_law, CPU_SD, seeds=5, reps=100, rng_seed=0, resamples=40)
    wrong = simulate_withholding(CPU_COMPUTE, kinked, CPU_SD, seeds=5, reps=100, rng_seed=1, resamples=40)
    assert correct <= 0.10 and wrong >= 0.80, (correct, wrong)


def test_a_one_seed_ladder_reports_no_multiplier_ci() -> None:
    """One seed at every rung: the bootstrap cannot vary anything, so there is no CI (not a zero-width one)."""
    base = [[law(c)] for c in COMPUTE]
    shifted = [[law(1.3 * c)] for c in COMPUTE]
    m = multipliers({"b": COMPUTE, "v": COMPUTE}, {"b": base, "v": shifted}, "b", resamples=50)["v"]
    assert m.point == pytest.approx(1.3, rel=1e-2)
    assert math.isnan(m.low) and math.isnan(m.high) and m.no_ci.startswith("no CI: a rung has 1 seed")
    mixed = [list(x) for x in base]
    mixed[0] = [law(COMPUTE[0]) - 0.001, law(COMPUTE[0]) + 0.001]  # one rung with 2 seeds is not enough
    m = multipliers({"b": COMPUTE, "v": COMPUTE}, {"b": mixed, "v": [list(x) for x in shifted]}, "b", resamples=50)["v"]
    assert math.isnan(m.low) and m.min_seeds == 1


def test_failed_draws_are_conservative_on_both_sides(monkeypatch) -> None:
    """A draw whose fit fails could have given any M: it widens the lower bound to 0 and the upper to ∞ once
    failures exceed the 2.5% tails."""
    from lit_ffn.experiments import scaling

    spread = np.array([-0.01, 0.0, 0.01])
    base = [list(law(c) + spread) for c in COMPUTE]
    shifted = [list(law(1.5 * c) + spread) for c in COMPUTE]
    real = scaling.fit_batch
    calls = {"n": 0}

    def failing(log_c, loss, kind, weights=None):
        out = real(log_c, loss, kind, weights)
        calls["n"] += 1
        if np.atleast_2d(loss).shape[0] > 1:  # bootstrap draws: a tenth of the fits fail
            out[::10] = np.nan
        return out

    monkeypatch.setattr(scaling, "fit_batch", failing)
    m = scaling.multipliers({"b": COMPUTE, "v": COMPUTE}, {"b": base, "v": shifted}, "b", resamples=200)["v"]
    assert m.nonfinite >= 20 and m.low == 0.0 and m.high == math.inf


def test_a_multiplier_read_beyond_the_variants_compute_range_is_flagged() -> None:
    """A variant 4× worse in compute reaches the baseline's top-rung loss only at 4× its own top rung."""
    spread = np.array([-0.001, 0.0, 0.001])
    base = [list(law(c) + spread) for c in COMPUTE]
    worse = [list(law(c / 4) + spread) for c in COMPUTE]
    m = multipliers({"b": COMPUTE, "v": COMPUTE}, {"b": base, "v": worse}, "b", resamples=50)["v"]
    assert m.point == pytest.approx(0.25, rel=1e-2) and m.extrapolation == pytest.approx(4.0, rel=1e-2)
    assert m.extrapolated.startswith("extrapolated: the variant's curve reaches L* at 4")
    inside = multipliers({"b": COMPUTE, "v": COMPUTE}, {"b": base, "v": base}, "b", resamples=50)["v"]
    assert inside.extrapolated == ""
