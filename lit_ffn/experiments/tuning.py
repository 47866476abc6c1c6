"""Per-variant tuning for fair FFN comparisons: the grid of ``--tune``, its points, and the choice.

    lit_ffn ablate … --tune model.lr=1e-4,3e-4,1e-3 [--tune KEY=V1,V2 …] --tune-seeds 100 101 --seeds 0 1 2

The **grid** is the product of every ``--tune KEY=V1,V2,…`` in the order given (values kept as
the strings the user wrote; they reach ``lit_ffn fit`` as ``--KEY=V``).  A **point** is one
combination, ``(("model.lr", "1e-3"), …)``; its label ``model.lr=1e-3[,KEY=V…]`` names its run
directories.

The **choice** (Melis et al. 2018 and Shazeer 2020 tune each architecture separately; here the
protocol is explicit): for each variant, the point with the lowest mean final validation loss
over the tuning seeds,

    p* = argmin_p  (1/|T|) Σ_{t ∈ T} L(variant, p, t)      (ties: the first point in grid order)

where a run whose loss became non-finite counts as L = +∞ (it diverged: that value is too large).
That is ``--tune-rule mean`` (the default).  Three other rules (:data:`RULES`) guard against a grid point
whose mean is low by luck:

* ``upper``: ``argmin_p  L̄_p + t_{n−1, 0.8}·s_p/√n`` — the mean plus a one-sided 80 % t bound of its
  standard error (s_p: the SD over the n tuning seeds at p; needs n ≥ 2): a pessimistic score that
  penalises a point whose seeds disagree;
* ``fit``: a least-squares parabola ``a + b·x + c·x²`` through the finite means, x = log10(value) for a
  log-scale key (:func:`log_scale`) else the value; the grid point with the lowest fitted value (every
  point's mean informs every choice).  Needs one numeric key; with fewer than 4 finite points or a
  fit that is not convex (c ≤ 0) it falls back to ``mean``;
* ``quiet``: the quieter of the two best points when they are within noise — with p_m the point of lowest
  mean, p_r the runner-up (the next-lowest mean) and d_t = L(p_r, t) − L(p_m, t) over the tuning seeds,
  p_r is *within noise* of p_m unless d̄ > t_{n−1, 0.975}·sd(d)/√n (the paired t-test of the gap rejects
  at 5 %); then the one of the two with the smaller seed-to-seed SD s_p wins, else p_m.  Only the
  runner-up may replace the best mean: with 2–3 tuning seeds "within noise" is wide (t_{1, 0.975} = 12.7),
  and the quietest point of a whole grid is its most under-trained one.  It trades a little expected loss
  for a confirmation that faces less seed noise: the paired SD, and so the seeds a study needs, grow with
  the noise at the chosen point (docs/results/cpu_noise.md).  Needs n ≥ 2.

Which rule picks the better point depends on the loss curve and the noise; :func:`simulate_regret`
measures it against a known truth, :func:`simulate_choice` also the noise at the chosen point
(docs/experiments.md has the table and why ``mean`` stays the default).

A choice at the smallest or largest value of a numeric key is flagged: the optimum may lie
outside the grid.  The confirmation runs then use fresh seeds (``--seeds``, disjoint from
``--tune-seeds``), so the reported difference is not biased by the selection (the winner's
curse of picking on the same noise that is then reported).
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lit_ffn.errors import UserError

#: ``((key, value), …)``: one combination of the grid.
Point = tuple[tuple[str, str], ...]

#: Keys a grid may not set: the run's identity (lit_ffn ablate sets them) and the variant itself.
_RESERVED_KEYS = re.compile(r"^(seed_everything|ckpt_path|trainer\.logger(\..*)?|model\.ffn(\..*)?|config)$")


def parse_tune(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["model.lr=1e-4,3e-4", …]`` → ``{"model.lr": ["1e-4", "3e-4"], …}`` (one-line errors)."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, values_text = spec.partition("=")
        key = key.strip().removeprefix("--")
        if not sep or not key:
            raise UserError(f"--tune {spec}: expected KEY=V1,V2,… (e.g. --tune model.lr=1e-4,3e-4,1e-3)")
        if _RESERVED_KEYS.match(key):
            raise UserError(
                f"--tune {key}: lit_ffn ablate sets {key} itself (variants: --ffn; seeds: --seeds/--tune-seeds); "
                "tune another fit key such as model.lr"
            )
        values = [v.strip() for v in values_text.split(",")]
        if not any(values):
            raise UserError(f"--tune {spec}: the grid is empty; give values, e.g. --tune {key}=1e-4,3e-4,1e-3")
        if "" in values:
            raise UserError(f"--tune {spec}: an empty value between commas; e.g. --tune {key}=1e-4,3e-4")
        if key in grid:
            raise UserError(f"--tune {key} is given twice: put all its values in one --tune {key}=V1,V2,…")
        if len(set(values)) != len(values):
            raise UserError(f"--tune {spec}: a value is repeated")
        grid[key] = values
    return grid


def grid_points(grid: Mapping[str, Sequence[str]]) -> list[Point]:
    """Every combination, the first key varying slowest."""
    keys = list(grid)
    return [tuple(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def point_label(point: Point) -> str:
    """``model.lr=1e-3,model.weight_decay=0.1``: the point's name and directory (``/`` made safe)."""
    return ",".join(f"{key}={value}" for key, value in point).replace("/", "_")


