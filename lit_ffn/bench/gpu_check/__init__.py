"""``scripts/gpu_check.sh`` (``python -m lit_ffn.bench.gpu_check``): one command that proves lit_ffn on a GPU.

On a CUDA device it runs the paper shape (``configs/paper/qwen3_83m.yaml``, bf16-mixed, 16 × 2048);
without one (or with ``--cpu``) every item that does not need CUDA runs at a tiny shape, so the
command is tested in the suite between GPU runs (``tests/bench/test_gpu_check.py``).  Items, each
ending in one PASS / FAIL / SKIP line:

==============  ============================================================================
``sdpa``        which SDPA kernel runs the paper's GQA attention; the kv-expansion fallback
``throughput``  tokens/s, MFU, peak memory: eager vs compiled, and transformers' Qwen3
``loss``        the chunked loss vs plain ``F.cross_entropy``: peak memory, time, equality
``ffn``         DynamicGEGLU vs GEGLU step time
``gates``       gate statistics on vs off (every step, the default cadence)
``fit-ddp``     20-step fits resumed once from a mid-run checkpoint, under DDP, FSDP2 and
``fit-fsdp2``   FSDP1 (``fit-fsdp``, CUDA only), with activation checkpointing and compile
``fit-fsdp``
==============  ============================================================================

Modules: ``plan.py`` (the shape and settings of a mode), ``items.py`` (results, the runner that
turns any exception into FAIL), ``environment.py`` (device, driver, versions, commit),
one module per item (``sdpa.py``, ``throughput.py``, ``loss_cost.py``, ``gate_cost.py``,
``fits.py`` with ``recorder.py``), ``report.py`` (Markdown) and ``cli.py``.
"""

from lit_ffn.bench.gpu_check.cli import main

__all__ = ["main"]
