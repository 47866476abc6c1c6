#!/usr/bin/env bash
# Issue 31 part 5: the resolution study, on 2 CPU cores with `lit_ffn ablate --workers 2`.
# Design (declared before the runs; docs/results/cpu_resolution_study.md says why each choice):
#   rung/steps/init      $PROTOCOL (the configs below), chosen by docs/results/cpu_noise.md
#   variants             swiglu (baseline), geglu, relu, dynamic_geglu: one Holm family of 3 comparisons;
#                        controls: swiglu_quarter (large effect), swiglu_three_quarter (small effect), each on its own
#   lr                   tuned per variant over $GRID on tuning seeds 100 101 102 with the default rule (mean)
#   confirmation         fresh seeds 1000 … 1000+N-1 (N from the planner on the noise study's pilot)
#   primary test         paired t-test over the confirmation seeds, Holm at 0.05
# Usage: run_study.sh OUT N   (rerun to resume: finished runs are kept)
set -euo pipefail
OUT=${1:?usage: run_study.sh OUT N}; N=${2:?usage: run_study.sh OUT N}
cd "$(dirname "$0")/../../.."
SEEDS=$(seq 1000 $((1000 + N - 1)))
t0=$(date +%s); date -u +"start %FT%TZ"; cut -d' ' -f1-3 /proc/loadavg; git log --oneline -1
lit_ffn ablate --config configs/quickstart.yaml --config configs/ladder/cpu/d032l1.yaml ${PROTOCOL_ARGS:-} \
  --ffn swiglu geglu relu dynamic_geglu configs/controls/swiglu_quarter.yaml configs/controls/swiglu_three_quarter.yaml \
  --control swiglu_quarter swiglu_three_quarter --primary-test paired-t \
  --tune "model.lr=${GRID:-3e-3,6e-3,1.2e-2}" --tune-seeds 100 101 102 --seeds $SEEDS \
  --out "$OUT" --experiment resolution --workers 2 --clean-checkpoints > "$OUT.log" 2>&1
echo "wall $(( $(date +%s) - t0 )) s"; date -u +"end %FT%TZ"; cut -d' ' -f1-3 /proc/loadavg