def point_overrides(point: Point) -> list[str]:
    """The ``lit_ffn fit`` arguments of a point."""
    return [f"--{key}={value}" for key, value in point]


def as_number(value: str) -> float | None:
    """``value`` as a float, or None when it is not numeric (``"true"``, ``"adamw"``)."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def log_scale(values: Sequence[str]) -> bool:
    """Whether a key's values are best shown on a log axis: all positive numbers spanning ≥ 10×
    (learning rates, weight decays, …)."""
    numbers = [as_number(v) for v in values]
    if any(n is None or n <= 0 for n in numbers) or len(numbers) < 2:
        return False
    return max(numbers) / min(numbers) >= 10  # type: ignore[type-var]


#: The rules of the choice (module docstring); ``mean`` is the default.
RULES = ("mean", "upper", "fit", "quiet")
DEFAULT_RULE = "mean"
#: The one-sided level of ``upper``'s bound: t_{n−1, UPPER_QUANTILE}.
UPPER_QUANTILE = 0.8


@dataclass(frozen=True)
class Choice:
    """The chosen point of one variant and why."""

    point: Point
    mean_loss: float  # mean final validation loss over the tuning seeds at ``point``
    means: dict[Point, float]  # every point's mean (inf: a run diverged; nan: no runs)
    edges: list[str] = field(default_factory=list)  # "best at the largest model.lr tried (3e-3): …"
    rule: str = DEFAULT_RULE  # how it was chosen (RULES); "fit" that fell back says "fit (fell back to mean: …)"

    @property
    def label(self) -> str:
        return point_label(self.point)


def mean_loss(losses: Sequence[float]) -> float:
    """Mean final loss of a point over its tuning seeds; +inf when any of them diverged."""
    if not losses:
        return math.nan
    if any(not math.isfinite(x) for x in losses):
        return math.inf
    return sum(losses) / len(losses)


def check_rule(rule: str, grid: Mapping[str, Sequence[str]], n_seeds: int) -> str:
    """``rule`` if it can choose on this grid with ``n_seeds`` tuning seeds; one line otherwise."""
    if rule not in RULES:
        raise UserError(f"--tune-rule {rule}: unknown; use one of {', '.join(RULES)}")
    if rule in ("upper", "quiet") and n_seeds < 2:
        raise UserError(f"--tune-rule {rule} needs at least 2 tuning seeds (it scores each point's seed-to-seed SD)")
    if rule == "fit" and (len(grid) != 1 or any(as_number(v) is None for v in next(iter(grid.values())))):
        raise UserError("--tune-rule fit needs a grid over one numeric key (e.g. --tune model.lr=1e-3,2e-3,4e-3,8e-3)")
    return rule


@functools.lru_cache(maxsize=64)
def _t_quantile(q: float, df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(q, df))


def upper_score(losses: Sequence[float]) -> float:
    """``mean + t_{n−1, 0.8}·sd/√n`` of one point's tuning losses (inf: a run diverged; nan: n < 2)."""
    mean = mean_loss(losses)
    if not math.isfinite(mean) or len(losses) < 2:
        return mean if not math.isfinite(mean) else math.nan
    n = len(losses)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in losses) / (n - 1))  # statistics.stdev: exact but slow
    return mean + _t_quantile(UPPER_QUANTILE, n - 1) * sd / math.sqrt(n)


