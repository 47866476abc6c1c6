"""Non-finite training loss or gradients: stop on the step it happens, or skip the batch.

Lightning 2.6 has no per-step NaN guard (``terminate_on_nan`` was removed;
``Trainer(detect_anomaly=True)`` is autograd's slow debugging mode;
``EarlyStopping(check_finite=True)`` looks at a monitored metric at
validation time), so this is written here.

:class:`NonFiniteGuard` is called from ``training_step`` with the loss of
the micro-batch, *before* backward, and again from ``on_before_optimizer_step``
with the step's gradients, *before* clipping and AdamW (a finite loss can
still have NaN/inf gradients, e.g. an overflow in backward; clipping would
spread them into every weight).  Under ``16-mixed`` the GradScaler already
skips steps with inf gradients and lowers its scale, so the gradient check
is left to it there.

* ``mode="raise"`` (default): raise :class:`NonFiniteLossError` — a
  :class:`~lit_ffn.errors.UserError`, so ``lit_ffn fit`` ends with one line
  naming the step and the last good checkpoint.  No optimizer step has used
  the bad batch, so that checkpoint (and the weights in memory) are clean.
* ``mode="skip"``: the optimizer step of this batch changes nothing.  Lightning
  refuses ``training_step`` returning ``None`` under DDP/FSDP, so instead the
  step runs its backward as usual (every rank takes part in the same
  collectives) and ``on_before_optimizer_step`` — before clipping and before
  AdamW — sets every gradient to ``None``; AdamW leaves parameters without a
  gradient untouched (no update, no weight decay, no moment decay).  The
  batch is consumed and ``global_step`` and the LR schedule advance, so
  ``max_steps`` still counts batches.  Skipped batches are counted, logged as
  ``train/nonfinite_skipped`` and kept in checkpoints.  With gradient
  accumulation the whole accumulated step is dropped.

Cost: per micro-batch two ``isnan``/``isinf`` on the loss scalar, kept on the
device (no host sync); per optimizer step one max-abs reduction over the local
gradients (``torch.nn.utils.get_total_norm`` with p = ∞: one read of the
gradients, small next to a step), one all-reduce of three numbers across ranks
(every rank must take the same decision, or DDP/FSDP collectives would hang)
and one device→host read.  (lit_ffn ≤ 4cee13f synchronised on every micro-batch
as well.)  A NaN loss is therefore acted on at the end of its optimizer step,
after its backward and before any parameter changes: the weights in memory and
the last checkpoint stay clean either way.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from lit_ffn.errors import UserError

NonFiniteMode = Literal["raise", "skip"]


class NonFiniteLossError(UserError):
    """The training loss was NaN or ±inf."""


def last_good_checkpoint(trainer: Any) -> tuple[str, int] | None:
    """(path, global_step) of the last checkpoint the run's ModelCheckpoint wrote, if any."""
    callback = getattr(trainer, "checkpoint_callback", None)
    if callback is None:
        return None
    path = getattr(callback, "last_model_path", "") or getattr(callback, "_last_checkpoint_saved", "")
    # AtomicCheckpoint keeps the step across a resume; ModelCheckpoint's own counter restarts at 0
    step = getattr(callback, "last_saved_step", None) or getattr(callback, "_last_global_step_saved", 0)
    if not path:
        return None
    return str(path), int(step)


