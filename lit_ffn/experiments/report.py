"""The report of a :mod:`lit_ffn.experiments.ablate` study, read from its runs on disk.

``DIR/results.md`` / ``results.csv``: per variant the final validation loss
(mean ± sample std over seeds, n), its difference to the baseline with a 95%
Welch CI, Welch's p-value and its Holm-adjusted value over all comparisons
(:mod:`lit_ffn.experiments.stats`), a verdict in words, parameter counts
(:mod:`lit_ffn.experiments.params`) and tokens/s.  ``DIR/curves.png``: validation loss vs
step, mean ± std band over seeds per variant.  ``DIR/gates.png``: the gate
statistics of every layer at the end of training, one panel per variant.

Everything is read back from each run's ``config.yaml`` and TensorBoard
events, so ``lit_ffn ablate --report DIR`` rebuilds the report at any time
(also from a study that is still running: unfinished pairs are listed, not
counted).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lit_ffn.errors import UserError
from lit_ffn.experiments.outcomes_report import MIN_VERDICT_DF, outcomes_section
from lit_ffn.experiments.planner import plan_lines
from lit_ffn.experiments.runs import (  # noqa: F401 - read_run, tokens_per_second: re-exported (older callers)
    RunResult,
    _tokens_per_step,
    read_run,
    study_reference,
    tokens_per_second,
)
from lit_ffn.experiments.study import Pair, Study


# ================================================================== the report
@dataclass
class VariantRow:
    """One line of results.md / results.csv."""

    variant: str
    values: dict[int, float]  # seed -> final val loss (finished runs only)
    final_steps: list[int]
    summary: Any  # lit_ffn.experiments.stats.Summary
    test: Any  # lit_ffn.experiments.stats.TTestResult of Welch's test, or None for the baseline
    p_holm: float
    verdict: str
    params: Any  # lit_ffn.experiments.params.ParamCount, or None
    tokens_per_s: float | None
    tokens_per_s_source: str
    paired: Any = (
        None  # lit_ffn.experiments.stats.TTestResult of the paired test (same seeds), or None for the baseline
    )
    p_paired_holm: float = math.nan


def _verdict(welch: Any, p_holm: float, paired: Any, p_paired_holm: float, baseline: str, k: int) -> str:
    """The verdict in words, from the paired test where the variant and the baseline share ≥ 2 seeds
    with some spread in their differences (the study's design: a seed fixes the data order of every
    variant), else from Welch's test."""
    if welch is None:
        return "baseline"
    test, p_adjusted, name = (
        (paired, p_paired_holm, "paired")
        if paired is not None and not math.isnan(paired.p)
        else (welch, p_holm, "Welch")
    )
    if math.isnan(test.p):
        return "no test (needs n ≥ 2 in both, and some spread)"
    if name == "paired" and test.df < MIN_VERDICT_DF:  # a paired test of 2 seeds: ν = 1
        return f"too few seeds for a verdict (paired ν = {test.df:g} < {MIN_VERDICT_DF:g})"
    direction = "lower" if test.diff < 0 else "higher"
    if test.p >= 0.05:
        return f"no detectable difference ({name})"
    if k > 1 and not p_adjusted < 0.05:
        return f"{direction} loss ({name} p < 0.05, but not after Holm over {k} comparisons)"
    return f"**{direction} loss than {baseline}** ({name} p < 0.05{', also after Holm' if k > 1 else ''})"


def tuning_note(study: Study, variant: str, rung: str = "") -> str:
    """What the verdict rests on in a tuned study: the chosen point, its margin over the runner-up with
    the paired SE over the tuning seeds, and any edge-of-grid flag ("" in an untuned study)."""
    from lit_ffn.experiments import tuning

    if not study.tune:
        return ""
    losses = study.tuning_losses(variant, rung)
    if losses is None:
        return ""
    try:
        choice = tuning.choose(study.tune, losses, getattr(study, "tune_rule", tuning.DEFAULT_RULE))
    except UserError:  # every tuning run diverged: the tuning table says so, no confirmation ran
        return "; every tuning run diverged"
    won = tuning.margin(choice, losses)
    note = f"; tuned at {choice.label}" + (f", {won.describe()}" if won else "")
    if won and not math.isnan(won.se) and won.margin < 2 * won.se:
        note += " (within 2 SE: the choice is uncertain)"
    if choice.edges:
        note += "; ⚠ at the grid's edge"
    return note


