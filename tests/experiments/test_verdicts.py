"""Issue 30: one pre-declared primary test, one Holm family per study, controls outside it, verdict words from
the family-wise result only, diverged runs as outcomes in the primary test, and a CSV that holds no number the
Markdown withholds."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lit_ffn.experiments import ablate
from lit_ffn.experiments import report as ablation_report
from lit_ffn.experiments.report import loss_comparisons
from lit_ffn.experiments.runs import RunResult
from lit_ffn.experiments.study import DONE, Pair, Study
from lit_ffn.experiments.verdicts import holm_family, median_ci
from tests.experiments.test_ablate import main_table, write_run

REPO_FFN = Path(__file__).resolve().parents[2] / "configs" / "ffn"


def _study(tmp: Path, variants: list[str], seeds: list[int], **kw) -> Study:
    return Study(tmp, ["base.yaml"], {v: str(REPO_FFN / f"{v}.yaml") for v in variants}, seeds, experiment="x", **kw)


def _runs(losses: dict[str, dict[int, float]], rung: str = "") -> dict[Pair, RunResult]:
    """In-memory finished runs; +inf: diverged."""
    runs = {}
    for variant, by_seed in losses.items():
        for seed, x in by_seed.items():
            pair = Pair(variant, seed, rung)
            runs[pair] = RunResult(pair, "done", diverged=math.isinf(x), done_loss=None if math.isinf(x) else x)
    return runs


def _verdicts(study: Study, runs_by_rung: dict[str, dict[Pair, RunResult]], baseline: str = "swiglu") -> dict:
    found = loss_comparisons(study, runs_by_rung, baseline, study.primary_test)
    holm_family(found)
    return {(c.rung, c.variant): c for c in found}


def test_a_diverged_pair_changes_the_verdict() -> None:
    """geglu is 0.1 nats better on every seed: "better".  Once it diverges on one seed the paired t-test has no
    value for that pair: the verdict is withheld with the reason (dropping the pair would report the survivors
    as better).  With the sign test as the primary test the diverged run ranks worst and 6/6 better becomes 5/1."""
    seeds = list(range(6))
    base = {s: 4.0 + 0.1 * s for s in seeds}
    better = {s: base[s] - 0.1 + 0.002 * (-1) ** s for s in seeds}
    study = _study(Path("/nonexistent"), ["swiglu", "geglu"], seeds)
    c = _verdicts(study, {"": _runs({"swiglu": base, "geglu": better})})[("", "geglu")]
    assert c.verdict().startswith("better (Holm p ") and c.decided
    fragile = {**better, 3: math.inf}
    c = _verdicts(study, {"": _runs({"swiglu": base, "geglu": fragile})})[("", "geglu")]
    assert (
        c.verdict()
        == "withheld: geglu diverged on seed 3: a t-test has no value for a diverged run (see the sign test)"
    )
    assert not c.decided and math.isnan(c.result.diff) and math.isnan(c.p_holm) and c.family_size == 1
    sign = _study(Path("/nonexistent"), ["swiglu", "geglu"], seeds, primary_test="sign")
    c = _verdicts(sign, {"": _runs({"swiglu": base, "geglu": better})})[("", "geglu")]
    assert c.result.p == pytest.approx(2 / 64) and c.verdict().startswith("better (Holm p 0.0312)")
    c = _verdicts(sign, {"": _runs({"swiglu": base, "geglu": fragile})})[("", "geglu")]
    assert c.result.p == pytest.approx(14 / 64) and c.verdict().startswith("inconclusive: Δ ")  # 5 lower, 1 higher


def test_the_a_a_family_wise_rate_through_the_report_code() -> None:
    """A/A: 4 variants identical to the baseline at 2 rungs (one family, k = 8), 5 seeds, seed effects shared by
    every variant plus each run's own noise; a verdict word ("worse"/"better") is a false positive.  500 studies:
    SE of a 5% rate 0.0097; the rate must be ≤ 5% + 2 SE.  A Holm family per rung (k = 4) or none at all would
    let it rise to ~8% and ~34%."""
    rng = np.random.default_rng(7)
    variants = ["swiglu", "geglu", "relu", "gelu", "silu"]
    study = _study(Path("/nonexistent"), variants, [0, 1, 2, 3, 4])
    reps, any_verdict = 500, 0
    for _ in range(reps):
        runs_by_rung = {}
        for rung in ("r1", "r2"):
            u = rng.normal(4.0, 0.2, 5)  # the seed's effect, shared by every variant
            losses = {v: {s: float(u[s] + rng.normal(0, 0.02)) for s in range(5)} for v in variants}
            runs_by_rung[rung] = _runs(losses, rung)
        found = _verdicts(study, runs_by_rung)
        assert {c.family_size for c in found.values()} == {8}
        any_verdict += any(c.verdict().startswith(("worse", "better")) for c in found.values())
    rate = any_verdict / reps
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / reps), rate


def test_a_control_is_tested_outside_the_family(tmp_path: Path) -> None:
    """A control with raw p ≈ 0.02 is "detected" at its own level although Holm over the study's comparisons
    would not reach 5%; the compared variants form a family of k = 3 (the control not counted)."""
    variants = ["swiglu", "geglu", "relu", "gelu", "silu"]
    study = _study(tmp_path / "s", variants, [0, 1, 2, 3, 4], controls=["silu"])
    study.save()
    base = [4.0, 4.2, 4.1, 4.3, 4.05]
    shifts = {"geglu": [0.01, -0.02, 0.0, 0.015, -0.01], "relu": [0.03, -0.01, 0.02, -0.02, 0.0],
              "gelu": [-0.01, 0.0, 0.02, -0.015, 0.01], "silu": [0.05, 0.20, 0.10, 0.04, 0.15]}  # fmt: skip
    for seed, b in enumerate(base):
        write_run(study, Pair("swiglu", seed), [(9, b)])
        for v, d in shifts.items():
            write_run(study, Pair(v, seed), [(9, b + d[seed])])
    paths = ablation_report.write_report(study)
    md = paths["md"].read_text()
    table = main_table(md)
    _, _, _, _, p, holm, verdict, _ = table["silu"]
    assert holm == "— (control)" and verdict.startswith("**control detected: worse (p ") and float(p) < 0.05
    assert 3 * float(p) > 0.05  # inside a family of 4 it would not survive Holm's first step
    assert "p (Holm, k=3)" in md and "controls (outside the Holm family): silu" in md
    rows = {r["variant"]: r for r in csv.DictReader(paths["csv"].open())}
    assert rows["silu"]["role"] == "control" and rows["silu"]["p_holm"] == "" and rows["silu"]["holm_k"] == ""
    assert rows["silu"]["withheld"] == "control: tested outside the Holm family"
    assert {rows[v]["holm_k"] for v in ("geglu", "relu", "gelu")} == {"3"}
    for v in ("geglu", "relu", "gelu"):
        assert table[v][6].startswith("inconclusive: Δ ") and ", MDD " in table[v][6]


def test_the_csv_has_no_number_the_markdown_withholds(tmp_path: Path) -> None:
    """Every comparison column of results.csv is empty exactly where results.md prints "—" (a diverged pair
    withholds Δ, CI, p and MDD; 2 seeds withhold the Holm p; a control has none), with the reason in
    ``withheld``; and every number it does hold is the one results.md prints."""
    study = _study(tmp_path / "s", ["swiglu", "geglu", "relu", "gelu"], [0, 1, 2], controls=["gelu"])
    study.save()
    base = [4.0, 4.2, 4.1]
    for seed, b in enumerate(base):
        write_run(study, Pair("swiglu", seed), [(9, b)])
        write_run(study, Pair("geglu", seed), [(9, b - 0.05 + 0.01 * seed)])
        if seed < 2:
            write_run(study, Pair("gelu", seed), [(9, b + 0.1 + 0.02 * seed)])
        run_dir = write_run(study, Pair("relu", seed), [(9, b + 0.02 * seed)])
        if seed == 1:
            (run_dir / DONE).write_text(json.dumps({"diverged": True}))
    paths = ablation_report.write_report(study)
    md, rows = paths["md"].read_text(), {r["variant"]: r for r in csv.DictReader(paths["csv"].open())}
    table = main_table(md)
    columns = {"delta": 2, "ci95_low": 3, "p": 4, "p_holm": 5, "mdd": 7}
    for variant in ("geglu", "relu", "gelu"):
        cells = table[variant]
        for field, col in columns.items():
            shown = cells[col] not in ("—", "— (control)")
            assert (rows[variant][field] != "") == shown, (variant, field, cells[col], rows[variant][field])
            if shown and field in ("delta", "p", "mdd"):
                decimals = len(cells[col].split(".")[-1])
                assert f"{float(rows[variant][field]):+.{decimals}f}".lstrip("+") == cells[col].lstrip("+")
    assert rows["relu"]["withheld"].startswith("relu diverged on seed 1") and table["relu"][6].startswith("withheld:")
    assert rows["gelu"]["withheld"].startswith("2 pairs: ν = 1 < 2") and table["gelu"][6].startswith(
        "control: withheld"
    )
    assert table["relu"][0] == "2 + 1 diverged"


def test_bad_verdict_input_is_one_line(tmp_path: Path, capsys) -> None:
    """An unknown primary test; a --control that is not a variant; a report asked with another primary test
    than the study declared, or with controls it did not declare: one line each, exit 2."""
    from tests.experiments.test_ablate import write_base_config

    base = write_base_config(tmp_path / "base.yaml", tmp_path / "no_data")
    common = ["--config", str(base), "--out", str(tmp_path / "s"), "--print-commands", "--ffn", "swiglu", "relu"]
    cases = [
        (["--primary-test", "welch"], "--primary-test welch: unknown test; choose one of paired-t, sign"),
        (["--control", "gelu"], "--control gelu is not a variant of the study (swiglu, relu)"),
        (["--control", "swiglu"], "--control swiglu is the baseline"),
    ]
    for extra, message in cases:
        assert ablate.main([*common, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("lit_ffn ablate: error:") and message in err[0], err
    study = _study(tmp_path / "r", ["swiglu", "relu"], [0, 1])
    study.save()
    for extra, message in [
        (["--primary-test", "sign"], "declared --primary-test paired-t before its runs"),
        (["--control", "relu"], "declared controls: none"),
        (["--control", "nope"], "--control nope is not a variant"),
    ]:
        assert ablate.main(["--report", str(study.out), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    # a study declares its primary test once: left out later, it is the declared one; another is refused
    from lit_ffn.errors import UserError
    from lit_ffn.experiments.study import make_study

    make_study(tmp_path / "t", [str(base)], ["swiglu", "relu"], [0], primary_test="sign").save()
    assert json.loads((tmp_path / "t" / "study.json").read_text())["primary_test"] == "sign"
    assert make_study(tmp_path / "t", [str(base)], ["swiglu", "relu"], [0, 1]).primary_test == "sign"
    with pytest.raises(UserError, match="declared --primary-test sign before its runs"):
        make_study(tmp_path / "t", [str(base)], ["swiglu", "relu"], [0], primary_test="paired-t")


def test_the_median_ci_is_the_order_statistic_interval() -> None:
    """n = 10: P(Bin(10, ½) ≤ 1) = 11/1024 ≤ 2.5% < P(≤ 2): the CI is [x_(2), x_(9)]; n = 5 has none."""
    assert median_ci(list(range(10))) == (1, 8)
    assert all(math.isnan(x) for x in median_ci([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert median_ci([0.1] * 5 + [math.inf]) == (0.1, math.inf)
