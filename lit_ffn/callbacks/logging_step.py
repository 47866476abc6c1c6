"""``LoggingStepAlignment``: a resumed fit logs optimizer step ``k`` at step ``k``, as an uninterrupted one does."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_ffn._lightning import align_logging_step


class LoggingStepAlignment(Callback):
    """Fixes Lightning's logging step once per fit, in the first ``on_train_batch_start``
    (:func:`lit_ffn._lightning.align_logging_step`: a fit resumed from the end-of-fit ``last.ckpt`` would
    log every metric one step late).  ``lit_ffn fit`` puts it first among the callbacks, so that it runs
    before ``LearningRateMonitor`` and lit_ffn's monitors log the first step of the fit."""

    def __init__(self) -> None:
        super().__init__()
        self._aligned = False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._aligned = False

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if not self._aligned:
            align_logging_step(trainer)
            self._aligned = True


__all__ = ["LoggingStepAlignment"]
