"""Downstream accuracy in an ablation report (``lit_ffn ablate --eval-tasks``): per task, the same
seed statistics as the loss (:mod:`lit_ffn.experiments.stats`), read from each confirmation run's
``eval.json`` (written by ``lit_ffn evaluate``; :mod:`lit_ffn.inference.evaluate`).

Per (rung, task) and variant: the task's accuracy-type metric (the first of acc, acc_norm,
exact_match: :func:`lit_ffn.inference.evaluate.accuracy`) over seeds, mean ± std, its difference to
the baseline with the paired-by-seed t-test (CI, p, Holm over the variants) and Welch's p (Holm).
Higher is better here, unlike the loss.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

from lit_ffn.experiments import stats
from lit_ffn.experiments.study import Study

#: What ``lit_ffn ablate --eval-tasks`` writes into each evaluated run directory.
EVAL_FILE = "eval.json"


def read_eval(run_dir: Path) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` of a run (empty when not evaluated or unreadable)."""
    path = run_dir / EVAL_FILE
    try:
        return json.loads(path.read_text()).get("scores", {})
    except (OSError, ValueError):
        return {}


def task_accuracy(scores: dict[str, dict[str, float]], task: str) -> tuple[str, float] | None:
    from lit_ffn.inference.evaluate import accuracy

    return accuracy(scores[task]) if task in scores else None


class EvalReport:
    """Per rung and task: each variant's accuracy per seed and the comparisons with the baseline."""

    def __init__(self, study: Study, baseline: str) -> None:
        self.study, self.baseline = study, baseline
        self.values: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
        self.metric: dict[str, str] = {}
        for rung in study.rungs:
            scores = {p: read_eval(study.run_dir(p)) for p in study.confirm_pairs(rung)}
            for task in study.eval_tasks:
                by_variant: dict[str, dict[int, float]] = {v: {} for v in study.variants}
                for pair, task_scores in scores.items():
                    found = task_accuracy(task_scores, task)
                    if found is not None:
                        self.metric.setdefault(task, found[0])
                        by_variant[pair.variant][pair.seed] = found[1]
                self.values[(rung, task)] = by_variant

    def rows(self, rung: str, task: str) -> list[dict[str, Any]]:
        by_variant = self.values[(rung, task)]
        base = by_variant[self.baseline]
        others = [v for v in self.study.variants if v != self.baseline]
        paired = {v: stats.paired(by_variant[v], base) for v in others}
        welch = {v: stats.welch(list(by_variant[v].values()), list(base.values())) for v in others}
        p_paired_holm = dict(zip(others, stats.holm([paired[v].p for v in others])))
        p_welch_holm = dict(zip(others, stats.holm([welch[v].p for v in others])))
        out = []
        for variant in [self.baseline, *others]:
            values = by_variant[variant]
            row: dict[str, Any] = {
                "rung": rung,
                "task": task,
                "metric": self.metric.get(task, ""),
                "variant": variant,
                "n": len(values),
                "mean": statistics.fmean(values.values()) if values else math.nan,
                "std": statistics.stdev(values.values()) if len(values) > 1 else math.nan,
                "values": " ".join(f"{s}:{v!r}" for s, v in sorted(values.items())),
            }
            if variant != self.baseline:
                t = paired[variant]
                row |= {
                    "delta": t.diff,
                    "paired_ci95_low": t.ci_low,
                    "paired_ci95_high": t.ci_high,
                    "p_paired": t.p,
                    "p_paired_holm": p_paired_holm[variant],
                    "p_welch": welch[variant].p,
                    "p_welch_holm": p_welch_holm[variant],
                }
            out.append(row)
        return out

    def markdown(self) -> str:
        lines = [
            "## Downstream tasks (`--eval-tasks`, lm-evaluation-harness)",
            "",
            (
                f"Each confirmation run's last checkpoint scored by `lit_ffn evaluate` (`{EVAL_FILE}` in its run "
                f"directory). Higher is better; Δ = variant − {self.baseline}; CI and p of the paired-by-seed "
                "t-test, Holm over the variants; Welch's p (Holm) beside it."
            ),
        ]
        for rung in self.study.rungs:
            for task in self.study.eval_tasks:
                where = f" at rung `{rung}`" if rung else ""
                metric = self.metric.get(task, "no accuracy metric")
                lines += [
                    "",
                    f"**{task}** ({metric}){where}:",
                    "",
                    (
                        f"| variant | n | {metric} (mean ± std) | Δ vs {self.baseline} | 95% CI of Δ (paired) "
                        "| p (paired) | p (paired, Holm) | p (Welch, Holm) |"
                    ),
                    "|---|---:|---|---:|---|---:|---:|---:|",
                ]
                for row in self.rows(rung, task):
                    mean = "—" if math.isnan(row["mean"]) else f"{row['mean']:.4f}"
                    if not math.isnan(row["std"]):
                        mean += f" ± {row['std']:.4f}"
                    if "delta" not in row:
                        lines.append(f"| {row['variant']} | {row['n']} | {mean} | — | — | — | — | — |")
                        continue
                    ci = (
                        "—"
                        if math.isnan(row["paired_ci95_low"])
                        else f"[{row['paired_ci95_low']:+.4f}, {row['paired_ci95_high']:+.4f}]"
                    )
                    lines.append(
                        f"| {row['variant']} | {row['n']} | {mean} | {_signed(row['delta'])} | {ci} | "
                        f"{stats.format_p(row['p_paired'])} | {stats.format_p(row['p_paired_holm'])} | "
                        f"{stats.format_p(row['p_welch_holm'])} |"
                    )
        return "\n".join(lines) + "\n"

    def write(self, out: Path) -> dict[str, Path]:
        path = out / "eval.csv"
        rows = [row for rung in self.study.rungs for task in self.study.eval_tasks for row in self.rows(rung, task)]
        fields = ["rung", "task", "metric", "variant", "n", "mean", "std", "values", "delta", "paired_ci95_low",
                  "paired_ci95_high", "p_paired", "p_paired_holm", "p_welch", "p_welch_holm"]  # fmt: skip
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        return {"eval_csv": path}


def _signed(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:+.4f}"


__all__ = ["EVAL_FILE", "EvalReport", "read_eval", "task_accuracy"]
