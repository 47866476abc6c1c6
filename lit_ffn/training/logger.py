"""The run's TensorBoard logger: Lightning's, without the ``epoch`` scalar.

Lightning adds ``epoch`` to every batch of ``self.log`` metrics it writes (``_LoggerConnector.log_metrics``:
``scalar_metrics.setdefault("epoch", current_epoch)``).  lit_ffn runs are step-based (``max_steps``,
``max_epochs=-1``): the tag is a constant 0 for most runs and, sorted first, it is the first card
TensorBoard shows.  ``lit_ffn fit`` uses this class for ``trainer.logger`` whenever a config names
Lightning's ``TensorBoardLogger`` (same arguments, same files).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger

LIGHTNING_CLASS_PATH = "lightning.pytorch.loggers.TensorBoardLogger"
CLASS_PATH = "lit_ffn.training.logger.TensorBoardLogger"


class TensorBoardLogger(LightningTensorBoardLogger):
    """``lightning.pytorch.loggers.TensorBoardLogger`` that does not write Lightning's ``epoch`` scalar."""

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        super().log_metrics({key: value for key, value in metrics.items() if key != "epoch"}, step)


__all__ = ["CLASS_PATH", "LIGHTNING_CLASS_PATH", "TensorBoardLogger"]