def build_rows(study: Study, runs: dict[Pair, RunResult], baseline: str) -> list[VariantRow]:
    from lit_ffn.experiments import stats
    from lit_ffn.experiments.params import count_parameters

    finished = {
        variant: {
            r.pair.seed: r
            for r in runs.values()
            if r.pair.variant == variant and r.loss is not None and math.isfinite(r.loss)
        }
        for variant in study.variants
    }
    by_seed = {v: {seed: r.loss for seed, r in finished[v].items()} for v in study.variants}
    others = [v for v in study.variants if v != baseline]
    tests = {v: stats.welch(list(by_seed[v].values()), list(by_seed[baseline].values())) for v in others}
    holm = dict(zip(others, stats.holm([tests[v].p for v in others])))
    # TensorBoard keeps scalars in float32: differences that agree to ~8 float32 ulps are "no spread"
    float32_rtol = 8 * float(np.finfo(np.float32).eps)
    paired = {v: stats.paired(by_seed[v], by_seed[baseline], rtol=float32_rtol) for v in others}
    paired_holm = dict(zip(others, stats.holm([paired[v].p for v in others])))
    rows = []
    for variant in [baseline, *others]:
        done = finished[variant]
        any_config = next((r.config for r in runs.values() if r.pair.variant == variant and r.config), None)
        try:
            params = count_parameters(any_config["model"]) if any_config else None
        except Exception:  # noqa: BLE001 - e.g. a user FFN not importable here: the table says "—"
            params = None
        tps = [r.tokens_per_s for r in done.values() if r.tokens_per_s is not None]
        test, pair_test = tests.get(variant), paired.get(variant)
        p_holm, p_paired_holm = holm.get(variant, math.nan), paired_holm.get(variant, math.nan)
        rows.append(
            VariantRow(
                variant=variant,
                values={seed: r.loss for seed, r in sorted(done.items())},
                final_steps=sorted({r.final[0] for r in done.values() if r.final}),
                summary=stats.summarize(r.loss for r in done.values()),
                test=test,
                p_holm=p_holm,
                verdict=_verdict(test, p_holm, pair_test, p_paired_holm, baseline, len(others))
                + tuning_note(study, variant, next((p.rung for p in runs if p.variant == variant), "")),
                params=params,
                tokens_per_s=sum(tps) / len(tps) if tps else None,
                tokens_per_s_source=next(
                    (r.tokens_per_s_source for r in done.values() if r.tokens_per_s is not None), "n/a"
                ),
                paired=pair_test,
                p_paired_holm=p_paired_holm,
            )
        )
    return rows


def _fmt_signed(x: float, decimals: int) -> str:
    return "—" if math.isnan(x) else f"{x:+.{decimals}f}"


def _decimals_of(rows: list[VariantRow]) -> int:
    """Decimals that show the smallest seed std of the table with two significant digits."""
    from lit_ffn.experiments.stats import _decimals

    stds = [r.summary.std for r in rows if not math.isnan(r.summary.std)]
    return _decimals(min(stds)) if stds else 4


