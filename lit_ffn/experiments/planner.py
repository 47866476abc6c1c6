"""``lit_ffn ablate … --plan --target-mdd D``: how many seeds a study needs, from a pilot's runs.

For each comparison (variant − baseline, paired by seed, at each ladder rung) the pilot gives the
per-seed differences ``d_s = x_{variant,s} − x_{baseline,s}`` over its n₀ seeds, and from them

    s_d  = sd(d_s)                       (ddof 1: the paired SD the study's paired t-test will face)
    ρ    = corr_s(x_variant, x_baseline) (how much seed noise the pairing cancels:
                                          s_d² = s_v² + s_b² − 2ρ·s_v·s_b; n/a below 3 seeds)

and the number of seeds n such that the two-sided paired t-test at level α detects a true difference
of D nats with probability ≥ ``power`` (default 80 %), computed with the **exact** noncentral t
(``scipy.stats.nct``): with ν = n − 1, t_c = t_{1−α/2, ν} and noncentrality λ = D·√n / σ_d,

    power(n) = P(T > t_c) + P(T < −t_c),    T ~ noncentral t(ν, λ)

and n = the smallest n ≥ 2 with power(n) ≥ 0.8.  (The MDD formula of
:func:`lit_ffn.experiments.stats.minimum_detectable_difference`, ``(t_{1−α/2,ν} + t_{power,ν})·se``,
is the usual normal-shift approximation: at small ν its real power is below 80 %, docs/experiments.md.)
σ_d is the pilot's s_d — itself an estimate from n₀ seeds, so the plan also gives n for σ_d at its 80 %
upper confidence bound ``s_d·√((n₀ − 1)/χ²_{0.2, n₀−1})``: the seeds to run if the pilot was lucky.

The plan is printed and written to ``DIR/plan.json``; the study's report then states the MDD it was
planned for next to the MDD it reached (:func:`plan_lines`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lit_ffn.errors import UserError
from lit_ffn.experiments.runfiles import write_json
from lit_ffn.experiments.study import STUDY_FILE, Study

PLAN_FILE = "plan.json"
#: The largest seed count the planner searches (a comparison that needs more is reported as "> MAX_SEEDS").
MAX_SEEDS = 10_000


def paired_power(n: int, delta: float, sd: float, alpha: float = 0.05) -> float:
    """Exact power of the two-sided paired t-test with n pairs, true mean difference ``delta`` and
    per-pair SD ``sd`` (module docstring); 1.0 when ``sd`` is 0 and delta ≠ 0."""
    from scipy import stats

    if n < 2:
        return math.nan
    if sd <= 0:
        return 1.0 if delta != 0 else alpha
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    lam = abs(delta) * math.sqrt(n) / sd
    upper = float(stats.nct.sf(crit, df, lam))
    # The wrong-direction rejections: at most alpha/2 (lam ≥ 0) and vanishing as lam grows.  scipy 1.17's
    # nct.cdf returns NaN far in that tail (e.g. cdf(-1.99, 79, 12): the true value is ~1e-40; it gave NaN
    # for 80 pairs at an s_d of 0.032, stopping --plan on a finished study), so a non-finite value counts as 0.
    lower = float(stats.nct.cdf(-crit, df, lam))
    return upper + (lower if math.isfinite(lower) else 0.0)


def seeds_needed(delta: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """The smallest n ≥ 2 with :func:`paired_power` ≥ ``power`` (None: more than :data:`MAX_SEEDS`)."""
    if not (math.isfinite(sd) and sd >= 0):
        return None
    low, high = 2, 2
    while paired_power(high, delta, sd, alpha) < power:  # grow, then bisect (power rises with n)
        low, high = high, high * 2
        if high > MAX_SEEDS:
            return (
                None
                if paired_power(MAX_SEEDS, delta, sd, alpha) < power
                else _bisect(low, MAX_SEEDS, delta, sd, alpha, power)
            )
    return _bisect(low, high, delta, sd, alpha, power)


def _bisect(low: int, high: int, delta: float, sd: float, alpha: float, power: float) -> int:
    """The smallest n in [low, high] with power ≥ ``power`` (power(high) ≥ power)."""
    if paired_power(low, delta, sd, alpha) >= power:
        return low
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if paired_power(mid, delta, sd, alpha) >= power else (mid, high)
    return high


def exact_mdd(n: int, sd: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The true difference the paired t-test with n pairs detects with probability ``power`` (exact
    noncentral t; the solution of power(n, δ) = power for δ)."""
    from scipy import optimize

    if n < 2 or not (math.isfinite(sd) and sd > 0):
        return math.nan
    high = sd
    while paired_power(n, high, sd, alpha) < power:
        high *= 2
    return float(optimize.brentq(lambda d: paired_power(n, d, sd, alpha) - power, 0.0, high, xtol=1e-12 * sd))


