"""Write the ladder study's variant YAMLs (variants/<name>.yaml): each FFN config plus the lr that the
tuned study (study A) chose for it, by the rule of lit_ffn.experiments.tuning (lowest mean final
validation loss over the tuning seeds; a diverged run counts as +inf; ties go to the first grid point).

    python docs/results/cpu_ffn_study/make_variants.py /work/study/tuned swiglu dynamic_geglu swiglu_quarter
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def chosen_lr(study_dir: Path, variant: str) -> str:
    study = json.loads((study_dir / "study.json").read_text())
    best, best_mean = None, math.inf
    for value in study["tune"]["model.lr"]:
        losses = []
        for seed in study["tune_seeds"]:
            done = study_dir / "runs" / study["experiment"] / "tune" / f"model.lr={value}" / variant / f"seed_{seed}" / "DONE"
            record = json.loads(done.read_text())  # every tuning run must be done
            losses.append(math.inf if record.get("diverged") else record["final_val_loss"])
        mean = sum(losses) / len(losses)
        if mean < best_mean:
            best, best_mean = value, mean
    return best


def main(study_dir: str, *variants: str) -> None:
    study = json.loads((Path(study_dir) / "study.json").read_text())
    out = Path(os.environ.get("VARIANTS_OUT", HERE / "variants"))
    out.mkdir(exist_ok=True)
    for variant in variants:
        lr = chosen_lr(Path(study_dir), variant)
        repo = Path(os.environ["REPO"]) if "REPO" in os.environ else HERE.parents[2]
        config = yaml.safe_load((repo / study["variants"][variant]).read_text())
        config.setdefault("model", {})["lr"] = float(lr)
        text = f"# {variant} at the lr study A chose for it (model.lr={lr}; tuning.md)\n" + yaml.safe_dump(config)
        (out / f"{variant}.yaml").write_text(text)
        print(variant, lr)


if __name__ == "__main__":
    main(*sys.argv[1:])
