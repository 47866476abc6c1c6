"""The check's Markdown report (``docs/results/gpu_check.md`` by default) and its closing PASS/FAIL lines.

Rewritten after every item, so a run stopped half-way still leaves what it measured.  A CPU-mode
report says so in its first lines and gives every GPU target as *not yet measured*: its numbers
come from a tiny model on a CPU and say nothing about a GPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lit_ffn.bench.gpu_check.gate_cost import OVERHEAD_TARGET
from lit_ffn.bench.gpu_check.items import PASS, Result
from lit_ffn.bench.gpu_check.plan import Plan
from lit_ffn.bench.gpu_check.throughput import DYNAMIC_GEGLU_TARGET, HF_RATIO_TARGET, MFU_TARGET

NOT_MEASURED = "not yet measured"

#: The GPU targets (docs/benchmarks.md) and where each one's number comes from.
TARGETS = (
    (f"paper shape, bf16, 1 GPU: MFU ≥ {MFU_TARGET:.0%} (bf16 dense datasheet peak)", "throughput", "mfu", "{:.1%}"),
    (f"tokens/s ≥ {HF_RATIO_TARGET}× transformers' Qwen3ForCausalLM", "throughput", "hf_ratio", "{:.2f}×"),
    (f"DynamicGEGLU step time ≤ {DYNAMIC_GEGLU_TARGET}× GEGLU", "ffn", "target", "{:.3f}×"),
    (f"gate-statistics overhead ≤ {OVERHEAD_TARGET:.0%} at the default cadence", "gates", "target", "{:+.3%}"),
)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a sibling temporary file and one ``os.replace``: a run
    killed mid-write (the device call's time limit) leaves the previous complete report."""
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


def cell(value: Any) -> str:
    """``value`` as the text of one Markdown table cell (a ``|`` would end the cell)."""
    return " ".join(str(value).split()).replace("|", "\\|")


def final_lines(results: list[Result]) -> list[str]:
    """One line per item: ``PASS  sdpa         flash kernel with …``."""
    width = max((len(r.key) for r in results), default=0)
    return [f"{r.status}  {r.key.ljust(width)}  {r.summary}" for r in results]


def _target_rows(plan: Plan, results: dict[str, Result]) -> list[str]:
    rows = ["| target | result |", "|---|---|"]
    for text, key, field, fmt in TARGETS:
        if plan.mode != "gpu":
            rows.append(f"| {text} | {NOT_MEASURED} (CPU mode: no GPU was used) |")
            continue
        result = results.get(key)
        holder = result.data.get("targets", result.data) if result is not None else {}
        target = holder.get(field) if isinstance(holder, dict) else None
        if result is None or result.status != PASS or not isinstance(target, dict):
            why = "item not run" if result is None else f"item {result.status}"
            rows.append(f"| {text} | {NOT_MEASURED} ({why}) |")
        else:
            at = f" (both at micro-batch {target['batch_size']})" if "batch_size" in target else ""
            rows.append(f"| {text} | {'met' if target['met'] else 'NOT met'}: {fmt.format(target['value'])}{at} |")
    return rows


def _auto_line(plan: Plan, results: dict[str, Result]) -> str:
    """What the measurement says ``auto`` should pick on CUDA (lit_ffn.loss_backends.AUTO), and what it picks now."""
    from lit_ffn.loss_backends import AUTO

    now = f"`lit_ffn.loss_backends.AUTO['cuda']` is `{AUTO['cuda']}`"
    if plan.mode != "gpu":
        return f"{NOT_MEASURED} (CPU mode: no GPU was used); {now}."
    result = results.get("throughput")
    choice = result.data.get("loss_backend") if result is not None and result.status == PASS else None
    if not choice:
        why = "item not run" if result is None else f"item {result.status}"
        return f"{NOT_MEASURED} ({why}); {now}."
    fastest = results.get("loss").data.get("fastest") if results.get("loss") is not None else None
    speeds = ", ".join(f"{name} {value:,.0f}" for name, value in choice["tokens_per_s"].items())
    line = (
        f"The compiled paper step says **{choice['pick']}** (tokens/s: {speeds}; the loss alone: "
        f"{fastest or 'not measured'} fastest); {now}"
    )
    return line + ("." if choice["pick"] == AUTO["cuda"] else f": set it to `{choice['pick']}`.")


def render(facts: dict[str, Any], plan: Plan, results: list[Result], pending: list[str], wall_s: float) -> str:
    """The whole report as Markdown."""
    lines = ["# GPU acceptance check (`scripts/gpu_check.sh`)", ""]
    if plan.mode != "gpu":
        lines += [
            (
                "> **CPU mode — not a GPU result.** This run used no GPU: a tiny model on a CPU, to show that every item "
                "of the check runs. Every GPU number is **not yet measured**; the command for a GPU machine is in the "
                "header of `scripts/gpu_check.sh` and in docs/benchmarks.md."
            ),
            "",
        ]
    header = [
        ("mode", plan.describe()),
        ("device", facts.get("device")),
        ("driver", facts.get("driver")),
        ("CUDA", facts.get("cuda")),
        ("bf16 dense peak (datasheet)", facts.get("datasheet_peak")),
        ("measured matmul rate", facts.get("matmul")),
        ("host", facts.get("host")),
        ("versions", ", ".join(f"{k} {v}" for k, v in facts.get("versions", {}).items() if v)),
        ("commit", facts.get("commit")),
        ("command", f"`{facts.get('command')}`"),
        ("date (UTC)", facts.get("date")),
        ("wall time", f"{wall_s:.0f} s" + (f" (budget {facts['budget_s']:.0f} s)" if facts.get("budget_s") else "")),
        (
            "load average at start",
            ", ".join(f"{x:.2f}" for x in facts["load_average"]) if facts.get("load_average") else None,
        ),
    ]
    lines += ["| | |", "|---|---|", *(f"| {k} | {cell(v)} |" for k, v in header if v)]
    lines += ["", "## Results", "", "| item | what | result | summary |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| `{r.key}` | {cell(r.title)} | **{r.status}** | {cell(r.summary)} ({r.seconds:.0f} s) |")
    for key in pending:
        lines.append(f"| `{key}` | | not run yet | |")
    by_key = {r.key: r for r in results}
    lines += ["", "## GPU targets (docs/benchmarks.md)", "", *_target_rows(plan, by_key), ""]
    lines += ["## `model.loss_impl: auto` on CUDA", "", _auto_line(plan, by_key), ""]
    for r in results:
        if r.details:
            lines += [f"## `{r.key}`: {r.title}", "", *r.details, ""]
    lines += ["## PASS / FAIL", "", "```", *final_lines(results), "```", ""]
    return "\n".join(lines)


__all__ = ["NOT_MEASURED", "TARGETS", "atomic_write_text", "cell", "final_lines", "render"]
