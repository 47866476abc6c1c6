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

Cost: per micro-batch one ``isfinite`` on a scalar; per optimizer step one
max-abs reduction over the local gradients (``torch.nn.utils.get_total_norm``
with p = ∞: one read of the gradients, small next to a step); each check is
one all-reduce of a scalar across ranks (every rank must take the same
decision, or DDP/FSDP collectives would hang) and one device→host sync.
Lightning already syncs the loss to the host every step for the progress bar.
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
        self.drop_gradients = False

    @staticmethod
    def any_rank_nonfinite(loss: torch.Tensor, trainer: Any) -> bool:
        """True when the loss is not finite on this rank or any other (one scalar all-reduce)."""
        bad = (~torch.isfinite(loss.detach())).any().float()
        if trainer is not None and trainer.world_size > 1:
            bad = trainer.strategy.reduce(bad, reduce_op="sum")
        return bool(bad.item() > 0)

    def check(self, module: Any, loss: torch.Tensor) -> bool:
        """True: the loss is finite on every rank.  False (mode "skip"): this step's gradients will be
        dropped by :meth:`before_optimizer_step`.  Raises in mode "raise"."""
        trainer = module.trainer
        finite = not self.any_rank_nonfinite(loss, trainer)
        if self.mode == "skip":
            if not finite:
                self.skipped += 1
                self.drop_gradients = True
                from lightning.pytorch.utilities import rank_zero_warn

                rank_zero_warn(
                    f"non-finite training loss at step {trainer.global_step}: optimizer step skipped "
                    f"({self.skipped} skipped so far)"
                )
            module.log("train/nonfinite_skipped", float(self.skipped), reduce_fx="max", sync_dist=False)
            return finite
        if finite:
            return True
        value = loss.detach().float()
        kind = "nan" if torch.isnan(value).any() else "inf" if torch.isinf(value).any() else "nan/inf on another rank"
        last = last_good_checkpoint(trainer)
        where = f"the last good checkpoint is {last[0]} (step {last[1]})" if last else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"non-finite training loss ({kind}) at step {trainer.global_step} (epoch {trainer.current_epoch}); "
            f"{where}. Resume with `lit_ffn fit --config <run>/config.yaml --ckpt_path last` after lowering "
            "model.lr or setting trainer.gradient_clip_val, or set model.nonfinite=skip to skip such batches"
        )

    @staticmethod
    def any_rank_nonfinite_gradients(optimizer: Any, trainer: Any) -> bool:
        """True when a gradient on this rank or any other holds a NaN or ±inf (max |g| is not finite).

        Local tensors only: an FSDP2 DTensor's local shard, FSDP1's flat local shard, a DDP replica."""
        grads = [
            g.to_local() if hasattr(g, "to_local") else g
            for group in optimizer.param_groups
            for p in group["params"]
            if (g := p.grad) is not None
        ]
        grads = [g for g in grads if g.numel()]
        if grads:
            bad = (~torch.isfinite(torch.nn.utils.get_total_norm(grads, norm_type=float("inf")))).float()
        else:  # a rank may own no gradient elements (FSDP1 padding); it still joins the all-reduce
            bad = torch.zeros((), device=trainer.strategy.root_device if trainer is not None else "cpu")
        if trainer is not None and trainer.world_size > 1:
            bad = trainer.strategy.reduce(bad, reduce_op="sum")
        return bool(bad.item() > 0)

    def before_optimizer_step(self, optimizer: Any, module: Any = None) -> None:
        """Drop the gradients of a step with a non-finite loss, and check the gradients of every other
        step (called from ``on_before_optimizer_step``, before clipping)."""
        if self.drop_gradients:
            optimizer.zero_grad(set_to_none=True)
            self.drop_gradients = False
            return
        trainer = module.trainer if module is not None else None
        if getattr(getattr(trainer, "precision_plugin", None), "scaler", None) is not None:
            return  # 16-mixed: the GradScaler skips inf/NaN steps itself
        if not self.any_rank_nonfinite_gradients(optimizer, trainer):
            return
        step = trainer.global_step if trainer is not None else "?"
        if self.mode == "skip":
            self.skipped += 1
            optimizer.zero_grad(set_to_none=True)
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(
                f"non-finite gradients (finite loss) at step {step}: optimizer step skipped "
                f"({self.skipped} skipped so far)"
            )
            if module is not None:
                module.log("train/nonfinite_skipped", float(self.skipped), reduce_fx="max", sync_dist=False)
            return
        last = last_good_checkpoint(trainer) if trainer is not None else None
        where = f"the last good checkpoint is {last[0]} (step {last[1]})" if last else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"non-finite gradients (the loss was finite) at step {step}; {where}. Resume with "
            "`lit_ffn fit --config <run>/config.yaml --ckpt_path last` after lowering model.lr or setting "
            "trainer.gradient_clip_val, or set model.nonfinite=skip to skip such batches"
        )

    # checkpointed with the module (LitDecoder.on_save_checkpoint / on_load_checkpoint)
    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped = int(state.get("skipped", 0))
