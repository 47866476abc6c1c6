#!/usr/bin/env bash
# SUPERSEDED by `lit_ffn ablate … --workers 2` (docs/experiments.md, section 3): kept only as the record of
# how the runs of docs/results/cpu_ffn_study.md were made. Do not use it for new studies.
# Issue 23 part 6, second attempt: the CPU study on the rebuilt ladder (configs/ladder/cpu/, 1,024-token BPE).
# Study A: lr tuned per variant at rung d048l2 (grid 1.5e-3 ... 2.4e-2; tuning seeds 100 101), confirmed on
#          seeds 0-4 at each variant's chosen lr.
# Study B: the 4-rung ladder for swiglu, dynamic_geglu and the positive control at the lr study A chose.
# Two worker loops, one torch thread each; a task queue shared through flock.
set -uo pipefail
REPO=/work/wt/study2
cd $REPO
. /work/main/.venv/bin/activate
export PYTHONPATH=$REPO OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 REPO
S=/work/study2
A=(--config configs/quickstart.yaml --config configs/ladder/cpu/d048l2.yaml
   --ffn swiglu geglu relu dynamic_geglu configs/controls/swiglu_quarter.yaml
   --tune model.lr=1.5e-3,3e-3,6e-3,1.2e-2,2.4e-2 --tune-seeds 100 101 --seeds 0 1 2 3 4 --out $S/tuned --experiment tuned)
V=$S/variants
B=(--config configs/quickstart.yaml --ffn $V/swiglu.yaml $V/dynamic_geglu.yaml $V/swiglu_quarter.yaml
   --ladder configs/ladder/cpu/d032l1.yaml configs/ladder/cpu/d048l2.yaml configs/ladder/cpu/d064l2.yaml configs/ladder/cpu/d064l3.yaml
   --seeds 0 1 2 --out $S/ladder --experiment ladder)
Q=$S/queue
pop() { flock $Q.lock sh -c "head -n 1 $Q; sed -i 1d $Q"; }
worker() {
  while true; do
    t=$(pop); [ -z "$t" ] && break
    set -- $t
    if [ "$1" = A ]; then python -m lit_ffn.cli ablate "${A[@]}" --task $2 || echo "A task $2 failed";
    else python -m lit_ffn.cli ablate "${B[@]}" --task $2 || echo "B task $2 failed"; fi
  done
}
date -u +"start (restart) %FT%TZ"; uptime; git -C $REPO log --oneline -1
# phase 1: the 50 tuning runs (5 variants x 5 lr x 2 seeds). The grid was first 1.5e-3,3e-3,6e-3: every
# variant chose 6e-3 (edge), so study.json's grid was extended by 1.2e-2 and 2.4e-2 by hand (the 30 runs
# done are the same runs under either grid; the confirmation runs started at 6e-3 were set aside).
seq 0 49 | sed 's/^/A /' > $Q
worker > $S/w0.log 2>&1 & worker > $S/w1.log 2>&1 & wait
date -u +"tuning done %FT%TZ"; uptime
VARIANTS_OUT=$V python $S/make_variants.py $S/tuned swiglu dynamic_geglu swiglu_quarter || exit 1
# phase 2: the ladder (36 runs, largest rung first) and the 25 confirmation runs
{ seq 35 -1 0 | sed 's/^/B /'; seq 50 74 | sed 's/^/A /'; } > $Q
worker >> $S/w0.log 2>&1 & worker >> $S/w1.log 2>&1 & wait
date -u +"runs done %FT%TZ"; uptime
python -m lit_ffn.cli ablate "${A[@]}"; echo "A exit $?"
python -m lit_ffn.cli ablate "${B[@]}"; echo "B exit $?"
date -u +"end %FT%TZ"; uptime
