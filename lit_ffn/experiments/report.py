"""The report of a :mod:`lit_ffn.experiments.ablate` study, read from its runs on disk.

``DIR/results.md`` / ``results.csv``: per variant the final validation loss (mean ± sample std over
seeds, n) and **one main table with the study's primary test only** — Δ to the baseline, its 95% CI,
p, the Holm-adjusted p over the study's one family, the verdict and the minimum detectable difference
(:mod:`lit_ffn.experiments.verdicts`); other tests in a secondary section, numbers only
(:mod:`lit_ffn.experiments.outcomes_report`); parameter counts (:mod:`lit_ffn.experiments.params`) and
tokens/s.  ``results.csv`` holds the same numbers and leaves empty what results.md withholds, with the
reason in its ``withheld`` column.  ``DIR/curves.png``: the training loss (smoothed, mean ± std band over
seeds) per variant with the validation points as markers.  ``DIR/gates.png``: the gate statistics of
every layer at the end of training, one panel per variant.

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
from lit_ffn.experiments.planner import plan_lines
from lit_ffn.experiments.runs import (  # noqa: F401 - read_run, tokens_per_second: re-exported (older callers)
    RunResult,
    _tokens_per_step,
    read_run,
    study_reference,
    tokens_per_second,
)
from lit_ffn.experiments.study import Pair, Study
from lit_ffn.experiments.verdicts import Comparison
from lit_ffn.experiments.verdicts import _signed as _fmt_signed  # one rule for signed cells

# ================================================================== the report
#: TensorBoard keeps scalars in float32: per-seed differences that agree to ~8 float32 ulps are "no spread".
FLOAT32_RTOL = 8 * float(np.finfo(np.float32).eps)


@dataclass
class VariantRow:
    """One line of results.md / results.csv: a variant at one rung, its primary comparison and secondary tests."""

    variant: str
    role: str  # "baseline", "compared" (in the Holm family) or "control" (outside it)
    outcomes: dict[int, float]  # seed -> final loss of every finished run (+inf: diverged)
    final_steps: list[int]
    summary: Any  # lit_ffn.experiments.stats.Summary of the finite outcomes
    comparison: Comparison | None  # the primary test against the baseline (None for the baseline)
    secondary: dict[str, Any]  # lit_ffn.experiments.outcomes_report.secondary_tests' row
    params: Any  # lit_ffn.experiments.params.ParamCount, or None
    tokens_per_s: float | None
    tokens_per_s_source: str

    @property
    def values(self) -> dict[int, float]:
        """seed -> final loss of the runs that did not diverge."""
        return {s: x for s, x in self.outcomes.items() if math.isfinite(x)}

    @property
    def verdict(self) -> str:
        return "baseline" if self.comparison is None else self.comparison.verdict()


def outcomes_of(runs: dict[Pair, RunResult], variant: str) -> dict[int, float]:
    """seed -> final loss of ``variant``'s finished runs among ``runs`` (+inf: diverged)."""
    from lit_ffn.experiments.outcomes_report import outcome

    found = {r.pair.seed: outcome(r) for r in runs.values() if r.pair.variant == variant}
    return {s: x for s, x in sorted(found.items()) if x is not None}


def check_declared(study: Study, primary_test: str | None, controls: Sequence[str]) -> None:
    """A report is made with the primary test and controls the study declared before its runs: asking for
    others is one line (changing them after seeing the data would let the data pick the test)."""
    from lit_ffn.experiments.verdicts import check_controls, check_primary_test

    if primary_test is not None:
        check_primary_test(primary_test)
        if primary_test != study.primary_test:
            raise UserError(
                f"{study.out} declared --primary-test {study.primary_test} before its runs; a report with "
                f"{primary_test} would let the data pick the test: leave --primary-test out (its secondary section "
                "shows the other tests)"
            )
    check_controls(controls, list(study.variants))
    if controls and list(dict.fromkeys(controls)) != list(study.controls):
        declared = " ".join(study.controls) or "none"
        raise UserError(
            f"{study.out} declared controls: {declared}; a control is declared with the study (study.json), before "
            "its runs: leave --control out of --report"
        )


