#!/usr/bin/env bash
# Issue 31 part 2: where the seed noise comes from, at two CPU rungs. For each rung, the same 5 seeds under
# three conditions: both streams vary (--seeds, the default), data order only (model.init_seed held at 0),
# init only (data.seed held at 0). Variants: swiglu (baseline), geglu (same shapes: only the activation differs),
# relu (2-matrix FFN at its matched width), and the small-effect control (SwiGLU at 3/4 width).
# Each rung at one lr (given as RUNG:LR), cosine to 0.1 x lr, no averaging: the levers are measured separately
# (run_levers.sh). Usage: [VARIANTS='swiglu geglu'] run_noise.sh OUT RUNG:LR [RUNG:LR ...]   (rerun to resume: lit_ffn ablate skips finished runs)
set -euo pipefail
OUT=${1:?usage: run_noise.sh OUT RUNG:LR ...}; shift
cd "$(dirname "$0")/../../.."
V=(${VARIANTS:-swiglu geglu relu configs/controls/swiglu_three_quarter.yaml})
for arg in "$@"; do
  rung=${arg%%:*} lr=${arg#*:}
  for cond in both data_only init_only; do
    case $cond in
      both) extra=() ;;
      data_only) extra=(--model.init_seed=0) ;;
      init_only) extra=(--data.seed=0) ;;
    esac
    t0=$(date +%s)
    lit_ffn ablate --config configs/quickstart.yaml --config configs/ladder/cpu/$rung.yaml --ffn "${V[@]}" \
      --seeds 0 1 2 3 4 --out "$OUT/$rung/$cond" --experiment "${rung}_$cond" --workers 2 --clean-checkpoints \
      --model.lr="$lr" "${extra[@]}" > "$OUT/$rung.$cond.log" 2>&1
    echo "$rung lr $lr $cond wall $(( $(date +%s) - t0 )) s  (load $(cut -d' ' -f1-3 /proc/loadavg))"
  done
done
