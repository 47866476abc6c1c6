"""Items ``throughput`` and ``ffn``: training-step throughput through ``lit_ffn bench`` (in this process).

``throughput``: the paper model eager with transformers' ``Qwen3ForCausalLM`` of the same shape and
weights (``--compare-hf``, interleaved), then the same model with per-block ``torch.compile``, once per
loss backend that runs here (``--loss-impl``: ``chunked`` and the mode's library backends,
:func:`lit_ffn.bench.gpu_check.loss_cost.library_backends`): the backend with the most tokens/s whose
first loss agrees is what ``model.loss_impl: auto`` should pick on this device (``data["loss_backend"]``).
Where transformers' full ``(B, T, V)`` logits run out of GPU memory at the plan's micro-batch (16 ×
2048 × 151,936 at the paper shape: ~10 GB bf16 logits plus its fp32 loss copies, near an H100's 80 GB),
the eager comparison is run again at half the micro-batch, both models at that micro-batch, and the
tokens/s target is taken from that like-for-like pair (:func:`halved_comparison`).
``ffn``: GEGLU and DynamicGEGLU, interleaved, as the config runs them (eager).  Every row reports
step time, tokens/s, MFU against the datasheet peak (and against the matmul rate measured at the
start), peak memory and the first loss; equal first losses show that the rows compute the same model.
"""

from __future__ import annotations

import gc
import math
from typing import Any

import torch

from lit_ffn.bench.gpu_check import loss_cost
from lit_ffn.bench.gpu_check.items import FAIL, PASS, Context, Result

#: |first loss − reference first loss| that still means "the same model on the same batch".
FIRST_LOSS_TOLERANCE = {"32-true": 1e-3, "bf16-mixed": 3e-2, "bf16-true": 3e-2}
#: GPU targets from docs/benchmarks.md: reported as met / not met, never a FAIL.  MFU: issue 7 asked
#: 45%; issues 21 and 32 set 40% (stretch 50%) after a review estimated today's step at 16–20%.
MFU_TARGET = 0.40
HF_RATIO_TARGET = 1.3
DYNAMIC_GEGLU_TARGET = 1.05


def bench_argv(ctx: Context, *extra: str, batch_size: int | None = None) -> list[str]:
    plan = ctx.plan
    argv = [arg for config in ctx.configs for arg in ("--config", config)]
    argv += ["--device", plan.device.type, "--precision", plan.precision]
    argv += ["--batch-size", str(batch_size or plan.batch_size), "--seq-len", str(plan.seq_len)]
    argv += ["--steps", str(plan.bench_steps), "--warmup", str(plan.bench_warmup), *extra]
    return argv


def run_bench(ctx: Context, *extra: str, batch_size: int | None = None) -> dict[str, Any]:
    """``lit_ffn bench`` with the plan's settings (micro-batch ``batch_size`` if given) plus ``extra``; its report."""
    from lit_ffn.bench.cli import bench

    try:
        return bench(bench_argv(ctx, *extra, batch_size=batch_size), log=ctx.log)
    finally:
        gc.collect()
        if ctx.plan.device.type == "cuda":
            torch.cuda.empty_cache()


def gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**30:.2f} GiB"


def rows(ctx: Context, report: dict[str, Any], label: str) -> list[str]:
    out = []
    for res in report["results"]:
        if "error" in res:
            out.append(f"| {res['name']} | {label} | {res['error']} | | | | | |")
            continue
        mfu = "n/a" if res["mfu"] is None else f"{100 * res['mfu']:.1f}%"
        measured = "n/a"
        if ctx.matmul_flops:
            measured = f"{100 * res['achieved_tflops'] * 1e12 / ctx.matmul_flops:.1f}%"
        st = res["step_time_s"]
        out.append(
            f"| {res['name']} | {label} | {st['median'] * 1e3:.1f} ms ({st['min'] * 1e3:.1f}–{st['max'] * 1e3:.1f}) "
            f"| {res['tokens_per_s']:,.0f} | {mfu} | {measured} | {gib(res['peak_mem_bytes'])} | {res['first_loss']:.4f} |"
        )
    return out


TABLE_HEAD = [
    (
        "| model | mode | step time median (min–max) | tokens/s | MFU (datasheet peak) | MFU (measured matmul) "
        "| peak memory | first loss |"
    ),
    "|---|---|---|---|---|---|---|---|",
]