def _header(
    study: Study,
    rows: list[VariantRow],
    runs: dict[Pair, RunResult],
    baseline: str,
    title: str | None,
    rung: str,
    preamble: Sequence[str],
) -> list[str]:
    """The title, the bullets that say what was compared and how, and the comparison table's head."""
    seeds = study.seeds
    where = f"{study.runs_dir}/{study.experiment}/{rung + '/' if rung else ''}<variant>/seed_<seed>/"
    k = len(rows) - 1
    steps = sorted({s for r in rows for s in r.final_steps})
    max_steps = (
        ", ".join(
            sorted(
                {
                    str((r.config.get("trainer") or {}).get("max_steps"))
                    for r in runs.values()
                    if r.status == "done" and r.config
                }
            )
        )
        or "—"
    )
    return [
        title or f"# Ablation: {study.experiment}",
        "",
        f"- base config: {', '.join(f'`{c}`' for c in study.configs)}"
        + (f"; ladder rung: `{study.ladder[rung]}`" if rung else "")
        + (f"; overrides: `{' '.join(study.overrides)}`" if study.overrides else ""),
        f"- variants: {', '.join(study.variants)}; seeds: {' '.join(map(str, seeds))}; baseline: **{baseline}**",
        (
            f"- metric: final validation loss — the last `val/loss` point of each run (trained for {max_steps} "
            f"optimizer steps; TensorBoard step {', '.join(map(str, steps)) or '—'}): the token-weighted mean "
            "next-token cross-entropy over the validation set, in nats; lower is better"
        ),
        (f"- runs: `{where}` (config.yaml, TensorBoard events); command: `{study.command()}`"),
        *preamble,
        "",
        (
            f"| variant | n | final val loss (mean ± std) | Δ vs {baseline} | 95% CI of Δ (Welch) | p (Welch) | "
            f"p (Welch, Holm k={k}) | 95% CI of Δ (paired by seed; pairs) | p (paired) | p (paired, Holm k={k}) | "
            "verdict | params (total) | FFN params | tokens/s |"
        ),
        "|---|---:|---|---:|---|---:|---:|---|---:|---:|---|---:|---:|---:|",
    ]


def _comparison_rows(rows: list[VariantRow], d: int) -> list[str]:
    """One line per variant of the main table (Welch, paired, Holm, verdict, sizes, throughput)."""
    from lit_ffn.experiments.stats import format_mean_std, format_p

    lines: list[str] = []

    def ci(t: Any) -> str:
        return "—" if math.isnan(t.ci_low) else f"[{t.ci_low:+.{d}f}, {t.ci_high:+.{d}f}]"

    for row in rows:
        t, pt = row.test, row.paired
        if t is None:
            delta = welch_ci = p = p_holm = paired_ci = p_paired = p_paired_holm = "—"
        else:
            delta = _fmt_signed(t.diff, d)
            welch_ci, p, p_holm = ci(t), format_p(t.p), format_p(row.p_holm)
            n_pairs = len(set(row.values) & set(rows[0].values))
            paired_ci = f"{ci(pt)} ({n_pairs})"
            p_paired, p_paired_holm = format_p(pt.p), format_p(row.p_paired_holm)
        params = f"{row.params.total:,}" if row.params else "—"
        ffn_params = f"{row.params.ffn:,}" if row.params else "—"
        tps = f"{row.tokens_per_s:,.0f}" if row.tokens_per_s is not None else "—"
        lines.append(
            f"| {row.variant} | {row.summary.n} | {format_mean_std(row.summary.mean, row.summary.std)} | {delta} "
            f"| {welch_ci} | {p} | {p_holm} | {paired_ci} | {p_paired} | {p_paired_holm} | {row.verdict} "
            f"| {params} | {ffn_params} | {tps} |"
        )
    return lines


def _detectable(rows: list[VariantRow], baseline: str, d: int) -> list[str]:
    """The minimum detectable difference of each comparison (none for a lone baseline)."""
    lines: list[str] = []
    if len(rows) > 1:
        lines += [
            "",
            (
                "How small a difference this study could see — the minimum detectable difference at 80% power, "
                "two-sided 5% level, from the observed spread and the n run (`lit_ffn.experiments.stats`):"
            ),
            "",
            f"| variant | MDD (Welch, n vs {baseline}) | MDD (paired by seed) |",
            "|---|---:|---:|",
        ]
        for row in rows[1:]:
            mdd_w, mdd_p = detectable_differences(row, rows[0])
            show = lambda x: "—" if math.isnan(x) else f"{x:.{d}f}"  # noqa: E731
            lines.append(f"| {row.variant} | {show(mdd_w)} | {show(mdd_p)} |")
    return lines


