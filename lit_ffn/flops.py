"""FLOPs of a training step and the peak FLOP/s of a device: the two halves of MFU.

MFU = (model FLOPs per token × tokens per second) / peak FLOP/s of the device.  Both
``vitals/mfu`` (:class:`lit_ffn.callbacks.TokenThroughputMonitor`) and ``lit_ffn bench`` take the
numerator from :func:`flops_per_token` and the denominator from :func:`peak_flops`, so the same
run on the same device gets the same MFU from either.

Peaks, in order:

1. a number the user gives (``available_flops`` / ``--peak-tflops``);
2. GPUs: the dense (no sparsity) datasheet value of :data:`DENSE_PEAK_FLOPS` for chips that
   Lightning's table misses or lists with sparsity (H100 SXM, H200), else Lightning's
   ``get_available_flops`` table;
3. anything else (CPUs): the best of a few timed ``2048³`` matmuls in the compute dtype
   (:func:`measured_matmul_flops`), a practical ceiling on a machine with no datasheet number.
"""

from __future__ import annotations

import time
from typing import Any

import torch

#: Dense (no sparsity) peak FLOP/s of GPUs Lightning's table misses or lists with sparsity.
#: NVIDIA H100/H200 datasheets list bf16 1,979 TFLOPS "with sparsity", i.e. 989 dense.
DENSE_PEAK_FLOPS: dict[str, dict[Any, float]] = {
    "h200": {torch.bfloat16: 989.4e12, torch.float16: 989.4e12, "tfloat32": 494.7e12, torch.float32: 66.9e12},
    "h100 sxm": {torch.bfloat16: 989.4e12, torch.float16: 989.4e12, "tfloat32": 494.7e12, torch.float32: 66.9e12},
}

#: The matmul size timed for a measured peak.
MEASURED_MATMUL_SIZE = 2048

FLOP_FORMULA = (
    "flops/token = 6*(N_non-embedding + V*D) + 6*L*H*E*T (lit_ffn.flops.flops_per_token): "
    "forward+backward matmuls, LM head included (tied or not), embedding lookup excluded, "
    "causal attention QK^T and AV counted at half of T^2"
)


def flops_per_token(model: Any, seq_len: int) -> float:
    """Training FLOPs per token of a :class:`lit_ffn.model.Decoder`: 6·N (N = non-embedding
    parameters + the LM head matmul, which is a real matmul even when tied) plus causal attention
    6·L·H·E·T (QKᵀ and AV: forward 2·2·T·E per head, halved because a causal mask leaves half of
    the T×T scores, times 3 for forward + backward).

    This is PaLM's formula (Chowdhery et al. 2022, appendix B: 6N + 12·L·H·Q·T) with the attention
    term halved for the causal mask, i.e. the work a causal kernel really does; PaLM, nanoGPT and
    torchtitan keep the 12, so their MFU is higher for the same run (+88M FLOPs/token, ~15%, for
    the 83M paper model at T = 2048)."""
    n_matmul = model.num_parameters(exclude_embedding=True)
    if model.lm_head is None:  # tied: the head matmul still costs V·D per token
        n_matmul += model.num_parameters() - model.num_parameters(exclude_embedding=True)
    attn = model.layers[0].attn if len(model.layers) else None
    attn_flops = 0.0
    if attn is not None:
        attn_flops = 6.0 * len(model.layers) * attn.n_heads * attn.head_dim * seq_len
    return 6.0 * n_matmul + attn_flops


