"""Item ``sdpa``: which SDPA kernel really runs the paper's grouped-query attention, and the fallback.

Two ways of looking, both at the plan's shape and precision (under bf16-mixed autocast casts q, k,
v to bf16 before SDPA, as in training):

* **observed**: one forward + backward of :class:`lit_ffn.model.Attention` under ``torch.profiler``;
  the aten op it dispatched to names the kernel (:data:`BACKEND_OPS`);
* **probed**: the same step inside ``torch.nn.attention.sdpa_kernel([backend])`` for flash, cuDNN,
  memory-efficient and math: which of them accept the call (and the reason torch gives when not).

Both for ``model.sdpa_gqa=native`` (SDPA's ``enable_gqa``) and ``expand`` (kv heads repeated to
``n_heads`` first).  :func:`decide` keeps ``native`` when it gets a fused kernel and switches to
``expand`` when only ``expand`` does; the later items then build their models with that setting and
the report shows the attention's time before and after.  ``--sdpa-force-math`` runs the ``native``
observation under ``sdpa_kernel([MATH])`` — as if no fused kernel took ``enable_gqa`` — so the
fallback path is exercised on any device (the CPU test does this).
"""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings
from collections.abc import Callable, Iterator

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from lit_ffn.bench.gpu_check.items import FAIL, PASS, Context, Result
from lit_ffn.bench.gpu_check.report import cell
from lit_ffn.errors import first_line
from lit_ffn.model import Attention, RotaryEmbedding

#: aten op (as ``torch.profiler`` names it) → the kernel it is; the math kernel is the unfused fallback.
BACKEND_OPS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)",
    "aten::_scaled_dot_product_cudnn_attention": "cuDNN",
    "aten::_scaled_dot_product_efficient_attention": "memory-efficient",
    "aten::_scaled_dot_product_fused_attention_overrideable": "fused (device backend)",
    "aten::_scaled_dot_product_attention_math": "math",
}
MATH = "math"
PROBED = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "cuDNN": SDPBackend.CUDNN_ATTENTION,
    "memory-efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
TIMED_REPEATS = 5


def kernel_of(op_names: set[str]) -> str | None:
    """The kernel an SDPA call used, from the aten ops a profiler saw (None: no SDPA op seen)."""
    found = [kernel for op, kernel in BACKEND_OPS.items() if op in op_names]
    fused = [kernel for kernel in found if kernel != MATH]
    return fused[0] if fused else (found[0] if found else None)


def decide(native: str | None, expand: str | None) -> tuple[str, str]:
    """``(model.sdpa_gqa, why)`` from the kernels that ``native`` and ``expand`` ran (None: failed)."""
    if native is not None and native != MATH:
        return "native", f"enable_gqa runs the {native} kernel"
    if expand is not None and expand != MATH:
        return "expand", f"enable_gqa runs {native or 'no kernel'}; with the kv heads repeated SDPA runs {expand}"
    return (
        "native",
        f"only the math kernel runs (enable_gqa: {native or 'none'}, kv heads repeated: {expand or 'none'})",
    )


class AttentionProbe:
    """One :class:`~lit_ffn.model.Attention` of the plan's shape with its input, as training calls it."""

    def __init__(self, ctx: Context, mode: str) -> None:
        plan = ctx.plan
        model = {"dim": 384, "n_heads": 8, "n_kv_heads": 4, "head_dim": 64, **plan.model}
        self.device, self.autocast = plan.device, plan.autocast
        torch.manual_seed(0)
        self.module = Attention(
            model["dim"], model["n_heads"], model["n_kv_heads"], model["head_dim"], sdpa_gqa=mode
        ).to(plan.device)
        self.x = torch.randn(plan.batch_size, plan.seq_len, model["dim"], device=plan.device, requires_grad=True)
        self.cos, self.sin = RotaryEmbedding(model["head_dim"])(plan.seq_len, plan.device)

    def step(self) -> None:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            y = self.module(self.x, self.cos, self.sin)
        y.float().square().mean().backward()
        self.x.grad = None
        self.module.zero_grad(set_to_none=True)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _forced(force_math: bool) -> contextlib.AbstractContextManager:
    return sdpa_kernel([SDPBackend.MATH]) if force_math else contextlib.nullcontext()