def loss_comparisons(
    study: Study, confirm_runs: dict[str, dict[Pair, RunResult]], baseline: str, primary_test: str
) -> list[Comparison]:
    """Every declared loss comparison of the study (each compared variant and control × rung), tested with
    the primary test (not yet Holm-adjusted: :func:`lit_ffn.experiments.verdicts.holm_family`)."""
    from lit_ffn.experiments.verdicts import Comparison, primary

    out = []
    for rung, runs in confirm_runs.items():
        base = outcomes_of(runs, baseline)
        for variant in study.variants:
            if variant == baseline:
                continue
            result = primary(primary_test, outcomes_of(runs, variant), base, (variant, baseline), FLOAT32_RTOL)
            out.append(Comparison(variant, rung, "", variant in study.controls, result))
    return out


def build_rows(
    study: Study,
    runs: dict[Pair, RunResult],
    baseline: str,
    comparisons: dict[str, Comparison] | None = None,
    primary_test: str | None = None,
) -> list[VariantRow]:
    """The rows of one comparison table (one rung): the baseline first.  ``comparisons``: variant -> its
    Holm-adjusted :class:`~lit_ffn.experiments.verdicts.Comparison` (default: this table alone as the family)."""
    from lit_ffn.experiments import stats
    from lit_ffn.experiments.outcomes_report import secondary_tests
    from lit_ffn.experiments.params import count_parameters
    from lit_ffn.experiments.verdicts import holm_family

    primary_test = primary_test or study.primary_test
    if comparisons is None:
        found = loss_comparisons(study, {"": runs}, baseline, primary_test)
        holm_family(found)
        comparisons = {c.variant: c for c in found}
    secondary = secondary_tests(list(study.variants), runs, baseline, primary_test, FLOAT32_RTOL)
    rows = []
    for variant in [baseline, *(v for v in study.variants if v != baseline)]:
        done = [r for r in runs.values() if r.pair.variant == variant and r.loss is not None]
        finite = [r for r in done if math.isfinite(r.loss)]
        any_config = next((r.config for r in runs.values() if r.pair.variant == variant and r.config), None)
        try:
            params = count_parameters(any_config["model"]) if any_config else None
        except Exception:  # noqa: BLE001 - e.g. a user FFN not importable here: the table says "—"
            params = None
        tps = [r.tokens_per_s for r in finite if r.tokens_per_s is not None]
        role = "baseline" if variant == baseline else "control" if variant in study.controls else "compared"
        rows.append(
            VariantRow(
                variant=variant,
                role=role,
                outcomes=outcomes_of(runs, variant),
                final_steps=sorted({r.final[0] for r in finite if r.final}),
                summary=stats.summarize(r.loss for r in finite),
                comparison=comparisons.get(variant) if variant != baseline else None,
                secondary=secondary[variant],
                params=params,
                tokens_per_s=sum(tps) / len(tps) if tps else None,
                tokens_per_s_source=next((r.tokens_per_s_source for r in finite if r.tokens_per_s is not None), "n/a"),
            )
        )
    return rows


def _decimals_of(rows: list[VariantRow]) -> int:
    """Decimals that show the smallest seed std of the table with two significant digits."""
    from lit_ffn.experiments.stats import _decimals

    stds = [r.summary.std for r in rows if not math.isnan(r.summary.std)]
    return _decimals(min(stds)) if stds else 4


