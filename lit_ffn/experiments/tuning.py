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
A choice at the smallest or largest value of a numeric key is flagged: the optimum may lie
outside the grid.  The confirmation runs then use fresh seeds (``--seeds``, disjoint from
``--tune-seeds``), so the reported difference is not biased by the selection (the winner's
curse of picking on the same noise that is then reported).
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Choice:
    """The chosen point of one variant and why."""

    point: Point
    mean_loss: float  # mean final validation loss over the tuning seeds at ``point``
    means: dict[Point, float]  # every point's mean (inf: a run diverged; nan: no runs)
    edges: list[str] = field(default_factory=list)  # "best at the largest model.lr tried (3e-3): …"

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


def choose(grid: Mapping[str, Sequence[str]], losses: Mapping[Point, Sequence[float]]) -> Choice:
    """The point with the lowest mean loss (module docstring); ``losses[point]`` are the final
    validation losses of its tuning seeds, ``inf``/``nan`` for a diverged run."""
    points = grid_points(grid)
    means = {p: mean_loss(losses.get(p, ())) for p in points}
    finite = [p for p in points if math.isfinite(means[p])]
    if not finite:
        raise UserError(
            "every tuning run diverged or none finished: widen the grid towards smaller values "
            f"({', '.join(point_label(p) for p in points)})"
        )
    best = min(finite, key=lambda p: means[p])  # min keeps the first of equal means: grid order
    return Choice(best, means[best], means, edge_flags(grid, best))


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
    "Choice",
    "Margin",
    "Point",
    "as_number",
    "choose",
    "edge_flags",
    "grid_points",
    "log_scale",
    "margin",
    "mean_loss",
    "parse_tune",
    "point_label",
    "point_overrides",
    "profile",
]
