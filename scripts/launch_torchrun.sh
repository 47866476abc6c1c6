#!/usr/bin/env bash
# Launch `lit_ffn fit` on one or more nodes with torchrun (PyTorch's launcher).
# Lightning recognises torchrun's environment (TorchElasticEnvironment) and
# takes ranks and world size from it; this script only passes the matching
# --trainer.devices / --trainer.num_nodes (Lightning checks that they agree).
#
# One node, all its GPUs:
#   scripts/launch_torchrun.sh fit --config configs/paper/<…>.yaml --config configs/strategy/fsdp2.yaml
#
# Two nodes, 8 GPUs each — run on every node, NODE_RANK=0 on the one named by MASTER_ADDR:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node-a scripts/launch_torchrun.sh fit --config … --config configs/strategy/fsdp2.yaml
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node-a scripts/launch_torchrun.sh fit --config … --config configs/strategy/fsdp2.yaml
#
# Resume a run (same NNODES × NPROC_PER_NODE as before):
#   scripts/launch_torchrun.sh fit --config runs/<exp>/<ffn>/seed_<s>/config.yaml --ckpt_path last
#
# Environment (defaults): NNODES (1), NPROC_PER_NODE (number of GPUs, or 1 without nvidia-smi),
# NODE_RANK (0), MASTER_ADDR (127.0.0.1), MASTER_PORT (29500), PYTHON (python).
# On CPU (tests): NPROC_PER_NODE=2 scripts/launch_torchrun.sh fit … --trainer.accelerator=cpu --trainer.precision=32-true
set -euo pipefail

if [[ $# -lt 1 ]]; then
    sed -n '2,22p' "$0" >&2
    exit 2
fi

NNODES="${NNODES:-1}"
if [[ -z "${NPROC_PER_NODE:-}" ]]; then
    NPROC_PER_NODE="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
    [[ "${NPROC_PER_NODE}" -ge 1 ]] || NPROC_PER_NODE=1
fi
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
PYTHON="${PYTHON:-python}"

# 1 OpenMP thread per process unless told otherwise (torchrun's own default with several processes).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

exec "${PYTHON}" -m torch.distributed.run \
    --nnodes="${NNODES}" \
    --nproc-per-node="${NPROC_PER_NODE}" \
    --node-rank="${NODE_RANK}" \
    --master-addr="${MASTER_ADDR}" \
    --master-port="${MASTER_PORT}" \
    -m lit_ffn.cli "$@" \
    --trainer.num_nodes="${NNODES}" \
    --trainer.devices="${NPROC_PER_NODE}"