def metric_line(runs: dict[Pair, RunResult]) -> str:
    """What "final validation loss" is for these runs, with how many runs each source gave."""
    counts: dict[str, int] = {}
    for r in runs.values():
        if r.status == "done" and not r.diverged and r.loss is not None:
            counts[r.loss_source] = counts.get(r.loss_source, 0) + 1
    sources = "; ".join(f"{source}: {n} run{'s' if n != 1 else ''}" for source, n in counts.items()) or "no runs yet"
    return (
        "- metric: final validation loss, the token-weighted mean next-token cross-entropy in nats (lower is "
        f"better), from {sources}. final_eval.json scores the final checkpoint on every block of the validation "
        "split; DONE's final_val_loss is that mean (for runs of an older lit_ffn: their last logged val/loss)"
    )


def _header(
    study: Study,
    rows: list[VariantRow],
    runs: dict[Pair, RunResult],
    baseline: str,
    title: str | None,
    rung: str,
    preamble: Sequence[str],
    family_size: int,
) -> list[str]:
    """The title, the bullets that say what was compared and how, and the comparison table's head."""
    from lit_ffn.experiments.verdicts import PRIMARY_TESTS

    where = f"{study.runs_dir}/{study.experiment}/{rung + '/' if rung else ''}<variant>/seed_<seed>/"
    controls = [v for v in study.variants if v in study.controls]
    median = " (median)" if study.primary_test == "sign" else ""
    return [
        title or f"# Ablation: {study.experiment}",
        "",
        f"- base config: {', '.join(f'`{c}`' for c in study.configs)}"
        + (f"; ladder rung: `{study.ladder[rung]}`" if rung else "")
        + (f"; overrides: `{' '.join(study.overrides)}`" if study.overrides else ""),
        f"- variants: {', '.join(study.variants)}; seeds: {_seeds_text(study)}; baseline: **{baseline}**"
        + (f"; controls (outside the Holm family): {', '.join(controls)}" if controls else ""),
        metric_line(runs),
        (
            f"- primary test, declared in study.json before the runs: **{study.primary_test}** — "
            f"{PRIMARY_TESTS[study.primary_test]}; Holm over the study's one family of k = {family_size} "
            "comparisons (every compared variant × rung × task); verdict words come from it alone"
        ),
        f"- runs: `{where}` (config.yaml, TensorBoard events, DONE); command: `{study.command()}`",
        *preamble,
        "",
        (
            f"| variant | n | final val loss (mean ± std) | Δ vs {baseline}{median} | 95% CI of Δ | p | "
            f"p (Holm, k={family_size}) | verdict | MDD |"
        ),
        "|---|---:|---|---:|---|---:|---:|---|---:|",
    ]


def _comparison_rows(rows: list[VariantRow], d: int) -> list[str]:
    """One line per variant of the main table: the primary test only."""
    from lit_ffn.experiments.stats import format_mean_std, format_p

    lines: list[str] = []
    for row in rows:
        diverged = sum(math.isinf(x) for x in row.outcomes.values())
        n = f"{row.summary.n}" + (f" + {diverged} diverged" if diverged else "")
        mean = format_mean_std(row.summary.mean, row.summary.std)
        c = row.comparison
        if c is None:
            lines.append(f"| {row.variant} | {n} | {mean} | — | — | — | — | baseline | — |")
            continue
        r = c.result
        ci = "—" if math.isnan(r.ci_low) else f"[{_fmt_signed(r.ci_low, d)}, {_fmt_signed(r.ci_high, d)}]"
        holm = "— (control)" if c.control else format_p(c.p_holm) if not math.isnan(c.p_holm) else "—"
        mdd = "—" if math.isnan(r.mdd) else f"{r.mdd:.{d}f}"
        verdict = c.verdict(d)
        verdict = f"**{verdict}**" if c.decided else verdict
        p = "—" if math.isnan(r.p) else format_p(r.p)
        lines.append(
            f"| {row.variant} | {n} | {mean} | {_fmt_signed(r.diff, d)} | {ci} | {p} | {holm} | {verdict} | {mdd} |"
        )
    return lines