def _explanation(rows: list[VariantRow], baseline: str) -> list[str]:
    """How to read the main table."""
    k = len(rows) - 1
    sources = sorted({r.tokens_per_s_source for r in rows if r.tokens_per_s is not None})
    return [
        "",
        "How to read this table:",
        "",
        (
            "- **n** finished seeds per variant; **mean ± std** over seeds (sample std, ddof 1). Seeds differ in "
            "initialisation and data order (`seed_everything` drives both); the validation set is the same for all."
        ),
        (
            f"- **Δ** = variant − {baseline} (negative: lower loss than the baseline). **Welch**: CI and p of Welch's "
            "unequal-variance two-sample t-test (two-sided, Welch–Satterthwaite degrees of freedom, `scipy.stats`), "
            "which treats the seeds of the two variants as unrelated samples."
        ),
        (
            f"- **paired by seed**: CI and p of the paired t-test on the per-seed differences variant − {baseline} "
            "(ν = pairs − 1, `scipy.stats.ttest_rel`). A seed fixes the data order (and the embedding's initial "
            "values, drawn first) for every variant, so runs with the same seed are matched pairs and the "
            "seed-to-seed spread they share cancels: when seeds differ more than variants do, this test sees "
            "differences that Welch's cannot. The **verdict** uses it (Welch's test where fewer than 2 seeds pair "
            "up). Each CI excludes 0 exactly when its p < 0.05."
        ),
        (
            f"- **Holm**: Holm–Bonferroni adjusted p over the k = {k} comparisons with the baseline; it keeps the chance "
            "of *any* false positive among them at 5%. Trust a difference when it survives Holm: with many variants, "
            "a raw p < 0.05 is expected about once in 20 comparisons by chance alone."
        ),
        (
            '- With few seeds the t-test has little power: "no detectable difference" is not evidence of equality; '
            "read the CI as the range of differences the data allow. A significant difference at one scale (model "
            "size, steps, data) need not hold at another."
        ),
        (
            "- **params**: total with the tied embedding counted once; **FFN params**: all layers' FFNs "
            f"(`lit_ffn params`). **tokens/s**: training throughput, mean over seeds, from {', '.join(sources) or '—'} "
            "(shared or busy machines make it noisy)."
        ),
    ]


def _per_seed(study: Study, rows: list[VariantRow], runs: dict[Pair, RunResult], baseline: str, d: int) -> list[str]:
    """Per-seed tables: final losses, the commit of each run, the differences the paired test sees."""
    seeds = study.seeds
    by_variant_seed = {(r.pair.variant, r.pair.seed): r for r in runs.values()}
    lines: list[str] = []
    lines += [
        "",
        "Final validation loss per seed:",
        "",
        "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|" + "---:|" * len(seeds),
    ]
    for row in rows:
        cells = [f"{row.values[s]:.{d}f}" if s in row.values else "—" for s in seeds]
        lines.append(f"| {row.variant} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Commit that trained each run (`provenance.json` in its directory; `+dirty`: uncommitted changes):",
        "",
        "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|" + "---|" * len(seeds),
    ]
    for variant in study.variants:
        pairs = [by_variant_seed.get((variant, s)) for s in seeds]
        cells = [r.commit if r is not None and r.status != "missing" else "—" for r in pairs]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    base_values = rows[0].values
    lines += [
        "",
        f"Difference to {baseline} per seed (what the paired test sees):",
        "",
        "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|" + "---:|" * len(seeds),
    ]
    for row in rows[1:]:
        cells = [
            f"{row.values[s] - base_values[s]:+.{d}f}" if s in row.values and s in base_values else "—" for s in seeds
        ]
        lines.append(f"| {row.variant} | " + " | ".join(cells) + " |")
    return lines


