"""The scaling ladder's part of an ablation report: loss vs training compute per variant, the fits
and the compute multipliers (:mod:`lit_ffn.experiments.scaling`), ``scaling.csv`` and ``scaling.png``.

Training compute of a run: ``C = flops_per_token × tokens trained`` with lit_ffn's
:func:`lit_ffn.flops.flops_per_token` (6·N with the LM head matmul, plus causal attention; embedding
lookup excluded — the count ``train/mfu`` uses) at the run's ``data.seq_len``, and tokens trained
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
    seeds: list[int] = field(default_factory=list)  # seeds[i] trained losses[i]

    @property
    def non_embedding_compute(self) -> float | None:
        """6·N_non-embedding·D (Kaplan et al. 2020's C without the embedding and the head)."""
        return 6.0 * self.non_embedding * self.tokens if self.non_embedding and self.tokens else None

    def by_seed(self) -> dict[int, float]:
        return dict(zip(self.seeds, self.losses))

    @property
    def mean(self) -> float:
        return statistics.fmean(self.losses) if self.losses else math.nan


@dataclass
class MultiplierResult:
    """A variant's multiplier: the paired bootstrap, the leave-one-rung-out band, and why it is withheld."""

    bootstrap: scaling.Bootstrap
    loo: list[float]
    problems: list[str]  # empty: shown; else "not identifiable from this ladder: …"


def _thresholds() -> str:
    t = scaling.THRESHOLDS
    return (
        f"≥ {t['min_rungs']} rungs, ≥ {t['min_span_decades']:g} decade of compute, residuals ≤ "
        f"{t['max_residual_sd']:g} seed SDs, the top rung predicted without it within max({t['max_loo_top_sd']:g} "
        f"seed SDs, {t['loo_top_floor_nats']:g} nats), α inside its search range"
    )


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
                finished = sorted(
                    (p.seed, r.loss) for p, r in runs.items() if r in done and r.loss is not None and math.isfinite(r.loss)
                )
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
        return scaling.fit_scaling([p.compute for p in pts], [p.mean for p in pts])

    def _multipliers(self) -> dict[str, MultiplierResult | None]:
        """Per variant: M against the baseline on the rungs both finished, with the paired seeds of each
        rung (:func:`lit_ffn.experiments.scaling.paired_bootstrap`), the leave-one-rung-out band and
        both fits' diagnostics; None where fewer than 2 common rungs exist."""
        base = {p.rung: p for p in self.usable(self.baseline)}
        out: dict[str, MultiplierResult | None] = {}
        for variant in self.study.variants:
            pts = [p for p in self.usable(variant) if p.rung in base]
            paired = []
            for p in pts:
                common = sorted(set(p.seeds) & set(base[p.rung].seeds))
                if common:
                    b, v = base[p.rung].by_seed(), p.by_seed()
                    paired.append((base[p.rung].compute, p.compute, [b[s] for s in common], [v[s] for s in common]))
            if len(paired) < 2:
                out[variant] = None
                continue
            compute, var_compute = [c for c, _, _, _ in paired], [c for _, c, _, _ in paired]
            base_losses, var_losses = [b for _, _, b, _ in paired], [v for _, _, _, v in paired]
            problems = [f"{self.baseline}: {p}" for p in scaling.diagnose(compute, base_losses).problems]
            if variant != self.baseline:
                problems += [f"{variant}: {p}" for p in scaling.diagnose(var_compute, var_losses).problems]
            out[variant] = MultiplierResult(
                scaling.paired_bootstrap(compute, base_losses, var_losses, variant_compute=var_compute),
                scaling.leave_one_rung_out(compute, base_losses, var_losses, var_compute),
                problems,
            )
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
                f"Compute multiplier vs {baseline}: M = C_{baseline},fit(L*) / C_variant,fit(L*) at the common loss "
                f"L* = {baseline}'s fitted loss at the top compute — the two fitted curves compared at equal loss "
                "(Primer's compute savings; > 1: the variant reaches L* with less compute; the baseline is 1 by "
                "construction). 95% CI: paired percentile bootstrap, 2,000 draws, seeds resampled jointly per rung "
                "and both curves refitted in every draw; draws whose fit failed or whose M was not finite are "
                f"counted. CIs from fewer than {scaling.MIN_RELIABLE_SEEDS} seeds per rung are marked unreliable "
                "(a percentile bootstrap of a mean covers ~76% instead of 95% at 3 seeds). LOO: M with each rung "
                "left out of both fits (model error). A multiplier is shown only when both fits pass the "
                f"diagnostics (thresholds: {_thresholds()})."
            ),
            "",
            f"| variant | M vs {baseline} | 95% CI (paired) | failed draws | LOO band | note |",
            "|---|---:|---|---:|---|---|",
        ]
        for variant in study.variants:
            m = self.multipliers[variant]
            if m is None:
                why = "needs ≥ 2 rungs finished by both" if self.usable(variant) else "no finished runs"
                lines.append(f"| {variant} | — | — | — | — | no multiplier: {why} |")
                continue
            if m.problems:
                reason = "; ".join(m.problems)
                lines.append(f"| {variant} | — | — | — | — | not identifiable from this ladder: {reason} |")
                continue
            boot = m.bootstrap
            ci = "—" if math.isnan(boot.low) else f"[{boot.low:.2f}, {boot.high:.2f}]"
            band = f"{min(m.loo):.2f}–{max(m.loo):.2f}" if m.loo else "—"
            note = f"unreliable CI: {boot.seeds} seeds per rung" if boot.unreliable else ""
            lines.append(f"| {variant} | {_fmt_m(boot.point)} | {ci} | {boot.failed}/{boot.draws} | {band} | {note} |")
        lines += ["", "Fit diagnostics per variant (all its rungs):", ""]
        header = (
            "| variant | rungs | span (decades) | seed SD | max residual (seed SDs) | top rung left out: miss (nats)"
        )
        lines += [header + " | at a bound |", "|---|---:|---:|---:|---:|---:|---|"]
        for variant in study.variants:
            pts = self.usable(variant)
            if len(pts) < 2:
                continue
            d = scaling.diagnose([p.compute for p in pts], [p.losses for p in pts])
            lines.append(
                f"| {variant} | {d.rungs} | {d.span_decades:.2f} | {d.seed_sd:.4f} | {d.max_residual_sd:.1f} | "
                f"{d.loo_top_error:.3f} | {', '.join(d.at_bounds) or '—'} |"
            )
        if len(study.ladder) < 2:
            lines += ["", "A single rung: no scaling fit is possible; add rungs to --ladder for one."]
        lines += ["", "![final validation loss vs training compute, log-log, with fits](scaling.png)", ""]
        return "\n".join(lines)

    # ----------------------------------------------------------- files
    def write(self, out: Path) -> dict[str, Path]:
        paths = {"scaling_csv": out / "scaling.csv", "scaling_png": out / "scaling.png"}
        fields = ["variant", "rung", "non_embedding_params", "tokens", "compute_flops", "n", "mean", "losses",
                  "non_embedding_compute_flops", "fit", "fit_params", "multiplier", "multiplier_ci95_low",
                  "multiplier_ci95_high", "multiplier_failed_draws", "multiplier_withheld"]  # fmt: skip
        with open(paths["scaling_csv"], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for variant, pts in self.points.items():
                fit, m = self.fits[variant], self.multipliers[variant]
                for p in pts:
                    writer.writerow(
                        {
                            "variant": variant,
                            "rung": p.rung,
                            "non_embedding_params": p.non_embedding or "",
                            "tokens": p.tokens or "",
                            "compute_flops": p.compute or "",
                            "n": len(p.losses),
                            "mean": p.mean if p.losses else "",
                            "losses": " ".join(repr(x) for x in p.losses),
                            "fit": fit.kind if fit else "",
                            "fit_params": " ".join(repr(x) for x in fit.params) if fit else "",
                            "non_embedding_compute_flops": p.non_embedding_compute or "",
                            "multiplier": m.bootstrap.point if m and not m.problems else "",
                            "multiplier_ci95_low": m.bootstrap.low if m and not m.problems else "",
                            "multiplier_ci95_high": m.bootstrap.high if m and not m.problems else "",
                            "multiplier_failed_draws": m.bootstrap.failed if m else "",
                            "multiplier_withheld": "; ".join(m.problems) if m else "",
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


def _fmt_m(m: float) -> str:
    return "∞" if math.isinf(m) else f"{m:.2f}"


def _describe_fit(fit: scaling.ScalingFit | None, n: int) -> str:
    if fit is None:
        return f"no fit ({n} rung{'s' if n != 1 else ''} with finished runs; a fit needs ≥ 2)"
    if fit.kind == "power law":
        e, a, alpha = fit.params
        return f"saturating power law L = {e:.4f} + {a:.4g}·C^(−{alpha:.4f}) ({n} rungs)"
    a, b = fit.params
    return (
        f"log-linear L = {a:.4f} {'+' if b >= 0 else '−'} {abs(b):.4f}·ln C ({n} rungs; the power law needs "
        f"≥ {scaling.MIN_POWER_LAW_POINTS})"
    )


__all__ = ["RungPoint", "ScalingReport", "ladder_summary", "run_compute"]