def _explanation(rows: list[VariantRow], baseline: str, primary_test: str) -> list[str]:
    """How to read the main table."""
    test = (
        "the paired t-test on the per-seed differences d_s = variant_s − "
        f"{baseline}_s (d̄ ± t₀.₉₇₅,ₙ₋₁·s_d/√n, `scipy.stats.ttest_rel`); a pair in which either run diverged "
        "withholds the verdict (a t-test has no value for +∞, and dropping the pair would report survivors only)"
        if primary_test == "paired-t"
        else "the paired sign test, a diverged run ranked worst; Δ is the median per-seed difference and its CI the "
        "order-statistic interval of the median (none below 6 pairs)"
    )
    return [
        "",
        "How to read this table:",
        "",
        (
            "- **n** finished seeds per variant; **mean ± std** over seeds (sample std, ddof 1). A seed fixes the "
            "data order and the initial weights (`model.init_seed`, `data.seed`; lit_ffn.seeds): every tensor is "
            "drawn from a stream of its own name, so every non-FFN weight is identical across variants whatever "
            "the FFN's class or width, and FFNs with the same parameter names and shapes (SwiGLU, GEGLU, "
            "DynamicGEGLU) start identically; runs with one seed are matched pairs."
        ),
        f"- **Δ, CI, p**: the primary test, {test}. A CI excludes 0 exactly when its p < 0.05.",
        (
            "- **Holm**: Holm–Bonferroni over the study's one family (every compared variant × rung × downstream "
            "task; a withheld test counts in k with p = 1). A **verdict** is a word only when the Holm-adjusted "
            'p < 0.05: "worse" / "better"; otherwise "inconclusive: Δ [CI], MDD" — the CI is the range of '
            "differences the data allow, the **MDD** the smallest true difference the test detects with 80% power at "
            "the two-sided 5% level from the observed spread ((t₀.₉₇₅,ν + t₀.₈,ν)·se): an inconclusive row is not "
            'evidence of equality. Controls are tested alone at p < 0.05 ("control detected / not detected").'
        ),
        (
            "- Everything else (Welch, seed × block, the sign test) is in the secondary section: numbers, no verdicts. "
            "A difference at one scale (model size, steps, data) need not hold at another."
        ),
    ]


