"""The one test a study declares before its runs, one Holm family per study, and the verdict words.

A study states its **primary test** in ``study.json`` (``lit_ffn ablate --primary-test``, default
``paired-t``) before anything runs; only that test, Holm-adjusted over **one family per study**, ever
produces a verdict word.  Every other test the report prints (Welch, seed × block, the sign test) is
secondary: numbers, never a verdict.

Primary tests (:data:`PRIMARY_TESTS`), of the per-seed final whole-split losses x_{v,s} of a variant v
and the baseline b, over the seeds both finished (a diverged run's outcome is +∞):

* ``paired-t`` (default): d_s = x_{v,s} − x_{b,s}; d̄ ± t_{0.975,n−1}·s_d/√n, p of ``ttest_rel``
  (:func:`lit_ffn.experiments.stats.paired`).  **A pair in which either run diverged withholds the
  verdict**, with the reason ("relu diverged on seed 3"): a t-test has no value for +∞, and dropping the
  pair would report only the survivors.  Chosen as the default because the alternative cannot decide at
  the seeds a study can afford: the rank-based test below has a smallest two-sided p of 2^(1−n), so with
  5 seeds it can never reach p < 0.05 (its power is exactly 0), while the paired t-test at 5 seeds detects
  a true Δ of 2 standard deviations of d_s 91% of the time (simulated, with divergence rates: docs/experiments.md).
* ``sign``: the paired sign test in which a diverged run ranks worst
  (:func:`lit_ffn.experiments.stats.sign_test`; both diverged: a tie, left out); Δ is the median of d_s
  (+∞ possible), its 95% CI the distribution-free order-statistic interval of the median (none below 6
  pairs); no MDD.  Use it when runs diverge often and ≥ 6 seeds are affordable.

**The family** (:func:`holm_family`): every declared comparison of the study — each compared variant
× rung (× downstream task) against the baseline — enters one Holm–Bonferroni family of size k fixed by
the design; a comparison whose test is withheld or undefined enters with p = 1 (it keeps its place in
k and can reject nothing).  **Controls** (``--control NAME``, variants whose effect is known in
advance, e.g. a deliberately narrowed FFN) are tested alone, outside the family, at p < 0.05, and read
"control detected / not detected": they check the study's sensitivity and must not spend the
family's error rate.

**Verdict words** (:meth:`Comparison.verdict`), from the family-wise result only: "worse (Holm p …)" /
"better (Holm p …)" when the Holm-adjusted p < 0.05, otherwise "inconclusive: Δ … [CI], MDD …" — the
range of differences the data allow and the smallest the test could have seen with 80% power — or
"withheld: <reason>".  Lower is better for a loss, higher for a downstream accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lit_ffn.errors import UserError

#: The primary tests a study may declare, with what each is (results.md states it).
PRIMARY_TESTS = {
    "paired-t": "paired t-test over seeds of the final whole-split loss (a pair with a diverged run withholds "
    "the verdict)",
    "sign": "paired sign test over seeds of the final whole-split loss, a diverged run ranked worst (its "
    "smallest p is 2^(1−n): a verdict needs ≥ 6 seeds)",
}
DEFAULT_PRIMARY_TEST = "paired-t"
#: A paired t-test with fewer residual degrees of freedom than this gives no verdict (ν = 1: two seeds).
MIN_VERDICT_DF = 2.0
#: Family-wise level of the Holm family, and the level of a control's own test.
ALPHA = 0.05


def check_primary_test(name: str) -> str:
    """``name`` if it is a primary test; else one line listing the known ones."""
    if name not in PRIMARY_TESTS:
        raise UserError(f"--primary-test {name}: unknown test; choose one of {', '.join(PRIMARY_TESTS)}")
    return name


@dataclass(frozen=True)
class TestResult:
    """The primary test of one comparison.  ``withheld``: why no verdict may be drawn ("" when one may);
    numbers the report withholds are NaN here, so every writer (Markdown, CSV) withholds the same ones."""

    diff: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p: float = math.nan
    df: float = math.nan
    mdd: float = math.nan
    n_pairs: int = 0
    withheld: str = ""


def _diverged_reason(
    a: Mapping[int, float], b: Mapping[int, float], seeds: Sequence[int], names: tuple[str, str]
) -> str:
    parts = []
    for name, values in zip(names, (a, b)):
        bad = [s for s in seeds if math.isinf(values[s])]
        if bad:
            parts.append(f"{name} diverged on seed{'s' if len(bad) > 1 else ''} {' '.join(map(str, bad))}")
    return ", ".join(parts)


def paired_t(
    a: Mapping[int, float],
    b: Mapping[int, float],
    names: tuple[str, str] = ("variant", "baseline"),
    rtol: float = 1e-13,
) -> TestResult:
    """The ``paired-t`` primary test of ``a − b`` (module docstring)."""
    from lit_ffn.experiments import stats

    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return TestResult(n_pairs=len(seeds), withheld=f"{len(seeds)} paired seed{'s' if len(seeds) != 1 else ''} "
                          "(a test needs ≥ 2)")  # fmt: skip
    diverged = _diverged_reason(a, b, seeds, names)
    if diverged:
        return TestResult(n_pairs=len(seeds), withheld=f"{diverged}: a t-test has no value for a diverged run "
                          "(see the sign test)")  # fmt: skip
    t = stats.paired(a, b, rtol=rtol)
    if math.isnan(t.p):
        return TestResult(diff=t.diff, n_pairs=len(seeds), withheld="the per-seed differences have no spread: no test")
    scale = max(max(abs(a[s]), abs(b[s])) for s in seeds)
    mdd = stats.mdd_paired([a[s] - b[s] for s in seeds], scale=scale, rtol=rtol)
    why = f"{len(seeds)} pairs: ν = {t.df:g} < {MIN_VERDICT_DF:g}" if t.df < MIN_VERDICT_DF else ""
    return TestResult(t.diff, t.ci_low, t.ci_high, t.p, t.df, mdd, len(seeds), why)


def median_ci(d: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median of ``d`` (±∞ allowed): order statistics d_(k) and d_(n−k+1) with
    k the largest index such that P(Bin(n, ½) < k) ≤ (1 − confidence)/2; (NaN, NaN) when none exists (n ≤ 5)."""
    from scipy import stats as scipy_stats

    x = sorted(d)
    n = len(x)
    k = 0
    while k + 1 <= n // 2 and scipy_stats.binom.cdf(k, n, 0.5) <= (1 - confidence) / 2:
        k += 1  # P(Bin(n, ½) ≤ k − 1) ≤ tail still holds for k + 1
    if k < 1:
        return math.nan, math.nan
    return x[k - 1], x[n - k]