def check_rows(
    report: dict[str, Any], reference: float | None, tolerance: float, allow_oom: str = "transformers"
) -> list[str]:
    """Problems with a bench report: failed lit_ffn rows, non-finite losses, first losses away from ``reference``."""
    problems = []
    for res in report["results"]:
        if "error" in res:
            if not (res["impl"] == allow_oom and res["error"] == "out of memory"):
                problems.append(f"{res['name']}: {res['error']}")
            continue
        if not (math.isfinite(res["first_loss"]) and math.isfinite(res["last_loss"])):
            problems.append(f"{res['name']}: non-finite loss")
        elif reference is not None and abs(res["first_loss"] - reference) > tolerance:
            problems.append(f"{res['name']}: first loss {res['first_loss']:.4f} vs {reference:.4f}")
    return problems


def _lit(report: dict[str, Any], ffn: str = "SwiGLU") -> dict[str, Any] | None:
    return next((r for r in report["results"] if r["impl"] == "lit_ffn" and r["ffn"] == ffn and "error" not in r), None)


def run_throughput(ctx: Context) -> Result:
    key, title = "throughput", "throughput: eager, compiled per loss backend, transformers' Qwen3"
    plan = ctx.plan
    tolerance = FIRST_LOSS_TOLERANCE[plan.precision]
    eager = run_bench(ctx, "--compare-hf")
    lit = _lit(eager)
    reference = lit["first_loss"] if lit else None
    problems = check_rows(eager, reference, tolerance)
    details = [*TABLE_HEAD, *rows(ctx, eager, "eager")]
    data: dict[str, Any] = {"eager": eager}
    halved = halved_comparison(ctx, eager)
    if halved is not None:
        data["eager_halved"] = halved
        details += rows(ctx, halved, f"eager, micro-batch {halved['batch_size']}")
        halved_lit = _lit(halved)
        problems += check_rows(halved, halved_lit["first_loss"] if halved_lit else None, tolerance)
    compiled_note = ""
    backends = ["chunked"] + [name for name, why in loss_cost.library_backends(ctx) if why is None]
    try:
        compiled = run_bench(ctx, "--compile", "--compile-backend", ctx.compile_backend, "--loss-impl", *backends)
    except Exception as err:
        if plan.mode == "gpu":
            raise
        compiled_note = f"compiled: skipped ({type(err).__name__}: {str(err).strip().splitlines()[0][:200]})"
        details.append(f"| lit_ffn SwiGLU | compiled | {compiled_note} | | | | | |")
    else:
        data["compiled"] = compiled
        details += rows(ctx, compiled, f"compiled ({ctx.compile_backend})")
        problems += check_rows(compiled, reference, tolerance)
    if problems:
        return Result(key, title, FAIL, "; ".join(problems), details, data)
    parts = []
    best = _fastest(data["compiled"]) if "compiled" in data else None
    for label, res in (("eager", lit), (f"compiled ({ctx.compile_backend})", best)):
        if res is not None:
            mfu = f", MFU {100 * res['mfu']:.1f}%" if res["mfu"] is not None else ""
            parts.append(f"{label} {res['tokens_per_s']:,.0f} tok/s{mfu}")
    for ratio in eager["ratios"]:
        parts.append(f"{ratio['tokens_per_s_ratio']:.2f}× {ratio['peer_impl']} (eager)")
    hf = next((r for r in eager["results"] if r["impl"] == "transformers"), None)
    if hf is not None and "error" in hf:
        parts.append(f"transformers: {hf['error']} at micro-batch {plan.batch_size}")
    if halved is not None:
        for ratio in halved["ratios"]:
            parts.append(
                f"{ratio['tokens_per_s_ratio']:.2f}× {ratio['peer_impl']} (eager, micro-batch {halved['batch_size']})"
            )
    if compiled_note:
        parts.append(compiled_note)
    else:
        data["loss_backend"] = loss_backend_choice(data["compiled"], plan.mode)
        parts.append(data["loss_backend"]["summary"])
    data["targets"] = throughput_targets(lit, best, eager, halved)
    return Result(key, title, PASS, "; ".join(parts), details, data)


def _transformers_out_of_memory(report: dict[str, Any]) -> bool:
    return any(r["impl"] == "transformers" and r.get("error") == "out of memory" for r in report["results"])


def halved_comparison(ctx: Context, eager: dict[str, Any]) -> dict[str, Any] | None:
    """Where transformers ran out of memory in ``eager`` (its full logits; lit_ffn's chunked loss never
    holds them), lit_ffn and transformers again, eager and interleaved, at half the micro-batch: the
    report of that run with ``"batch_size"`` added, or ``None`` where nothing ran out of memory (or the
    micro-batch is 1).  Both models at one micro-batch, so their tokens/s compare like for like."""
    if not _transformers_out_of_memory(eager) or ctx.plan.batch_size < 2:
        return None
    half = ctx.plan.batch_size // 2
    ctx.log(f"throughput: transformers ran out of memory at micro-batch {ctx.plan.batch_size}: both again at {half}")
    return {**run_bench(ctx, "--compare-hf", batch_size=half), "batch_size": half}


