"""Item ``loss``: the loss backends (``model.loss_impl``, :mod:`lit_ffn.loss_backends`) against plain
``F.cross_entropy`` at the plan's shape: time, peak memory, equality.

Rows: ``chunked`` (:func:`lit_ffn.loss.linear_cross_entropy` with ``plan.loss_chunk_size``), ``plain``
(the same with chunk 0: it materialises the (N, V) logits — the reference), then the library backends of
the mode (:data:`LIBRARY_ROWS`): on a GPU Cut Cross-Entropy (``cce``) and Liger-Kernel (``liger``); on
a CPU, where both are CUDA-only (their rows say so), CCE's ``torch_compile`` implementation, so that the
library path runs in the rehearsal and the test suite.  All on the same hidden states H (N, D) and tied
head W (V, D) (fp32 leaves as in training, W an ``nn.Parameter``), under the plan's autocast:
forward + backward, median time of :data:`REPEATS` after one warm-up (a compiling backend compiles
there), peak memory over all of them (:class:`lit_ffn.bench.measure.MemoryMeter`: CUDA allocator
statistics, or the CPU process's peak resident set — which on CPU also holds inductor's compiler, so
CPU peaks say nothing).

PASS needs every row that ran to equal the plain loss (loss and both gradients, :data:`TOLERANCE`),
a lower peak for the chunked loss where the plain logits are big enough to resolve
(:data:`RESOLVABLE_BYTES`), and, on a GPU, every library backend to have run.  A plain loss that
runs out of GPU memory is a finding, not a failure (the backends are then compared with ``chunked``).
The summary names the fastest backend that matched: what the loss alone says ``auto`` should pick (the
``throughput`` item measures whole training steps, which decide).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from lit_ffn import loss_backends
from lit_ffn.bench.gpu_check.items import FAIL, PASS, Context, Result
from lit_ffn.bench.measure import MemoryMeter
from lit_ffn.errors import first_line
from lit_ffn.loss import linear_cross_entropy

REPEATS = 3
#: Peak-memory differences below this are within the noise of the CPU's page-granular RSS.
RESOLVABLE_BYTES = 32 * 2**20
#: |Δloss| and relative gradient error (Frobenius) that still mean "the same loss".
TOLERANCE = {torch.float32: (1e-5, 1e-4), torch.bfloat16: (2e-2, 3e-2)}
#: The library backends each mode measures, after ``chunked`` and ``plain``.
LIBRARY_ROWS = {"gpu": ("cce", "liger"), "cpu": ("cce_torch_compile", "cce", "liger")}

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def library_backends(ctx: Context) -> list[tuple[str, str | None]]:
    """``(backend, why it cannot run here or None)`` for the mode's library backends."""
    plan = ctx.plan
    return [
        (name, loss_backends.problem(name, plan.device.type, plan.compute_dtype)) for name in LIBRARY_ROWS[plan.mode]
    ]


def loss_function(name: str, chunk: int) -> LossFn:
    """The loss of row ``name``: ``chunked`` (``chunk`` rows), ``plain`` or a library backend."""
    if name == "chunked":
        return lambda hidden, weight, targets: linear_cross_entropy(hidden, weight, targets, chunk)
    if name == "plain":
        return lambda hidden, weight, targets: linear_cross_entropy(hidden, weight, targets, 0)
    return lambda hidden, weight, targets: loss_backends.linear_cross_entropy(hidden, weight, targets, name)


def measure(
    ctx: Context, name: str, fn: LossFn, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> dict:
    """Time and peak memory of forward + backward of ``fn``; the loss and gradients (or ``error``)."""
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
                loss = fn(hidden, weight, targets)
            loss.backward()
            _sync(plan.device)
            if i:
                times.append(time.perf_counter() - start)
    except torch.OutOfMemoryError:
        error = "out of memory"
    except Exception as err:  # noqa: BLE001 - a library backend that fails is this row's finding, not the item's end
        ctx.log(f"gpu_check: loss: {name}: {type(err).__name__}: {err}")
        error = f"{type(err).__name__}: {first_line(err)}"
    else:
        return {
            "name": name,
            "time_s": statistics.median(times),
            "peak_bytes": meter.peak(),
            "loss": float(loss.detach()),
            "grads": (hidden.grad.detach().clone(), weight.grad.detach().clone()),
        }
    hidden.grad = weight.grad = None
    loss = None
    gc.collect()
    if plan.device.type == "cuda":
        torch.cuda.empty_cache()
    return {"name": name, "error": error, "peak_bytes": meter.peak()}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-30))


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.0f} MiB"


def _label(name: str, chunk: int) -> str:
    return {"chunked": f"chunked ({chunk} rows)", "plain": "plain F.cross_entropy"}.get(name, name)


