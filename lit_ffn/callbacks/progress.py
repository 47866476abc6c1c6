"""The progress bar of ``lit_ffn fit``: ``step k/N`` with the train and validation loss.

Lightning's rich bar describes a run by epoch: ``Epoch 0/-2`` for step-based runs (``max_epochs=-1``,
upstream Lightning-AI/pytorch-lightning#21925, fixed by PR #21924 in 2.7).  lit_ffn runs are counted
in optimizer steps, so the description is the step; ``train/loss`` and ``val/loss`` are logged with
``prog_bar=True`` and show next to it.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar


class StepProgressBar(RichProgressBar):
    """``RichProgressBar`` whose training description is ``step k/N`` (optimizer steps)."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        total = f"/{trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else ""
        description = f"step {trainer.global_step}{total}"
        return f"{description:{len(self.validation_description)}}"

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the run's name is in the summary at the end; the bar shows losses
        return metrics

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        if self.progress is not None and self.train_progress_bar_id is not None:
            self.progress.update(self.train_progress_bar_id, description=self._get_train_description(0))


__all__ = ["StepProgressBar"]