def _sizes(rows: list[VariantRow]) -> list[str]:
    """Parameters and throughput per variant (not part of the comparison)."""
    sources = sorted({r.tokens_per_s_source for r in rows if r.tokens_per_s is not None})
    lines = [
        "",
        (
            "Sizes and throughput (params: total with the tied embedding counted once, FFN: all layers' FFNs, "
            f"`lit_ffn params`; tokens/s: training throughput, mean over seeds, from {', '.join(sources) or '—'}; "
            "shared machines make it noisy):"
        ),
        "",
        "| variant | params (total) | FFN params | tokens/s |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        params = f"{row.params.total:,}" if row.params else "—"
        ffn_params = f"{row.params.ffn:,}" if row.params else "—"
        tps = f"{row.tokens_per_s:,.0f}" if row.tokens_per_s is not None else "—"
        lines.append(f"| {row.variant} | {params} | {ffn_params} | {tps} |")
    return lines


def _seeds_text(study: Study) -> str:
    """The confirmation seeds (a long run of consecutive seeds as a range) and each ``--seed-count``."""
    seeds = study.seeds
    consecutive = len(seeds) > 5 and seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    text = f"{seeds[0]} … {seeds[-1]} ({len(seeds)})" if consecutive else " ".join(map(str, seeds))
    fewer = [f"{v}: the first {n}" for v, n in study.fewer_seeds().items()]
    return text + (f" ({'; '.join(fewer)}, `--seed-count`)" if fewer else "")


def _per_seed(study: Study, rows: list[VariantRow], runs: dict[Pair, RunResult], baseline: str, d: int) -> list[str]:
    """Per-seed tables: final losses, the commit of each run, the differences the paired test sees."""
    seeds = study.seeds
    by_variant_seed = {(r.pair.variant, r.pair.seed): r for r in runs.values()}

    def cell(x: float | None, signed: bool = False) -> str:
        if x is None:
            return "—"
        if math.isinf(x):
            return "∞ (diverged)" if not signed else ("+∞" if x > 0 else "−∞")
        return f"{x:+.{d}f}" if signed else f"{x:.{d}f}"

    lines: list[str] = [
        "",
        "Final validation loss per seed:",
        "",
        "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|" + "---:|" * len(seeds),
    ]
    for row in rows:
        lines.append(f"| {row.variant} | " + " | ".join(cell(row.outcomes.get(s)) for s in seeds) + " |")
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
    base = rows[0].outcomes
    lines += [
        "",
        f"Difference to {baseline} per seed (what the paired tests see):",
        "",
        "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|" + "---:|" * len(seeds),
    ]
    for row in rows[1:]:
        cells = []
        for s in seeds:
            if s not in row.outcomes or s not in base:
                cells.append("—")
            elif math.isinf(row.outcomes[s]) or math.isinf(base[s]):
                cells.append("diverged")
            else:
                cells.append(cell(row.outcomes[s] - base[s], signed=True))
        lines.append(f"| {row.variant} | " + " | ".join(cells) + " |")
    return lines


def _leftovers(runs: dict[Pair, RunResult]) -> list[str]:
    """Diverged runs and runs not (yet) in the tables."""
    lines: list[str] = []
    diverged = [r for r in runs.values() if r.diverged]
    if diverged:
        lines += ["", "Diverged (an outcome, not a failure: the loss became non-finite; +∞ in the tests):", ""]
        lines += [f"- {r.pair.describe()}" for r in sorted(diverged, key=lambda r: (r.pair.variant, r.pair.seed))]
    problems = [r for r in runs.values() if r.loss is None]
    if problems:
        lines += ["", "Not included (rerun the same `lit_ffn ablate` command to finish them):", ""]
        for r in sorted(problems, key=lambda r: (r.pair.variant, r.pair.seed)):
            why = {"missing": "not started", "incomplete": "started, not finished"}.get(r.status, "no val/loss logged")
            lines.append(f"- {r.pair.describe()}: {why}")
    return lines


def _images(drawn: Sequence[str], images: str) -> list[str]:
    lines: list[str] = []
    if "curves" in drawn:
        lines += [
            "",
            f"![training loss (smoothed, mean ± std over seeds) with the validation points](curves{images}.png)",
            "",
        ]
    if "gates" in drawn:
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
    drawn: Sequence[str] = ("curves", "gates"),
    family_size: int | None = None,
) -> str:
    """The comparison of one set of runs (a plain study; one rung's confirmation runs), section by section:
    header and the primary table, how to read it (``explain``), the secondary tests
    (:mod:`lit_ffn.experiments.outcomes_report`), sizes, per-seed tables, runs left out, images
    (``curves{images}.png``, ``gates{images}.png`` where ``drawn``).  ``preamble``: extra bullets after the header."""
    from lit_ffn.experiments.outcomes_report import secondary_section

    d = _decimals_of(rows)
    k = family_size if family_size is not None else sum(r.role == "compared" for r in rows)
    return "\n".join(
        [
            *_header(study, rows, runs, baseline, title, rung, preamble, k),
            *_comparison_rows(rows, d),
            *plan_lines(study, rung),  # the MDD the study was planned for (lit_ffn ablate --plan)
            *(_explanation(rows, baseline, study.primary_test) if explain else []),
            *secondary_section(
                [r.variant for r in rows], {r.variant: r.secondary for r in rows}, baseline, study.primary_test, d
            ),
            *_sizes(rows),
            *_per_seed(study, rows, runs, baseline, d),
            *_leftovers(runs),
            *_images(drawn, images),
        ]
    )


