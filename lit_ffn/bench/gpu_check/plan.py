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
    #: validation blocks the fits ask for; :func:`fit_data_blocks` lowers it to what the dataset holds
    fit_val_blocks: int
    #: largest |loss difference| (nats) between a resumed and the uninterrupted run that passes, for
    #: the steps AFTER the first resumed one (:func:`lit_ffn.bench.gpu_check.fits.compare`).  The first
    #: resumed step is always compared bit for bit: its loss is a forward pass of the restored weights
    #: on the same batch, and forward kernels (cuBLAS GEMMs, flash-attention forward, embedding
    #: gather) sum in a fixed order, and inductor's generated kernels with their autotuned configs
    #: come from one cache both runs share (``fits.launch``: ``TORCHINDUCTOR_CACHE_DIR``).
    #: 0 on CPU (bitwise, as tests/distributed/test_resume.py shows).
    #: On CUDA the backward of flash attention and of the embedding (index_add_) sums with atomics,
    #: so from the second resumed step on the two runs may drift by rounding: 1e-2 nats (0.1% of a
    #: ~10-nat loss) bounds that drift over ten bf16 steps with room, while a lost optimizer state or
    #: schedule moves the loss by far more; the report records every step's difference, so the first
    #: GPU run shows the real drift (tighten the tolerance from it).
    resume_tolerance: float
    #: per-block torch.compile for FSDP1 (``fit-fsdp``): off on GPU, as configs/strategy/fsdp.yaml
    #: ships it ("model.compile is untested with FSDP1"): the check verifies the config users run
    fit_compile_fsdp1: bool = False
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


def plan_mode(args: argparse.Namespace) -> str:
    """``"gpu"`` or ``"cpu"``: ``--cpu`` forces CPU, ``--gpu`` forces GPU (the preflight then fails
    where CUDA is missing, instead of a GPU machine quietly running the CPU mode), else CUDA decides."""
    if getattr(args, "cpu", False):
        return "cpu"
    if getattr(args, "gpu", False):
        return "gpu"
    return "gpu" if torch.cuda.is_available() else "cpu"


def make_plan(args: argparse.Namespace, vocab_size: int, mode: str | None = None) -> Plan:
    """The plan for ``args`` (:func:`plan_mode`, or ``mode`` if given) with the fits' dataset vocabulary."""
    if (mode or plan_mode(args)) == "gpu":
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
            resume_tolerance=1e-2,
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


def fit_data_blocks(plan: Plan, data_dir: Path) -> str:
    """Fit the plan's fits to the dataset at ``data_dir``: count its blocks of ``plan.seq_len + 1``
    tokens and lower ``plan.fit_val_blocks`` to what the validation split holds (a multiple of the
    fits' processes, so every rank validates on as many blocks); a one-line note of what it did.

    Raises :class:`~lit_ffn.errors.UserError` (one line, before any GPU time is spent) where the
    fits cannot run: fewer training blocks than one batch of every process, or no validation block.
    The counts come from the dataset itself (litdata's view of its chunks, as ``lit_ffn fit`` sees
    them), whatever tokenizer built it.
    """
    from lit_ffn.data.datamodule import TokenDataModule, ValBlocks
    from lit_ffn.errors import UserError

    data = TokenDataModule(str(data_dir), seq_len=plan.seq_len, batch_size=plan.fit_batch_size)
    train, val = data.num_blocks("train"), data.num_blocks("val")
    world = plan.fit_devices
    where = f"--data-dir {data_dir} holds {train} training and {val} validation blocks of {plan.seq_len + 1} tokens"
    if train < plan.fit_batch_size * world:
        raise UserError(
            f"{where}: the fits need {plan.fit_batch_size * world} training blocks (batch {plan.fit_batch_size} "
            f"× {world} processes): use a larger dataset"
        )
    blocks = min(plan.fit_val_blocks, val) // world * world
    if blocks < 1:
        raise UserError(f"{where}: the fits' {world} processes need at least {world} validation blocks")
    ValBlocks(data.location.split("val"), plan.seq_len + 1, blocks, plan.fit_batch_size, world_size=world)  # raises
    note = f"{where}; the fits validate on {blocks}"
    if blocks != plan.fit_val_blocks:
        note += f" (the plan asked for {plan.fit_val_blocks})"
    plan.fit_val_blocks = blocks
    return note


__all__ = [
    "PAPER_CONFIG",
    "REPO",
    "STRATEGY_CONFIGS",
    "TINY_MODEL",
    "Plan",
    "fit_data_blocks",
    "make_plan",
    "plan_mode",
    "write_shape_config",
]
