#!/usr/bin/env bash
# Study B (issue 23 part 6): the CPU ladder (4 rungs) for swiglu, dynamic_geglu and the positive control,
# each at the lr study A chose for it (variant YAMLs in docs/results/cpu_ffn_study/variants/), 3 seeds.
# Two worker loops (one torch thread each) share the pairs: worker W runs pairs W, W+2, W+4, ...
set -uo pipefail
cd /work/wt/study
. /work/main/.venv/bin/activate
export PYTHONPATH=/work/wt/study OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
V=docs/results/cpu_ffn_study/variants
ARGS=(--config configs/quickstart.yaml --ffn $V/swiglu.yaml $V/dynamic_geglu.yaml $V/swiglu_quarter.yaml
      --ladder configs/ladder/cpu/d032l1.yaml configs/ladder/cpu/d048l2.yaml configs/ladder/cpu/d064l2.yaml configs/ladder/cpu/d064l3.yaml
      --seeds 0 1 2 --out /work/study/ladder --experiment ladder)
date -u +"start %FT%TZ"; uptime
N=36  # 3 variants x 3 seeds x 4 rungs (study.pairs(): per rung, seed-major, then variant)
echo "pairs: $N"
worker() { for ((i=$1; i<N; i+=2)); do python -m lit_ffn.cli ablate "${ARGS[@]}" --task $i || echo "task $i failed"; done; }
worker 0 > /work/study/run_B.w0.log 2>&1 &
worker 1 > /work/study/run_B.w1.log 2>&1 &
wait
python -m lit_ffn.cli ablate "${ARGS[@]}"   # every pair done: skips them all and writes the report
echo "exit $?"; date -u +"end %FT%TZ"; uptime
