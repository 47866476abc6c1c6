"""Item ``loss``: the chunked linear cross-entropy vs plain ``F.cross_entropy`` at the plan's shape.

Both through :func:`lit_ffn.loss.linear_cross_entropy` (chunk size ``plan.loss_chunk_size`` vs 0,
the plain loss that materialises the (N, V) logits), on the same hidden states H (N, D) and tied head
W (V, D), fp32 leaves as in training, under the plan's autocast: forward + backward, median time of
:data:`REPEATS` after one warm-up, and peak memory over all of them
(:class:`lit_ffn.bench.measure.MemoryMeter`: CUDA allocator statistics, or the CPU process's peak
resident set).  PASS needs equal losses and gradients and, where the plain loss's logits are big
enough to resolve (:data:`RESOLVABLE_BYTES`), a lower peak for the chunked loss.  A plain loss that
runs out of GPU memory is a finding, not a failure.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any

import torch

from lit_ffn.bench.gpu_check.items import FAIL, PASS, Context, Result
from lit_ffn.bench.measure import MemoryMeter
from lit_ffn.loss import linear_cross_entropy

REPEATS = 3
#: Peak-memory differences below this are within the noise of the CPU's page-granular RSS.
RESOLVABLE_BYTES = 32 * 2**20
#: |Δloss| and relative gradient error (Frobenius) that still mean "the same loss".
TOLERANCE = {torch.float32: (1e-5, 1e-4), torch.bfloat16: (2e-2, 3e-2)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(ctx: Context, chunk: int, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> dict:
    """Time and peak memory of forward + backward with ``chunk`` (0: plain); the loss and gradients."""
    plan = ctx.plan
    meter = MemoryMeter(plan.device)
    meter.start()
    times: list[float] = []
    loss = None
    try:
        for i in range(1 + REPEATS):
            hidden.grad = weight.grad = None
            _sync(plan.device)
            start = time.perf_counter()
            with torch.autocast(plan.device.type, dtype=torch.bfloat16, enabled=plan.autocast):
                loss = linear_cross_entropy(hidden, weight, targets, chunk)
            loss.backward()
            _sync(plan.device)
            if i:
                times.append(time.perf_counter() - start)
    except torch.OutOfMemoryError:
        hidden.grad = weight.grad = None
        loss = None
        gc.collect()
        torch.cuda.empty_cache()
        return {"chunk": chunk, "error": "out of memory", "peak_bytes": meter.peak()}
    return {
        "chunk": chunk,
        "time_s": statistics.median(times),
        "peak_bytes": meter.peak(),
        "loss": float(loss.detach()),
        "grads": (hidden.grad.detach().clone(), weight.grad.detach().clone()),
    }


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-30))


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.0f} MiB"


def run(ctx: Context) -> Result:
    key, title = "loss", "chunked loss vs plain F.cross_entropy: peak memory and time"
    plan = ctx.plan
    dim = plan.model.get("dim", 384)
    n = plan.batch_size * plan.seq_len
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, dim, generator=generator).to(plan.device).requires_grad_()
    weight = (0.02 * torch.randn(plan.vocab_size, dim, generator=generator)).to(plan.device).requires_grad_()
    targets = torch.randint(0, plan.vocab_size, (n,), generator=generator).to(plan.device)
    chunked = measure(ctx, plan.loss_chunk_size, hidden, weight, targets)
    plain = measure(ctx, 0, hidden, weight, targets)
    logits_bytes = n * plan.vocab_size * 4  # the plain loss's fp32 logits alone
    details = [
        (
            f"N = {n:,} tokens ({plan.batch_size} × {plan.seq_len}), D = {dim}, V = {plan.vocab_size:,}, {plan.precision}; "
            f"forward + backward, median of {REPEATS} after one warm-up; peak memory: {MemoryMeter(plan.device).method}."
        ),
        "",
        "| loss | time | peak memory | loss value |",
        "|---|---|---|---|",
    ]
    for res in (chunked, plain):
        name = f"chunked ({res['chunk']} rows)" if res["chunk"] else "plain F.cross_entropy"
        if "error" in res:
            details.append(f"| {name} | {res['error']} | {_mib(res['peak_bytes'])} | |")
        else:
            details.append(f"| {name} | {res['time_s'] * 1e3:.1f} ms | {_mib(res['peak_bytes'])} | {res['loss']:.6f} |")
    data: dict[str, Any] = {
        name: {k: v for k, v in res.items() if k != "grads"} for name, res in (("chunked", chunked), ("plain", plain))
    }
    if "error" in chunked:
        return Result(key, title, FAIL, f"chunked loss: {chunked['error']}", details, data)
    if "error" in plain:
        summary = f"chunked {_mib(chunked['peak_bytes'])}, {chunked['time_s'] * 1e3:.1f} ms; plain: {plain['error']}"
        return Result(key, title, PASS, summary, details, data)
    loss_tol, grad_tol = TOLERANCE[plan.compute_dtype]
    diff = abs(chunked["loss"] - plain["loss"])
    grad_err = max(_rel(a, b) for a, b in zip(chunked["grads"], plain["grads"]))
    data.update(loss_difference=diff, gradient_relative_error=grad_err)
    details.append(f"\nLoss difference {diff:.2e}, largest relative gradient error {grad_err:.2e}.")
    problems = []
    if diff > loss_tol or grad_err > grad_tol:
        problems.append(
            f"chunked ≠ plain: loss difference {diff:.2e} (≤ {loss_tol:g}), gradient error {grad_err:.2e} (≤ {grad_tol:g})"
        )
    memory = "memory: not compared (the plain logits are too small to resolve)"
    if chunked["peak_bytes"] is not None and plain["peak_bytes"] is not None and logits_bytes >= RESOLVABLE_BYTES:
        memory = f"peak {_mib(chunked['peak_bytes'])} vs {_mib(plain['peak_bytes'])}"
        if chunked["peak_bytes"] >= plain["peak_bytes"]:
            problems.append(f"the chunked loss's peak memory is not lower ({memory})")
    if problems:
        return Result(key, title, FAIL, "; ".join(problems), details, data)
    summary = (
        f"{memory}; time {chunked['time_s'] * 1e3:.1f} vs {plain['time_s'] * 1e3:.1f} ms "
        f"(chunked vs plain); loss difference {diff:.1e}"
    )
    return Result(key, title, PASS, summary, details, data)


__all__ = ["measure", "run"]
