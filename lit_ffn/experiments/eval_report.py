"""Downstream accuracy in an ablation report (``lit_ffn ablate --eval-tasks``): per task, the same
seed statistics as the loss (:mod:`lit_ffn.experiments.stats`), read from each confirmation run's
``eval.json`` (written by ``lit_ffn evaluate``; :mod:`lit_ffn.inference.evaluate`).

Per (rung, task) and variant: the task's accuracy-type metric (the first of acc, acc_norm,
exact_match: :func:`lit_ffn.inference.evaluate.accuracy`) over seeds, mean ± std, its difference to
the baseline with the study's primary test (:mod:`lit_ffn.experiments.verdicts`: CI, p, and the Holm p of
the study's **one** family, which holds every task and rung beside the loss comparisons), the verdict,
and Welch's p as a secondary number.  Higher is better here, unlike the loss.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lit_ffn.experiments import stats
from lit_ffn.experiments.study import Study
from lit_ffn.experiments.verdicts import Comparison

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

    def comparisons(self, rtol: float = 1e-13) -> list[Comparison]:
        """The primary test of every (variant, rung, task) against the baseline: members of the study's one
        Holm family (controls outside it), not yet adjusted."""
        from lit_ffn.experiments.verdicts import primary

        out = []
        for (rung, task), by_variant in self.values.items():
            for variant in self.study.variants:
                if variant == self.baseline:
                    continue
                result = primary(self.study.primary_test, by_variant[variant], by_variant[self.baseline],
                                 (variant, self.baseline), rtol)  # fmt: skip
                out.append(Comparison(variant, rung, task, variant in self.study.controls, result))
        return out

    def rows(self, rung: str, task: str, family: Sequence[Comparison]) -> list[dict[str, Any]]:
        by_variant = self.values[(rung, task)]
        base = by_variant[self.baseline]
        found = {c.variant: c for c in family if c.rung == rung and c.task == task}
        out = []
        for variant in [self.baseline, *(v for v in self.study.variants if v != self.baseline)]:
            values = by_variant[variant]
            row: dict[str, Any] = {
                "rung": rung,
                "task": task,
                "metric": self.metric.get(task, ""),
                "variant": variant,
                "n": len(values),
                "mean": statistics.fmean(values.values()) if values else "",
                "std": statistics.stdev(values.values()) if len(values) > 1 else "",
                "values": " ".join(f"{s}:{v!r}" for s, v in sorted(values.items())),
            }
            c = found.get(variant)
            if c is not None:
                r = c.result
                welch = stats.welch(list(values.values()), list(base.values()))
                row |= {
                    "delta": _num(r.diff),
                    "ci95_low": _num(r.ci_low),
                    "ci95_high": _num(r.ci_high),
                    "p": _num(r.p),
                    "p_holm": _num(c.p_holm),
                    "mdd": _num(r.mdd),
                    "verdict": c.verdict(4),
                    "withheld": r.withheld or ("control: tested outside the Holm family" if c.control else ""),
                    "p_welch": _num(welch.p),
                }
            out.append(row)
        return out

    def markdown(self, family: Sequence[Comparison]) -> str:
        k = sum(not c.control for c in family)
        lines = [
            "## Downstream tasks (`--eval-tasks`, lm-evaluation-harness)",
            "",
            (
                f"Each confirmation run's last checkpoint scored by `lit_ffn evaluate` (`{EVAL_FILE}` in its run "
                f"directory). Higher is better; Δ = variant − {self.baseline}; CI, p and verdict of the study's primary "
                f"test ({self.study.primary_test}), Holm over the study's one family (k = {k}, with the loss "
                "comparisons); Welch's p is a secondary number."
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
                        f"| variant | n | {metric} (mean ± std) | Δ vs {self.baseline} | 95% CI of Δ | p | "
                        f"p (Holm, k={k}) | verdict | MDD | p (Welch, secondary) |"
                    ),
                    "|---|---:|---|---:|---|---:|---:|---|---:|---:|",
                ]
                for row in self.rows(rung, task, family):
                    mean = "—" if row["mean"] == "" else f"{row['mean']:.4f}"
                    if row["std"] != "":
                        mean += f" ± {row['std']:.4f}"
                    if "delta" not in row:
                        lines.append(f"| {row['variant']} | {row['n']} | {mean} | — | — | — | — | baseline | — | — |")
                        continue
                    ci = "—" if row["ci95_low"] == "" else f"[{row['ci95_low']:+.4f}, {row['ci95_high']:+.4f}]"
                    holm = "— (control)" if row["withheld"].startswith("control") else _p(row["p_holm"])
                    lines.append(
                        f"| {row['variant']} | {row['n']} | {mean} | {_signed(row['delta'])} | {ci} | "
                        f"{_p(row['p'])} | {holm} | {row['verdict']} | {_mdd(row['mdd'])} | {_p(row['p_welch'])} |"
                    )
        return "\n".join(lines) + "\n"

    def write(self, out: Path, family: Sequence[Comparison]) -> dict[str, Path]:
        path = out / "eval.csv"
        rows = [
            row for rung in self.study.rungs for task in self.study.eval_tasks for row in self.rows(rung, task, family)
        ]
        fields = ["rung", "task", "metric", "variant", "n", "mean", "std", "values", "delta", "ci95_low",
                  "ci95_high", "p", "p_holm", "mdd", "verdict", "withheld", "p_welch"]  # fmt: skip
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        return {"eval_csv": path}


def _num(x: float) -> float | str:
    return "" if isinstance(x, float) and math.isnan(x) else x


def _p(p: Any) -> str:
    return "—" if p == "" else stats.format_p(p)


def _mdd(x: Any) -> str:
    return "—" if x == "" else f"{x:.4f}"


def _signed(x: Any) -> str:
    return "—" if x == "" else f"{x:+.4f}"


__all__ = ["EVAL_FILE", "EvalReport", "read_eval", "task_accuracy"]
