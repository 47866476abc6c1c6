"""The scaling ladder's part of an ablation report: loss vs training compute per variant, the fits
and the compute multipliers (:mod:`lit_ffn.experiments.scaling`), ``scaling.csv`` and ``scaling.png``.

Training compute of a run: ``C = flops_per_token × tokens trained`` with lit_ffn's
:func:`lit_ffn.flops.flops_per_token` (6·N with the LM head matmul, plus causal attention; embedding
lookup excluded — the count ``vitals/mfu`` uses) at the run's ``data.seq_len``, and tokens trained
``= trainer.max_steps × tokens per optimizer step`` from the run's saved config.  Only the
confirmation runs (or a plain study's runs) enter.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_ffn.experiments import scaling
from lit_ffn.experiments.runs import RunResult, study_reference, tokens_per_step
from lit_ffn.experiments.study import Pair, Study


def ladder_summary(study: Study) -> list[str]:
    """The ladder in words (results.md's header)."""
    rungs = ", ".join(f"`{name}` (`{path}`)" for name, path in study.ladder.items())
    return [
        (
            f"- ladder: {len(study.ladder)} rung{'s' if len(study.ladder) != 1 else ''}, each layered over the base "
            f"config: {rungs}"
        ),
        (
            "- training compute C = lit_ffn's FLOPs per token (6·N incl. the LM head matmul + causal attention; "
            "`lit_ffn.flops.flops_per_token`) × tokens trained (max_steps × tokens per step)"
        ),
    ]


def run_compute(config: dict[str, Any]) -> tuple[float, int, int] | None:
    """(training FLOPs, tokens trained, non-embedding parameters) of a run from its saved config (None: unknown)."""
    import torch

    from lit_ffn.flops import flops_per_token
    from lit_ffn.model import Decoder
    from lit_ffn.training.config import model_kwargs

    per_step = tokens_per_step(config)
    steps = (config.get("trainer") or {}).get("max_steps")
    if not per_step or not steps or int(steps) <= 0 or "model" not in config:
        return None
    try:
        with torch.device("meta"):
            decoder = Decoder(**model_kwargs(config["model"], Decoder))
    except Exception:  # noqa: BLE001 - e.g. a user FFN not importable here: no compute, the table says "—"
        return None
    tokens = int(steps) * per_step
    per_token = flops_per_token(decoder, int(config["data"]["seq_len"]))
    return scaling.training_compute(per_token, tokens), tokens, decoder.num_parameters(exclude_embedding=True)


@dataclass
class RungPoint:
    """One (variant, rung) of the ladder: its compute and its confirmation runs' final losses."""

    variant: str
    rung: str
    compute: float | None
    tokens: int | None
    non_embedding: int | None
    losses: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)  # the seed of each loss: a multiplier pairs runs by seed

    @property
    def non_embedding_compute(self) -> float | None:
        """6·N_non-embedding·D (Kaplan et al. 2020's C without the embedding and the head)."""
        return 6.0 * self.non_embedding * self.tokens if self.non_embedding and self.tokens else None

    @property
    def mean(self) -> float:
        return statistics.fmean(self.losses) if self.losses else math.nan