def _leftovers(runs: dict[Pair, RunResult]) -> list[str]:
    """Diverged runs and runs not (yet) in the tables."""
    lines: list[str] = []
    diverged = [r for r in runs.values() if r.diverged]
    if diverged:
        lines += ["", "Diverged (an outcome, not a failure: the loss became non-finite; not in the t-tests):", ""]
        lines += [f"- {r.pair.describe()}" for r in sorted(diverged, key=lambda r: (r.pair.variant, r.pair.seed))]
    problems = [r for r in runs.values() if r.loss is None]
    if problems:
        lines += ["", "Not included (rerun the same `lit_ffn ablate` command to finish them):", ""]
        for r in sorted(problems, key=lambda r: (r.pair.variant, r.pair.seed)):
            why = {"missing": "not started", "incomplete": "started, not finished"}.get(r.status, "no val/loss logged")
            lines.append(f"- {r.pair.describe()}: {why}")
    return lines


def _images(runs: dict[Pair, RunResult], images: str) -> list[str]:
    lines: list[str] = []
    lines += ["", f"![validation loss, mean ± std over seeds](curves{images}.png)", ""]
    if any(r.has_gates for r in runs.values()):
        lines += [f"![gate statistics per layer at the end of training](gates{images}.png)", ""]
    return lines


def results_markdown(
    study: Study,
    rows: list[VariantRow],
    runs: dict[Pair, RunResult],
    baseline: str,
    *,
    title: str | None = None,
    rung: str = "",
    preamble: Sequence[str] = (),
    explain: bool = True,
    images: str = "",
) -> str:
    """The comparison of one set of runs (a plain study; one rung's confirmation runs), section by section:
    header and table, the detectable differences, how to read them (``explain``), per-seed tables, the
    seed × block and divergence section (:mod:`lit_ffn.experiments.outcomes_report`), runs left out, images
    (``curves{images}.png``, ``gates{images}.png``).  ``preamble``: extra bullets after the header."""
    d = _decimals_of(rows)
    return "\n".join(
        [
            *_header(study, rows, runs, baseline, title, rung, preamble),
            *_comparison_rows(rows, d),
            *_detectable(rows, baseline, d),
            *plan_lines(study, rung),  # the MDD the study was planned for (lit_ffn ablate --plan)
            *(_explanation(rows, baseline) if explain else []),
            *_per_seed(study, rows, runs, baseline, d),
            *outcomes_section(list(study.variants), runs, baseline),
            *_leftovers(runs),
            *_images(runs, images),
        ]
    )


CSV_FIELDS = [
    "variant",
    "n",
    "seeds",
    "final_step",
    "val_loss_mean",
    "val_loss_std",
    "val_loss_values",
    "delta_vs_baseline",
    "ci95_low",
    "ci95_high",
    "t",
    "df",
    "p_welch",
    "p_holm",
    "significant_holm",
    "paired_n",
    "paired_ci95_low",
    "paired_ci95_high",
    "paired_t",
    "p_paired",
    "p_paired_holm",
    "significant_paired_holm",
    "verdict",
    "params_total",
    "params_non_embedding",
    "params_ffn",
    "tokens_per_s",
    "tokens_per_s_source",
    "mdd_welch",
    "mdd_paired",
    "rung",
    "tuned",
]


def detectable_differences(row: VariantRow, baseline: VariantRow) -> tuple[float, float]:
    """(Welch MDD, paired MDD) of ``row`` against ``baseline`` (NaN where the test has too few runs)."""
    from lit_ffn.experiments.stats import mdd_paired, mdd_welch

    common = sorted(set(row.values) & set(baseline.values))
    welch_mdd = mdd_welch(list(row.values.values()), list(baseline.values.values()))
    scale = max((max(abs(row.values[s]), abs(baseline.values[s])) for s in common), default=0.0)
    float32_rtol = 8 * float(np.finfo(np.float32).eps)  # as build_rows' paired test: NaN exactly where it is
    paired_mdd = mdd_paired([row.values[s] - baseline.values[s] for s in common], scale=scale, rtol=float32_rtol)
    return welch_mdd, paired_mdd