def run(ctx: Context) -> Result:
    key, title = "loss", "loss backends vs plain F.cross_entropy: peak memory, time, equality"
    plan = ctx.plan
    dim = plan.model.get("dim", 384)
    n = plan.batch_size * plan.seq_len
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, dim, generator=generator).to(plan.device).requires_grad_()
    # a Parameter, as the model's tied head is (a compiling backend guards on the type: one compilation)
    weight = torch.nn.Parameter((0.02 * torch.randn(plan.vocab_size, dim, generator=generator)).to(plan.device))
    targets = torch.randint(0, plan.vocab_size, (n,), generator=generator).to(plan.device)
    chunk = plan.loss_chunk_size
    rows = [measure(ctx, name, loss_function(name, chunk), hidden, weight, targets) for name in ("chunked", "plain")]
    libraries = library_backends(ctx)
    for name, why in libraries:
        if why is None:
            rows.append(measure(ctx, name, loss_function(name, chunk), hidden, weight, targets))
        else:
            rows.append({"name": name, "not_run": why})
    by_name = {row["name"]: row for row in rows}
    chunked, plain = by_name["chunked"], by_name["plain"]
    reference = plain if "error" not in plain else chunked
    loss_tol, grad_tol = TOLERANCE[plan.compute_dtype]
    for row in rows:
        if row is not reference and "loss" in row and "loss" in reference:
            row["loss_difference"] = abs(row["loss"] - reference["loss"])
            row["gradient_relative_error"] = max(_rel(a, b) for a, b in zip(row["grads"], reference["grads"]))
    details = [
        (
            f"N = {n:,} tokens ({plan.batch_size} × {plan.seq_len}), D = {dim}, V = {plan.vocab_size:,}, {plan.precision}; "
            f"forward + backward, median of {REPEATS} after one warm-up; peak memory: {MemoryMeter(plan.device).method}; "
            f"loss and gradient differences against {_label(reference['name'], chunk)}."
        ),
        "",
        "| `model.loss_impl` | time | peak memory | loss value | Δloss | gradient error |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        label = _label(row["name"], chunk)
        if "not_run" in row:
            details.append(f"| {label} | not run: {row['not_run']} | | | | |")
        elif "error" in row:
            details.append(f"| {label} | {row['error']} | {_mib(row['peak_bytes'])} | | | |")
        else:
            diff = f"{row['loss_difference']:.1e}" if "loss_difference" in row else "(reference)"
            grad = f"{row['gradient_relative_error']:.1e}" if "gradient_relative_error" in row else ""
            details.append(
                f"| {label} | {row['time_s'] * 1e3:.1f} ms | {_mib(row['peak_bytes'])} | {row['loss']:.6f} | {diff} | {grad} |"
            )
    data: dict[str, Any] = {row["name"]: {k: v for k, v in row.items() if k != "grads"} for row in rows}
    if "error" in chunked:
        return Result(key, title, FAIL, f"chunked loss: {chunked['error']}", details, data)
    problems = []
    for row in rows:
        if row is plain and row.get("error") == "out of memory":
            continue  # a finding: the fused backends exist for this
        if "error" in row:
            problems.append(f"{row['name']}: {row['error']}")
        elif "not_run" in row and plan.mode == "gpu":
            problems.append(f"{row['name']} not run: {row['not_run']}")
        elif row.get("loss_difference", 0.0) > loss_tol or row.get("gradient_relative_error", 0.0) > grad_tol:
            problems.append(
                f"{row['name']} ≠ {reference['name']}: loss difference {row['loss_difference']:.2e} (≤ {loss_tol:g}), "
                f"gradient error {row['gradient_relative_error']:.2e} (≤ {grad_tol:g})"
            )
    logits_bytes = n * plan.vocab_size * 4  # the plain loss's fp32 logits alone
    memory = "memory: not compared (the plain logits are too small to resolve)"
    if "error" in plain:
        memory = f"chunked peak {_mib(chunked['peak_bytes'])}; plain: {plain['error']}"
    elif chunked["peak_bytes"] is not None and plain["peak_bytes"] is not None and logits_bytes >= RESOLVABLE_BYTES:
        memory = f"peak {_mib(chunked['peak_bytes'])} vs {_mib(plain['peak_bytes'])}"
        if chunked["peak_bytes"] >= plain["peak_bytes"]:
            problems.append(f"the chunked loss's peak memory is not lower ({memory})")
    if problems:
        return Result(key, title, FAIL, "; ".join(problems), details, data)
    matched = [row for row in rows if "time_s" in row and row["name"] != "plain"]
    fastest = min(matched, key=lambda row: row["time_s"])
    data["fastest"] = fastest["name"]
    times = ", ".join(f"{row['name']} {row['time_s'] * 1e3:.1f}" for row in rows if "time_s" in row)
    skipped = [name for name, why in libraries if why is not None]
    summary = f"{memory}; time (ms) {times}; fastest exact backend: {fastest['name']}"
    if skipped:
        summary += f"; not run here: {', '.join(skipped)} (why: in the table)"
    details.append(f"\nFastest backend that matched the plain loss: **{fastest['name']}**.")
    return Result(key, title, PASS, summary, details, data)


__all__ = ["LIBRARY_ROWS", "library_backends", "loss_function", "measure", "run"]