def _sd(losses: Sequence[float]) -> float:
    """Seed-to-seed SD (ddof 1) of finite losses; nan below 2."""
    if len(losses) < 2:
        return math.nan
    mean = math.fsum(losses) / len(losses)
    return math.sqrt(math.fsum((x - mean) ** 2 for x in losses) / (len(losses) - 1))


def within_noise(losses: Sequence[float], best: Sequence[float]) -> bool:
    """True unless a point's tuning losses are worse than the best point's by more than the paired t-test of
    the gap allows: d̄ > t_{n−1, 0.975}·sd(d)/√n over the seeds (positions) where both are finite."""
    d = [a - b for a, b in zip(losses, best) if math.isfinite(a) and math.isfinite(b)]
    if len(d) < 2 or len(d) < min(len(losses), len(best)):  # a diverged seed, or too few pairs: not eligible
        return False
    gap, sd = math.fsum(d) / len(d), _sd(d)
    return gap <= _t_quantile(0.975, len(d) - 1) * sd / math.sqrt(len(d))


def quiet_point(
    finite: Sequence[Point], losses: Mapping[Point, Sequence[float]], means: Mapping[Point, float]
) -> Point:
    """``quiet``'s choice (module docstring) among the points of finite mean (grid order breaks ties)."""
    ranked = sorted(finite, key=lambda p: means[p])  # stable: equal means keep grid order
    best = ranked[0]
    if len(ranked) < 2:
        return best
    runner = ranked[1]
    quieter = _sd(losses[runner]) < _sd(losses[best])
    return runner if quieter and within_noise(losses[runner], losses[best]) else best


def fitted_means(grid: Mapping[str, Sequence[str]], means: Mapping[Point, float]) -> dict[Point, float] | None:
    """The least-squares parabola through the finite means of a one-key numeric grid, at its finite points
    (x = log10(value) on a log-scale key); None when it cannot be used (< 4 finite points, not convex)."""
    import numpy as np

    ((key, values),) = grid.items()
    log = log_scale(values)
    finite = [p for p in grid_points(grid) if math.isfinite(means.get(p, math.nan))]
    if len(finite) < 4:
        return None
    x = np.array([as_number(dict(p)[key]) for p in finite], dtype=np.float64)
    x = np.log10(x) if log else x
    c2, c1, c0 = np.polyfit(x, [means[p] for p in finite], 2)
    if not c2 > 0:
        return None
    return {p: float(c0 + c1 * xi + c2 * xi * xi) for p, xi in zip(finite, x)}