@dataclass(frozen=True)
class ComparisonPlan:
    """One comparison's pilot statistics and the seeds it needs."""

    variant: str
    baseline: str
    rung: str
    pilot_seeds: int
    mean_diff: float
    paired_sd: float
    rho: float  # NaN below 3 seeds
    mdd_pilot: float  # the exact MDD at the pilot's own seed count
    seeds_needed: int | None  # None: more than MAX_SEEDS
    seeds_needed_upper: int | None  # with σ_d at its 80 % upper confidence bound

    @property
    def name(self) -> str:
        where = f" ({self.rung})" if self.rung else ""
        return f"{self.variant} − {self.baseline}{where}"


@dataclass(frozen=True)
class Plan:
    """What ``--plan`` computed and stores in ``plan.json``."""

    pilot: str
    target_mdd: float
    alpha: float
    power: float
    comparisons: list[ComparisonPlan]

    @property
    def seeds(self) -> int | None:
        """Seeds per variant for every comparison to reach the target (None: some needs > MAX_SEEDS)."""
        needed = [c.seeds_needed for c in self.comparisons]
        return None if any(n is None for n in needed) else max(needed, default=None)  # type: ignore[type-var]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "seeds": self.seeds}


def check_plan_arguments(target_mdd: float | None, alpha: float, power: float) -> float:
    """The target MDD, checked (one line for a missing or non-positive target, α or power outside (0, 1))."""
    if target_mdd is None:
        raise UserError("--plan needs --target-mdd D: the smallest difference (nats) the study must detect, e.g. 0.02")
    if not (math.isfinite(target_mdd) and target_mdd > 0):
        raise UserError(f"--target-mdd {target_mdd}: must be a positive number of nats, e.g. 0.02")
    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: must be in (0, 1), e.g. 0.05")
    if not 0 < power < 1:
        raise UserError(f"--power {power}: must be in (0, 1), e.g. 0.8")
    return float(target_mdd)


def _upper_sd(sd: float, n: int, confidence: float = 0.8) -> float:
    """The one-sided ``confidence`` upper bound of σ from a sample SD of n values: s·√((n−1)/χ²_{1−c, n−1})."""
    from scipy import stats

    return sd * math.sqrt((n - 1) / float(stats.chi2.ppf(1 - confidence, n - 1)))


def make_plan(
    pilot_dir: Path, target_mdd: float | None, alpha: float = 0.05, power: float = 0.8, baseline: str | None = None
) -> Plan:
    """The plan of every comparison of the pilot study in ``pilot_dir`` (module docstring)."""
    from lit_ffn.experiments.runs import read_runs

    target = check_plan_arguments(target_mdd, alpha, power)
    if not (Path(pilot_dir) / STUDY_FILE).is_file():
        raise UserError(
            f"--plan needs a pilot to read: {pilot_dir} holds no {STUDY_FILE} (run a pilot first, e.g. "
            "lit_ffn ablate … --seeds 0 1 2 --out DIR, then --plan with the same --out, or --plan PILOT_DIR)"
        )
    study = Study.load(Path(pilot_dir))
    base = baseline or study.baseline_name
    if base not in study.variants:
        raise UserError(f"--baseline {base} is not a variant of the pilot {pilot_dir} ({', '.join(study.variants)})")
    if len(study.variants) < 2:
        raise UserError(f"the pilot {pilot_dir} has one variant ({base}): a plan needs a comparison (two --ffn)")
    runs = read_runs(study, study.confirm_pairs())
    comparisons = []
    for rung in study.rungs:
        losses = {
            v: {p.seed: r.loss for p, r in runs.items() if p.variant == v and p.rung == rung and r.loss is not None}
            for v in study.variants
        }
        short = {v: len(x) for v, x in losses.items() if len(x) < 2}
        if short:
            where = f" at rung {rung}" if rung else ""
            detail = ", ".join(f"{v}: {n}" for v, n in short.items())
            raise UserError(
                f"the pilot {pilot_dir} has fewer than 2 done seeds per variant{where} ({detail}): a paired SD "
                "needs at least 2; finish the pilot (rerun its lit_ffn ablate command) or add --seeds"
            )
        for variant in study.variants:
            if variant != base:
                comparisons.append(_compare(variant, base, rung, losses[variant], losses[base], target, alpha, power))
    return Plan(str(pilot_dir), target, alpha, power, comparisons)


def _compare(variant: str, base: str, rung: str, a: dict[int, float], b: dict[int, float], target: float,
             alpha: float, power: float) -> ComparisonPlan:  # fmt: skip
    seeds = sorted(s for s in set(a) & set(b) if math.isfinite(a[s]) and math.isfinite(b[s]))
    if len(seeds) < 2:
        raise UserError(
            f"{variant} and {base}{' at ' + rung if rung else ''} share fewer than 2 finished, finite seeds in the "
            "pilot: a paired SD needs at least 2 (diverged runs have no finite loss)"
        )
    x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    d = x - y
    sd = float(d.std(ddof=1))
    rho = float(np.corrcoef(x, y)[0, 1]) if len(seeds) >= 3 and x.std() > 0 and y.std() > 0 else math.nan
    n0 = len(seeds)
    return ComparisonPlan(
        variant, base, rung, n0, float(d.mean()), sd, rho,
        exact_mdd(n0, sd, alpha, power),
        seeds_needed(target, sd, alpha, power),
        seeds_needed(target, _upper_sd(sd, n0), alpha, power),
    )  # fmt: skip


