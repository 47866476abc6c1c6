#!/usr/bin/env bash
# Study A (issue 23 part 6): lr tuned per variant at rung d048l2 (2 tuning seeds), confirmed on 3 fresh seeds.
# Grid: first 5e-3,1e-2,2e-2; after tuning seed 100 put 4 of 5 variants at the lowest value (edge flag), study.json was changed to 2.5e-3,5e-3,1e-2 and the 2e-2 runs moved aside (dropped/); runs at 5e-3 and 1e-2 are the same runs either way.
set -uo pipefail
cd /work/wt/study
. /work/main/.venv/bin/activate
export PYTHONPATH=/work/wt/study
# one torch thread per run: on this shared 2-core machine two OpenMP threads spin against other jobs (a d048l2 run took 24 s alone and 158-205 s beside a test suite)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
date -u +"start %FT%TZ"; uptime
python -m lit_ffn.cli ablate --config configs/quickstart.yaml --config configs/ladder/cpu/d048l2.yaml \
  --ffn swiglu geglu relu dynamic_geglu configs/controls/swiglu_quarter.yaml \
  --tune model.lr=2.5e-3,5e-3,1e-2 --tune-seeds 100 101 --seeds 0 1 2 \
  --out /work/study/tuned --experiment tuned
echo "exit $?"; date -u +"end %FT%TZ"; uptime
