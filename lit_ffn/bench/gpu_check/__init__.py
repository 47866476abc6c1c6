"""``scripts/gpu_check.sh`` (``python -m lit_ffn.bench.gpu_check``): one command that proves lit_ffn on a GPU.

On a CUDA device it runs the paper shape (``configs/paper/qwen3_83m.yaml``, bf16-mixed, 16 × 2048);
without one (or with ``--cpu``) every item that does not need CUDA runs at a tiny shape, so the
command is tested in the suite between GPU runs (``tests/bench/test_gpu_check.py``).  Items, each
ending in one PASS / FAIL / SKIP line:

==============  ============================================================================
``preflight``   driver, GPU name, C compiler, ``Python.h``, imports, disk: seconds, always first;
                where something required is missing nothing else runs (one line, exit 1)
``sdpa``        which SDPA kernel runs the paper's GQA attention; the kv-expansion fallback
``loss``        the loss backends (chunked, cce, liger) vs plain ``F.cross_entropy``: peak memory,
                time, equality
``throughput``  tokens/s, MFU, peak memory: eager vs compiled (once per loss backend: which one
                ``model.loss_impl: auto`` should pick), and transformers' Qwen3
``fit-ddp``     20-step fits resumed once from a mid-run checkpoint, under DDP, FSDP2 and
``fit-fsdp2``   FSDP1 (``fit-fsdp``, CUDA only, without compile as its config ships), with
``fit-fsdp``    activation checkpointing and compile
``ffn``         DynamicGEGLU vs GEGLU step time
``gates``       gate statistics on vs off (every step, the default cadence)
==============  ============================================================================

Cheap, decisive items first; each item's time share is its deadline less the later items'
estimates (``cli.item_deadline``).  ``--out-dir`` holds everything a remote run must bring back in
three files (report, JSON, the fits' log tails).  Packages a GPU machine lacks travel as the wheels
of ``scripts/gpu_check_wheels.txt``; ``scripts/gpu_check_rehearse.sh`` rehearses the run in the
device image's packages on a CPU.

Modules: ``plan.py`` (the shape and settings of a mode, fitted to the dataset), ``items.py``
(results, the runner that turns any exception into FAIL), ``preflight.py``, ``environment.py``
(device, driver, versions, commit), one module per item (``sdpa.py``, ``throughput.py``,
``loss_cost.py``, ``gate_cost.py``, ``fits.py`` with ``recorder.py``), ``report.py`` (Markdown)
and ``cli.py``.
"""

from lit_ffn.bench.gpu_check.cli import main

__all__ = ["main"]
