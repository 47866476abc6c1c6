"""Where a check ran: device, driver, library versions, commit, command, and the device's measured matmul rate."""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from typing import Any

import torch

from lit_ffn.bench.report import device_description
from lit_ffn.flops import datasheet_peak, measured_matmul_flops
from lit_ffn.provenance import git_state, package_versions, short_commit

#: Libraries whose versions the report lists.
PACKAGES = (
    "torch",
    "lightning",
    "litdata",
    "transformers",
    "jsonargparse",
    "torchmetrics",
    "triton",
    "numpy",
    "cut-cross-entropy",  # model.loss_impl=cce (the loss item)
    "liger-kernel",  # model.loss_impl=liger
)

#: Side of the square matmul timed for the device's practical peak (GPU: big enough to saturate a Hopper).
MATMUL_SIZE = {"cuda": 8192, "cpu": 2048}


def nvidia_smi() -> str | None:
    """``name, driver, memory`` of GPU 0 from ``nvidia-smi`` (None where it is missing or fails)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    query = ["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        done = subprocess.run([exe, *query], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None
    return line


def describe(device: torch.device, command: list[str]) -> dict[str, Any]:
    """The facts the report's header shows (plain strings and numbers)."""
    facts: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_description(device),
        "host": f"{platform.node()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}",
        "versions": package_versions(PACKAGES),
        "commit": short_commit(git_state()),
        "command": " ".join([command[0], shlex.join(command[1:])]).strip(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        try:
            facts.update(cuda_facts(device))
        except Exception as err:  # noqa: BLE001 - a missing fact must not stop the check
            facts["driver"] = f"not read ({type(err).__name__}: {err})"
    return facts


def cuda_facts(device: torch.device) -> dict[str, Any]:
    """Name, memory, capability, driver, CUDA/cuDNN versions and the datasheet bf16 peak of a GPU."""
    props = torch.cuda.get_device_properties(device)
    peak, source = datasheet_peak(device, torch.bfloat16)
    return {
        "device": (
            f"{props.name}, {props.total_memory / 2**30:.1f} GiB, compute capability {props.major}.{props.minor}, "
            f"{props.multi_processor_count} SMs"
        ),
        "driver": nvidia_smi() or "nvidia-smi not available",
        "cuda": f"torch built with CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
        "datasheet_peak": f"{peak / 1e12:.1f} TFLOP/s ({source})" if peak else source,
    }


def matmul_rate(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of the best of three ``n³`` matmuls in ``dtype`` (n = :data:`MATMUL_SIZE`), timed now."""
    return measured_matmul_flops(device, dtype, size=MATMUL_SIZE.get(device.type, 2048))


def command_line(argv: list[str]) -> list[str]:
    """The command with ``argv`` (its first element the program, unquoted): ``scripts/gpu_check.sh …``
    when the script started it (it sets ``LIT_FFN_GPU_CHECK_SCRIPT``), else ``python -m lit_ffn.bench.gpu_check …``."""
    script = os.environ.get("LIT_FFN_GPU_CHECK_SCRIPT")
    return [script or f"{os.path.basename(sys.executable)} -m lit_ffn.bench.gpu_check", *argv]


__all__ = ["MATMUL_SIZE", "PACKAGES", "command_line", "cuda_facts", "describe", "matmul_rate", "nvidia_smi"]
