"""The tuning stage's part of an ablation report: the selection protocol, the tuning table and
``tuning.png`` / ``tuning.csv`` (:mod:`lit_ffn.experiments.tuning` makes the choice).

    tuning.csv   rung, variant, point, one column per tuned key, n, mean, std, losses, chosen, edge; on the
                 chosen row its runner-up, margin, paired SE, t_{0.975,n−1}·SE, p and "clear"/"uncertain" (or, for a
                 choice other than the lowest mean, "not the lowest mean (…)": Margin.verdict)
    tuning.png   final validation loss against each tuned value per variant (the other keys at the
                 variant's chosen values), log axis for values spanning ≥ 10×; the chosen point starred
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any

from lit_ffn.errors import UserError
from lit_ffn.experiments import tuning
from lit_ffn.experiments.study import Pair, Study

#: ``--tune-rule`` in words (lit_ffn.experiments.tuning).
RULE_WORDS = {
    "mean": "the lowest mean final validation loss",
    "upper": "the lowest mean + t_{n−1,0.8}·SE of the final validation loss (`--tune-rule upper`)",
    "fit": "the lowest value of a parabola fitted through the mean final validation losses (`--tune-rule fit`)",
    "quiet": "the lowest mean final validation loss, or the runner-up when it is within noise of it (paired t of "
    "the gap at 5%) and its seeds disagree less (`--tune-rule quiet`)",
}


def protocol_summary(study: Study) -> list[str]:
    """The selection protocol in words (results.md's header)."""
    keys = ", ".join(f"`{k}` ∈ {{{', '.join(v)}}}" for k, v in study.tune.items())
    n_points = len(study.points)
    per_rung = " at each rung separately" if study.ladder else ""
    return [
        (
            f"- selection protocol: each variant's {keys} ({n_points} point{'s' if n_points != 1 else ''}) is "
            f"chosen{per_rung} by {RULE_WORDS[study.tune_rule]} over the tuning seeds "
            f"{' '.join(map(str, study.tune_seeds))} (a run that diverged counts as +∞; ties go to the first point "
            "in grid order)"
        ),
        (
            f"- confirmation: every variant at its chosen point on the fresh seeds {' '.join(map(str, study.seeds))}; "
            "**the comparisons below use the confirmation runs only** — the tuning runs chose the point, so "
            "reusing them would bias the difference towards whichever variant got the luckier noise"
        ),
    ]


class TuningReport:
    """Everything the report says about the tuning stage, read from the study's DONE files."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self.losses: dict[tuple[str, str], dict[tuning.Point, list[float | None]]] = {}
        self.choices: dict[tuple[str, str], tuning.Choice | None] = {}
        self.problems: dict[tuple[str, str], str] = {}
        for rung in study.rungs:
            for variant in study.variants:
                key = (rung, variant)
                self.losses[key] = {
                    point: [
                        study.final_loss(Pair(variant, seed, rung, tuning.point_label(point)))
                        for seed in study.tune_seeds
                    ]
                    for point in study.points
                }
                if any(v is None for values in self.losses[key].values() for v in values):
                    done, total = study.tuning_progress(variant, rung)
                    self.choices[key], self.problems[key] = None, f"tuning incomplete ({done} of {total} runs done)"
                    continue
                try:
                    self.choices[key] = tuning.choose(study.tune, self.losses[key], study.tune_rule)  # type: ignore[arg-type]
                except UserError as err:  # every point diverged
                    self.choices[key], self.problems[key] = None, str(err)

    def chosen_labels(self, rung: str) -> dict[str, str]:
        return {v: c.label for (r, v), c in self.choices.items() if r == rung and c is not None}

    def protocol_lines(self, rung: str) -> list[str]:
        chosen = self.chosen_labels(rung)
        text = "; ".join(f"{v}: `{chosen[v]}`" if v in chosen else f"{v}: not chosen yet" for v in self.study.variants)
        return [f"- each variant at its chosen point (tuning table above): {text}"]

    # ----------------------------------------------------------- markdown
    def markdown(self) -> str:
        study = self.study
        n_seeds = len(study.tune_seeds)
        lines = [
            "## Tuning (selection only: not used in the comparisons)",
            "",
            (
                f"Mean ± std of the final validation loss over the {n_seeds} tuning seed"
                f"{'s' if n_seeds != 1 else ''} ({' '.join(map(str, study.tune_seeds))}) per grid point; "
                "**bold**: the chosen point; ∞: a run diverged (non-finite loss); …: not finished."
            ),
        ]
        for rung in study.rungs:
            if rung:
                lines += ["", f"Rung `{rung}`:"]
            lines += [
                "",
                "| point | " + " | ".join(study.variants) + " |",
                "|---|" + "---:|" * len(study.variants),
            ]
            for point in study.points:
                cells = [self._cell(rung, variant, point) for variant in study.variants]
                lines.append(f"| `{tuning.point_label(point)}` | " + " | ".join(cells) + " |")
            notes = []
            for variant in study.variants:
                choice = self.choices[(rung, variant)]
                if choice is None:
                    notes.append(f"- {variant}: no choice — {self.problems[(rung, variant)]}")
                for flag in choice.edges if choice else []:
                    notes.append(f"- ⚠ {variant}: {flag}")
            lines += ["", *notes] if notes else []
            lines += self.certainty(rung)
        lines += ["", "![final validation loss vs tuned value per variant; ★ chosen](tuning.png)", ""]
        return "\n".join(lines)

    def margins(self, rung: str) -> dict[str, tuning.Margin | None]:
        """Each chosen variant's :class:`~lit_ffn.experiments.tuning.Margin` over its runner-up at ``rung``."""
        out = {}
        for variant in self.study.variants:
            choice = self.choices[(rung, variant)]
            if choice is not None:
                losses = {
                    p: [math.nan if v is None else v for v in vs] for p, vs in self.losses[(rung, variant)].items()
                }
                out[variant] = tuning.margin(choice, losses)
        return out

    def certainty(self, rung: str) -> list[str]:
        """How clearly each choice won: margin ± paired SE over the tuning seeds, the t quantile at n − 1, p."""
        margins = self.margins(rung)
        if not margins:
            return []
        n = len(self.study.tune_seeds)
        lines = [
            "",
            (
                f"How clearly each point won (runner-up mean − chosen mean over the {n} tuning seed{'s' if n != 1 else ''}, "
                "± the paired SE; uncertain when the margin is within t₀.₉₇₅,ₙ₋₁ · SE, i.e. the paired t-test of the "
                "margin has p ≥ 0.05). The margin is **biased upward by the selection** — the chosen point is the "
                "lowest of several noisy means and the runner-up the next — so it overstates how clearly the point "
                "wins; the confirmation runs below do not reuse these seeds."
                + (
                    " A negative margin: the rule chose a point other than the lowest mean (the quieter runner-up "
                    "within noise of it, for `quiet`), the runner-up column names the lowest mean, and −margin is "
                    "the mean tuning loss given up for the choice."
                    if any(won is not None and won.margin < 0 for won in margins.values())
                    else ""
                )
            ),
            "",
            "| variant | chosen | runner-up | margin ± SE | t₀.₉₇₅,ₙ₋₁ · SE | p | choice |",
            "|---|---|---|---|---:|---:|---|",
        ]
        for variant, won in margins.items():
            chosen = f"`{self.choices[(rung, variant)].label}`"
            if won is None:
                lines.append(f"| {variant} | {chosen} | — | — | — | — | the only finite point |")
                continue
            se = "" if math.isnan(won.se) else f" ± {won.se:.3f}"
            threshold = "—" if math.isnan(won.threshold) else f"{won.threshold:.3f}"
            from lit_ffn.experiments.stats import format_p

            p = "—" if math.isnan(won.p) else format_p(won.p)
            lines.append(
                f"| {variant} | {chosen} | `{won.runner_up}` | {won.margin:.3f}{se} | {threshold} | {p} | {won.verdict} |"
            )
        return lines

    def _cell(self, rung: str, variant: str, point: tuning.Point) -> str:
        values = self.losses[(rung, variant)][point]
        done = [v for v in values if v is not None]
        if not done:
            return "…"
        if any(not math.isfinite(v) for v in done):
            text = "∞"
        else:
            std = statistics.stdev(done) if len(done) > 1 else math.nan
            text = f"{statistics.fmean(done):.4f}" + ("" if math.isnan(std) else f" ± {std:.4f}")
        if len(done) < len(values):
            text += f" ({len(done)}/{len(values)})"
        choice = self.choices[(rung, variant)]
        return f"**{text}**" if choice is not None and choice.point == point else text

    # ----------------------------------------------------------- files
    def csv_rows(self) -> list[dict[str, Any]]:
        rows = []
        margins = {(rung, v): m for rung in self.study.rungs for v, m in self.margins(rung).items()}
        for (rung, variant), by_point in self.losses.items():
            choice = self.choices[(rung, variant)]
            won = margins.get((rung, variant))
            for point, values in by_point.items():
                chosen = choice is not None and choice.point == point
                nan = lambda x: "" if x is None or math.isnan(x) else x  # noqa: E731
                done = [v for v in values if v is not None]
                finite = [v for v in done if math.isfinite(v)]
                rows.append(
                    {
                        "rung": rung,
                        "variant": variant,
                        "point": tuning.point_label(point),
                        **dict(point),
                        "n": len(done),
                        "mean": tuning.mean_loss(done) if done else "",
                        "std": statistics.stdev(finite) if len(finite) > 1 and len(finite) == len(done) else "",
                        "losses": " ".join(repr(v) for v in done),
                        "chosen": chosen,
                        "edge": "; ".join(choice.edges) if chosen else "",
                        "runner_up": won.runner_up if chosen and won else "",
                        "margin": won.margin if chosen and won else "",
                        "margin_se": nan(won.se) if chosen and won else "",
                        "margin_t_se": nan(won.threshold) if chosen and won else "",
                        "margin_p": nan(won.p) if chosen and won else "",
                        "choice": won.verdict if chosen and won else "",
                    }
                )
        return rows

    def write(self, out: Path) -> dict[str, Path]:
        paths = {"tuning_csv": out / "tuning.csv", "tuning_png": out / "tuning.png"}
        rows = self.csv_rows()
        fields = ["rung", "variant", "point", *self.study.tune, "n", "mean", "std", "losses", "chosen", "edge",
                  "runner_up", "margin", "margin_se", "margin_t_se", "margin_p", "choice"]  # fmt: skip
        with open(paths["tuning_csv"], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        self.plot(paths["tuning_png"])
        return paths

    def plot(self, path: Path) -> None:
        """One panel per (rung, tuned key): each variant's profile through its chosen point."""
        from matplotlib import colormaps

        from lit_ffn.experiments.plots import _figure, _save

        study, keys = self.study, list(self.study.tune)
        fig, axes = _figure(len(study.rungs), len(keys), width=4.2, height=3.2)
        colors = colormaps["tab10"]
        for row, rung in enumerate(study.rungs):
            for col, key in enumerate(keys):
                ax = axes[row][col]
                values = study.tune[key]
                numeric = all(tuning.as_number(v) is not None for v in values)
                xs = [tuning.as_number(v) if numeric else i for i, v in enumerate(values)]
                for i, variant in enumerate(study.variants):
                    choice = self.choices[(rung, variant)]
                    if choice is None:
                        continue
                    prof = dict(tuning.profile(study.tune, choice, key))
                    pts = [(x, prof[v]) for x, v in zip(xs, values) if math.isfinite(prof[v])]
                    if pts:
                        ax.plot(*zip(*pts), marker="o", color=colors(i), label=variant)
                    chosen_x = xs[values.index(dict(choice.point)[key])]
                    ax.plot([chosen_x], [choice.mean_loss], marker="*", markersize=14, color=colors(i), linestyle="")
                if numeric and tuning.log_scale(values):
                    ax.set_xscale("log")
                    ax.minorticks_off()
                ax.set_xticks(xs, values)  # the values as the user wrote them
                ax.set_xlabel(key)
                ax.set_ylabel("final val/loss (mean over tuning seeds)")
                ax.set_title(f"{rung}: {key}" if rung else key, fontsize=9)
                ax.grid(alpha=0.3)
                ax.legend(fontsize=7)
        _save(fig, path)


__all__ = ["TuningReport", "protocol_summary"]
