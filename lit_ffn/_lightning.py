"""Every use of a private Lightning (or torch) attribute in lit_ffn, each with the reason.

Overrides of private methods in subclasses stay with their subclass, each with a comment:
``AtomicCheckpoint._save_checkpoint`` / ``_remove_checkpoint`` (atomic saves, training/checkpointing.py),
``LitFFNCLI._parse_ckpt_path`` (checks a checkpoint before LightningCLI unpickles it), and
``FSDP2Strategy.setup_environment`` setting ``_data_parallel_size`` (distributed/strategy.py).

Lightning 2.6 offers no public API for these; keeping them here means one file to check when
Lightning is upgraded (``tests/test_lightning_private.py`` exercises each on the installed
version).  Nothing else in lit_ffn may reach into ``trainer._…`` or ``…._private``.
"""

from __future__ import annotations

from typing import Any

import torch


def logging_step(trainer: Any) -> int:
    """The x at which Lightning logs the current optimizer step.

    Lightning logs optimizer step ``k`` (0-based) at x = ``k``: its ``LearningRateMonitor`` and
    ``self.log`` use ``fit_loop.epoch_loop._batches_that_stepped``; lit_ffn's callbacks write at the
    same x so that their tags line up with Lightning's.  No public accessor exists
    (``trainer.global_step`` counts optimizer steps *taken*, one ahead during the step's hooks).
    """
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def align_logging_step(trainer: Any) -> None:
    """After a resume, make the logging step of optimizer step ``k`` ``k`` again (:func:`logging_step`).

    A fit resumed from a checkpoint written after the last batch of a fit (``last.ckpt`` at the end of
    ``fit``: the loop state says "completed") adds one to ``_batches_that_stepped`` in
    ``_TrainingEpochLoop.reset`` (lightning/pytorch/loops/training_epoch_loop.py, "batches_that_stepped is
    never set prior to saving a checkpoint"), although that checkpoint already counted the step: every
    metric of the resumed fit was then logged one step late (``lr-AdamW/*`` at 9 for step 8, measured with
    Lightning 2.6.6).  With one optimizer and automatic optimization the counter equals
    ``trainer.global_step`` by construction, so it is set to that; a mid-fit resume is left as it was
    (they are equal there already).  Call it after the loop's ``reset``: in the first
    ``on_train_batch_start`` of a fit, before any callback logs (:class:`lit_ffn.callbacks.LoggingStepAlignment`).
    """
    loop = trainer.fit_loop.epoch_loop
    if trainer.lightning_module.automatic_optimization and len(trainer.optimizers) == 1:
        loop._batches_that_stepped = trainer.global_step


def should_update_logs(trainer: Any) -> bool:
    """Whether this optimizer step's metrics reach the logger (``log_every_n_steps``).

    ``trainer._logger_connector.should_update_logs`` is Lightning's own test; its
    ``ThroughputMonitor`` and ``LearningRateMonitor`` use it too.
    """
    return bool(trainer._logger_connector.should_update_logs)


def is_accumulating(trainer: Any) -> bool:
    """Whether the current micro-batch is not the last of its optimizer step.

    ``fit_loop._should_accumulate()`` is the test Lightning's training loop itself makes.
    """
    return bool(trainer.fit_loop._should_accumulate())


def compute_dtype(trainer: Any) -> torch.dtype:
    """The dtype the precision plugin computes in (bf16 for ``bf16-mixed``, …), as Lightning's
    ``ThroughputMonitor`` looks it up (``_plugin_to_compute_dtype``: private in Lightning 2.6)."""
    from lightning.pytorch.callbacks.throughput_monitor import _plugin_to_compute_dtype

    return _plugin_to_compute_dtype(trainer.precision_plugin)


def skip_automatic_hparams(pl_module: Any) -> None:
    """Switch off Lightning's automatic ``logger.log_hyperparams`` for this module.

    ``_log_hyperparams`` is the flag ``save_hyperparameters(logger=False)`` sets; setting it later
    (the module's ``save_hyperparameters`` ran under LightningCLI already) has the same effect.
    """
    pl_module._log_hyperparams = False


def tensorboard_file_writer(logger: Any) -> Any:
    """The ``FileWriter`` under a ``TensorBoardLogger``'s ``SummaryWriter``, for writing raw
    summaries (HPARAMS sessions) — exactly as ``TensorBoardLogger.log_hyperparams`` does."""
    return logger.experiment._get_file_writer()


def let_lightning_unscale(optimizer: torch.optim.Optimizer) -> None:
    """Make Lightning clip gradients of a fused AdamW under mixed precision.

    Lightning's mixed-precision plugin refuses to clip gradients for an optimizer that "unscales
    internally" (torch sets ``_step_supports_amp_scaling`` on fused AdamW), even under bf16-mixed
    where there is no GradScaler at all (upstream issue Lightning-AI/pytorch-lightning#21435).
    Declining that role makes Lightning (and, under 16-mixed, the GradScaler) unscale before
    clipping, as for any optimizer; the step stays fused.
    """
    optimizer._step_supports_amp_scaling = False


__all__ = [
    "align_logging_step",
    "compute_dtype",
    "is_accumulating",
    "let_lightning_unscale",
    "logging_step",
    "should_update_logs",
    "skip_automatic_hparams",
    "tensorboard_file_writer",
]


def configure_optimizers_without_trainer(module: Any, max_steps: int) -> Any:
    """``module.configure_optimizers()`` outside a Trainer (``lit_ffn bench``): LitDecoder's only reads
    ``trainer.max_steps`` for the schedule length, so a stand-in is attached as ``_trainer`` — the
    attribute ``LightningModule.trainer`` reads; ``Trainer`` itself offers no detached mode."""
    from types import SimpleNamespace

    module._trainer = SimpleNamespace(max_steps=max_steps, estimated_stepping_batches=None)
    try:
        return module.configure_optimizers()
    finally:
        module._trainer = None
