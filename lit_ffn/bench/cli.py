"""``lit_ffn bench``: training throughput of lit_ffn (and of transformers' Qwen3, litgpt's GPT) on this device.

::

    lit_ffn bench --config configs/quickstart.yaml                         # the config's FFN
    lit_ffn bench --config configs/quickstart.yaml --ffn swiglu geglu dynamic_geglu
    lit_ffn bench --config configs/quickstart.yaml --compare-hf --json bench.json --markdown bench.md
    lit_ffn bench --config configs/quickstart.yaml --compare-hf --compare-litgpt --profile
    lit_ffn bench --config configs/quickstart.yaml --loss-chunk-size 4096 1024 0   # one model per value
    lit_ffn bench --config configs/paper/qwen3_83m.yaml --device cuda --loss-impl chunked cce liger
    lit_ffn bench --config configs/paper/qwen3_83m.yaml --device cuda --compile --compare-hf

What is timed: one training step = forward (loss included: lit_ffn's
``model.loss_impl`` — chunked cross-entropy by default, ``--loss-impl`` one model per
backend, :mod:`lit_ffn.loss_backends` —, transformers' ``labels=`` loss) + backward + gradient clipping
(when the config sets ``trainer.gradient_clip_val``) + AdamW step +
``zero_grad``, on random tokens of the model's vocabulary (no dataset needed),
with the device synchronised before and after each step.  ``--warmup`` steps
per model are run first (optimizer state, compilation, allocator warm-up) and
not timed; then the models' timed steps are **interleaved** round-robin, so
that every model sees the same machine load (a shared CPU, a GPU's clocks).
The optimizer is the one ``lit_ffn fit`` builds (``LitDecoder.configure_optimizers``:
fused AdamW on CPU and CUDA); ``--compile`` applies what ``configure_model()``
applies without FSDP2 (:func:`lit_ffn.distributed.parallelize`: per-block
``torch.compile``), and compiles transformers' decoder layers the same way.

Reported per model: step time (median, min, max, quartiles), the process CPU
time per step (all threads; on a shared CPU less load-sensitive than wall
time), tokens/s (B·T / median step time), MFU and peak memory; a model that
runs out of GPU memory in its warm-up is reported as ``out of memory`` (so a
loop over ``--batch-size`` finds the largest micro-batch that fits).

* MFU = tokens/s · F / peak FLOP/s, with F = :func:`lit_ffn.flops.flops_per_token`
  = 6·(non-embedding parameters + V·D for the head matmul, tied or not) +
  6·L·H·E·T for causal attention (QKᵀ and AV at half the T² work): the
  embedding *lookup* is excluded, the LM head included.  The transformers row
  uses the same F (same shape).  Peak FLOP/s (:func:`lit_ffn.flops.peak_flops`,
  the same as ``vitals/mfu``'s): ``--peak-tflops``, else the device's dense
  datasheet figure for the compute dtype (H100/H200 datasheets, else Lightning's
  table), else on CPU the rate of a 2048³ matmul in the compute dtype measured
  on the spot (so CPU "MFU" is relative to what this CPU's
  GEMM reaches under the current load, and says so in ``peak_flops_source``).
* Peak memory: CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation
  before the model was built.  CPU (torch has no allocator statistics there;
  ``tracemalloc`` does not see torch's allocations): the process's peak
  resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) minus its
  resident set before the model was built.  Both are measured over the
  build and the warm-up steps of each model, one model at a time, so they
  include weights, gradients, AdamW state, activations and temporaries.

``--compare-hf`` builds the same shape as ``transformers.Qwen3ForCausalLM``
(SwiGLU with lit_ffn's hidden width, ``attn_implementation="sdpa"``, same
dtype, precision, batch and optimizer), copies lit_ffn's SwiGLU weights into
it (so the first losses agree: a check that both compute the same thing), and
reports tokens/s of lit_ffn / transformers.  ``--compare-litgpt`` does the same with litgpt 0.5.13's
``GPT`` (Qwen3 config; :func:`lit_ffn.bench.runners.litgpt_runner`).  ``--profile`` prints where a
step's time goes (:mod:`lit_ffn.bench.profile`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lit_ffn.bench.measure import MemoryMeter, run_benchmark
from lit_ffn.bench.profile import PROFILE_STEPS, loss_free_bounds, profile_steps, render_bounds, render_profile
from lit_ffn.bench.report import build_report, render_markdown
from lit_ffn.bench.runners import Runner, hf_runner, lit_runner, litgpt_runner
from lit_ffn.bench.settings import PRECISIONS, ModelConfigs, settings_from
from lit_ffn.errors import UserError, run_tool
from lit_ffn.ffn.registry import spec_for
from lit_ffn.flops import peak_flops, precision_dtype
from lit_ffn.loss_backends import LOSS_IMPLS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit_ffn bench", description="Time training steps of lit_ffn (and transformers' Qwen3) on this device."
    )
    parser.add_argument(
        "--config",
        action="append",
        required=True,
        metavar="X.yaml",
        help="a lit_ffn config (repeatable, later files win, as for lit_ffn fit)",
    )
    parser.add_argument(
        "--ffn",
        nargs="+",
        metavar="NAME",
        help="FFN variant(s): built-in names (swiglu, geglu, dynamic_geglu, …), configs/ffn/*.yaml "
        "files or class paths (default: the config's)",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first (default 3)")
    parser.add_argument("--compare-hf", action="store_true", help="also time transformers' Qwen3ForCausalLM")
    parser.add_argument(
        "--compare-litgpt",
        action="store_true",
        help="also time litgpt's GPT with a Qwen3 config of the same shape (pip install --no-deps litgpt==0.5.13)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after timing, profile 3 more steps of each model (torch.profiler) and print the share of "
        "their time in FFN / attention / head+loss / norms+rope / optimizer / other",
    )
    parser.add_argument("--json", metavar="OUT", help="write the report as JSON")
    parser.add_argument("--markdown", metavar="OUT", help="write the report as a Markdown table")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available, else cpu")
    parser.add_argument("--precision", choices=PRECISIONS, help="default: the config's trainer.precision")
    parser.add_argument("--batch-size", type=int, help="default: the config's data.batch_size")
    parser.add_argument("--seq-len", type=int, help="default: the config's data.seq_len")
    parser.add_argument("--compile", action="store_true", help="torch.compile every decoder block (both models)")
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        metavar="NAME",
        help="torch.compile backend for --compile (default inductor; 'eager' traces with dynamo only)",
    )
    parser.add_argument(
        "--loss-chunk-size",
        type=int,
        nargs="+",
        metavar="N",
        help="override model.loss_chunk_size; several values: one model per value (0: plain loss)",
    )
    parser.add_argument(
        "--loss-impl",
        nargs="+",
        metavar="NAME",
        choices=LOSS_IMPLS,
        help=f"override model.loss_impl ({', '.join(LOSS_IMPLS)}); several values: one model per value",
    )
    parser.add_argument("--peak-tflops", type=float, help="peak TFLOP/s of the device for MFU")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def check_output_path(path: str | None, flag: str) -> None:
    """Make sure ``path`` can be written before minutes of benchmarking: create
    its parent directories; a directory or an unwritable place is a UserError."""
    if not path:
        return
    out = Path(path)
    if out.is_dir():
        raise UserError(f"{flag} {path}: is a directory; give a file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot create the directory {out.parent} ({err.strerror or err})") from None
    if not os.access(out if out.exists() else out.parent, os.W_OK):
        raise UserError(f"{flag} {path}: not writable")


def bench(argv: list[str], log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)) -> dict[str, Any]:
    """Run ``lit_ffn bench`` with ``argv``; return the report (also written where asked)."""
    args = build_parser().parse_args(argv)
    check_output_path(args.json, "--json")
    check_output_path(args.markdown, "--markdown")
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    configs = ModelConfigs(args.config)
    cfg = configs.config
    settings = settings_from(args, cfg)
    ffns: list[dict[str, Any] | None] = [spec_for(name) for name in args.ffn] if args.ffn else [None]
    compare = args.compare_hf or args.compare_litgpt
    if compare and not any(_ffn_class(f, cfg) == "lit_ffn.ffn.SwiGLU" for f in ffns):
        ffns.append({"class_path": "lit_ffn.ffn.SwiGLU"})  # the model transformers' Qwen3 is compared with
    built: list[Runner] = []

    def lit(ffn: dict[str, Any] | None, chunk: int | None, impl: str | None) -> Runner:
        keep = compare and _ffn_class(ffn, cfg) == "lit_ffn.ffn.SwiGLU" and not built_swiglu(built)
        built.append(
            lit_runner(configs, ffn, settings, loss_chunk_size=chunk, loss_impl=impl, keep_initial_weights=keep)
        )
        return built[-1]

    chunks: list[int | None] = list(args.loss_chunk_size or [None])
    impls: list[str | None] = list(args.loss_impl or [None])
    factories: list[Callable[[], Runner]] = [
        lambda ffn=ffn, chunk=chunk, impl=impl: lit(ffn, chunk, impl)
        for ffn in ffns
        for chunk in chunks
        for impl in impls
    ]
    peers = [hf_runner] * args.compare_hf + [litgpt_runner] * args.compare_litgpt

    def peer_factory(peer: Callable[[Runner, Any], Runner], last: bool) -> Runner:
        reference = next(r for r in built if r.initial_weights is not None)
        runner = peer(reference, settings)
        if last:  # every peer has its copy: drop lit_ffn's initial weights
            reference.initial_weights = None
        return runner

    last_index = len(peers) - 1
    for index, peer in enumerate(peers):
        factories.append(lambda peer=peer, last=index == last_index: peer_factory(peer, last))
    runners = run_benchmark(factories, settings, log)
    peak, peak_source = peak_flops(settings.device, precision_dtype(settings.precision), args.peak_tflops)
    if args.peak_tflops:
        peak, peak_source = args.peak_tflops * 1e12, "--peak-tflops"
    report = build_report(runners, settings, peak, peak_source, MemoryMeter(settings.device).method, argv, load_before)
    if args.profile:
        report["profile"] = profile_runners(runners, settings)
        report["loss_free_bounds"] = loss_free_bounds(report["results"], report["profile"])
    markdown = render_markdown(report)
    if args.profile:
        markdown += "\nWhere a step's time goes (`--profile`, lit_ffn.bench.profile):\n\n"
        markdown += render_profile([(row["name"], row["shares"]) for row in report["profile"]])
        if report["loss_free_bounds"]:
            markdown += (
                "\nThe most a faster head+loss could give lit_ffn (Amdahl: the peer's median step over lit_ffn's "
                "median step without its head+loss share; lit_ffn.bench.profile.loss_free_bounds):\n\n"
            )
            markdown += render_bounds(report["loss_free_bounds"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown)
    print(markdown)
    return report


def profile_runners(runners: list[Runner], settings: Any) -> list[dict[str, Any]]:
    """``PROFILE_STEPS`` profiled training steps per model that ran, on fresh random batches shared by all."""
    generator = torch.Generator().manual_seed(settings.seed + 1)
    shape = (PROFILE_STEPS, settings.batch_size, settings.seq_len + 1)
    blocks = torch.randint(0, settings.vocab_size, shape, generator=generator).to(settings.device)
    batches = [(block[:, :-1].contiguous(), block[:, 1:].contiguous()) for block in blocks]
    return [
        {"name": runner.name, "shares": profile_steps(runner, batches)} for runner in runners if runner.error is None
    ]


def built_swiglu(runners: list[Runner]) -> bool:
    return any(r.initial_weights is not None for r in runners)


def _ffn_class(ffn: dict[str, Any] | None, cfg: Any) -> str:
    return ffn["class_path"] if ffn is not None else cfg.model.ffn.class_path


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lit_ffn bench``; user errors print one line and return 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_tool("lit_ffn bench", lambda: bench(argv) and None)


__all__ = ["bench", "build_parser", "check_output_path", "main"]
