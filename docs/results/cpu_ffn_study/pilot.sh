#!/usr/bin/env bash
# pilot: noise of the final loss at d048l2, 600 steps, lr 3e-3, vocab 4096 vs 1024
set -uo pipefail
cd /work/wt/study2
. /work/main/.venv/bin/activate
export PYTHONPATH=/work/wt/study2 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
COMMON=(--config configs/quickstart.yaml --config configs/ladder/cpu/d048l2.yaml --ffn swiglu configs/controls/swiglu_quarter.yaml
  --seeds 0 1 2 --trainer.max_steps=600 --trainer.val_check_interval=600 --checkpoint.every_n_train_steps=600 --model.warmup_steps=30 --model.lr=3e-3)
( date -u; time python -m lit_ffn.cli ablate "${COMMON[@]}" --out /work/study2/pilot_v4096 --experiment p ) > /work/study2/pilot_v4096.log 2>&1 &
( date -u; time python -m lit_ffn.cli ablate "${COMMON[@]}" --model.vocab_size=1024 --data.data_dir=data/quickstart-bpe1024 --out /work/study2/pilot_v1024 --experiment p ) > /work/study2/pilot_v1024.log 2>&1 &
wait
