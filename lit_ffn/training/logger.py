"""The run's loggers: Lightning's TensorBoard and CSV loggers, without the ``epoch`` metric, and a CSV
logger that keeps the run's history when the run is resumed.

Lightning adds ``epoch`` to every batch of ``self.log`` metrics it writes (``_LoggerConnector.log_metrics``:
``scalar_metrics.setdefault("epoch", current_epoch)``).  lit_ffn runs are step-based (``max_steps``,
``max_epochs=-1``): the tag is a constant 0 for most runs and, sorted first, it is the first card
TensorBoard shows.  ``lit_ffn fit`` uses these classes for ``trainer.logger`` whenever a config names
Lightning's ``TensorBoardLogger`` or ``CSVLogger`` (same arguments, same files): :data:`LIT_FFN_LOGGERS`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

LIGHTNING_CLASS_PATH = "lightning.pytorch.loggers.TensorBoardLogger"
CLASS_PATH = "lit_ffn.training.logger.TensorBoardLogger"
#: Lightning's class path → lit_ffn's drop-in replacement.
LIT_FFN_LOGGERS = {
    LIGHTNING_CLASS_PATH: CLASS_PATH,
    "lightning.pytorch.loggers.CSVLogger": "lit_ffn.training.logger.CSVLogger",
    # MLflow and W&B with a run directory, a resumable tracking run and one-line errors (training/tracking.py)
    "lightning.pytorch.loggers.MLFlowLogger": "lit_ffn.training.tracking.MLFlowLogger",
    "lightning.pytorch.loggers.mlflow.MLFlowLogger": "lit_ffn.training.tracking.MLFlowLogger",
    "lightning.pytorch.loggers.WandbLogger": "lit_ffn.training.tracking.WandbLogger",
    "lightning.pytorch.loggers.wandb.WandbLogger": "lit_ffn.training.tracking.WandbLogger",
}
#: lit_ffn's tracking loggers → (the argument naming the experiment, the argument naming the run).
TRACKING_LOGGERS = {
    "lit_ffn.training.tracking.MLFlowLogger": ("experiment_name", "run_name"),
    "lit_ffn.training.tracking.WandbLogger": ("project", "name"),
}


def without_epoch(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` less Lightning's ``epoch`` (module docstring); lit_ffn's MLflow and W&B loggers use it too."""
    return {key: value for key, value in metrics.items() if key != "epoch"}


class TensorBoardLogger(LightningTensorBoardLogger):
    """``lightning.pytorch.loggers.TensorBoardLogger`` that does not write Lightning's ``epoch`` scalar."""

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        super().log_metrics(without_epoch(metrics), step)


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued, not deleted.

    Lightning's ``_ExperimentWriter._check_log_dir_exists`` removes ``metrics.csv`` of a directory that
    has one ("Previous log files in this directory will be deleted"): a resumed fit would erase the
    history of the run it continues.  Here the file's header becomes the known columns, so new rows are
    appended (and the file is rewritten with a wider header only when a new metric appears, as Lightning
    does).  A fit resumed from an earlier checkpoint appends rows for steps the file already has; the
    later rows are the run's.
    """

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])


class CSVLogger(LightningCSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` without the ``epoch`` column, continuing ``metrics.csv`` on a
    resume (:class:`_AppendingWriter`)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        super().log_metrics(without_epoch(metrics), step)


__all__ = [
    "CLASS_PATH",
    "LIGHTNING_CLASS_PATH",
    "LIT_FFN_LOGGERS",
    "TRACKING_LOGGERS",
    "CSVLogger",
    "TensorBoardLogger",
    "without_epoch",
]
