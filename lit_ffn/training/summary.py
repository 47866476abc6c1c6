"""The end of ``lit_ffn fit``: one short block that says where the run went and what to do next.

::

    lit_ffn: run runs/quickstart/SwiGLU/seed_0
      val/loss   11.9660 (step 0) -> 7.6169 (step 30)
      trained    30 optimizer steps, 61,440 tokens in 1:21 (758 tokens/s)
      next       tensorboard --logdir runs/quickstart
                 lit_ffn fit --config runs/quickstart/SwiGLU/seed_0/config.yaml --ckpt_path last --trainer.max_steps=60
                 lit_ffn validate --config runs/quickstart/SwiGLU/seed_0/config.yaml --ckpt_path …/last.ckpt
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from lit_ffn.data.format import unigram_reference
from lit_ffn.training.schedule import train_longer


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class RunSummary(Callback):
    """Counts what this ``fit`` trained (steps, tokens, wall time); :meth:`render` writes the block."""

    def __init__(self) -> None:
        super().__init__()
        self.start_step = 0
        self.start_time: float | None = None
        self.seconds = 0.0
        self.tokens_per_step = 0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start_step, self.start_time = trainer.global_step, time.perf_counter()
        datamodule = trainer.datamodule
        batch, seq_len = getattr(datamodule, "batch_size", 0), getattr(datamodule, "seq_len", 0)
        self.tokens_per_step = int(batch) * int(seq_len) * trainer.accumulate_grad_batches * trainer.world_size

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """``val/unigram_reference``: the dataset's unigram line, next to ``val/loss`` in TensorBoard."""
        reference = unigram_reference(getattr(trainer.datamodule, "meta", None) or {})
        if reference is not None and not trainer.sanity_checking:
            pl_module.log("val/unigram_reference", reference, rank_zero_only=True)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.start_time is not None:
            self.seconds = time.perf_counter() - self.start_time

    def render(self, trainer: Trainer, pl_module: Any, run_dir: Path | None, interrupted: bool) -> str:
        """The block: the run, its losses, what this fit trained, then where to look and what to run next."""
        lines = [f"lit_ffn: run {run_dir if run_dir is not None else trainer.default_root_dir}"]
        lines += self.loss_lines(pl_module)
        history = getattr(pl_module, "val_history", [])
        if history:
            lines += _reference_lines(getattr(trainer.datamodule, "meta", None) or {}, history[-1][1])
        lines += [self.trained_line(trainer)]
        lines += [f"  {line[0]}" for line in _tracking(trainer)]
        if run_dir is not None:
            lines += self.next_lines(trainer, pl_module, run_dir, interrupted)
        return "\n".join(lines)

    @staticmethod
    def loss_lines(pl_module: Any) -> list[str]:
        """``val/loss`` at the first and the last validation of this fit."""
        history = getattr(pl_module, "val_history", [])
        if not history:
            return []
        (first_step, first), (last_step, last) = history[0], history[-1]
        if len(history) > 1:
            return [f"  val/loss   {first:.4f} (step {first_step}) -> {last:.4f} (step {last_step})"]
        return [f"  val/loss   {last:.4f} (step {last_step})"]

    def trained_line(self, trainer: Trainer) -> str:
        steps = trainer.global_step - self.start_step
        tokens = steps * self.tokens_per_step
        rate = f" ({tokens / self.seconds:,.0f} tokens/s)" if self.seconds > 0 and tokens else ""
        total = f", now at step {trainer.global_step}" if self.start_step else ""
        return f"  trained    {steps} optimizer steps, {tokens:,} tokens in {_duration(self.seconds)}{rate}{total}"

    @staticmethod
    def next_lines(trainer: Trainer, pl_module: Any, run_dir: Path, interrupted: bool) -> list[str]:
        """Where the run's metrics are (per logger) and the commands to resume / train longer / validate."""
        config, checkpoints = run_dir / "config.yaml", run_dir / "checkpoints"
        experiment_dir = run_dir.parents[1] if len(run_dir.parts) > 2 else run_dir
        look = (
            [f"tensorboard --logdir {experiment_dir}"]
            if any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers)
            else []
        )
        look += [command for lines in _tracking(trainer) for command in lines[1:]]  # MLflow's page, `wandb sync`
        metrics = run_dir / "metrics.csv"
        if any(isinstance(logger, CSVLogger) for logger in trainer.loggers):
            look.append(f"{metrics}   (every logged metric, one row per step)")
        if interrupted:
            resume = [f"lit_ffn fit --config {config} --ckpt_path last   (resume)"]
        else:
            total = int(getattr(pl_module, "schedule_steps", trainer.max_steps))
            plan = train_longer(pl_module.hparams, trainer.global_step, total, checkpoints)
            command = f"lit_ffn fit --config {config} --ckpt_path {plan.ckpt_path} --trainer.max_steps={plan.max_steps}"
            resume = [
                f"{command}   (train longer)",
                f"  {plan.explanation}",
            ]
        validate = [f"lit_ffn validate --config {config} --ckpt_path {checkpoints / 'last.ckpt'}"]
        commands = look + resume + validate
        return [f"  next       {commands[0]}"] + [f"             {command}" for command in commands[1:]]


def _tracking(trainer: Trainer) -> list[list[str]]:
    """Per MLflow / W&B logger (:mod:`lit_ffn.training.tracking`): its line (the tracking URI or project and the
    run id), then where to look at the run (MLflow's page of the run, the ``wandb sync`` command)."""
    return [logger.summary_lines() for logger in trainer.loggers if hasattr(logger, "summary_lines")]


def _reference_lines(meta: dict[str, Any], final: float) -> list[str]:
    """The unigram reference of the dataset (if it has one) and whether the final val/loss beats it."""
    reference = unigram_reference(meta)
    if reference is None:
        return []
    verdict = (
        f"beaten by {reference - final:.2f} nats"
        if final < reference
        else "NOT BEATEN: the model has learnt no more than token frequencies"
    )
    return [f"  unigram    {reference:.4f} (training-split token frequencies, docs/data.md): {verdict}"]


__all__ = ["RunSummary"]
