"""results.md's secondary tests: the same differences by other tests, which **never give a verdict**.

The verdict of a comparison comes from the study's primary test alone, Holm-adjusted over the study's
one family (:mod:`lit_ffn.experiments.verdicts`).  This section prints what other tests say about the
same difference, as numbers (issue 30: one pre-declared test; the rest secondary):

* **Welch's t-test** over the finished runs (unpaired: blind to the seed pairing; diverged runs left out,
  so it describes the survivors only);
* the **paired t-test** when the primary test is the sign test (and the sign test when it is the paired
  t-test: the divergence table);
* the **seed × block** CI of Δ from the per-(seed, block) differences of the final checkpoints on the
  whole validation split (``final_eval.json``): :func:`lit_ffn.experiments.stats.seed_block_difference`
  (d_{s,b} = δ + u_s + w_b + e_{s,b}; blocks resampled by the document they start in when
  ``final_eval.json`` records it; ν ≤ S − 1);
* **diverged runs**: a diverged run's loss is +∞ (never retried: rerunning the same seed diverges again);
  the divergence count per variant, and the paired **sign test** in which a diverged run ranks last
  (:func:`lit_ffn.experiments.stats.sign_test`; its smallest p is 2^(1−n), so < 0.05 needs ≥ 6 seeds).

:func:`secondary_tests` computes every number once; the Markdown (:func:`secondary_section`) and the CSV
(``results.csv``'s ``welch_*``, ``paired_*``, ``seed_block_*``, ``sign_*`` columns) both print that dict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from lit_ffn.experiments.runs import RunResult
from lit_ffn.experiments.study import Pair


def outcome(run: RunResult) -> float | None:
    """A run's final loss as an outcome: +∞ if it diverged, None if it has none yet."""
    return math.inf if run.diverged else run.loss


def block_matrix(
    variant: Mapping[int, RunResult], baseline: Mapping[int, RunResult]
) -> tuple[list[int], np.ndarray, list[int] | None]:
    """(seeds, d, clusters) with ``d[s, b] = ℓ_variant[s, b] − ℓ_baseline[s, b]`` over the seeds where both
    runs have per-block final losses on the same number of blocks; d is (S, B); ``clusters`` (B,) the
    document each block starts in, when every run recorded the same (else None: blocks are independent)."""
    seeds = sorted(
        s
        for s in set(variant) & set(baseline)
        if variant[s].block_losses
        and baseline[s].block_losses
        and len(variant[s].block_losses) == len(baseline[s].block_losses)
    )
    if not seeds:
        return [], np.zeros((0, 0)), None
    d = np.array([np.subtract(variant[s].block_losses, baseline[s].block_losses) for s in seeds])
    docs = [r.block_docs for s in seeds for r in (variant[s], baseline[s])]
    clusters = docs[0] if docs[0] and all(x == docs[0] for x in docs) and len(docs[0]) == d.shape[1] else None
    return seeds, d, clusters


#: results.csv's secondary columns, in order (empty where a test has too few runs).
SECONDARY_FIELDS = [
    "welch_delta", "welch_ci95_low", "welch_ci95_high", "welch_df", "p_welch",
    "paired_delta", "paired_ci95_low", "paired_ci95_high", "paired_df", "p_paired",
    "seed_block_seeds", "seed_block_blocks", "seed_block_clusters", "seed_block_delta", "seed_block_ci95_low",
    "seed_block_ci95_high", "seed_block_se_seed", "seed_block_se_block", "seed_block_df", "p_seed_block",
    "diverged", "runs", "sign_lower", "sign_higher", "sign_ties", "p_sign",
]  # fmt: skip


def _num(x: float) -> float | str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else x


def secondary_tests(
    variants: list[str], runs: Mapping[Pair, RunResult], baseline: str, primary_test: str, rtol: float = 1e-13
) -> dict[str, dict[str, Any]]:
    """``{variant: {SECONDARY_FIELDS: value or ""}}`` (the baseline: its divergence count only)."""
    from lit_ffn.experiments import stats
    from lit_ffn.experiments.verdicts import paired_t

    by_variant: dict[str, dict[int, RunResult]] = {v: {} for v in variants}
    for pair, run in runs.items():
        if pair.variant in by_variant and outcome(run) is not None:
            by_variant[pair.variant][pair.seed] = run
    out: dict[str, dict[str, Any]] = {}
    base = by_variant[baseline]
    base_outcomes = {s: outcome(r) for s, r in base.items()}
    for v in variants:
        runs_v = by_variant[v]
        row: dict[str, Any] = dict.fromkeys(SECONDARY_FIELDS, "")
        row["diverged"], row["runs"] = sum(r.diverged for r in runs_v.values()), len(runs_v)
        if v != baseline:
            finite = [x for x in (outcome(r) for r in runs_v.values()) if math.isfinite(x)]
            finite_base = [x for x in base_outcomes.values() if math.isfinite(x)]
            w = stats.welch(finite, finite_base)
            row |= {"welch_delta": _num(w.diff), "welch_ci95_low": _num(w.ci_low), "welch_ci95_high": _num(w.ci_high),
                    "welch_df": _num(w.df), "p_welch": _num(w.p)}  # fmt: skip
            if primary_test != "paired-t":
                t = paired_t({s: outcome(r) for s, r in runs_v.items()}, base_outcomes, (v, baseline), rtol)
                row |= {"paired_delta": _num(t.diff), "paired_ci95_low": _num(t.ci_low),
                        "paired_ci95_high": _num(t.ci_high), "paired_df": _num(t.df), "p_paired": _num(t.p)}  # fmt: skip
            seeds, d, clusters = block_matrix(runs_v, base)
            if seeds:
                r = {k: float(x) for k, x in stats.seed_block_difference(d, clusters=clusters).items()}
                row |= {"seed_block_seeds": len(seeds), "seed_block_blocks": d.shape[1],
                        "seed_block_clusters": len(set(clusters)) if clusters else d.shape[1],
                        "seed_block_delta": r["diff"], "seed_block_ci95_low": _num(r["ci_low"]),
                        "seed_block_ci95_high": _num(r["ci_high"]), "seed_block_se_seed": _num(r["se_seed"]),
                        "seed_block_se_block": _num(r["se_block"]), "seed_block_df": _num(r["df"]),
                        "p_seed_block": _num(r["p"])}  # fmt: skip
            sign = stats.sign_test({s: outcome(r) for s, r in runs_v.items()}, base_outcomes)
            row |= {
                "sign_lower": sign.better,
                "sign_higher": sign.worse,
                "sign_ties": sign.ties,
                "p_sign": _num(sign.p),
            }
        out[v] = row
    return out


