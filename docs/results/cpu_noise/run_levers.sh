#!/usr/bin/env bash
# Issue 31 part 3: what each lever does to the paired SD, at rung d032l1, on the seeds and variants of
# run_noise.sh's "both" condition (seeds 0-4, both streams vary), one change at a time against it:
#   steps2x   twice the steps (184), same schedule shape (warm-up 10, cosine to 0.1 x lr)
#   steps4x   four times the steps (368, warm-up 19)
#   init      initial weights at the paper model's std relative to width: model.init_std = 0.02 x sqrt(1024/32)
#             = 0.113 instead of 0.02 (Qwen3's initializer_range, set for widths near 1,024)
#   ema       Lightning's EMAWeightAveraging for the final evaluation, decay 0.95 (≈ the last 20 steps)
#   wsd       warm-up/stable/decay: peak lr until the last 20% of the steps, then 1-sqrt to the floor
# Usage: [LEVERS='steps4x ema'] run_levers.sh OUT LR   (LR: the lr of run_noise.sh's runs; rerun to resume)
set -euo pipefail
OUT=${1:?usage: run_levers.sh OUT LR}; LR=${2:?usage: run_levers.sh OUT LR}
cd "$(dirname "$0")/../../.."
V=(swiglu geglu relu configs/controls/swiglu_three_quarter.yaml)
for lever in ${LEVERS:-steps4x ema wsd steps2x}; do
  case $lever in
    steps2x) extra=(--trainer.max_steps=184 --trainer.val_check_interval=184 --checkpoint.every_n_train_steps=184 --model.warmup_steps=10) ;;
    steps4x) extra=(--trainer.max_steps=368 --trainer.val_check_interval=368 --checkpoint.every_n_train_steps=368 --model.warmup_steps=19) ;;
    init) extra=(--model.init_std=0.113) ;;
    ema) extra=(--config configs/averaging/ema.yaml --averaging.init_args.decay=0.95) ;;
    wsd) extra=(--model.schedule=wsd --model.decay_fraction=0.2) ;;
  esac
  t0=$(date +%s)
  lit_ffn ablate --config configs/quickstart.yaml --config configs/ladder/cpu/d032l1.yaml --ffn "${V[@]}" \
    --seeds 0 1 2 3 4 --out "$OUT/d032l1/$lever" --experiment "d032l1_$lever" --workers 2 --clean-checkpoints \
    --model.lr="$LR" "${extra[@]}" > "$OUT/d032l1.$lever.log" 2>&1
  echo "d032l1 $lever wall $(( $(date +%s) - t0 )) s  (load $(cut -d' ' -f1-3 /proc/loadavg))"
done