def sign(
    a: Mapping[int, float], b: Mapping[int, float], names: tuple[str, str] = ("variant", "baseline")
) -> TestResult:
    """The ``sign`` primary test of ``a − b`` (module docstring): diverged runs rank worst, both diverged: a tie."""
    from lit_ffn.experiments import stats

    seeds = sorted(set(a) & set(b))
    if not seeds:
        return TestResult(withheld="no paired seeds")
    r = stats.sign_test(a, b)
    d = [0.0 if math.isinf(a[s]) and math.isinf(b[s]) else a[s] - b[s] for s in seeds]
    d.sort()
    n = len(d)
    median = d[n // 2] if n % 2 else 0.5 * (d[n // 2 - 1] + d[n // 2])
    low, high = median_ci(d)
    if math.isnan(r.p):
        return TestResult(diff=median, n_pairs=n, withheld="every pair tied: no test")
    return TestResult(median, low, high, r.p, math.nan, math.nan, n, "")


def primary(
    name: str, a: Mapping[int, float], b: Mapping[int, float], names: tuple[str, str], rtol: float = 1e-13
) -> TestResult:
    """Run the primary test ``name`` on outcomes ``a`` (variant) and ``b`` (baseline) keyed by seed."""
    check_primary_test(name)
    return paired_t(a, b, names, rtol) if name == "paired-t" else sign(a, b, names)


@dataclass
class Comparison:
    """One declared comparison of a study: ``variant`` against the baseline at ``rung`` on ``task`` ("": the
    final validation loss, lower is better; else a downstream task's accuracy, higher is better)."""

    variant: str
    rung: str
    task: str
    control: bool
    result: TestResult
    p_holm: float = math.nan  # NaN for a control (outside the family)
    family_size: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def higher_is_better(self) -> bool:
        return bool(self.task)

    @property
    def decided(self) -> bool:
        """Rejected at the family-wise level (a control: at its own level)."""
        r = self.result
        if r.withheld or math.isnan(r.p):
            return False
        return bool((r.p if self.control else self.p_holm) < ALPHA)

    def direction(self) -> str:
        better = (self.result.diff > 0) == self.higher_is_better
        return "better" if better else "worse"

    def verdict(self, decimals: int = 3) -> str:
        """The verdict in words (module docstring); a control reads "control detected / not detected"."""
        r = self.result
        if r.withheld:
            return f"{'control: ' if self.control else ''}withheld: {r.withheld}"
        if self.control:
            if self.decided:
                return f"control detected: {self.direction()} (p {_p(r.p)}, outside the family)"
            return f"control not detected: {self.interval(decimals)}"
        if self.decided:
            return f"{self.direction()} (Holm p {_p(self.p_holm)})"
        return f"inconclusive: {self.interval(decimals)}"

    def interval(self, decimals: int = 3) -> str:
        r = self.result
        ci = "no CI" if math.isnan(r.ci_low) else f"[{_signed(r.ci_low, decimals)}, {_signed(r.ci_high, decimals)}]"
        mdd = "" if math.isnan(r.mdd) else f", MDD {r.mdd:.{decimals}f}"
        return f"Δ {_signed(r.diff, decimals)} {ci}{mdd}"


def holm_family(comparisons: Sequence[Comparison]) -> None:
    """Holm-adjust the non-control comparisons as one family (in place): k = their number, fixed by the
    design; a withheld or undefined test enters with p = 1."""
    from lit_ffn.experiments.stats import holm

    members = [c for c in comparisons if not c.control]
    p_values = [1.0 if c.result.withheld or math.isnan(c.result.p) else c.result.p for c in members]
    for c, adjusted in zip(members, holm(p_values)):
        c.p_holm = adjusted if not (c.result.withheld or math.isnan(c.result.p)) else math.nan
        c.family_size = len(members)


def check_controls(controls: Sequence[str], variants: Sequence[str], baseline: str | None = None) -> list[str]:
    """``controls`` if each names a variant of the study other than the baseline; else one line."""
    for name in controls:
        if name not in variants:
            raise UserError(f"--control {name} is not a variant of the study ({', '.join(variants)})")
        if name == baseline:
            raise UserError(f"--control {name} is the baseline: a control is compared against the baseline")
    return list(dict.fromkeys(controls))


def _p(p: float) -> str:
    from lit_ffn.experiments.stats import format_p

    return format_p(p)


def _signed(x: float, decimals: int) -> str:
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "+∞" if x > 0 else "−∞"
    return f"{x:+.{decimals}f}"


__all__ = [
    "ALPHA",
    "DEFAULT_PRIMARY_TEST",
    "MIN_VERDICT_DF",
    "PRIMARY_TESTS",
    "Comparison",
    "TestResult",
    "check_controls",
    "check_primary_test",
    "holm_family",
    "median_ci",
    "paired_t",
    "primary",
    "sign",
]