def observe(probe: AttentionProbe, force_math: bool = False) -> str | None:
    """The kernel one forward + backward ran, read from the profiler's aten ops."""
    from torch.profiler import ProfilerActivity, profile

    probe.step()  # warm-up outside the profile (lazy initialisation, autotuning)
    with _forced(force_math), profile(activities=[ProfilerActivity.CPU]) as prof:
        probe.step()
        probe.sync()
    return kernel_of({event.key for event in prof.key_averages()})


def probe_backends(probe: AttentionProbe) -> dict[str, str]:
    """``{kernel: "runs" | why not}`` for each backend alone, through ``sdpa_kernel``."""
    out = {}
    for name, backend in PROBED.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with sdpa_kernel([backend]):
                    probe.step()
                    probe.sync()
                out[name] = "runs"
            except Exception as err:  # noqa: BLE001 - a backend that refuses the call is what is being probed
                reasons = [first_line(w.message) for w in caught if "attention" in str(w.message).lower()]
                out[name] = "; ".join(reasons[:2]) or first_line(err)
    return out


def median_time(fn: Callable[[], None], sync: Callable[[], None], repeats: int = TIMED_REPEATS) -> float:
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def run(ctx: Context) -> Result:
    key, title = "sdpa", "SDPA kernel of the paper's GQA attention"
    observed, probed, times = {}, {}, {}
    with _quiet():
        for mode in ("native", "expand"):
            probe = AttentionProbe(ctx, mode)
            force = ctx.sdpa_force_math and mode == "native"
            observed[mode] = observe(probe, force_math=force)
            probed[mode] = probe_backends(probe)
            with _forced(force):
                times[mode] = median_time(probe.step, probe.sync)
            del probe
    mode, why = decide(observed["native"], observed["expand"])
    forced = " (--sdpa-force-math: enable_gqa held to the math kernel)" if ctx.sdpa_force_math else ""
    details = [
        (
            f"Attention at the plan's shape (batch {ctx.plan.batch_size} × {ctx.plan.seq_len}, {ctx.plan.precision}), "
            f"one forward + backward{forced}."
        ),
        "",
        "| model.sdpa_gqa | kernel observed (profiler) | fwd+bwd time (median of 5) | "
        + " | ".join(f"sdpa_kernel([{name}])" for name in PROBED)
        + " |",
        "|---|---|---|" + "---|" * len(PROBED),
    ]
    for m in ("native", "expand"):
        cells = " | ".join(cell(probed[m][name]) for name in PROBED)
        details.append(f"| {m} | {observed[m] or 'none seen'} | {times[m] * 1e3:.2f} ms | {cells} |")
    details += ["", f"Decision: `model.sdpa_gqa={mode}` — {why}."]
    data = {"observed": observed, "probed": probed, "time_s": times, "decision": mode, "why": why}
    data["forced_math"] = ctx.sdpa_force_math
    kernel = observed[mode]
    if kernel is None or kernel == MATH:
        return Result(key, title, FAIL, why, details, data)
    summary = f"{kernel} kernel with sdpa_gqa={mode}"
    if mode == "expand":
        ctx.set_sdpa_gqa("expand")
        ratio = times["native"] / times["expand"]
        summary = (
            f"fix: enable_gqa ran {observed['native'] or 'no kernel'}{forced}; model.sdpa_gqa=expand runs {kernel} "
            f"({times['native'] * 1e3:.2f} → {times['expand'] * 1e3:.2f} ms, {ratio:.2f}×); later items use it"
        )
    return Result(key, title, PASS, summary, details, data)


__all__ = ["BACKEND_OPS", "decide", "kernel_of", "observe", "probe_backends", "run"]