class ScalingReport:
    """Per-variant fits of final loss against compute and each variant's multiplier against the baseline."""

    def __init__(self, study: Study, runs: dict[Pair, RunResult], baseline: str) -> None:
        self.study, self.baseline = study, baseline
        self.points: dict[str, list[RungPoint]] = {}
        for variant in study.variants:
            self.points[variant] = []
            for rung in study.rungs:
                done = [
                    r
                    for p, r in runs.items()
                    if p.variant == variant and p.rung == rung and p.stage == "confirm" and r.status == "done"
                ]
                config = next((r.config for r in done if r.config), None)
                compute = run_compute(config) if config else None
                finished = sorted((r.pair.seed, r.loss) for r in done if r.loss is not None and math.isfinite(r.loss))
                self.points[variant].append(
                    RungPoint(
                        variant,
                        rung,
                        *(compute or (None, None, None)),
                        [loss for _, loss in finished],
                        [seed for seed, _ in finished],
                    )
                )
        #: the dataset's unigram reference (nats/token): a rung whose mean loss does not beat it is left out of the fits
        self.reference = study_reference(runs)
        self.fits: dict[str, scaling.ScalingFit | None] = {v: self._fit(v) for v in study.variants}
        self.multipliers = self._multipliers()

    def above_reference(self, point: RungPoint) -> bool:
        """The point's mean loss does not beat the unigram reference (it learned no more than token frequencies)."""
        return self.reference is not None and bool(point.losses) and point.mean >= self.reference

    def usable(self, variant: str) -> list[RungPoint]:
        return [p for p in self.points[variant] if p.compute and p.losses and not self.above_reference(p)]

    def _fit(self, variant: str) -> scaling.ScalingFit | None:
        pts = self.usable(variant)
        if len(pts) < 2:
            return None
        return scaling.fit_scaling(
            [p.compute for p in pts], [p.mean for p in pts], weights=scaling.rung_weights([p.losses for p in pts])
        )

    def _multipliers(self) -> dict[str, tuple[float, float, float] | None]:
        """``{variant: (M, low, high)}`` on the rungs the variant shares with the baseline
        (:func:`lit_ffn.experiments.scaling.multipliers`); ``self.results`` keeps the whole result and
        ``self.withheld`` the reasons a multiplier is not identifiable."""
        self.results: dict[str, scaling.MultiplierResult] = {}
        self.withheld: dict[str, str] = {}
        out: dict[str, tuple[float, float, float] | None] = {}
        base = {p.rung: p for p in self.usable(self.baseline)}
        for variant in self.study.variants:
            pts = [p for p in self.usable(variant) if p.rung in base]
            if len(pts) < 2:
                out[variant] = None
                continue
            rungs = [p.rung for p in pts]
            compute = {self.baseline: [base[r].compute for r in rungs], variant: [p.compute for p in pts]}
            losses = {self.baseline: [base[r].losses for r in rungs], variant: [p.losses for p in pts]}
            seeds = {self.baseline: [base[r].seeds for r in rungs], variant: [p.seeds for p in pts]}
            found = scaling.multipliers(compute, losses, self.baseline, seeds=seeds)[variant]
            reasons = []
            for name in dict.fromkeys([self.baseline, variant]):
                diagnostics = scaling.diagnose(compute[name], losses[name], kind=scaling.fit_kind(len(rungs)))
                reasons += [f"{name}: {why}" for why in diagnostics.reasons]
                if name == variant:
                    found.diagnostics = diagnostics
            self.results[variant] = found
            if reasons:
                self.withheld[variant] = "; ".join(reasons)
            out[variant] = (found.point, found.low, found.high)
        return out

    # ----------------------------------------------------------- markdown
    def markdown(self) -> str:
        study, baseline = self.study, self.baseline
        lines = [
            "## Scaling ladder",
            "",
            "| rung | variant | non-embedding params | tokens trained | compute C (FLOPs) | n | final val loss (mean ± std) |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for rung_i, rung in enumerate(study.rungs):
            for variant in study.variants:
                p = self.points[variant][rung_i]
                std = statistics.stdev(p.losses) if len(p.losses) > 1 else math.nan
                loss = "—" if not p.losses else f"{p.mean:.4f}" + ("" if math.isnan(std) else f" ± {std:.4f}")
                lines.append(
                    f"| {rung} | {variant} | {p.non_embedding or 0:,} | {p.tokens or 0:,} | "
                    f"{p.compute:.3e} | {len(p.losses)} | {loss} |"
                    if p.compute
                    else f"| {rung} | {variant} | — | — | — | {len(p.losses)} | {loss} |"
                )
        if self.reference is not None:
            lines += [
                "",
                f"Unigram reference of the data (train-split token frequencies): {self.reference:.4f} nats/token.",
            ]
            excluded = [p for pts in self.points.values() for p in pts if self.above_reference(p)]
            for p in excluded:
                lines.append(
                    f"- ⚠ {p.variant} at `{p.rung}`: mean final loss {p.mean:.4f} does not beat the unigram reference: "
                    "left out of its scaling fit (it has learned no more than token frequencies)"
                )
        lines += ["", "Fits of L(C) per variant (mean loss over seeds at each rung):", ""]
        for variant in study.variants:
            fit, n = self.fits[variant], len(self.usable(variant))
            lines.append(f"- {variant}: {_describe_fit(fit, n)}")
        lines += [
            "",
            (
                f"Compute multiplier vs {baseline}: M = C_top / Ĉ_variant(L*), L* = L̂_{baseline}(C_top) — how many "
                f"times less compute the variant's fitted curve needs to reach the loss {baseline}'s fitted curve "
                "reaches at the top rung (> 1: the variant saves compute; the baseline is 1 by construction; "
                "`lit_ffn.experiments.scaling`). 95% CI: paired joint seed bootstrap (each rung's seeds resampled "
                "with the same indices for every variant, every curve refitted, 2,000 draws, t-widened); draws with "
                "M = 0 or ∞ or a failed fit are counted, not dropped. LOO band: M refitted with each rung left out "
                "(model error, not in the CI). Fits weighted by 1/se² per rung. A multiplier is printed only when both "
                f"fits pass the diagnostics (≥ {scaling.MIN_POWER_LAW_POINTS} rungs for the power law, compute span ≥ "
                f"{scaling.MIN_COMPUTE_SPAN:g}×, no parameter at a meaningless bound, residuals ≤ "
                f"{scaling.MAX_RESIDUAL_SE:g} seed SEs, leave-one-rung-out errors ≤ {scaling.MAX_LOO_SE:g} SEs of the "
                "error √(se² + Var(prediction)); thresholds chosen by simulation so that a correct power law at this "
                "ladder's noise is withheld ≤ 10% of the time, docs/experiments.md); a multiplier read off a curve "
                "beyond the variant's own compute range is flagged; no CI with a 1-seed rung."
            ),
            "",
            f"| variant | M vs {baseline} | 95% CI | LOO band | non-finite draws | note |",
            "|---|---:|---|---|---:|---|",
        ]
        for variant in study.variants:
            row = self.multiplier_row(variant)
            if row["multiplier"] == "":
                lines.append(f"| {variant} | — | — | — | — | {row['withheld'] or row['note']} |")
                continue
            if variant == baseline:
                lines.append(f"| {variant} | 1 | — | — | — | {row['note']} |")
                continue
            ci = (
                "—"
                if row["multiplier_ci95_low"] == ""
                else (f"[{_fmt_m(row['multiplier_ci95_low'])}, {_fmt_m(row['multiplier_ci95_high'])}]")
            )
            lines.append(
                f"| {variant} | {_fmt_m(row['multiplier'])} | {ci} | "
                f"[{_fmt_m(row['multiplier_loo_low'])}, {_fmt_m(row['multiplier_loo_high'])}] | "
                f"{row['nonfinite_draws']} of {row['draws']} | {row['note']} |"
            )
        if len(study.ladder) < 2:
            lines += ["", "A single rung: no scaling fit is possible; add rungs to --ladder for one."]
        lines += ["", "![final validation loss vs training compute, log-log, with fits](scaling.png)", ""]
        return "\n".join(lines)

    def multiplier_row(self, variant: str) -> dict[str, Any]:
        """The multiplier columns of one variant, as results.md prints them and scaling.csv stores them: a
        number the report withholds is "" here, with the reason in ``withheld``; flags in ``note``."""
        row: dict[str, Any] = dict.fromkeys(MULTIPLIER_FIELDS, "")
        m = self.multipliers[variant]
        if m is None:
            why = "needs ≥ 2 rungs shared with the baseline" if variant != self.baseline else "no finished runs"
            row["withheld"] = f"no multiplier: {why}"
            return row
        if variant == self.baseline:
            row |= {"multiplier": 1.0, "note": "the reference (1 by construction)"}
            return row
        if variant in self.withheld:
            row["withheld"] = f"not identifiable from this ladder: {self.withheld[variant]}"
            return row
        found = self.results[variant]
        notes = [x for x in (found.extrapolated, found.no_ci) if x]
        if found.small_n and not found.no_ci:
            notes.append(f"⚠ CI unreliable: {found.min_seeds} seeds at a rung (< {scaling.MIN_RELIABLE_SEEDS})")
        row |= {
            "multiplier": found.point,
            "multiplier_loo_low": found.loo_low,
            "multiplier_loo_high": found.loo_high,
            "nonfinite_draws": found.nonfinite,
            "draws": found.draws,
            "note": "; ".join(notes),
        }
        if not found.no_ci:
            row |= {"multiplier_ci95_low": found.low, "multiplier_ci95_high": found.high}
        return row

    # ----------------------------------------------------------- files
    def write(self, out: Path) -> dict[str, Path]:
        paths = {"scaling_csv": out / "scaling.csv", "scaling_png": out / "scaling.png"}
        fields = ["variant", "rung", "non_embedding_params", "tokens", "compute_flops", "non_embedding_compute_flops",
                  "n", "mean", "losses", "fit", "fit_params", *MULTIPLIER_FIELDS]  # fmt: skip
        with open(paths["scaling_csv"], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for variant, pts in self.points.items():
                fit, m = self.fits[variant], self.multiplier_row(variant)
                for p in pts:
                    writer.writerow(
                        {
                            "variant": variant,
                            "rung": p.rung,
                            "non_embedding_params": p.non_embedding or "",
                            "tokens": p.tokens or "",
                            "compute_flops": p.compute or "",
                            "non_embedding_compute_flops": p.non_embedding_compute or "",
                            "n": len(p.losses),
                            "mean": p.mean if p.losses else "",
                            "losses": " ".join(repr(x) for x in p.losses),
                            "fit": fit.kind if fit else "",
                            "fit_params": " ".join(repr(x) for x in fit.params) if fit else "",
                            **m,
                        }
                    )
        self.plot(paths["scaling_png"])
        return paths

    def plot(self, path: Path) -> None:
        import numpy as np
        from matplotlib import colormaps

        from lit_ffn.experiments.plots import _figure, _save

        fig, axes = _figure(1, 1, width=6.0, height=4.5)
        ax = axes[0][0]
        colors = colormaps["tab10"]
        computes = [p.compute for pts in self.points.values() for p in pts if p.compute and p.losses]
        for i, (variant, pts) in enumerate(self.points.items()):
            used = [p for p in pts if p.compute and p.losses]
            if not used:
                continue
            stds = [statistics.stdev(p.losses) if len(p.losses) > 1 else 0.0 for p in used]
            ax.errorbar([p.compute for p in used], [p.mean for p in used], yerr=stds, fmt="o", color=colors(i),
                        capsize=3, label=variant)  # fmt: skip
            fit = self.fits[variant]
            if fit is not None and computes:
                grid = np.geomspace(min(computes) / 1.5, max(computes) * 1.5, 100)
                ax.plot(grid, fit.loss(grid), color=colors(i), alpha=0.7, label=f"{variant} fit ({fit.kind})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs)")
        ax.set_ylabel("final val/loss (nats, mean ± std over seeds)")
        ax.set_title(f"{self.study.experiment}: scaling ladder")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
        _save(fig, path)


#: scaling.csv's multiplier columns (:meth:`ScalingReport.multiplier_row`).
MULTIPLIER_FIELDS = ["multiplier", "multiplier_ci95_low", "multiplier_ci95_high", "multiplier_loo_low",
                     "multiplier_loo_high", "nonfinite_draws", "draws", "note", "withheld"]  # fmt: skip


def _fmt_m(m: float) -> str:
    return "∞" if math.isinf(m) else f"{m:.2f}"


def _describe_fit(fit: scaling.ScalingFit | None, n: int) -> str:
    if fit is None:
        return f"no fit ({n} rung{'s' if n != 1 else ''} with finished runs; a fit needs ≥ 2)"
    if fit.kind == "power law":
        e, a, alpha = fit.params
        return f"saturating power law L = {e:.4f} + {a:.4g}·C^(−{alpha:.4f}) ({n} rungs, weighted by 1/se²)"
    a, b = fit.params
    return (
        f"log-linear L = {a:.4f} {'+' if b >= 0 else '−'} {abs(b):.4f}·ln C ({n} rungs; the power law needs "
        f"≥ {scaling.MIN_POWER_LAW_POINTS})"
    )


__all__ = ["RungPoint", "ScalingReport", "ladder_summary", "run_compute"]
