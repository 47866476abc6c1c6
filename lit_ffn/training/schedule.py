"""Making a run longer, honestly: what the schedule does when ``trainer.max_steps`` grows on a resume.

The learning rate of step ``t`` is ``lr × m(t; S)`` with ``S = trainer.max_steps``
(:func:`lit_ffn.training.optim.lr_multiplier`); a resumed fit rebuilds the schedule with the *new* S.

* ``cosine``: m depends on S at every step after the warm-up, so a finished run resumed with S' = 2S
  continues at m(S; 2S) ≈ the middle of a new cosine — the learning rate jumps from the floor back up.
  The end-of-fit summary says so, with the numbers (:func:`train_longer`).
* ``wsd`` (warmup-stable-decay): m(t; S) = 1 for every t before the decay, whatever S.
  :class:`DecayStartCheckpoint` saves ``checkpoints/decay_start.ckpt`` at the first decay step t_d; a fit
  resumed from it with any S' ≥ S trains exactly as a run planned for S' from the start (same weights,
  same data order, same learning rates; tested), so one run yields several training lengths.

:func:`realign_learning_rates` makes the first resumed step follow the new schedule too: Lightning restores
the optimizer's learning rate as the old schedule set it for that step, and ``LambdaLR`` only recomputes it
after the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch.optim.lr_scheduler import LambdaLR

from lit_ffn.training.optim import decay_start, lr_multiplier

#: The stable-phase checkpoint of a ``wsd`` run, next to ``last.ckpt``.
DECAY_START_CKPT = "decay_start.ckpt"


def realign_learning_rates(schedulers: Any) -> None:
    """Set each param group's learning rate to ``base_lr × λ(last_epoch)``: what ``LambdaLR`` computes.

    On a resume with the same ``max_steps`` this is the value the optimizer already holds (the same
    expression, so bit for bit); with another ``max_steps`` it is the new schedule's value for the first
    resumed step, which would otherwise train at the old schedule's.
    """
    for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
        if isinstance(scheduler, LambdaLR):
            groups = scheduler.optimizer.param_groups
            for group, base_lr, lmbda in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
                group["lr"] = base_lr * lmbda(scheduler.last_epoch)


class DecayStartCheckpoint(Callback):
    """Saves ``<checkpoint dir>/decay_start.ckpt`` when a ``wsd`` run reaches its first decay step.

    The checkpoint holds the state after ``t_d`` optimizer steps, all of them at learning rates that do not
    depend on the run's length: ``lit_ffn fit --config RUN/config.yaml --ckpt_path
    RUN/checkpoints/decay_start.ckpt --trainer.max_steps=S'`` continues the stable phase and decays over the
    last ``decay_fraction`` of S'.  Added by :meth:`LitDecoder.configure_callbacks` under ``wsd``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._saved_at: int | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A fit resumed from decay_start.ckpt restores the checkpoint callback's state of that moment, when
        # it may not have written last.ckpt yet (last_model_path ""): ModelCheckpoint would then treat the
        # run's own last.ckpt as someone else's file and write last-v1.ckpt beside it.  The run's
        # last.ckpt is this callback's to replace, as after a resume from last.ckpt itself.
        checkpoint = trainer.checkpoint_callback
        dirpath = getattr(checkpoint, "dirpath", None)
        if dirpath is not None and getattr(checkpoint, "save_last", False) and not checkpoint.last_model_path:
            last = Path(dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"
            if last.exists() or last.is_symlink():
                checkpoint.last_model_path = str(last)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        total = getattr(pl_module, "schedule_steps", trainer.max_steps)
        start = decay_start(int(total), float(pl_module.hparams.decay_fraction))
        if trainer.global_step != start or self._saved_at == start:
            return
        self._saved_at = start
        checkpoint = trainer.checkpoint_callback
        dirpath = getattr(checkpoint, "dirpath", None)
        if dirpath is None:
            rank_zero_warn("model.schedule=wsd: no checkpoint directory, so no decay_start.ckpt to extend the run from")
            return
        trainer.save_checkpoint(str(Path(dirpath) / DECAY_START_CKPT))  # every rank: a collective under FSDP2


@dataclass(frozen=True)
class TrainLonger:
    """The "train longer" command of the end-of-fit summary: which checkpoint, how long, what happens."""

    ckpt_path: str
    max_steps: int
    explanation: str


def train_longer(hparams: Any, step: int, total_steps: int, checkpoint_dir: Path) -> TrainLonger:
    """How to make a run that ended at ``step`` (of ``total_steps``) twice as long, and what the learning
    rate will do — in numbers, computed with the schedule the resumed fit will build."""
    new_total = max(2 * step, 1)
    kind = hparams.get("schedule", "cosine")
    lr, warmup, floor = float(hparams["lr"]), int(hparams["warmup_steps"]), float(hparams["min_lr_ratio"])
    fraction = float(hparams.get("decay_fraction", 0.2))

    def rate(t: int, total: int) -> float:
        return lr * lr_multiplier(kind, t, warmup, total, floor, fraction)

    if kind == "wsd":
        start = decay_start(total_steps, fraction)
        stable = checkpoint_dir / DECAY_START_CKPT
        if 0 < start <= step and stable.exists():
            new_start = decay_start(new_total, fraction)
            return TrainLonger(
                str(stable),
                new_total,
                f"continues the stable phase from step {start} at lr {rate(start, new_total):.2e} as a "
                f"{new_total}-step run would, decays from step {new_start} to {rate(new_total - 1, new_total):.2e}",
            )
    before, after = rate(step - 1, total_steps), rate(step, new_total)
    if kind == "wsd" or abs(after - before) <= 1e-12 * lr:
        what = f"step {step} trains at lr {after:.2e} (step {step - 1}: {before:.2e})"
    else:
        what = (
            f"the {kind} is re-fitted to {new_total} steps: step {step} trains at lr {after:.2e}, step {step - 1} "
            f"trained at {before:.2e} — a re-warm, not a continuation (model.schedule=wsd runs continue)"
        )
    return TrainLonger("last", new_total, what)


__all__ = ["DECAY_START_CKPT", "DecayStartCheckpoint", "TrainLonger", "realign_learning_rates", "train_longer"]