def precision_dtype(precision: Any) -> torch.dtype:
    """The dtype matmuls run in for a Lightning precision (``"bf16-mixed"`` → bf16, ``"32-true"``
    or None → fp32, ``"16-mixed"`` → fp16, ``"64-true"`` → fp64)."""
    text = str(precision if precision is not None else "32-true")
    if text.startswith("bf16"):
        return torch.bfloat16
    if text.startswith("16"):
        return torch.float16
    if text.startswith("64"):
        return torch.float64
    return torch.float32


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured_matmul_flops(
    device: torch.device, dtype: torch.dtype, size: int = MEASURED_MATMUL_SIZE, repeats: int = 3
) -> float:
    """Dense-matmul FLOP/s this device reaches right now: the best of ``repeats`` timed ``size³``
    matmuls in ``dtype`` (after one untimed).  Shared or busy machines give lower, noisier values."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def datasheet_peak(device: torch.device, dtype: torch.dtype) -> tuple[float | None, str]:
    """``(peak FLOP/s, source)`` of a GPU from :data:`DENSE_PEAK_FLOPS` or Lightning's table
    (``(None, …)`` for a device neither knows, and for every non-CUDA device)."""
    if device.type != "cuda":
        return None, f"no datasheet peak for {device.type}"
    name = torch.cuda.get_device_name(device).lower()
    key: Any = dtype
    if dtype is torch.float32 and torch.get_float32_matmul_precision() != "highest":
        key = "tfloat32"
    for chip, table in DENSE_PEAK_FLOPS.items():
        if all(part in name for part in chip.split()) or (chip == "h100 sxm" and "h100" in name and "hbm3" in name):
            return table[key], f"NVIDIA datasheet, dense {key} ({chip.upper()})"
    from lightning.fabric.utilities.throughput import get_available_flops

    flops = get_available_flops(device, dtype)
    return (float(flops), f"Lightning's table ({dtype})") if flops else (None, f"unknown GPU {name!r}")


def peak_flops(
    device: torch.device, dtype: torch.dtype, override: float | None = None, measure: bool = True
) -> tuple[float | None, str]:
    """``(peak FLOP/s of one device, where the number comes from)`` for MFU (see the module docstring).

    ``measure=False`` gives ``(None, …)`` instead of timing a matmul where no datasheet applies.
    """
    if override:
        return float(override), "given"
    peak, source = datasheet_peak(device, dtype)
    if peak is not None or not measure:
        return peak, source
    peak = measured_matmul_flops(device, dtype)
    name = str(dtype).removeprefix("torch.")
    return (
        peak,
        f"measured {MEASURED_MATMUL_SIZE}^3 {name} matmul on this {device.type}, now ({peak / 1e9:.0f} GFLOP/s)",
    )


def mfu(flops_per_token_: float, tokens_per_second: float, peak: float) -> float:
    """Model FLOPs utilisation of one device: ``flops_per_token · tokens_per_second / peak``."""
    return flops_per_token_ * tokens_per_second / peak


__all__ = [
    "DENSE_PEAK_FLOPS",
    "FLOP_FORMULA",
    "datasheet_peak",
    "flops_per_token",
    "measured_matmul_flops",
    "mfu",
    "peak_flops",
    "precision_dtype",
]


def flop_shares(model: Any, seq_len: int) -> dict[str, float]:
    """Shares of :func:`flops_per_token` spent in the FFNs, attention (projections + the causal score
    term) and the LM head; ``other`` is the rest (norms' and FFN-internal gains' parameters).  Sums to 1."""
    total = flops_per_token(model, seq_len)
    ffn = 6.0 * sum(p.numel() for layer in model.layers for p in layer.ffn.parameters())
    attention = 6.0 * sum(p.numel() for layer in model.layers for p in layer.attn.parameters())
    if len(model.layers):
        attn = model.layers[0].attn
        attention += 6.0 * len(model.layers) * attn.n_heads * attn.head_dim * seq_len
    head = 6.0 * (model.num_parameters() - model.num_parameters(exclude_embedding=True))
    if model.lm_head is not None:  # untied: the head is a non-embedding matrix, the input table is not a matmul
        head = 6.0 * model.lm_head.weight.numel()
    shares = {"ffn": ffn / total, "attention": attention / total, "head": head / total}
    shares["other"] = 1.0 - sum(shares.values())
    return shares