def choose(
    grid: Mapping[str, Sequence[str]], losses: Mapping[Point, Sequence[float]], rule: str = DEFAULT_RULE
) -> Choice:
    """The point ``rule`` picks (module docstring); ``losses[point]`` are the final validation losses
    of its tuning seeds, ``inf``/``nan`` for a diverged run."""
    points = grid_points(grid)
    means = {p: mean_loss(losses.get(p, ())) for p in points}
    finite = [p for p in points if math.isfinite(means[p])]
    if not finite:
        raise UserError(
            "every tuning run diverged or none finished: widen the grid towards smaller values "
            f"({', '.join(point_label(p) for p in points)})"
        )
    scores, used = means, rule
    if rule == "upper":
        scores = {p: upper_score(losses.get(p, ())) for p in finite}
        if any(math.isnan(v) for v in scores.values()):
            scores, used = means, "upper (fell back to mean: fewer than 2 tuning runs at a point)"
    elif rule == "fit":
        fitted = fitted_means(grid, means)
        scores, used = (means, "fit (fell back to mean: < 4 finite points or no convex fit)") if fitted is None else (
            fitted, rule)  # fmt: skip
    elif rule == "quiet":
        if any(len(losses.get(p, ())) < 2 for p in finite):
            used = "quiet (fell back to mean: fewer than 2 tuning runs at a point)"
        else:
            best = quiet_point(finite, losses, means)
            return Choice(best, means[best], means, edge_flags(grid, best), rule)
    elif rule != "mean":
        raise UserError(f"--tune-rule {rule}: unknown; use one of {', '.join(RULES)}")
    best = min(finite, key=lambda p: scores[p])  # min keeps the first of equal scores: grid order
    return Choice(best, means[best], means, edge_flags(grid, best), used)


def simulate_regret(*args: Any, **kwargs: Any) -> float:
    """Mean regret ``E[L(p̂)] − min_p L(p)``: :func:`simulate_choice`'s first value (same arguments)."""
    return simulate_choice(*args, **kwargs)[0]


def simulate_choice(
    truth: Sequence[float],
    noise_sd: Sequence[float],
    n_seeds: int,
    rule: str,
    values: Sequence[str] | None = None,
    shared_sd: float = 0.0,
    reps: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """``(mean regret E[L(p̂)] − min_p L(p), mean noise_sd[p̂])`` of ``rule`` on a one-key grid with true
    losses ``truth`` (one per grid value, ``values``: default ``1e-3·2^i``, a log-spaced lr grid), when
    tuning seed t at point p observes ``L(p) + u_t + e_{t,p}``: ``u_t ~ N(0, shared_sd²)`` shared by every
    point (a seed's own luck), ``e_{t,p} ~ N(0, noise_sd[p]²)``; ``reps`` simulated tunings of ``n_seeds``
    seeds.  The second value is the seed noise the confirmation runs will face at the chosen point."""
    import numpy as np

    truth = np.asarray(truth, dtype=np.float64)
    values = list(values) if values is not None else [f"{1e-3 * 2**i:g}" for i in range(truth.size)]
    grid = {"model.lr": values}
    points = grid_points(grid)
    rng = np.random.default_rng(seed)
    observed = (truth + shared_sd * rng.standard_normal((reps, n_seeds, 1))
                + np.asarray(noise_sd) * rng.standard_normal((reps, n_seeds, truth.size)))  # fmt: skip
    noise = np.asarray(noise_sd, dtype=np.float64) * np.ones(truth.size)
    regret = chosen_noise = 0.0
    for sample in observed:
        chosen = points.index(choose(grid, {p: list(sample[:, i]) for i, p in enumerate(points)}, rule).point)
        regret += truth[chosen] - truth.min()
        chosen_noise += noise[chosen]
    return regret / reps, chosen_noise / reps


@dataclass(frozen=True)
class Margin:
    """How clearly the chosen point won: ``runner_up``'s mean minus the winner's (> 0), and the paired
    standard error of that difference over the tuning seeds both finished, sd(d_t)/√n with
    d_t = loss_runner-up,t − loss_winner,t (NaN with fewer than 2 finite pairs), on n − 1 degrees of freedom.

    The choice is **uncertain** when the margin is within t_{0.975, n−1}·se of 0 (the paired t-test of the
    margin has p ≥ 0.05): with 2 tuning seeds t_{0.975, 1} = 12.7, not 2.  The margin is also **biased
    upward by the selection**: the winner is the lowest of several noisy means and the runner-up the next,
    so even points of equal true loss show a positive margin; read it as an upper estimate."""

    runner_up: str  # the runner-up point's label
    margin: float
    se: float
    n: int = 0  # tuning seeds in the paired SE

    @property
    def df(self) -> int:
        return self.n - 1

    @property
    def threshold(self) -> float:
        """t_{0.975, n−1}·se: the margin a paired t-test would call clear (NaN without an SE)."""
        from scipy import stats

        return float(stats.t.ppf(0.975, self.df) * self.se) if self.n >= 2 and math.isfinite(self.se) else math.nan

    @property
    def p(self) -> float:
        """Two-sided p of the paired t-test of the margin (NaN without an SE or with se = 0)."""
        from scipy import stats

        if not (self.n >= 2 and math.isfinite(self.se) and self.se > 0):
            return math.nan
        return float(2 * stats.t.sf(abs(self.margin) / self.se, self.df))

    @property
    def uncertain(self) -> bool:
        """The margin is within t_{0.975, n−1}·se (or there is no SE to tell)."""
        return not (self.margin > self.threshold)

    @property
    def verdict(self) -> str:
        """ "clear" / "uncertain" for a chosen point of lowest mean; for a rule that chose another point
        (``quiet``'s quieter runner-up, ``upper``, ``fit``) the margin is negative — the runner-up is then the
        lowest mean, and −margin the mean loss given up — and the words say whether that gap is within noise."""
        if self.margin < 0:
            beyond = math.isfinite(self.threshold) and -self.margin > self.threshold
            return "not the lowest mean (" + ("worse beyond noise" if beyond else "within noise of it") + ")"
        return "uncertain" if self.uncertain else "clear"

    def describe(self) -> str:
        se = "" if math.isnan(self.se) else f" ± {self.se:.3f}"
        return f"margin {self.margin:.3f}{se} over {self.runner_up}"


def margin(choice: Choice, losses: Mapping[Point, Sequence[float]]) -> Margin | None:
    """The winner's :class:`Margin` over the next-best point (None with a single finite point)."""
    others = [p for p, m in choice.means.items() if p != choice.point and math.isfinite(m)]
    if not others:
        return None
    runner = min(others, key=lambda p: choice.means[p])
    diffs = [r - w for r, w in zip(losses[runner], losses[choice.point]) if math.isfinite(r) and math.isfinite(w)]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) >= 2 else math.nan
    return Margin(point_label(runner), choice.means[runner] - choice.mean_loss, se, len(diffs))


