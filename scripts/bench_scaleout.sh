#!/usr/bin/env bash
# Throughput of the paper-sized model on ONE GPU under ddp and fsdp2 (bf16-mixed),
# with and without per-block torch.compile and activation checkpointing.
# Prints one table row per configuration: tokens/s, MFU and peak memory, read from
# the TensorBoard events of lit_ffn.callbacks.TokenThroughputMonitor (in the paper config).
#
#   scripts/bench_scaleout.sh                      # 8 runs of STEPS optimizer steps each
#   STEPS=40 BATCH=16 scripts/bench_scaleout.sh    # defaults
#
# Data: the offline quickstart corpus (built on first use); tokens/s does not depend on the text.
# Each optimizer step is one micro-batch of BATCH × 2048 tokens (accumulate_grad_batches=1).
# Extra lit_ffn arguments go after the script name.  MFU needs the GPU's peak FLOP/s:
# Lightning's table knows the H100; for an H200 set available_flops of
# TokenThroughputMonitor in configs/paper/qwen3_83m.yaml (989.4e12, bf16 dense).
set -euo pipefail

STEPS="${STEPS:-40}"
BATCH="${BATCH:-16}"
OUT="${OUT:-runs}"
PYTHON="${PYTHON:-python}"
EXPERIMENT="bench_scaleout"

for strategy in ddp fsdp2; do
  for compile in false true; do
    for ac in false true; do
      version="${strategy}-compile_${compile}-ac_${ac}"
      "${PYTHON}" -m lit_ffn.cli fit \
        --config configs/paper/qwen3_83m.yaml --config "configs/strategy/${strategy}.yaml" \
        --trainer.devices=1 --trainer.max_steps="${STEPS}" --global_batch_size=null --trainer.accumulate_grad_batches=1 \
        --trainer.limit_val_batches=0 --trainer.num_sanity_val_steps=0 --trainer.log_every_n_steps=5 \
        --trainer.enable_progress_bar=false \
        --trainer.logger.init_args.save_dir="${OUT}" --trainer.logger.init_args.name="${EXPERIMENT}" \
        --trainer.logger.init_args.version="${version}" \
        --checkpoint.every_n_train_steps=100000 \
        --model.compile="${compile}" --model.activation_checkpointing="${ac}" \
        --data.data_dir=data/quickstart --data.quickstart=true --data.batch_size="${BATCH}" \
        "$@"
    done
  done
done

"${PYTHON}" - "${OUT}/${EXPERIMENT}" <<'PY'
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

print("| strategy, compile, AC | tokens/s | MFU | peak memory (GiB) |")
print("|---|---|---|---|")
for run in sorted(p for p in Path(sys.argv[1]).iterdir() if p.is_dir()):
    events = EventAccumulator(str(run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    last = lambda tag: f"{events.Scalars(tag)[-1].value:.4g}" if tag in tags else "n/a"
    print(f"| {run.name} | {last('vitals/tokens_per_sec')} | {last('vitals/mfu')} | {last('vitals/device/peak_memory_gib')} |")
PY
