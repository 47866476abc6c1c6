"""``GradNormMonitor``: ``vitals/grad_norm``, the global gradient norm before clipping."""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lit_ffn._lightning import should_update_logs
from lit_ffn.errors import UserError


class GradNormMonitor(Callback):
    """Logs ``vitals/grad_norm``: the total ``norm_type``-norm of all gradients, before clipping.

    ``‖g‖_p = (Σ_params ‖g_param‖_p^p)^{1/p}`` over the gradients the
    optimizer is about to use — the number ``gradient_clip_val`` is compared
    with.  Computed in ``on_before_optimizer_step`` (after the last
    micro-batch's backward, before Lightning clips) only on Lightning's
    logging steps, with :func:`torch.nn.utils.get_total_norm`; under FSDP2 the
    gradients are sharded DTensors and the norm is all-reduced with
    ``full_tensor()``; under FSDP1 they are plain tensors holding each rank's
    flat shard, so the ranks' Σ|g|ᵖ (max |g| for p = ∞) are all-reduced
    (:func:`sharded_total_norm`).  Logged with ``self.log``: a device tensor
    that Lightning reads back together with ``train/loss``.
    """

    def __init__(self, norm_type: float = 2.0) -> None:
        super().__init__()
        if not norm_type > 0:
            raise UserError(f"GradNormMonitor: norm_type must be > 0 (or inf), got {norm_type}")
        self.norm_type = float(norm_type)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if not should_update_logs(trainer):
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        from lightning.pytorch.strategies import FSDPStrategy

        if isinstance(trainer.strategy, FSDPStrategy) and trainer.world_size > 1:
            # every rank joins the all-reduce, also one that holds no gradient elements
            norm = sharded_total_norm(grads, self.norm_type, _all_reduce, pl_module.device)
        elif not grads:
            return
        else:
            norm = torch.nn.utils.get_total_norm(grads, norm_type=self.norm_type)
            if hasattr(norm, "full_tensor"):
                norm = norm.full_tensor()
        pl_module.log("vitals/grad_norm", norm, on_step=True, on_epoch=False)


def sharded_total_norm(
    local_grads: list[torch.Tensor], norm_type: float, all_reduce: Any, device: Any = "cpu"
) -> torch.Tensor:
    """‖g‖_p of gradients whose elements are split across ranks (FSDP1's flat shards), this rank
    holding ``local_grads``: ``(all_reduce_sum(Σ_local |g|ᵖ))^{1/p}``, or ``all_reduce_max(max |g|)``
    for p = ∞.  ``all_reduce(tensor, op)`` reduces in place over the ranks, ``op`` "sum" or "max"."""
    local_grads = [g for g in local_grads if g.numel()]
    local = (
        torch.nn.utils.get_total_norm(local_grads, norm_type=norm_type).float()
        if local_grads
        else torch.zeros((), device=device)
    )
    if math.isinf(norm_type):
        all_reduce(local, "max")
        return local
    powered = local.pow(norm_type)
    all_reduce(powered, "sum")
    return powered.pow(1.0 / norm_type)


def _all_reduce(tensor: torch.Tensor, op: str) -> None:
    import torch.distributed as dist

    dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)


__all__ = ["GradNormMonitor", "sharded_total_norm"]
