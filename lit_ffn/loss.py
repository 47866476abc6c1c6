"""Next-token cross-entropy from hidden states without materialising all logits.

With Qwen3's 151,936-entry vocabulary a 16×2048-token micro-batch has 4.6 GiB
of bf16 logits (9.3 GiB in fp32) plus as much again for their gradient.  The
loss and its gradients only ever need one chunk of rows at a time:

    ℓ = (1/N) Σ_n [ lse_n − z_{n,y_n} ],   z = H Wᵀ      H: (N, D), W: (V, D), y: (N,)
    lse_n = m_n + log Σ_v exp(z_nv − m_n),  m_n = max_v z_nv
    ∂ℓ/∂z = (softmax(z) − onehot(y)) / N,   softmax(z)_nv = exp(z_nv − m_n) / Σ_v exp(z_nv − m_n)
    ∂ℓ/∂H = (∂ℓ/∂z) W,          ∂ℓ/∂W = (∂ℓ/∂z)ᵀ H

(N counts the targets that are not ``IGNORE_INDEX``; ignored rows get zero
loss and zero gradient.)

:class:`ChunkedLinearCrossEntropy` evaluates these chunk by chunk in the
forward pass and keeps only ∂ℓ/∂H (N, D) and ∂ℓ/∂W (V, D), which ``backward``
scales by the incoming gradient.  Peak extra memory is one (C, V) block
instead of (N, V) logits and their (N, V) gradient.  The matmul FLOPs are those
of the plain loss (3 matmuls of 2·N·V·D).

Per chunk of C rows, everything happens in one fp32 (C, V) buffer that is
reused for every chunk (the logits are written once and read by a few passes;
no (C, V) temporary is ever allocated):

    1. z = H_c Wᵀ                       matmul into the buffer (via a bf16 buffer and one copy
                                        when the matmuls run in bf16: AMX / tensor cores)
    2. t = z[y],  m = max z             a gather and one read
    3. E = exp(z − m) in place, s = Σ E ``sub_``/``exp_`` and one sum: lse = m + log s
                                        (``torch.logsumexp`` is the same math but allocates a
                                        (C, V) temporary: ~3× slower on CPU)
    4. with r = 1/N (0 for ignored rows), ∂ℓ/∂z = (r/s)·E − r·onehot(y); its row scales and
       its one-hot part are applied on the small (C, D) side of the two matmuls, so the
       (C, V) block is never rescaled or scattered into:
           ∂H_c  = (r/s)·(E W) − r·W[y]          (written straight into its rows of ∂H)
           ∂W   += Eᵀ ((v/s)·H_c) − scatter_y(v·H_c)   (v = 1 for valid rows, 0 for ignored;
                                                 the first chunk writes, no zeros)
       and ∂W is multiplied by 1/N once, in fp32, after the last chunk.  Keeping 1/N out
       of the low-precision operand matters under fp16: r/s ≈ 1/(N·V) ≈ 2e-10 for a
       32k-token batch is below fp16's smallest subnormal (6e-8) and would zero the whole
       softmax part of ∂W, while 1/s ≥ 1/V stays representable (bf16 has fp32's range).

On CPU, torch has no caching allocator: every fresh (C, V) tensor is a new
``mmap`` whose pages the kernel faults in and zeroes on first touch (measured:
filling a fresh 622 MB block took 3.6× as long as refilling a reused one).
The buffer is therefore kept between calls on CPU (:func:`release_workspace`
frees it); on CUDA the caching allocator already does this.

Under autocast (Lightning's ``bf16-mixed``) the three matmuls run in the
autocast dtype, like ``F.linear`` would, while the softmax, the loss, ∂H and ∂W
are accumulated in fp32 and the gradients are returned in the dtypes of the
inputs.  Nothing here synchronises host and device (1/N stays a tensor).
Measurements: ``docs/benchmarks.md``.

Written by hand because the fused kernels that exist (Liger's
``LigerFusedLinearCrossEntropyLoss``, Apple's ``cut-cross-entropy``) are
Triton/CUDA only, and lit_ffn must run and be tested on CPU.  Equality with
``F.cross_entropy(H Wᵀ, y)`` is tested in ``tests/test_loss.py``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100

#: CPU scratch buffers by dtype, reused across calls (see the module docstring).
_CPU_WORKSPACE: dict[torch.dtype, torch.Tensor] = {}


def release_workspace() -> None:
    """Free the CPU scratch buffers kept between calls (at most C·V·(4 + 2) bytes)."""
    _CPU_WORKSPACE.clear()


def _scratch(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised (rows, cols) buffer; on CPU the same memory on every call."""
    numel = rows * cols
    if device.type != "cpu" or torch.compiler.is_compiling():
        return torch.empty(rows, cols, dtype=dtype, device=device)
    buffer = _CPU_WORKSPACE.get(dtype)
    if buffer is None or buffer.numel() < numel:
        _CPU_WORKSPACE.pop(dtype, None)  # free the old one before allocating the larger one
        with torch.inference_mode(False):  # a buffer born in validation must serve training too
            buffer = _CPU_WORKSPACE[dtype] = torch.empty(numel, dtype=dtype)
    return buffer[:numel].view(rows, cols)


