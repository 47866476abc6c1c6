"""Next-token cross-entropy from hidden states without materialising all logits.

With Qwen3's 151,936-entry vocabulary a 16×2048-token micro-batch has 4.6 GiB
of bf16 logits (9.3 GiB in fp32) plus as much again for their gradient.  The
loss and its gradients only ever need one chunk of rows at a time:

    ℓ = (1/N) Σ_n [ logsumexp_v(z_nv) − z_{n,y_n} ],   z = H Wᵀ      H: (N, D), W: (V, D)
    ∂ℓ/∂z = (softmax(z) − onehot(y)) / N
    ∂ℓ/∂H = (∂ℓ/∂z) W,          ∂ℓ/∂W = (∂ℓ/∂z)ᵀ H

:class:`ChunkedLinearCrossEntropy` evaluates these chunk by chunk in the
forward pass (the logits of a chunk are upcast to fp32, used and freed), keeps
only ∂ℓ/∂H (N, D) and ∂ℓ/∂W (V, D, fp32), and scales them by the incoming
gradient in backward.  Peak extra memory is one (chunk, V) fp32 block instead
of (N, V) logits and (N, V) gradients.  The matmul FLOPs are the same as the
plain loss (3 matmuls of N·V·D).

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


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ weight.T`` against ``targets``, chunked over rows."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        chunk_size: int,
        compute_grad: bool,
    ) -> torch.Tensor:
        n_valid = (targets != IGNORE_INDEX).sum().clamp(min=1)
        scale = 1.0 / n_valid.to(torch.promote_types(hidden.dtype, torch.float32))
        total = torch.zeros((), dtype=torch.promote_types(hidden.dtype, torch.float32), device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if compute_grad else None
        grad_weight = torch.zeros_like(weight, dtype=total.dtype) if compute_grad else None
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start : start + chunk_size]
            y = targets[start : start + chunk_size]
            valid = y != IGNORE_INDEX
            y_safe = y.clamp(min=0)
            z = _at_least_fp32(h @ weight.t())  # (C, V)
            lse = torch.logsumexp(z, dim=-1)
            target_logit = z.gather(1, y_safe[:, None]).squeeze(1)
            total += torch.where(valid, lse - target_logit, 0.0).sum()
            if compute_grad:
                dz = z.sub_(lse[:, None]).exp_()  # softmax, in place over z
                dz.scatter_add_(1, y_safe[:, None], -torch.ones_like(dz[:, :1]))
                dz.mul_((valid.to(dz.dtype) * scale)[:, None])
                dz = dz.to(h.dtype)
                grad_hidden[start : start + chunk_size] = dz @ weight
                grad_weight += dz.t() @ h
        if compute_grad:
            ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total * scale

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight = ctx.saved_tensors
        weight_dtype = ctx.weight_dtype
        return (
            grad_hidden * grad_output.to(grad_hidden.dtype),
            (grad_weight * grad_output).to(weight_dtype),
            None,
            None,
            None,
        )



def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int | None = 4096,
) -> torch.Tensor:
    """Mean next-token loss of ``hidden (..., D) @ weight (V, D)ᵀ`` vs ``targets (...)``.

    ``chunk_size`` rows at a time (``None`` or 0: the plain, fully
    materialised ``F.cross_entropy``, kept as the reference and for
    debugging).  Targets equal to -100 are ignored.
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    if not chunk_size:
        return F.cross_entropy(_at_least_fp32(hidden @ weight.t()), targets, ignore_index=IGNORE_INDEX)
    compute_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return ChunkedLinearCrossEntropy.apply(hidden, weight, targets, chunk_size, compute_grad)
