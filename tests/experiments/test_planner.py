"""``lit_ffn ablate --plan`` (lit_ffn.experiments.planner): the seed count for a target MDD against a
simulated truth, the pilot's statistics read from a study's runs, and bad input in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lit_ffn.experiments import ablate, planner
from lit_ffn.experiments.stats import minimum_detectable_difference
from lit_ffn.experiments.study import Pair, Study
from tests.experiments.test_ablate import write_run

REPO = Path(__file__).resolve().parents[2]


def simulated_power(n: int, delta: float, sd: float, sims: int = 20_000, seed: int = 0) -> float:
    """The share of simulated studies — n paired differences ~ N(delta, sd²) — whose two-sided paired
    t-test rejects at 5%."""
    d = np.random.default_rng(seed).normal(delta, sd, size=(sims, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    return float(np.mean(2 * stats.t.sf(np.abs(t), n - 1) < 0.05))


@pytest.mark.parametrize(("delta", "sd"), [(0.02, 0.044), (0.03, 0.02), (0.05, 0.02)])
def test_the_planned_seeds_reach_80_percent_power_in_simulation(delta: float, sd: float) -> None:
    n = planner.seeds_needed(delta, sd)
    assert n is not None and n >= 3
    power = simulated_power(n, delta, sd)  # ≥ 80%, and n − 1 seeds fall short: n is the smallest that reaches it
    assert power >= 0.79 and simulated_power(n - 1, delta, sd) < 0.8  # SE of a share of 20,000 ≈ 0.003
    assert power == pytest.approx(planner.paired_power(n, delta, sd), abs=0.012)  # the exact formula, checked
    assert planner.paired_power(n - 1, delta, sd) < 0.8 <= planner.paired_power(n, delta, sd)


def test_the_exact_mdd_has_its_power_where_the_normal_shift_mdd_falls_short() -> None:
    """At 3 seeds (ν = 2) the usual (t_{1−α/2,ν} + t_{0.8,ν})·se is ~3% too small: its real power is below
    80%; the noncentral-t MDD has 80% (the shared README's 1–14% low at small ν)."""
    n, sd = 3, 0.05
    approx = minimum_detectable_difference(sd / math.sqrt(n), n - 1)
    exact = planner.exact_mdd(n, sd)
    assert exact > approx
    assert simulated_power(n, approx, sd) < 0.79
    assert simulated_power(n, exact, sd) == pytest.approx(0.8, abs=0.012)


def pilot(tmp_path: Path, values: dict[str, list[float]]) -> Study:
    variants = {v: str(REPO / "configs" / "ffn" / f"{v}.yaml") for v in values}
    seeds = list(range(len(next(iter(values.values())))))
    study = Study(tmp_path / "pilot", ["base.yaml"], variants, seeds, experiment="x")
    study.save()
    for variant, losses in values.items():
        for seed, loss in enumerate(losses):
            write_run(study, Pair(variant, seed), [(0, 6.0), (10, loss)])
    return study


def test_plan_from_a_pilot_study_prints_stores_and_reaches_the_report(tmp_path: Path, capsys) -> None:
    base, geglu = [4.20, 4.31, 4.15, 4.26], [4.18, 4.27, 4.16, 4.21]
    relu = [4.40, 4.52, 4.33, 4.47]
    study = pilot(tmp_path, {"swiglu": base, "geglu": geglu, "relu": relu})
    assert ablate.main(["--out", str(study.out), "--plan", "--target-mdd", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "| geglu − swiglu | 4 |" in out and "exact noncentral t" in out
    plan = json.loads((study.out / "plan.json").read_text())
    d = np.subtract(geglu, base)
    (g,) = [c for c in plan["comparisons"] if c["variant"] == "geglu"]
    # the values went through float32 TensorBoard scalars: equal to ~1e-6
    assert g["paired_sd"] == pytest.approx(d.std(ddof=1), rel=1e-4) and g["mean_diff"] == pytest.approx(
        d.mean(), abs=1e-5
    )
    assert g["rho"] == pytest.approx(np.corrcoef(geglu, base)[0, 1], abs=1e-3)
    assert g["seeds_needed"] == planner.seeds_needed(0.02, g["paired_sd"])
    assert g["seeds_needed_upper"] > g["seeds_needed"]  # the pilot's SD at its upper bound asks for more
    (r,) = [c for c in plan["comparisons"] if c["variant"] == "relu"]
    assert plan["seeds"] == max(g["seeds_needed"], r["seeds_needed"]) and plan["target_mdd"] == 0.02
    from lit_ffn.experiments import report

    md = report.write_report(study)["md"].read_text()
    assert "target MDD 0.02 nats at two-sided α = 0.05 and 80% power" in md
    assert f"{plan['seeds']} seeds per variant; this study ran 4." in md


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--plan", "--target-mdd", "0.02"], "--plan needs a pilot to read"),
        (["--plan", "{tmp}/nothing", "--target-mdd", "0.02"], "--plan needs a pilot to read: {tmp}/nothing holds no"),
        (["--plan", "{pilot}", "--target-mdd", "0"], "--target-mdd 0.0: must be a positive number"),
        (["--plan", "{pilot}", "--target-mdd", "-0.01"], "--target-mdd -0.01: must be a positive number"),
        (["--plan", "{pilot}"], "--plan needs --target-mdd D"),
        (["--plan", "{short}", "--target-mdd", "0.02"], "fewer than 2 done seeds per variant (swiglu: 1, geglu: 1)"),
        (["--out", "{pilot}", "--target-mdd", "0.02"], "--target-mdd is for --plan"),
    ],
)
def test_bad_plan_input_is_one_line(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    full = pilot(tmp_path, {"swiglu": [4.2, 4.3], "geglu": [4.1, 4.25]})
    short = pilot(tmp_path / "short", {"swiglu": [4.2], "geglu": [4.1]})
    fill = lambda s: s.format(tmp=tmp_path, pilot=full.out, short=short.out)  # noqa: E731
    assert ablate.main([fill(a) for a in argv], launch=lambda *a: pytest.fail("nothing may run")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lit_ffn ablate: error:") and fill(message) in err[0], err


def test_power_far_in_the_tail_is_a_number() -> None:
    """scipy's noncentral t gives NaN for the wrong-direction tail at large noncentrality (80 pairs, s_d 0.032:
    a finished study's own numbers); the power is then ~1 and the MDD still solves."""
    assert planner.paired_power(80, 12 * 0.0316 / math.sqrt(80), 0.0316) == pytest.approx(1.0)
    mdd = planner.exact_mdd(80, 0.0316)
    assert 0.0316 * 2.8 / math.sqrt(80) < mdd < 0.0316 * 2.9 / math.sqrt(80)
    assert planner.paired_power(80, mdd, 0.0316) == pytest.approx(0.8, abs=1e-6)


def test_the_plan_gives_each_comparison_its_own_seed_count(tmp_path: Path, capsys) -> None:
    """A noisy comparison needs many seeds, a quiet one few: ``--seed-count`` runs each variant on the seeds
    its own comparison needs (the baseline on the most), and the plan prints that line with its run count."""
    rng = np.random.default_rng(0)
    base = 4.2 + rng.normal(0, 0.1, 6)
    quiet = base + 0.01 + rng.normal(0, 0.01, 6)  # paired SD ~0.01: a few seeds
    noisy = base + 0.05 + rng.normal(0, 0.08, 6)  # paired SD ~0.08: many
    study = pilot(tmp_path, {"swiglu": list(base), "geglu": list(quiet), "relu": list(noisy)})
    plan = planner.make_plan(study.out, 0.02)
    need = {c.variant: c.seeds_needed for c in plan.comparisons}
    assert need["relu"] > 5 * need["geglu"]
    assert planner.seed_counts(plan) == {"geglu": max(2, need["geglu"]), "relu": need["relu"]}
    text = planner.render(plan)
    runs = need["relu"] * 2 + max(2, need["geglu"])
    assert (
        f"--seed-count geglu={max(2, need['geglu'])} relu={need['relu']} ({runs} confirmation runs per rung instead "
        f"of {3 * need['relu']})" in text
    )