def _ci(low: Any, high: Any, d: int) -> str:
    return "—" if low == "" or high == "" else f"[{low:+.{d}f}, {high:+.{d}f}]"


def _p(p: Any) -> str:
    from lit_ffn.experiments.stats import format_p

    return "—" if p == "" else format_p(p)


def _f(x: Any, spec: str) -> str:
    return "—" if x == "" else format(x, spec)


def secondary_section(
    variants: list[str], tests: Mapping[str, Mapping[str, Any]], baseline: str, primary_test: str, d: int = 4
) -> list[str]:
    """Markdown lines of :func:`secondary_tests`' numbers: other tests of the same differences, and the
    diverged runs; no verdict words."""
    others = [v for v in variants if v != baseline]
    paired_cols = primary_test != "paired-t"
    lines = [
        "",
        "### Secondary tests (numbers only: the verdicts above come from the primary test alone)",
        "",
        (
            "Welch: unpaired t-test over the finished runs (diverged runs left out: it describes the survivors). "
            + ("Paired t: over the seeds both finished; withheld when a pair diverged. " if paired_cols else "")
            + "Seed × block: the final checkpoints' per-block differences on the whole validation split "
            "(`final_eval.json`), seed and block noise both in the CI, blocks resampled by the document they start "
            "in when recorded (clusters), ν ≤ seeds − 1 (`lit_ffn.experiments.stats.seed_block_difference`)."
        ),
        "",
        "| variant | Δ (Welch) | 95% CI (Welch) | p (Welch) | "
        + ("Δ (paired t) | 95% CI (paired t) | p (paired t) | " if paired_cols else "")
        + "seeds × blocks (clusters) | 95% CI (seed × block) | se seed / se block | ν | p (seed × block) |",
        "|---|---:|---|---:|" + ("---:|---|---:|" if paired_cols else "") + "---|---|---|---:|---:|",
    ]
    for v in others:
        r = tests[v]
        paired = (
            f"{_f(r['paired_delta'], f'+.{d}f')} | {_ci(r['paired_ci95_low'], r['paired_ci95_high'], d)} | "
            f"{_p(r['p_paired'])} | "
            if paired_cols
            else ""
        )
        if r["seed_block_seeds"] == "":
            block = "no per-block losses (final_eval.json) | — | — | — | — |"
        else:
            block = (
                f"{r['seed_block_seeds']} × {r['seed_block_blocks']} ({r['seed_block_clusters']}) | "
                f"{_ci(r['seed_block_ci95_low'], r['seed_block_ci95_high'], d)} | "
                f"{_f(r['seed_block_se_seed'], '.4f')} / {_f(r['seed_block_se_block'], '.4f')} | "
                f"{_f(r['seed_block_df'], '.1f')} | {_p(r['p_seed_block'])} |"
            )
        lines.append(
            f"| {v} | {_f(r['welch_delta'], f'+.{d}f')} | {_ci(r['welch_ci95_low'], r['welch_ci95_high'], d)} | "
            f"{_p(r['p_welch'])} | {paired}{block}"
        )
    lines += [
        "",
        "Diverged runs are outcomes (+∞, ranked last), not failures:",
        "",
        f"| variant | diverged / runs | sign test vs {baseline}: lower / higher / ties | p (sign test) |",
        "|---|---|---|---:|",
    ]
    for v in variants:
        r = tests[v]
        if v == baseline:
            lines.append(f"| {v} | {r['diverged']} / {r['runs']} | — | — |")
            continue
        lines.append(
            f"| {v} | {r['diverged']} / {r['runs']} | {r['sign_lower']} / {r['sign_higher']} / {r['sign_ties']} | "
            f"{_p(r['p_sign'])} |"
        )
    return lines


__all__ = ["SECONDARY_FIELDS", "block_matrix", "outcome", "secondary_section", "secondary_tests"]
