"""The regret of each ``--tune-rule`` against known truths (the table in docs/experiments.md § 3c).

    python scripts/tune_rule_regret.py [REPS]      # default 2000 simulated tunings per cell

A 5-point lr grid 1e-3 … 1.6e-2 (×2 steps), the true optimum at 3e-3 (x = log2(lr / 3e-3)), three true
loss curves, three noise profiles, 2 or 3 tuning seeds, a shared per-seed effect of SD 0.03; each cell
is :func:`lit_ffn.experiments.tuning.simulate_choice`: "regret / noise", the mean of L(chosen) − min L (nats)
and the mean true seed-noise SD at the chosen point (what the confirmation runs face).
"""

from __future__ import annotations

import sys

import numpy as np

from lit_ffn.experiments.tuning import RULES, simulate_choice


def main(reps: int = 2000) -> None:
    x = np.log2(np.array([1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2]) / 3e-3)
    truths = {
        "parabola": 4.2 + 0.05 * x**2,
        "parabola + cliff": 4.2 + 0.05 * x**2 + 0.02 * np.exp(2 * x),
        "V + cube (kinked)": 4.2 + 0.1 * np.abs(x) + 0.05 * np.maximum(x, 0) ** 3,
    }
    noises = {
        "σ 0.02 flat": [0.02] * 5,
        "σ 0.05 flat": [0.05] * 5,
        "σ 0.05×(½,½,1,2,4)": list(0.05 * np.array([0.5, 0.5, 1, 2, 4])),
    }
    print(f"| truth | noise | tuning seeds | {' | '.join(RULES)} |\n|---|---|---:|{'---:|' * len(RULES)}")
    for truth_name, truth in truths.items():
        for noise_name, noise in noises.items():
            for n in (2, 3):
                cells = [simulate_choice(truth, noise, n, r, shared_sd=0.03, reps=reps, seed=1) for r in RULES]
                print(
                    f"| {truth_name} | {noise_name} | {n} | "
                    + " | ".join(f"{r:.4f} / {s:.3f}" for r, s in cells)
                    + " |"
                )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
