"""results.md's secondary section (lit_ffn.experiments.outcomes_report): the seed × block CI with the
validation set's noise in it (blocks resampled by document when recorded), Welch, diverged runs as outcomes
ranked last — numbers only, never a verdict word."""

from __future__ import annotations

import numpy as np

from lit_ffn.experiments.outcomes_report import secondary_section, secondary_tests
from lit_ffn.experiments.runs import RunResult
from lit_ffn.experiments.study import Pair


def _runs(deltas: dict[str, float], seeds: list[int], blocks: int = 40, diverged: tuple = (), docs=None) -> dict:
    """Per-block losses: block effect w_b + seed effect u_s shared by every variant, + the variant's δ, + noise."""
    rng = np.random.default_rng(0)
    w = rng.normal(4.0, 0.3, blocks)
    u = {s: rng.normal(0, 0.02) for s in seeds}
    runs = {}
    for variant, delta in deltas.items():
        for s in seeds:
            pair = Pair(variant, s)
            if (variant, s) in diverged:
                runs[pair] = RunResult(pair, "done", diverged=True)
                continue
            losses = w + u[s] + delta + rng.normal(0, 0.005, blocks)
            runs[pair] = RunResult(pair, "done", block_losses=[float(x) for x in losses], block_docs=docs)
    return runs


def _row(lines: list[str], variant: str, header: str) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    row = next(line for line in lines[start:] if line.startswith(f"| {variant} |"))
    return [c.strip() for c in row.split("|")[1:-1]]


def test_the_seed_by_block_ci_covers_a_known_deficit_and_gives_no_verdict() -> None:
    variants = ["base", "worse", "same"]
    tests = secondary_tests(
        variants, _runs({"base": 0.0, "worse": 0.05, "same": 0.0}, [0, 1, 2, 3, 4]), "base", "paired-t"
    )
    lines = secondary_section(variants, tests, "base", "paired-t")
    worse = _row(lines, "worse", "| variant | Δ (Welch)")
    assert worse[4] == "5 × 40 (40)"  # no document ids recorded: every block its own cluster
    low, high = (float(x) for x in worse[5].strip("[]").split(","))
    assert 0 < low < 0.05 < high and float(worse[7]) <= 4  # ν never exceeds seeds − 1
    same = _row(lines, "same", "| variant | Δ (Welch)")
    low, high = (float(x) for x in same[5].strip("[]").split(","))
    assert low < 0 < high
    text = "\n".join(lines)
    for word in ("worse (", "better (", "inconclusive", "lower loss", "higher loss", "detected"):
        assert word not in text  # secondary: numbers only


def test_blocks_of_one_document_are_resampled_together() -> None:
    """With 40 blocks in 8 documents (5 adjacent blocks each) the block part of the SE is the cluster one."""
    docs = [b // 5 for b in range(40)]
    tests = secondary_tests(["base", "v"], _runs({"base": 0.0, "v": 0.01}, [0, 1, 2], docs=docs), "base", "paired-t")
    assert tests["v"]["seed_block_clusters"] == 8 and tests["v"]["seed_block_blocks"] == 40
    assert tests["v"]["seed_block_df"] <= 2


def test_diverged_runs_are_counted_and_rank_last() -> None:
    seeds = [0, 1, 2, 3, 4, 5, 6]
    runs = _runs({"base": 0.0, "fragile": -0.01}, seeds, diverged=(("fragile", 0), ("fragile", 1)))
    tests = secondary_tests(["base", "fragile"], runs, "base", "paired-t")
    lines = secondary_section(["base", "fragile"], tests, "base", "paired-t")
    row = _row(lines, "fragile", "| variant | diverged / runs")
    assert row[1] == "2 / 7"
    assert row[2] == "5 / 2 / 0"  # lower on the 5 seeds it finished, higher (+inf) on the 2 it diverged
    assert _row(lines, "base", "| variant | diverged / runs")[1] == "0 / 7"
    # with the sign test as the primary test, the paired t-test is a secondary column: withheld on a diverged pair
    tests = secondary_tests(["base", "fragile"], runs, "base", "sign")
    assert tests["fragile"]["p_paired"] == "" and tests["fragile"]["paired_delta"] == ""
    lines = secondary_section(["base", "fragile"], tests, "base", "sign")
    assert _row(lines, "fragile", "| variant | Δ (Welch)")[4:7] == ["—", "—", "—"]