def _csv_fields() -> list[str]:
    from lit_ffn.experiments.outcomes_report import SECONDARY_FIELDS

    return [
        "variant", "rung", "role", "n", "seeds", "final_step", "val_loss_mean", "val_loss_std", "val_loss_values",
        "primary_test", "delta", "ci95_low", "ci95_high", "p", "df", "p_holm", "holm_k", "mdd", "verdict", "withheld",
        *SECONDARY_FIELDS,
        "params_total", "params_non_embedding", "params_ffn", "tokens_per_s", "tokens_per_s_source", "tuned",
    ]  # fmt: skip


CSV_FIELDS = _csv_fields()


def _csv_num(x: float) -> float | str:
    """A number for results.csv: empty where the report prints "—" (NaN: withheld or undefined)."""
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else x


def results_csv_rows(
    rows: list[VariantRow], rung: str = "", tuned: dict[str, str] | None = None, primary_test: str = "paired-t"
) -> list[dict[str, Any]]:
    """results.csv rows of one comparison (the same numbers as results.md, empty where it shows "—");
    ``tuned``: variant -> its chosen grid point's label."""
    out = []
    for row in rows:
        c = row.comparison
        r = c.result if c else None
        withheld = ""
        if c is not None:
            withheld = r.withheld or ("control: tested outside the Holm family" if c.control else "")
        out.append(
            {
                "variant": row.variant,
                "rung": rung,
                "role": row.role,
                "n": row.summary.n,
                "seeds": " ".join(map(str, row.outcomes)),
                "final_step": " ".join(map(str, row.final_steps)),
                "val_loss_mean": _csv_num(row.summary.mean),
                "val_loss_std": _csv_num(row.summary.std),
                "val_loss_values": " ".join(repr(v) for v in row.outcomes.values()),
                "primary_test": primary_test if c else "",
                "delta": _csv_num(r.diff) if r else "",
                "ci95_low": _csv_num(r.ci_low) if r else "",
                "ci95_high": _csv_num(r.ci_high) if r else "",
                "p": _csv_num(r.p) if r else "",
                "df": _csv_num(r.df) if r else "",
                "p_holm": _csv_num(c.p_holm) if c else "",
                "holm_k": c.family_size if c and not c.control else "",
                "mdd": _csv_num(r.mdd) if r else "",
                "verdict": row.verdict,
                "withheld": withheld,
                **row.secondary,
                "params_total": row.params.total if row.params else "",
                "params_non_embedding": row.params.non_embedding if row.params else "",
                "params_ffn": row.params.ffn if row.params else "",
                "tokens_per_s": row.tokens_per_s if row.tokens_per_s is not None else "",
                "tokens_per_s_source": row.tokens_per_s_source,
                "tuned": (tuned or {}).get(row.variant, ""),
            }
        )
    return out


def plot_curves(study: Study, runs: dict[Pair, RunResult], path: Path) -> bool:
    """``curves.png``: per variant the training loss of its finished runs, smoothed, mean with a ±1 std band
    over seeds, and the validation points as markers (mean ± std over seeds; no line between them: on a ladder
    rung validated at step 0 and at the end, a line would invent the path between two points).  False (and
    nothing drawn) when no run logged a training or validation loss."""
    from lit_ffn.experiments.plots import plot_training_curves

    groups = {
        variant: [
            (r.train_curve, r.val_curve)
            for r in runs.values()
            if r.pair.variant == variant and r.status == "done" and not r.diverged and (r.train_curve or r.val_curve)
        ]
        for variant in study.variants
    }
    if not any(groups.values()):
        return False
    plot_training_curves(groups, path, title=f"{study.experiment}: training loss (smoothed) and validation points")
    return True


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