def render(plan: Plan) -> str:
    """The plan as a Markdown table with a one-line verdict (what ``--plan`` prints)."""
    show = lambda n: f"> {MAX_SEEDS}" if n is None else str(n)  # noqa: E731
    fmt = lambda x: "n/a" if math.isnan(x) else f"{x:.4f}"  # noqa: E731
    lines = [
        (
            f"lit_ffn ablate --plan: pilot {plan.pilot}; target MDD {plan.target_mdd:g} nats, two-sided α = {plan.alpha:g}, "
            f"power {plan.power:.0%} (paired t-test by seed, exact noncentral t)"
        ),
        "",
        (
            "| comparison | pilot seeds | mean Δ | paired SD | ρ | MDD at pilot seeds | seeds needed | "
            "seeds needed (SD at its 80% upper bound) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in plan.comparisons:
        lines.append(
            f"| {c.name} | {c.pilot_seeds} | {c.mean_diff:+.4f} | {c.paired_sd:.4f} | "
            f"{'n/a' if math.isnan(c.rho) else f'{c.rho:+.2f}'} | {fmt(c.mdd_pilot)} | {show(c.seeds_needed)} | "
            f"{show(c.seeds_needed_upper)} |"
        )
    lines += [
        "",
        (
            f"seeds per variant for every comparison: {show(plan.seeds)} "
            "(ρ: correlation of the two variants' losses across seeds; n/a below 3 seeds)"
        ),
    ]
    counts = seed_counts(plan)
    if counts and plan.seeds is not None and len(set(counts.values())) > 1:
        variants = {c.variant for c in plan.comparisons}
        per_comparison = plan.seeds + sum(counts.values())
        lines.append(
            f"each comparison at its own seeds: --seeds with {plan.seeds} seeds and --seed-count "
            + " ".join(f"{v}={n}" for v, n in counts.items())
            + f" ({per_comparison} confirmation runs per rung instead of {plan.seeds * (len(variants) + 1)})"
        )
    return "\n".join(lines)


def seed_counts(plan: Plan) -> dict[str, int]:
    """``--seed-count`` for a study in which each comparison gets the seeds it needs (at least 2; the
    most a variant needs over the rungs); empty when some comparison needs more than ``MAX_SEEDS``."""
    counts: dict[str, int] = {}
    for c in plan.comparisons:
        if c.seeds_needed is None:
            return {}
        counts[c.variant] = max(counts.get(c.variant, 2), c.seeds_needed)
    return counts


def write_plan(plan: Plan, out: Path) -> Path:
    """``out/plan.json`` (atomically)."""
    path = Path(out) / PLAN_FILE
    write_json(path, plan.to_json())
    return path


def read_plan(out: Path) -> dict[str, Any] | None:
    """``out/plan.json`` of a study (None: not planned, or unreadable)."""
    try:
        data = json.loads((Path(out) / PLAN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def plan_lines(study: Study, rung: str = "") -> list[str]:
    """The report's statement of the plan: the target MDD, the seeds it asked for and the seeds run."""
    plan = read_plan(study.out)
    if plan is None:
        return []
    seeds = plan.get("seeds")
    return [
        "",
        (
            f"Planned (`{PLAN_FILE}`, lit_ffn.experiments.planner): target MDD {plan.get('target_mdd'):g} nats at "
            f"two-sided α = {plan.get('alpha'):g} and {plan.get('power', 0.8):.0%} power, from the pilot "
            f"`{plan.get('pilot')}`: {seeds if seeds is not None else f'> {MAX_SEEDS}'} seeds per variant; "
            f"this study ran {len(study.seeds)}{_counts_note(study)}."
        ),
    ]


def _counts_note(study: Study) -> str:
    """`` (geglu 40, relu 400)``: the variants that ran fewer seeds (``--seed-count``), else nothing."""
    counts = study.fewer_seeds()
    return f" ({', '.join(f'{v} {n}' for v, n in counts.items())})" if counts else ""


def plan_command(pilot: str | None, out: str | None, target_mdd: float | None, alpha: float, power: float,
                 baseline: str | None, echo: Any = print) -> int:  # fmt: skip
    """What ``lit_ffn ablate --plan`` does: read the pilot, print the plan, write ``plan.json``; exit code 0."""
    source = pilot or out
    if not source:
        raise UserError("--plan needs a pilot to read: --plan PILOT_DIR, or the pilot study's --out DIR")
    plan = make_plan(Path(source), target_mdd, alpha, power, baseline)
    echo(render(plan))
    path = write_plan(plan, Path(out or source))
    echo(f"wrote {path}")
    return 0


__all__ = [
    "MAX_SEEDS",
    "PLAN_FILE",
    "ComparisonPlan",
    "Plan",
    "check_plan_arguments",
    "exact_mdd",
    "make_plan",
    "paired_power",
    "plan_command",
    "plan_lines",
    "read_plan",
    "render",
    "seeds_needed",
    "write_plan",
]
