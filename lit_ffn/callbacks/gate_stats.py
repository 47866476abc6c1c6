"""On-device reductions of gate activations into a few exactly-combinable numbers.

The gate-statistics callback (:class:`lit_ffn.callbacks.GateStatistics`)
summarises every tensor an FFN records (``GateRecorder.record``) into

* ``sums``  — float64 ``(5,)``: ``[n, Σx, Σx², #{|x| < τ}, #{x < 0}]``
* ``maxes`` — float64 ``(2,)``: ``[max x, max(−x)]``

per micro-batch, without leaving the device.  Sums add and maxima max, so the
statistics of a whole optimizer step are *exactly* those of all its tokens
whatever the split into micro-batches and ranks: sum the ``sums`` (across
ranks: ``all_reduce(SUM)``), take the elementwise max of the ``maxes``
(``all_reduce(MAX)``), then :func:`summarize`:

    mean = Σx / n
    std  = sqrt(Σx²/n − mean²)                (population std, over all elements)
    frac_near_zero = #{|x| < τ} / n,   frac_negative = #{x < 0} / n
    max_abs = max(max x, max(−x)),     min = −max(−x),   max = max x

Accuracy.  ``Σx² − n·mean²`` cancels catastrophically when the spread is
small against the mean (DynamicGEGLU's α at init is one constant for every
token; a naive float32 sum of squares would report a std of ~1e-4 there).  So
each micro-batch is first reduced to its mean and centred sum of squares
``M2 = Σ(x − mean)²`` (two passes, accurate in float32), and only these are
carried in float64: ``Σx² = M2 + n·mean²``.  The remaining cancellation
then happens in float64 between numbers that are each accurate to float32
precision: within one micro-batch the std is exact to ~1e-7 relative of the
spread rather than of the mean.  Across micro-batches each one's float32
mean error (~1e-7 relative of the mean) shows up as a small spurious
between-batch spread (a constant 0.9061 split into 4 micro-batches reports a
std of ~2e-7 instead of 0).  (MPS has no float64: there the carry is float32.)

Everything here is a pure function of tensors: no host sync, no distributed
calls — the caller decides when to reduce across ranks and read back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: Names of the entries of a ``sums`` vector, in order.
SUM_FIELDS = ("count", "sum", "sum_sq", "near_zero", "negative")
#: Names of the entries of a ``maxes`` vector, in order.
MAX_FIELDS = ("max", "neg_min")
#: The statistics :func:`summarize` returns, in order (tag suffixes ``<name>_<stat>``).
STATS = ("mean", "std", "frac_near_zero", "frac_negative", "max_abs", "min", "max")


def carry_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (CPU, CUDA), else float32 (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def moments(x: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce ``x`` (any shape, any float dtype) to ``(sums (5,), maxes (2,))`` on its device.

    ``sums = [n, Σx, Σx², #{|x| < threshold}, #{x < 0}]`` and
    ``maxes = [max x, max(−x)]``, both in :func:`carry_dtype`.  ``Σx²`` is
    rebuilt from the centred sum of squares (see the module docstring).  Costs a
    handful of elementwise passes over ``x`` (plus a float32 copy when ``x``
    is bf16/fp16); never synchronises with the host.
    """
    if x.numel() == 0:
        raise ValueError("cannot summarise an empty tensor")
    dtype = carry_dtype(x.device)
    xf = x.detach().float()
    # Two-pass centred moments (mean, then ‖x − mean‖²); torch.var_mean gives the
    # same numbers but its Welford kernel is ~10x slower on CPU.
    mean32 = xf.mean()
    m2 = torch.linalg.vector_norm(xf - mean32).to(dtype).square()  # Σ(x − mean)²
    mean = mean32.to(dtype)
    # torch.full, not torch.tensor: a fill kernel, no host-to-device copy (which would sync on CUDA).
    n = torch.full((), float(xf.numel()), dtype=dtype, device=x.device)
    near_zero = torch.count_nonzero(xf.abs() < threshold).to(dtype)
    negative = torch.count_nonzero(xf < 0).to(dtype)
    sums = torch.stack([n, n * mean, m2 + n * mean * mean, near_zero, negative])
    lo, hi = torch.aminmax(xf)
    maxes = torch.stack([hi, -lo]).to(dtype)
    return sums, maxes


def combine(sums: Sequence[torch.Tensor], maxes: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge per-micro-batch ``(sums, maxes)`` of the same tensor: add sums, max maxes.

    Each argument is a sequence of ``(..., 5)`` resp. ``(..., 2)`` tensors;
    the result has the shape of one element.  Across ranks the same merge is
    ``all_reduce(SUM)`` resp. ``all_reduce(MAX)``.
    """
    if len(sums) == 0 or len(sums) != len(maxes):
        raise ValueError(f"need one maxes per sums and at least one of each, got {len(sums)} and {len(maxes)}")
    return torch.stack(list(sums)).sum(0), torch.stack(list(maxes)).amax(0)


def summarize(sums: torch.Tensor, maxes: torch.Tensor) -> torch.Tensor:
    """``(..., 5)`` sums and ``(..., 2)`` maxes → ``(..., 7)`` statistics in the order of :data:`STATS`.

    ``[mean, std, frac_near_zero, frac_negative, max_abs, min, max]``; the
    variance is clamped at 0 against rounding.  Stays on the device.
    """
    n, s1, s2, near_zero, negative = sums.unbind(-1)
    hi, neg_lo = maxes.unbind(-1)
    mean = s1 / n
    std = (s2 / n - mean * mean).clamp_min(0).sqrt()
    return torch.stack([mean, std, near_zero / n, negative / n, torch.maximum(hi, neg_lo), -neg_lo, hi], dim=-1)


def subsample(x: torch.Tensor, max_values: int) -> torch.Tensor:
    """At most ``max_values`` elements of ``x``, evenly strided over its flattening, as a float32 copy.

    Used for histograms.  A copy (never a view), so the sample does not keep
    the whole activation alive.
    """
    flat = x.detach().reshape(-1)
    stride = max(1, flat.numel() // max(1, max_values))
    return flat[::stride][:max_values].to(torch.float32, copy=True)


__all__ = ["MAX_FIELDS", "STATS", "SUM_FIELDS", "carry_dtype", "combine", "moments", "subsample", "summarize"]