def edge_flags(grid: Mapping[str, Sequence[str]], point: Point) -> list[str]:
    """One message per numeric key whose chosen value is the smallest or the largest tried."""
    flags = []
    for key, value in point:
        numbers = [as_number(v) for v in grid[key]]
        if len(numbers) < 2 or any(n is None for n in numbers):
            continue
        chosen = as_number(value)
        if chosen == max(numbers):  # type: ignore[type-var]
            flags.append(f"best at the largest {key} tried ({value}): extend the grid upward")
        elif chosen == min(numbers):  # type: ignore[type-var]
            flags.append(f"best at the smallest {key} tried ({value}): extend the grid downward")
    return flags


def profile(grid: Mapping[str, Sequence[str]], choice: Choice, key: str) -> list[tuple[str, float]]:
    """``[(value, mean loss), …]`` along ``key`` with every other key at its chosen value: the curve
    the tuning plot draws through the optimum."""
    fixed = dict(choice.point)
    out = []
    for value in grid[key]:
        point = tuple((k, value if k == key else fixed[k]) for k in grid)
        out.append((value, choice.means.get(point, math.nan)))
    return out


__all__ = [
    "DEFAULT_RULE",
    "RULES",
    "Choice",
    "Margin",
    "Point",
    "as_number",
    "check_rule",
    "choose",
    "edge_flags",
    "fitted_means",
    "grid_points",
    "log_scale",
    "margin",
    "mean_loss",
    "parse_tune",
    "point_label",
    "point_overrides",
    "profile",
    "quiet_point",
    "simulate_choice",
    "simulate_regret",
    "upper_score",
    "within_noise",
]
