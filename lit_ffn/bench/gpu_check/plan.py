"""What one ``gpu_check`` run measures, and at which shape: the paper shape on CUDA, a tiny one on CPU.

Both modes build their models from ``configs/paper/qwen3_83m.yaml`` plus one generated config
(:func:`write_shape_config`) holding what the mode changes, so the CPU mode exercises the same
config composition, parser and code paths as the GPU run:

* **gpu**: the paper model as configured (dim 384, 14 layers, 8/4 heads × 64, Qwen3 vocabulary,
  bf16-mixed), micro-batch 16 × 2048;
* **cpu**: the same structure (tied head, GQA 2:1, SwiGLU) at width 64 and 2 layers, fp32, 4 × 64
  tokens, the vocabulary of the dataset used for the fits.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[3]
PAPER_CONFIG = REPO / "configs" / "paper" / "qwen3_83m.yaml"
STRATEGY_CONFIGS = {name: REPO / "configs" / "strategy" / f"{name}.yaml" for name in ("ddp", "fsdp2", "fsdp")}

#: The CPU mode's model: the paper config's structure at a size a 2-core CPU trains in milliseconds.
TINY_MODEL = {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 16}


@dataclass
class Plan:
    """The shape and the step counts of every item in one mode."""

    mode: str  # "gpu" (CUDA, paper shape) or "cpu" (tiny shape)
    device: torch.device
    precision: str
    vocab_size: int
    model: dict[str, Any]  # model.* overrides of the paper config
    batch_size: int  # micro-batch of the timing items
    seq_len: int
    bench_steps: int
    bench_warmup: int
    loss_chunk_size: int
    gate_steps: int
    gate_warmup: int
    gate_repeats: int
    fit_steps: int
    resume_step: int
    fit_batch_size: int
    fit_devices: int
    fit_compile: bool
    fit_workers: int
    fit_val_blocks: int
    #: largest |loss difference| (nats) between a resumed and the uninterrupted run that passes:
    #: 0 on CPU (bitwise, as tests/distributed/test_resume.py shows); on CUDA some kernels
    #: (flash-attention backward, index_add_) sum with atomics, so later steps may differ slightly
    resume_tolerance: float
    #: torch threads of the in-process items (None: leave torch's default).  The tiny CPU shape runs
    #: best on one: on a shared 2-core machine two threads made its steps several times slower.
    torch_threads: int | None = None

    @property
    def autocast(self) -> bool:
        return self.precision == "bf16-mixed"

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision.startswith("bf16") else torch.float32

    def describe(self) -> str:
        shape = ", ".join(f"{k} {v}" for k, v in self.model.items()) or "configs/paper/qwen3_83m.yaml as it is"
        return (
            f"{self.mode.upper()} mode: {shape}; vocabulary {self.vocab_size:,}; {self.precision}; "
            f"micro-batch {self.batch_size} × {self.seq_len} tokens"
            + (f"; {self.torch_threads} torch thread(s)" if self.torch_threads else "")
        )


def make_plan(args: argparse.Namespace, vocab_size: int) -> Plan:
    """The plan for ``args`` (``--cpu``, or no CUDA: the CPU plan) with the fits' dataset vocabulary."""
    gpu = torch.cuda.is_available() and not args.cpu
    if gpu:
        plan = Plan(
            mode="gpu",
            device=torch.device("cuda"),
            precision="bf16-mixed",
            vocab_size=151_936,
            model={},
            batch_size=16,
            seq_len=2048,
            bench_steps=10,
            bench_warmup=3,
            loss_chunk_size=1024,
            gate_steps=50,  # the window holds one step of the default cadence (step 50)
            gate_warmup=3,
            gate_repeats=1,
            fit_steps=20,
            resume_step=10,
            fit_batch_size=4,
            fit_devices=1,
            fit_compile=True,
            fit_workers=2,
            fit_val_blocks=16,
            resume_tolerance=2e-3,
        )
    else:
        plan = Plan(
            mode="cpu",
            device=torch.device("cpu"),
            precision="32-true",
            vocab_size=vocab_size,
            model=dict(TINY_MODEL),
            batch_size=4,
            seq_len=64,
            bench_steps=3,
            bench_warmup=1,
            loss_chunk_size=64,  # several chunks per micro-batch, as at the paper shape
            gate_steps=3,
            gate_warmup=1,
            gate_repeats=1,
            fit_steps=20,
            resume_step=10,
            fit_batch_size=4,
            fit_devices=2,
            fit_compile=False,
            fit_workers=0,
            fit_val_blocks=8,
            resume_tolerance=0.0,
            torch_threads=1,
        )
    for key in ("fit_steps", "resume_step", "fit_devices"):
        value = getattr(args, key, None)
        if value is not None:
            setattr(plan, key, value)
    if getattr(args, "fit_compile", None) is not None:
        plan.fit_compile = args.fit_compile
    return plan


def write_shape_config(plan: Plan, path: Path, sdpa_gqa: str = "native") -> Path:
    """The config composed after the paper config: the mode's model shape, precision and device."""
    model = {**plan.model, "vocab_size": plan.vocab_size, "sdpa_gqa": sdpa_gqa, "loss_chunk_size": plan.loss_chunk_size}
    config = {
        "trainer": {"accelerator": "gpu" if plan.mode == "gpu" else "cpu", "precision": plan.precision},
        "model": model,
        "data": {"seq_len": plan.seq_len, "batch_size": plan.batch_size},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# written by lit_ffn.bench.gpu_check: the {plan.mode.upper()} mode's changes to the paper config\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    return path


__all__ = ["PAPER_CONFIG", "REPO", "STRATEGY_CONFIGS", "TINY_MODEL", "Plan", "make_plan", "write_shape_config"]