class NonFiniteGuard:
    """Checks one loss per training step (see the module docstring).

    Args:
        mode: ``"raise"`` or ``"skip"``.
    """

    def __init__(self, mode: NonFiniteMode = "raise") -> None:
        if mode not in ("raise", "skip"):
            raise UserError(f"model.nonfinite must be 'raise' or 'skip', got {mode!r}")
        self.mode = mode
        self.skipped = 0
        self._loss_flags: torch.Tensor | None = None  # [any NaN loss, any inf loss] of this optimizer step

    def record_loss(self, loss: torch.Tensor) -> None:
        """Note whether a micro-batch's loss is NaN or ±inf — on the device, no host sync (called from
        ``training_step``; the decision is taken once per optimizer step in :meth:`before_optimizer_step`)."""
        loss = loss.detach()
        flags = torch.stack([torch.isnan(loss).any(), torch.isinf(loss).any()]).float()
        self._loss_flags = flags if self._loss_flags is None else torch.maximum(self._loss_flags, flags)

    @staticmethod
    def _local_gradients_nonfinite(optimizer: Any, device: Any) -> torch.Tensor:
        """1.0 when a local gradient holds a NaN or ±inf (max |g| is not finite), else 0.0 (on the device).

        Local tensors only: an FSDP2 DTensor's local shard, FSDP1's flat local shard, a DDP replica."""
        grads = [
            g.to_local() if hasattr(g, "to_local") else g
            for group in optimizer.param_groups
            for p in group["params"]
            if (g := p.grad) is not None
        ]
        grads = [g for g in grads if g.numel()]
        if not grads:  # a rank may own no gradient elements (FSDP1 padding); it still joins the all-reduce
            return torch.zeros((), device=device)
        return (~torch.isfinite(torch.nn.utils.get_total_norm(grads, norm_type=float("inf")))).float()

    def before_optimizer_step(self, optimizer: Any, module: Any = None) -> bool:
        """Decide this optimizer step (called from ``on_before_optimizer_step``, before clipping): True when
        its losses and gradients are finite on every rank.  Otherwise raise (mode "raise") or drop the
        step's gradients and return False (mode "skip").

        One all-reduce of three numbers (any NaN loss, any inf loss, any non-finite gradient) and one
        device→host read per optimizer step, whatever the number of micro-batches."""
        trainer = module.trainer if module is not None else None
        device = trainer.strategy.root_device if trainer is not None else "cpu"
        loss_flags = self._loss_flags if self._loss_flags is not None else torch.zeros(2, device=device)
        self._loss_flags = None
        # 16-mixed: the GradScaler skips inf/NaN gradient steps itself, so only the losses are checked
        scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
        grads_bad = (
            torch.zeros((), device=device) if scaler is not None else self._local_gradients_nonfinite(optimizer, device)
        )
        flags = torch.cat([loss_flags.to(device), grads_bad.reshape(1)])
        if trainer is not None and trainer.world_size > 1:
            flags = trainer.strategy.reduce(flags, reduce_op="sum")
        loss_nan, loss_inf, grads_nonfinite = (value > 0 for value in flags.tolist())  # the one host sync
        step = trainer.global_step if trainer is not None else "?"
        if not (loss_nan or loss_inf or grads_nonfinite):
            if self.mode == "skip" and module is not None:
                module.log("train/nonfinite_skipped", float(self.skipped), reduce_fx="max", sync_dist=False)
            return True
        what = (
            f"non-finite training loss ({'nan' if loss_nan else 'inf'})"
            if loss_nan or loss_inf
            else "non-finite gradients (the loss was finite)"
        )
        if self.mode == "skip":
            self.skipped += 1
            optimizer.zero_grad(set_to_none=True)
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(f"{what} at step {step}: optimizer step skipped ({self.skipped} skipped so far)")
            if module is not None:
                module.log("train/nonfinite_skipped", float(self.skipped), reduce_fx="max", sync_dist=False)
            return False
        last = last_good_checkpoint(trainer) if trainer is not None else None
        where = f"the last good checkpoint is {last[0]} (step {last[1]})" if last else "no checkpoint was written yet"
        epoch = f" (epoch {trainer.current_epoch})" if trainer is not None and (loss_nan or loss_inf) else ""
        raise NonFiniteLossError(
            f"{what} at step {step}{epoch}; {where}. Resume with `lit_ffn fit --config <run>/config.yaml "
            "--ckpt_path last` after lowering model.lr or setting trainer.gradient_clip_val, or set "
            "model.nonfinite=skip to skip such batches"
        )

    # checkpointed with the module (LitDecoder.on_save_checkpoint / on_load_checkpoint)
    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped = int(state.get("skipped", 0))
