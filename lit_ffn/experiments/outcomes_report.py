"""results.md's second comparison: the validation set's noise in the CI, diverged runs as outcomes.

The main table (:mod:`lit_ffn.experiments.report`) tests per-seed final losses, as if the validation set
were fixed.  This section adds what that leaves out (issue 23, part 4):

* **seed × block CI** of Δ = variant − baseline from the per-(seed, block) differences of the final
  checkpoints on the whole validation split (``final_eval.json``):
  :func:`lit_ffn.experiments.stats.seed_block_difference` (d_{s,b} = δ + u_s + w_b + e_{s,b}; se² from
  the seed means and the block means; Welch–Satterthwaite ν).  Its p-values form **one Holm family**:
  the k comparisons of this study (of this rung, in a ladder: each rung is its own family).  No verdict
  is drawn while the seed part has ν < 2 (two seeds): the row says so.
* **diverged runs**: a diverged run's loss is +∞ (never retried: rerunning the same seed diverges again);
  the divergence rate per variant, and a paired **sign test** over seeds in which a diverged run ranks
  last (:func:`lit_ffn.experiments.stats.sign_test`; its smallest p is 2^(1−n), so < 0.05 needs ≥ 6 seeds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from lit_ffn.experiments.runs import RunResult
from lit_ffn.experiments.study import Pair

#: A test with fewer residual degrees of freedom than this draws no verdict (ν = 1: two seeds).
MIN_VERDICT_DF = 2.0


def outcome(run: RunResult) -> float | None:
    """A run's final loss as an outcome: +∞ if it diverged, None if it has none yet."""
    return math.inf if run.diverged else run.loss


def block_matrix(variant: Mapping[int, RunResult], baseline: Mapping[int, RunResult]) -> tuple[list[int], np.ndarray]:
    """(seeds, d) with ``d[s, b] = ℓ_variant[s, b] − ℓ_baseline[s, b]`` over the seeds where both runs
    have per-block final losses on the same number of blocks; d is (S, B)."""
    seeds = sorted(
        s
        for s in set(variant) & set(baseline)
        if variant[s].block_losses
        and baseline[s].block_losses
        and len(variant[s].block_losses) == len(baseline[s].block_losses)
    )
    if not seeds:
        return [], np.zeros((0, 0))
    d = np.array([np.subtract(variant[s].block_losses, baseline[s].block_losses) for s in seeds])
    return seeds, d


def verdict(diff: float, p: float, p_holm: float, n_seeds: int, baseline: str, k: int) -> str:
    """The seed × block verdict in words; none while the seed part has ν = n_seeds − 1 < :data:`MIN_VERDICT_DF`
    (with 2 seeds the seed noise is estimated from one difference, however many blocks there are)."""
    if math.isnan(p):
        return "no test (needs ≥ 2 seeds with per-block losses in both)"
    if not n_seeds - 1 >= MIN_VERDICT_DF:
        return f"too few seeds for a verdict ({n_seeds} seeds: ν_seed = {n_seeds - 1} < {MIN_VERDICT_DF:g})"
    if p >= 0.05:
        return "no detectable difference"
    direction = "lower" if diff < 0 else "higher"
    if k > 1 and not p_holm < 0.05:
        return f"{direction} loss (p < 0.05, but not after Holm over {k} comparisons)"
    return f"**{direction} loss than {baseline}** (p < 0.05{', also after Holm' if k > 1 else ''})"


def outcomes_section(variants: list[str], runs: Mapping[Pair, RunResult], baseline: str) -> list[str]:
    """Markdown lines: the seed × block table (one Holm family) and the divergence / sign-test table."""
    from lit_ffn.experiments import stats

    by_variant: dict[str, dict[int, RunResult]] = {v: {} for v in variants}
    for pair, run in runs.items():
        if pair.variant in by_variant and outcome(run) is not None:
            by_variant[pair.variant][pair.seed] = run
    others = [v for v in variants if v != baseline]
    k = len(others)
    tests = {}
    for v in others:
        seeds, d = block_matrix(by_variant[v], by_variant[baseline])
        tests[v] = (seeds, d, stats.seed_block_test(d) if len(seeds) else None)
    p_values = [t.p if t is not None else math.nan for _, _, t in tests.values()]
    adjusted = dict(zip(others, stats.holm(p_values)))
    lines = [
        "",
        (
            f"Δ vs {baseline} with the validation set's noise in it (seed × block; final checkpoint, whole "
            f"validation split; one Holm family: these k = {k} comparisons):"
        ),
        "",
        "| variant | seeds × blocks | Δ | 95% CI (seed × block) | se seed / se block | ν | p | p (Holm) | verdict |",
        "|---|---|---:|---|---|---:|---:|---:|---|",
    ]
    for v in others:
        seeds, d, t = tests[v]
        if t is None:
            lines.append(f"| {v} | 0 | — | — | — | — | — | — | no per-block losses (final_eval.json) |")
            continue
        r = {key: float(x) for key, x in stats.seed_block_difference(d).items()}
        ci = "—" if math.isnan(t.ci_low) else f"[{t.ci_low:+.4f}, {t.ci_high:+.4f}]"
        lines.append(
            f"| {v} | {len(seeds)} × {d.shape[1]} | {t.diff:+.4f} | {ci} | {r['se_seed']:.4f} / {r['se_block']:.4f} | "
            f"{t.df:.1f} | {stats.format_p(t.p)} | {stats.format_p(adjusted[v])} | "
            f"{verdict(t.diff, t.p, adjusted[v], len(seeds), baseline, k)} |"
        )
    lines += [
        "",
        "Diverged runs are outcomes (+∞, ranked last), not failures:",
        "",
        f"| variant | diverged / runs | sign test vs {baseline}: lower / higher / ties | p (sign test) |",
        "|---|---|---|---:|",
    ]
    base_outcomes = {s: outcome(r) for s, r in by_variant[baseline].items()}
    for v in variants:
        runs_v = by_variant[v]
        diverged = sum(r.diverged for r in runs_v.values())
        if v == baseline:
            lines.append(f"| {v} | {diverged} / {len(runs_v)} | — | — |")
            continue
        sign = stats.sign_test({s: outcome(r) for s, r in runs_v.items()}, base_outcomes)
        lines.append(
            f"| {v} | {diverged} / {len(runs_v)} | {sign.better} / {sign.worse} / {sign.ties} | "
            f"{stats.format_p(sign.p)} |"
        )
    return lines


__all__ = ["MIN_VERDICT_DF", "block_matrix", "outcome", "outcomes_section", "verdict"]
