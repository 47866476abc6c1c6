#!/usr/bin/env bash
# Issue 31 part 5: the resolution study, on 2 CPU cores with `lit_ffn ablate --workers 2`.
# Design (declared before the runs; docs/results/cpu_resolution_study.md says why each choice):
#   rung/steps           d032l1 at its 92 steps (docs/results/cpu_noise.md: neither 4x the steps, EMA, WSD nor a
#                        wider init made the seed noise smaller; the cheapest rung buys the most seeds)
#   variants             swiglu (baseline), geglu, relu, dynamic_geglu: one Holm family of 3 comparisons;
#                        controls: swiglu_quarter (large effect), swiglu_three_quarter (small effect), each on its own
#   lr                   tuned per variant over 3e-3 … 2.4e-2 on tuning seeds 100 101 102, rule quiet (the quieter
#                        of the two lowest means when the runner-up is within noise)
#   confirmation         fresh seeds 1000 … 1000+N-1: N = 30, what 2 CPU-hours allow (the planner, on the noise
#                        study's lr-3e-3 pilot, asks 6 for geglu, 4 for the 3/4 control, 109 for relu: plan.json)
#   primary test         paired t-test over the confirmation seeds, Holm at 0.05
# Usage: run_study.sh OUT N   (rerun to resume: finished runs are kept)
set -euo pipefail
OUT=${1:?usage: run_study.sh OUT N}; N=${2:?usage: run_study.sh OUT N}
cd "$(dirname "$0")/../../.."
SEEDS=$(seq 1000 $((1000 + N - 1)))
t0=$(date +%s); date -u +"start %FT%TZ"; cut -d' ' -f1-3 /proc/loadavg; git log --oneline -1
lit_ffn ablate --config configs/quickstart.yaml --config configs/ladder/cpu/d032l1.yaml \
  --ffn swiglu geglu relu dynamic_geglu configs/controls/swiglu_quarter.yaml configs/controls/swiglu_three_quarter.yaml \
  --control swiglu_quarter swiglu_three_quarter --primary-test paired-t \
  --tune model.lr=3e-3,6e-3,1.2e-2,2.4e-2 --tune-seeds 100 101 102 --tune-rule quiet --seeds $SEEDS \
  --out "$OUT" --experiment resolution --workers 2 --clean-checkpoints > "$OUT.log" 2>&1
echo "wall $(( $(date +%s) - t0 )) s"; date -u +"end %FT%TZ"; cut -d' ' -f1-3 /proc/loadavg