def results_csv_rows(
    rows: list[VariantRow], rung: str = "", tuned: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """results.csv rows of one comparison; ``tuned``: variant -> its chosen grid point's label."""
    out = []
    for row in rows:
        t = row.test
        mdd_w, mdd_p = detectable_differences(row, rows[0]) if t else ("", "")
        out.append(
            {
                "variant": row.variant,
                "n": row.summary.n,
                "seeds": " ".join(map(str, row.values)),
                "final_step": " ".join(map(str, row.final_steps)),
                "val_loss_mean": row.summary.mean,
                "val_loss_std": row.summary.std,
                "val_loss_values": " ".join(repr(v) for v in row.values.values()),
                "delta_vs_baseline": t.diff if t else "",
                "ci95_low": t.ci_low if t else "",
                "ci95_high": t.ci_high if t else "",
                "t": t.t if t else "",
                "df": t.df if t else "",
                "p_welch": t.p if t else "",
                "p_holm": row.p_holm if t else "",
                "significant_holm": bool(row.p_holm < 0.05) if t else "",
                "paired_n": len(set(row.values) & set(rows[0].values)) if t else "",
                "paired_ci95_low": row.paired.ci_low if t else "",
                "paired_ci95_high": row.paired.ci_high if t else "",
                "paired_t": row.paired.t if t else "",
                "p_paired": row.paired.p if t else "",
                "p_paired_holm": row.p_paired_holm if t else "",
                "significant_paired_holm": bool(row.p_paired_holm < 0.05) if t else "",
                "verdict": row.verdict.replace("**", ""),
                "params_total": row.params.total if row.params else "",
                "params_non_embedding": row.params.non_embedding if row.params else "",
                "params_ffn": row.params.ffn if row.params else "",
                "tokens_per_s": row.tokens_per_s if row.tokens_per_s is not None else "",
                "tokens_per_s_source": row.tokens_per_s_source,
                "mdd_welch": mdd_w,
                "mdd_paired": mdd_p,
                "rung": rung,
                "tuned": (tuned or {}).get(row.variant, ""),
            }
        )
    return out


def plot_curves(study: Study, runs: dict[Pair, RunResult], path: Path) -> None:
    """``curves.png``: validation loss vs step of the finished runs, the mean over seeds with a ±1
    std band (sample std, as the table) per variant; the right panel zooms on the second half."""
    from lit_ffn.experiments.plots import plot_series_groups

    groups = {
        variant: [
            r.val_curve for r in runs.values() if r.pair.variant == variant and r.status == "done" and r.val_curve
        ]
        for variant in study.variants
    }
    if not any(groups.values()):
        return
    plot_series_groups(
        groups,
        path,
        ylabel="val/loss (nats)",
        band="std",
        zoom_second_half=True,
        title=f"{study.experiment}: validation loss (mean ± std over seeds)",
    )


def plot_gates(study: Study, runs: dict[Pair, RunResult], path: Path) -> bool:
    """``gates.png`` through :func:`lit_ffn.experiments.plots.plot_gate_profile`: the gate
    statistics of every layer at the end of training, a column of panels per
    variant (its first finished seed that logged gate statistics; seeds are
    not averaged).  Returns False (and draws nothing) when no run logged gate
    statistics (``lit_ffn.callbacks.GateStatistics`` not enabled)."""
    from lit_ffn.experiments.plots import plot_gate_profile

    shown = {}
    for variant in study.variants:
        run = next((r for r in runs.values() if r.pair.variant == variant and r.status == "done" and r.has_gates), None)
        if run is not None:
            shown[f"{variant} (seed {run.pair.seed})"] = study.run_dir(run.pair)
    if not shown:
        return False
    plot_gate_profile(shown, path, title=f"{study.experiment}: gate statistics per layer at the end of training")
    return True


def reference_lines(runs: dict[Pair, RunResult]) -> list[str]:
    """The unigram reference of the data and the runs whose final loss does not beat it."""
    reference = study_reference(runs)
    if reference is None:
        return ["- unigram reference: not recorded for this dataset (meta.json has no unigram_val_loss)"]
    above = sorted(
        r.pair.describe() for r in runs.values() if r.loss is not None and math.isfinite(r.loss) and r.loss >= reference
    )
    line = (
        f"- unigram reference of the data: {reference:.4f} nats/token (the validation blocks under the training "
        "split's token frequencies): a run that does not beat it has learned no more than token frequencies"
    )
    if above:
        line += f"; ⚠ **{len(above)} run(s) do not beat it**: {', '.join(above)}"
    return [line]


def write_report(study: Study, baseline: str | None = None) -> dict[str, Path]:
    """Read every run of ``study`` and write its report into ``study.out``: results.md, results.csv,
    curves*.png, gates*.png; for a tuned study also tuning.csv and tuning.png
    (:mod:`lit_ffn.experiments.tuning_report`), for a ladder scaling.csv and scaling.png
    (:mod:`lit_ffn.experiments.scaling_report`).  The comparisons use the confirmation runs only."""
    from lit_ffn.experiments import scaling_report, tuning_report

    baseline = baseline or study.baseline_name
    if baseline not in study.variants:
        raise UserError(f"baseline '{baseline}' is not a variant of the study ({', '.join(study.variants)})")
    all_runs = {pair: read_run(study, pair) for pair in study.pairs()}
    paths = {"md": study.out / "results.md", "csv": study.out / "results.csv"}
    sections: list[str] = []
    csv_rows: list[dict[str, Any]] = []
    tuning = tuning_report.TuningReport(study) if study.tune else None
    confirm_rows: dict[str, list[VariantRow]] = {}
    for i, rung in enumerate(study.rungs):
        runs = {pair: run for pair, run in all_runs.items() if pair.rung == rung and pair.stage == "confirm"}
        rows = build_rows(study, runs, baseline)
        confirm_rows[rung] = rows
        suffix = f"_{rung}" if rung else ""
        tuned = tuning.chosen_labels(rung) if tuning else {}
        title = (
            f"## Comparison at rung `{rung}`"
            if study.ladder
            else "## Comparison (confirmation runs)"
            if tuning
            else None
        )
        preamble = tuning.protocol_lines(rung) if tuning else []
        preamble += reference_lines(runs)
        sections.append(
            results_markdown(
                study, rows, runs, baseline, title=title, rung=rung, preamble=preamble, explain=i == 0, images=suffix
            )
        )
        csv_rows += results_csv_rows(rows, rung, tuned)
        paths[f"curves{suffix}"] = study.out / f"curves{suffix}.png"
        plot_curves(study, runs, paths[f"curves{suffix}"])
        if plot_gates(study, runs, study.out / f"gates{suffix}.png"):
            paths[f"gates{suffix}"] = study.out / f"gates{suffix}.png"
    head: list[str] = []
    if tuning or study.ladder:
        head = [f"# Ablation: {study.experiment}", "", f"- command: `{study.command()}`"]
        head += tuning_report.protocol_summary(study) if tuning else []
        head += scaling_report.ladder_summary(study) if study.ladder else []
        head.append("")
    if tuning:
        sections.insert(0, tuning.markdown())
        paths.update(tuning.write(study.out))
    if study.eval_tasks:
        from lit_ffn.experiments.eval_report import EvalReport

        evals = EvalReport(study, baseline)
        sections.append(evals.markdown())
        paths.update(evals.write(study.out))
    if study.ladder:
        scaling = scaling_report.ScalingReport(study, all_runs, baseline)
        sections.append(scaling.markdown())
        paths.update(scaling.write(study.out))
    paths["md"].write_text("".join(line + "\n" for line in head) + "\n\n".join(sections))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_rows)
    return {key: path for key, path in paths.items() if path.exists()}