def write_report(
    study: Study, baseline: str | None = None, primary_test: str | None = None, controls: Sequence[str] = ()
) -> dict[str, Path]:
    """Read every run of ``study`` and write its report into ``study.out``: results.md, results.csv,
    curves*.png, gates*.png; for a tuned study also tuning.csv and tuning.png
    (:mod:`lit_ffn.experiments.tuning_report`), for a ladder scaling.csv and scaling.png
    (:mod:`lit_ffn.experiments.scaling_report`).  The comparisons use the confirmation runs only.

    ``primary_test`` / ``controls``: what the caller asks for; anything other than what the study declared
    in study.json is one line (:func:`check_declared`).  Every comparison of the study (each compared
    variant × rung × downstream task) is tested first and Holm-adjusted as one family, then written."""
    from lit_ffn.experiments import scaling_report, tuning_report
    from lit_ffn.experiments.verdicts import holm_family

    baseline = baseline or study.baseline_name
    if baseline not in study.variants:
        raise UserError(f"baseline '{baseline}' is not a variant of the study ({', '.join(study.variants)})")
    check_declared(study, primary_test, controls)
    if baseline in study.controls:
        raise UserError(f"baseline '{baseline}' is declared a control: compare against another variant")
    all_runs = {pair: read_run(study, pair) for pair in study.pairs()}
    confirm_runs = {
        rung: {pair: run for pair, run in all_runs.items() if pair.rung == rung and pair.stage == "confirm"}
        for rung in study.rungs
    }
    # the family: every declared comparison of the study, tested before any table is written
    family = loss_comparisons(study, confirm_runs, baseline, study.primary_test)
    evals = None
    if study.eval_tasks:
        from lit_ffn.experiments.eval_report import EvalReport

        evals = EvalReport(study, baseline)
        family += evals.comparisons(FLOAT32_RTOL)
    holm_family(family)
    family_size = sum(not c.control for c in family)
    paths = {"md": study.out / "results.md", "csv": study.out / "results.csv"}
    sections: list[str] = []
    csv_rows: list[dict[str, Any]] = []
    tuning = tuning_report.TuningReport(study) if study.tune else None
    for i, rung in enumerate(study.rungs):
        runs = confirm_runs[rung]
        by_variant = {c.variant: c for c in family if c.rung == rung and not c.task}
        rows = build_rows(study, runs, baseline, by_variant)
        suffix = f"_{rung}" if rung else ""
        tuned = tuning.chosen_labels(rung) if tuning else {}
        title = (
            f"## Comparison at rung `{rung}`"
            if study.ladder
            else "## Comparison (confirmation runs, fresh seeds)"
            if tuning
            else None
        )
        preamble = tuning.protocol_lines(rung) if tuning else []
        preamble += reference_lines(runs)
        drawn = []
        if plot_curves(study, runs, study.out / f"curves{suffix}.png"):
            paths[f"curves{suffix}"] = study.out / f"curves{suffix}.png"
            drawn.append("curves")
        if plot_gates(study, runs, study.out / f"gates{suffix}.png"):
            paths[f"gates{suffix}"] = study.out / f"gates{suffix}.png"
            drawn.append("gates")
        markdown = results_markdown(
            study, rows, runs, baseline, title=title, rung=rung, preamble=preamble, explain=i == 0, images=suffix,
            drawn=drawn, family_size=family_size,
        )  # fmt: skip
        sections.append(markdown)
        csv_rows += results_csv_rows(rows, rung, tuned, study.primary_test)
    head: list[str] = []
    if tuning or study.ladder:
        head = [f"# Ablation: {study.experiment}", "", f"- command: `{study.command()}`"]
        head += tuning_report.protocol_summary(study) if tuning else []
        head += scaling_report.ladder_summary(study) if study.ladder else []
        head.append("")
    if tuning:
        sections.insert(0, tuning.markdown())
        paths.update(tuning.write(study.out))
    if evals is not None:
        sections.append(evals.markdown(family))
        paths.update(evals.write(study.out, family))
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