def _at_least_fp32(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _matmul_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype ``F.linear(hidden, weight)`` would compute in (autocast included)."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.promote_types(hidden.dtype, weight.dtype)


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ weight.T`` against ``targets``, chunked over rows.

    Shapes: hidden (N, D), weight (V, D), targets (N,) int64 → a 0-dim loss.
    Gradients are computed in ``forward`` (one pass over the logits) and only
    scaled in ``backward``; a second backward through the same graph is refused.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        chunk_size: int,
        compute_grad: bool,
    ) -> torch.Tensor:
        device = hidden.device
        mm_dtype = _matmul_dtype(hidden, weight)
        acc_dtype = _at_least_fp32(mm_dtype)
        with torch.autocast(device.type, enabled=False):
            h_all, w = hidden.to(mm_dtype), weight.to(mm_dtype)
            n, vocab = h_all.shape[0], w.shape[0]
            rows = min(chunk_size, n)
            valid_all = targets != IGNORE_INDEX
            # 1/N as a tensor: no host-device sync (clamp: all-ignored gives loss 0, not NaN)
            inv_n = 1.0 / valid_all.sum().clamp(min=1).to(acc_dtype)
            total = torch.zeros((), dtype=acc_dtype, device=device)
            z_buf = _scratch(rows, vocab, acc_dtype, device)
            low_buf = _scratch(rows, vocab, mm_dtype, device) if mm_dtype != acc_dtype else None
            grad_hidden = torch.empty(h_all.shape, dtype=acc_dtype, device=device) if compute_grad else None
            grad_weight = torch.empty(w.shape, dtype=acc_dtype, device=device) if compute_grad else None
            if compute_grad and low_buf is not None:  # bf16 matmul outputs, accumulated in fp32
                grad_hidden_part = torch.empty((rows, w.shape[1]), dtype=mm_dtype, device=device)
                grad_weight_part = torch.empty_like(w)
            for start in range(0, n, chunk_size):
                stop = min(start + chunk_size, n)
                h, y, valid = h_all[start:stop], targets[start:stop], valid_all[start:stop]
                y_safe = y.clamp(min=0)  # (C,): ignored rows index row 0, masked below
                z = z_buf[: stop - start]  # (C, V) acc_dtype
                if low_buf is None:
                    torch.mm(h, w.t(), out=z)
                else:
                    low = low_buf[: stop - start]
                    torch.mm(h, w.t(), out=low)
                    z.copy_(low)
                target_logit = z.gather(1, y_safe[:, None])  # (C, 1)
                row_max = z.amax(dim=1, keepdim=True)  # (C, 1)
                exp = z.sub_(row_max).exp_()  # E = exp(z − m), in place
                sum_exp = exp.sum(dim=1, keepdim=True)  # (C, 1)
                lse = row_max + sum_exp.log()
                total += torch.where(valid[:, None], lse - target_logit, 0.0).sum()
                if not compute_grad:
                    continue
                # ∂ℓ/∂z = r·E/s − r·onehot(y) with r = 1/N (0 for ignored rows).  The row scales r/s
                # and the one-hot part are applied on the small (C, D) side of the two matmuls:
                #   ∂H_c = (r/s)·(E W) − r·W[y],     ∂W += Eᵀ((r/s)·H_c) − scatter_y(r·H_c)
                # so the (C, V) block is only written by the matmul and exp, never rescaled.
                v = valid.to(acc_dtype)[:, None]  # (C, 1): 1 valid, 0 ignored
                r = v * inv_n  # (C, 1)
                row_scale = r / sum_exp  # (C, 1)
                h_acc = h.to(acc_dtype)
                e = exp if low_buf is None else low.copy_(exp)
                gh = grad_hidden[start:stop]
                if low_buf is None:
                    torch.mm(e, w, out=gh)
                else:
                    gh.copy_(torch.mm(e, w, out=grad_hidden_part[: stop - start]))
                gh.mul_(row_scale).sub_(w.index_select(0, y_safe).to(acc_dtype) * r)
                # ∂W is accumulated without its 1/N (applied after the loop): see the module docstring
                h_scaled = (h_acc * (v / sum_exp)).to(mm_dtype)
                if low_buf is not None:
                    torch.mm(e.t(), h_scaled, out=grad_weight_part)
                    if start == 0:
                        grad_weight.copy_(grad_weight_part)
                    else:
                        grad_weight.add_(grad_weight_part)
                elif start == 0:
                    torch.mm(e.t(), h_scaled, out=grad_weight)
                else:
                    grad_weight.addmm_(e.t(), h_scaled)
                grad_weight.index_add_(0, y_safe, h_acc * v, alpha=-1)
            if compute_grad:
                if n == 0:  # no rows: the loop wrote nothing into the (empty, uninitialised) buffers
                    grad_weight.zero_()
                grad_weight.mul_(inv_n)
                ctx.save_for_backward(grad_hidden.to(hidden.dtype), grad_weight.to(weight.dtype))
        return total * inv_n

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight = ctx.saved_tensors
        # In place: these buffers are ours alone; saving them again would be a (V, D) copy.
        return grad_hidden.mul_(grad_output), grad_weight.mul_(grad_output), None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int | None = 1024,
) -> torch.Tensor:
    """Mean next-token loss of ``hidden (..., D) @ weight (V, D)ᵀ`` vs ``targets (...)``.

    ``chunk_size`` rows at a time (``None`` or 0: the plain, fully
    materialised ``F.cross_entropy``, kept as the reference and for
    debugging).  Targets equal to -100 are ignored.
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    if not chunk_size:
        logits = F.linear(hidden, weight)
        return F.cross_entropy(logits.to(_at_least_fp32(logits.dtype)), targets, ignore_index=IGNORE_INDEX)
    if chunk_size < 0:
        raise ValueError(f"loss chunk_size must be >= 0 (0: plain loss), got {chunk_size}")
    compute_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return ChunkedLinearCrossEntropy.apply(hidden, weight, targets, chunk_size, compute_grad)
