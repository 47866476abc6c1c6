"""Scaling fits recover known curves; the compute multiplier and minimum detectable differences are right."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from lit_ffn.errors import UserError
from lit_ffn.experiments.scaling import (
    bootstrap_multiplier,
    compute_multiplier,
    fit_scaling,
    multiplier_at_top,
)
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


def test_a_curve_shifted_by_2x_in_compute_is_worth_2x() -> None:
    """Variant = baseline needing half the compute for every loss: L_var(C) = L_base(2C) -> M = 2."""
    base = fit_scaling(COMPUTE, law(COMPUTE))
    top = COMPUTE[-1]
    assert compute_multiplier(base, float(law(2 * top)), top) == pytest.approx(2.0, rel=1e-3)
    # through the per-seed interface, with a seed spread that is the same for every rung
    spread = np.array([-0.001, 0.0, 0.001])
    base_losses = [list(law(c) + spread) for c in COMPUTE]
    variant_losses = [list(law(2 * c) + spread) for c in COMPUTE]
    assert multiplier_at_top(COMPUTE, base_losses, COMPUTE, variant_losses) == pytest.approx(2.0, rel=1e-2)
    m, low, high = bootstrap_multiplier(COMPUTE, base_losses, COMPUTE, variant_losses, resamples=200)
    assert low <= m <= high and low < 2.0 < high * 1.05
    same = [list(law(c) + spread) for c in COMPUTE]
    assert multiplier_at_top(COMPUTE, base_losses, COMPUTE, same) == pytest.approx(1.0, rel=1e-2)


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
    final = {"swiglu": [4.4, 4.5, 4.6], "relu": [4.1, 4.2, 4.3]}
    for variant, values in final.items():
        for seed, value in enumerate(values):
            write_run(study, Pair(variant, seed), [(0, 6.0), (9, value)])
    md = report.write_report(study)["md"].read_text()
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| variant | MDD (Welch"))
    se = math.sqrt(2 * 0.01 / 3)
    welch = (sps.t.ppf(0.975, 4) + sps.t.ppf(0.8, 4)) * se
    assert lines[start + 2] == f"| relu | {welch:.4f} | 0.0000 |"  # equal per-seed differences: no paired spread
