"""Issue 31 part 2: the noise table from the studies of run_noise.sh / run_levers.sh.

    python docs/results/cpu_noise/summarize.py OUT [OUT/<rung>/<condition> ...]

For every study directory (``OUT/<rung>/<condition>``, each a ``lit_ffn ablate`` study over the same seeds) it
reads each run's final loss (``final_eval.json``: every block of the validation split) and prints, per variant,
the mean and SD over seeds, and per comparison with the baseline (paired by seed, d_s = x_variant − x_base):

    Δ      mean of d_s
    s_d    SD of d_s (ddof 1): what the study's paired t-test faces
    ρ      corr_s(x_variant, x_base): s_d² = s_v² + s_b² − 2ρ·s_v·s_b
    MDD₅   exact paired MDD at 5 seeds, α 0.05, power 0.8 (lit_ffn.experiments.planner.exact_mdd)
    n₀.₀₂  seeds for a paired MDD of 0.02 nats at that s_d (planner.seeds_needed)
    se_ev  the evaluation-sampling SE of Δ: SD over validation blocks of the per-block difference / √blocks,
           averaged over seeds (noise a larger validation set would remove; not part of s_d's seed noise)

and writes the same rows to ``OUT/noise.csv``, every run's final loss (and seeds, lr) to ``OUT/runs.csv``.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import yaml

from lit_ffn.experiments.planner import exact_mdd, seeds_needed


def runs(study: Path) -> dict[str, dict[int, dict]]:
    """``{variant: {seed: final_eval}}`` of a study directory's finished runs."""
    out: dict[str, dict[int, dict]] = {}
    for path in sorted(study.glob("runs/*/*/seed_*/final_eval.json")):
        variant, seed = path.parent.parent.name, int(path.parent.name.removeprefix("seed_"))
        out.setdefault(variant, {})[seed] = json.loads(path.read_text())
    return out


def rows(study: Path, label: str, base: str = "swiglu") -> list[dict]:
    data = runs(study)
    result = []
    for variant, by_seed in data.items():
        x = np.array([by_seed[s]["loss"] for s in sorted(by_seed)])
        row = {"study": label, "variant": variant, "seeds": len(x), "mean": x.mean(), "sd": x.std(ddof=1)}
        if variant != base and base in data:
            seeds = sorted(set(by_seed) & set(data[base]))
            v = np.array([by_seed[s]["loss"] for s in seeds])
            b = np.array([data[base][s]["loss"] for s in seeds])
            d = v - b
            sd = float(d.std(ddof=1))
            rho = float(np.corrcoef(v, b)[0, 1]) if len(seeds) >= 3 and v.std() > 0 and b.std() > 0 else math.nan
            se_eval = np.mean(
                [
                    np.std(np.subtract(by_seed[s]["block_losses"], data[base][s]["block_losses"]), ddof=1)
                    / math.sqrt(len(by_seed[s]["block_losses"]))
                    for s in seeds
                ]
            )
            need = seeds_needed(0.02, sd)
            row.update(
                delta=d.mean(),
                s_d=sd,
                rho=rho,
                mdd5=exact_mdd(5, sd),
                n_002=need if need else ">10000",
                se_eval=se_eval,
            )
        result.append(row)
    return result


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    studies = [Path(p) for p in argv[1:]] or sorted(p.parent for p in out.glob("*/*/study.json"))
    labels = {study: str(study.resolve().relative_to(out.resolve())) for study in studies}
    table = [row for study in studies for row in rows(study, labels[study])]
    with open(out / "runs.csv", "w", newline="") as f:  # every run's final loss: the table recomputes from it
        writer = csv.writer(f)
        writer.writerow(
            ["study", "variant", "seed", "init_seed", "data_seed", "lr", "loss", "averaged", "loss_current"]
        )
        for study in studies:
            for variant, by_seed in runs(study).items():
                for seed, final in sorted(by_seed.items()):
                    config = yaml.safe_load(
                        (study / "runs").glob(f"*/{variant}/seed_{seed}/config.yaml").__next__().read_text()
                    )
                    model, data = config["model"], config["data"]
                    writer.writerow(
                        [
                            labels[study],
                            variant,
                            seed,
                            model.get("init_seed"),
                            data.get("seed"),
                            model["lr"],
                            final["loss"],
                            final.get("averaged", False),
                            final.get("loss_current", ""),
                        ]
                    )
    fields = ["study", "variant", "seeds", "mean", "sd", "delta", "s_d", "rho", "mdd5", "n_002", "se_eval"]
    with open(out / "noise.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(table)
    print(
        "| study | variant | seeds | mean ± SD | Δ vs swiglu | s_d | ρ | MDD at 5 seeds | seeds for MDD 0.02 | eval SE of Δ |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in table:
        tail = (
            f"{r['delta']:+.4f} | {r['s_d']:.4f} | {r['rho']:.2f} | {r['mdd5']:.4f} | {r['n_002']} | {r['se_eval']:.4f}"
            if "delta" in r
            else "— | — | — | — | — | —"
        )
        print(f"| {r['study']} | {r['variant']} | {r['seeds']} | {r['mean']:.4f} ± {r['sd']:.4f} | {tail} |")


if __name__ == "__main__":
    main(sys.argv[1:])