def _fastest(report: dict[str, Any]) -> dict[str, Any] | None:
    """The lit_ffn SwiGLU row with the most tokens/s (one per loss backend in the compiled run)."""
    rows = [r for r in report["results"] if r["impl"] == "lit_ffn" and r["ffn"] == "SwiGLU" and "error" not in r]
    return max(rows, key=lambda r: r["tokens_per_s"], default=None)


def loss_backend_choice(report: dict[str, Any], mode: str) -> dict[str, Any]:
    """Which ``model.loss_impl`` gave the most tokens/s in ``report`` (rows whose first loss agreed:
    :func:`check_rows` has failed the item otherwise): ``{"pick", "tokens_per_s", "peak_mem_bytes", "summary"}``."""
    rows = [r for r in report["results"] if r["impl"] == "lit_ffn" and "error" not in r and r.get("loss_impl")]
    best = max(rows, key=lambda r: r["tokens_per_s"])
    speeds = ", ".join(f"{r['loss_impl']} {r['tokens_per_s']:,.0f}" for r in rows)
    summary = f"loss backends, compiled (tok/s): {speeds} -> model.loss_impl auto should pick {best['loss_impl']}"
    if mode != "gpu":
        summary += " (measured on a CPU: says nothing about a GPU)"
    return {
        "pick": best["loss_impl"],
        "tokens_per_s": {r["loss_impl"]: r["tokens_per_s"] for r in rows},
        "peak_mem_bytes": {r["loss_impl"]: r["peak_mem_bytes"] for r in rows},
        "summary": summary,
    }


def throughput_targets(
    lit: dict | None, compiled: dict | None, eager: dict[str, Any], halved: dict[str, Any] | None = None
) -> dict[str, Any]:
    """docs/benchmarks.md's GPU targets: MFU ≥ 40% (best lit_ffn row at the plan's micro-batch), ≥ 1.3×
    transformers' tokens/s (best lit_ffn row vs transformers at the plan's micro-batch; where transformers
    ran out of memory there, lit_ffn eager vs transformers eager in ``halved``, both at half of it)."""
    best = max((r for r in (lit, compiled) if r is not None), key=lambda r: r["tokens_per_s"], default=None)
    out: dict[str, Any] = {}
    if best is not None and best["mfu"] is not None:
        out["mfu"] = {"value": best["mfu"], "target": MFU_TARGET, "met": best["mfu"] >= MFU_TARGET, "row": best["name"]}
    hf, against, halved_batch = _transformers(eager), best, None
    if hf is None and halved is not None:
        hf, against, halved_batch = _transformers(halved), _lit(halved), halved["batch_size"]
    if against is not None and hf is not None:
        ratio = against["tokens_per_s"] / hf["tokens_per_s"]
        out["hf_ratio"] = {"value": ratio, "target": HF_RATIO_TARGET, "met": ratio >= HF_RATIO_TARGET}
        if halved_batch is not None:
            out["hf_ratio"]["batch_size"] = halved_batch
    return out


def _transformers(report: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in report["results"] if r["impl"] == "transformers" and "error" not in r), None)


def run_ffn(ctx: Context) -> Result:
    key, title = "ffn", "DynamicGEGLU vs GEGLU step time"
    report = run_bench(ctx, "--ffn", "geglu", "dynamic_geglu")
    details = [*TABLE_HEAD, *rows(ctx, report, "config (eager)")]
    problems = check_rows(report, None, 0.0, allow_oom="")
    geglu, dynamic = _lit(report, "GEGLU"), _lit(report, "DynamicGEGLU")
    if problems or geglu is None or dynamic is None:
        return Result(key, title, FAIL, "; ".join(problems) or "a row is missing", details, {"bench": report})
    ratio = dynamic["step_time_s"]["median"] / geglu["step_time_s"]["median"]
    data = {
        "bench": report,
        "ratio": ratio,
        "target": {"value": ratio, "target": DYNAMIC_GEGLU_TARGET, "met": ratio <= DYNAMIC_GEGLU_TARGET},
    }
    summary = (
        f"DynamicGEGLU / GEGLU step time {ratio:.3f} ({dynamic['step_time_s']['median'] * 1e3:.1f} vs "
        f"{geglu['step_time_s']['median'] * 1e3:.1f} ms)"
    )
    return Result(key, title, PASS, summary, details, data)


__all__ = [
    "bench_argv",
    "check_rows",
    "halved_comparison",
    "loss_backend_choice",
    "run_bench",
    "run_ffn",
    "run_throughput",
    "throughput_targets",
]
