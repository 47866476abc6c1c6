"""The ``lit_ffn bench`` report: JSON-able dict and its Markdown table."""

from __future__ import annotations

import os
import platform
import shlex
import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from lit_ffn.bench.measure import percentile
from lit_ffn.bench.runners import Runner
from lit_ffn.bench.settings import Settings
from lit_ffn.flops import FLOP_FORMULA
from lit_ffn.provenance import package_versions


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"{name}, {os.cpu_count()} logical CPUs, {threads} torch thread{'' if threads == 1 else 's'}"


def build_report(
    runners: list[Runner],
    settings: Settings,
    peak: float | None,
    peak_source: str,
    mem_method: str,
    argv: list[str],
    load_before: tuple[float, ...] | None,
) -> dict[str, Any]:
    tokens_per_step = settings.batch_size * settings.seq_len
    results = []
    for r in runners:
        if r.error is not None:
            results.append(
                {
                    "name": r.name,
                    "impl": r.impl,
                    "ffn": r.ffn,
                    "params": r.num_params,
                    "error": r.error,
                    "tokens_per_step": tokens_per_step,
                    "timed_steps": 0,
                    "tokens_timed": 0,
                }
            )
            continue
        median = statistics.median(r.times)
        tokens_per_s = tokens_per_step / median
        results.append(
            {
                "name": r.name,
                "impl": r.impl,
                "ffn": r.ffn,
                "params": r.num_params,
                "loss_chunk_size": r.loss_chunk_size,
                "loss_impl": r.loss_impl,
                "flops_per_token": r.flops_per_token,
                "tokens_per_step": tokens_per_step,
                "timed_steps": len(r.times),
                "tokens_timed": tokens_per_step * len(r.times),
                "step_time_s": {
                    "median": median,
                    "min": min(r.times),
                    "max": max(r.times),
                    "p25": percentile(r.times, 0.25),
                    "p75": percentile(r.times, 0.75),
                },
                "tokens_per_s": tokens_per_s,
                "cpu_time_s_median": statistics.median(r.cpu_times),
                "achieved_tflops": tokens_per_s * r.flops_per_token / 1e12,
                "mfu": tokens_per_s * r.flops_per_token / peak if peak else None,
                "peak_mem_bytes": r.peak_mem,
                "optimizer": f"{type(r.optimizer).__name__}(fused={bool(r.optimizer.defaults.get('fused'))})",
                "first_loss": r.losses[0] if r.losses else None,
                "last_loss": r.losses[-1] if r.losses else None,
            }
        )
    ratios = [
        {
            "lit_ffn": res["name"],
            "peer": peer["name"],
            "peer_impl": peer["impl"],
            "tokens_per_s_ratio": res["tokens_per_s"] / peer["tokens_per_s"],
        }
        for res, peer in peer_pairs(results)
    ]
    return {
        "command": "lit_ffn bench " + shlex.join(argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_description(settings.device),
        "versions": package_versions(("torch", "lightning", "transformers", "litgpt")),
        "load_average_before": list(load_before) if load_before else None,
        "load_average_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "precision": settings.precision,
        "batch_size": settings.batch_size,
        "seq_len": settings.seq_len,
        "warmup_steps": settings.warmup,
        "timed_steps": settings.steps,
        "compile": settings.compile,
        "compile_backend": settings.compile_backend if settings.compile else None,
        "gradient_clip_val": settings.grad_clip,
        "flop_formula": FLOP_FORMULA,
        "peak_flops": peak,
        "peak_flops_source": peak_source,
        "memory_method": mem_method,
        "results": results,
        "ratios": ratios,
    }


def peer_pairs(results: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(lit_ffn SwiGLU row, peer row) for every peer (transformers, litgpt) that ran: the pairs a report compares."""
    ran = [res for res in results if "error" not in res]
    swiglu = [res for res in ran if res["impl"] == "lit_ffn" and res["ffn"] == "SwiGLU"]
    return [(res, peer) for peer in ran if peer["impl"] != "lit_ffn" for res in swiglu]


def _gib(n: int | None) -> str:
    # CPU peak memory is a difference of resident sets: pages freed by an earlier model and reused can make it
    # slightly negative; shown as the method's floor, 0.00 (the JSON keeps the measured value)
    return "n/a" if n is None else f"{max(n, 0) / 2**30:.2f} GiB"


def render_markdown(report: dict[str, Any]) -> str:
    load = report["load_average_before"]
    lines = [
        f"`{report['command']}`",
        "",
        (
            f"{report['device']}; torch {report['versions']['torch']}, lightning {report['versions']['lightning']}, "
            f"transformers {report['versions']['transformers']}{_litgpt_text(report)}; {report['precision']}, batch {report['batch_size']} × "
            f"{report['seq_len']} tokens, compile {_compile_text(report)}, {report['warmup_steps']} warm-up + "
            f"{report['timed_steps']} timed steps (interleaved); load average before "
            f"{'/'.join(f'{x:.1f}' for x in load) if load else 'n/a'}."
        ),
        "",
        (
            "| model | params | step time median (min–max) | CPU time/step | tokens/s | MFU | peak memory "
            "| first → last loss |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in report["results"]:
        if "error" in res:
            lines.append(f"| {res['name']} | {res['params'] / 1e6:.2f}M | {res['error']} | | | | | |")
            continue
        st = res["step_time_s"]
        mfu = "n/a" if res["mfu"] is None else f"{100 * res['mfu']:.1f}%"
        lines.append(
            f"| {res['name']} | {res['params'] / 1e6:.2f}M | {st['median']:.3f} s ({st['min']:.3f}–{st['max']:.3f}) "
            f"| {res['cpu_time_s_median']:.2f} s | {res['tokens_per_s']:,.0f} | {mfu} | {_gib(res['peak_mem_bytes'])} "
            f"| {res['first_loss']:.4f} → {res['last_loss']:.4f} |"
        )
    for ratio in report["ratios"]:
        lines.append("")
        lines.append(f"{ratio['lit_ffn']} / {ratio['peer']}: **{ratio['tokens_per_s_ratio']:.2f}×** tokens/s")
    lines += [
        "",
        f"MFU: {report['flop_formula']}; peak: {report['peak_flops_source']}.",
        f"Peak memory: {report['memory_method']}.",
    ]
    return "\n".join(lines) + "\n"


def _litgpt_text(report: dict[str, Any]) -> str:
    ran = any(res["impl"] == "litgpt" for res in report["results"])
    return f", litgpt {report['versions'].get('litgpt')}" if ran else ""


def _compile_text(report: dict[str, Any]) -> str:
    if not report["compile"]:
        return "off"
    backend = report.get("compile_backend")
    return "on" if backend in (None, "inductor") else f"on ({backend} backend)"


__all__ = ["build_report", "device_description", "peer_pairs", "render_markdown"]
