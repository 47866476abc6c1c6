"""``TokenThroughputMonitor``: tokens seen, tokens/s, FLOP/s, MFU, step time and peak GPU memory.

Built on Lightning's ``ThroughputMonitor`` / ``Throughput``; FLOPs per token and the device peak
come from :mod:`lit_ffn.flops`, the same functions ``lit_ffn bench`` uses.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.trainer.states import RunningStage, TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_only, rank_zero_warn

from lit_ffn._lightning import compute_dtype, is_accumulating, logging_step, should_update_logs
from lit_ffn.errors import UserError
from lit_ffn.flops import peak_flops


def tokens_in_batch(batch: Any) -> int:
    """Predicted tokens in a ``(B, T+1)`` block batch: ``B·T``."""
    return int(batch.shape[0]) * (int(batch.shape[1]) - 1)


def samples_in_batch(batch: Any) -> int:
    return int(batch.shape[0])


class TokenThroughputMonitor(ThroughputMonitor):
    """Tokens seen, tokens/s, FLOP/s, MFU, step time and peak GPU memory, on Lightning's ``Throughput``.

    Tags (x = Lightning's logging step; logged on Lightning's logging steps), in TensorBoard's ``vitals`` group,
    after ``train`` (the loss, the learning rate) and ``val``, so that a browser opens on the loss curves:

    ``vitals/tokens_seen``              predicted tokens so far, all ranks (``B·T`` per micro-batch)
    ``vitals/time``                     training wall time so far (validation excluded), seconds
    ``vitals/step_time``                seconds per optimizer step since the previous log
    ``vitals/tokens_per_sec``           all ranks; ``vitals/device/tokens_per_sec`` per device
    ``vitals/device/flops_per_sec``     model FLOPs (``LitDecoder.flops_per_token(T)·B·T`` per micro-batch) per second
    ``vitals/mfu``                      ``device/flops_per_sec / available_flops``
    ``vitals/device/peak_memory_gib``   ``torch.cuda.max_memory_allocated`` (CUDA only)

    Rates are over the last ``window_size − 1`` logging intervals.
    ``tokens_seen`` and ``time`` continue across a resume (kept in the
    checkpoint); rates and step time restart with the process.

    Why a subclass.  ``ThroughputMonitor`` calls ``torch.cuda.synchronize()``
    after *every* batch (and every validation batch) to time it; here counts
    are accumulated on the host every micro-batch and ``Throughput`` is
    updated — after a synchronize — only on logging steps, which gives the
    same rates over the same windows without a per-step sync.  Validation
    time is measured at its start and end and taken out of the training time.

    Args:
        available_flops: peak FLOP/s of one device for MFU.  ``None``: the datasheet
            peak of :func:`lit_ffn.flops.peak_flops` for the device and compute dtype
            (dense H100/H200 values, else Lightning's table; none for CPUs — MFU is then
            not logged); a number: that peak (e.g. ``989.4e12`` for bf16 dense on an
            H100/H200 SXM); ``"measure"``: the datasheet peak where there is one, else the
            best of a few timed 2048³ matmuls in the compute dtype at setup (a practical
            ceiling for CPUs, the same number ``lit_ffn bench`` uses, stated once in the log and kept as
            ``self.available_flops``: a scalar tag would be a card holding one constant point).
        window_size: logging steps per rate window (≥ 2).
    """

    def __init__(self, available_flops: float | Literal["measure"] | None = None, window_size: int = 2) -> None:
        if isinstance(available_flops, str) and available_flops != "measure":
            raise UserError(
                f"TokenThroughputMonitor: available_flops must be a number, 'measure' or null, got {available_flops!r}"
            )
        if isinstance(available_flops, (int, float)) and not available_flops > 0:
            raise UserError(f"TokenThroughputMonitor: available_flops must be > 0, got {available_flops}")
        if window_size < 2:
            raise UserError(
                f"TokenThroughputMonitor: window_size must be >= 2 (rates need two points), got {window_size}"
            )
        super().__init__(batch_size_fn=samples_in_batch, length_fn=tokens_in_batch, window_size=window_size)
        self.requested_flops = available_flops
        self._flops_cache: dict[int, float | None] = {}
        self._pending_flops = 0.0
        self._has_flops = True
        self._steps = 0
        self._last_log: tuple[float, int] = (0.0, 0)
        self._val_start: float | None = None
        self.peak_source = ""
        self._world = 1
        self._before: dict[str, float] = {"tokens_seen": 0.0, "time": 0.0}  # earlier fits of a resumed run

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._world = trainer.world_size
        device = trainer.strategy.root_device
        dtype = compute_dtype(trainer)
        if dtype not in (torch.bfloat16, torch.float16):
            dtype = torch.float32
        override = None if self.requested_flops in (None, "measure") else float(self.requested_flops)
        # lit_ffn.flops.peak_flops: the same peak `lit_ffn bench` uses for this device and dtype
        self.available_flops, self.peak_source = peak_flops(
            device, dtype, override, measure=self.requested_flops == "measure"
        )
        if self.requested_flops == "measure":
            rank_zero_info(
                f"TokenThroughputMonitor: peak {self.available_flops / 1e9:.1f} GFLOP/s for MFU ({self.peak_source})"
            )
        for throughput in self._throughputs.values():
            throughput.available_flops = self.available_flops
        if self.available_flops is None and stage == TrainerFn.FITTING:
            name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
            rank_zero_warn(
                f"TokenThroughputMonitor: no peak FLOP/s known for {name!r}; vitals/mfu is not logged. "
                "Set available_flops (a number, or 'measure') on the callback."
            )

    def _flops_per_batch(self, pl_module: LightningModule, batch: Any) -> float | None:
        """``pl_module.flops_per_batch`` if defined (ThroughputMonitor's contract), else
        ``pl_module.flops_per_token(T)·B·T`` (cached per ``T``), else None."""
        if hasattr(pl_module, "flops_per_batch"):
            return pl_module.flops_per_batch
        if not hasattr(pl_module, "flops_per_token"):
            return None
        seq_len = int(batch.shape[1]) - 1
        if seq_len not in self._flops_cache:
            self._flops_cache[seq_len] = float(pl_module.flops_per_token(seq_len))
        return self._flops_cache[seq_len] * tokens_in_batch(batch)

    def _now(self, trainer: Trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)  # only at logging steps and validation boundaries
        return time.perf_counter()

    @rank_zero_only
    def on_train_start(self, trainer: Trainer, *_: Any) -> None:
        super().on_train_start(trainer)
        self._pending_flops, self._steps, self._last_log, self._has_flops = 0.0, 0, (0.0, 0), True

    @rank_zero_only
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        stage = RunningStage.TRAINING
        self._lengths[stage] += tokens_in_batch(batch)
        self._samples[stage] += samples_in_batch(batch)
        self._batches[stage] += 1
        flops = self._flops_per_batch(pl_module, batch) if self._has_flops else None
        if flops is None:
            self._has_flops = False
        else:
            self._pending_flops += flops
        if is_accumulating(trainer):  # mid optimizer step: nothing is logged per micro-batch
            return
        self._steps += 1
        if not should_update_logs(trainer):
            return
        elapsed = self._now(trainer) - self._t0s[stage]
        throughput = self._throughputs[stage]
        throughput.update(
            time=elapsed,
            batches=self._batches[stage],
            samples=self._samples[stage],
            lengths=self._lengths[stage],
            flops=self._pending_flops if self._has_flops else None,
        )
        self._pending_flops = 0.0
        metrics = self._metrics(trainer, throughput.compute(), elapsed)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=logging_step(trainer))

    def state_dict(self) -> dict[str, float]:
        """Totals so far (rank 0's view; Lightning saves rank 0's callback state)."""
        stage = RunningStage.TRAINING
        elapsed = time.perf_counter() - self._t0s[stage] if stage in self._t0s else 0.0
        return {
            "tokens_seen": self._before["tokens_seen"] + self._lengths.get(stage, 0) * self._world,
            "time": self._before["time"] + elapsed,
        }

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self._before = {key: float(state_dict.get(key, 0.0)) for key in ("tokens_seen", "time")}

    def _metrics(self, trainer: Trainer, raw: dict[str, float], elapsed: float) -> dict[str, float]:
        world = trainer.world_size
        metrics = {
            "vitals/tokens_seen": self._before["tokens_seen"] + raw["lengths"] * world,
            "vitals/time": self._before["time"] + raw["time"],
        }
        last_time, last_steps = self._last_log
        if self._steps > last_steps:
            metrics["vitals/step_time"] = (elapsed - last_time) / (self._steps - last_steps)
        self._last_log = (elapsed, self._steps)
        if "device/items_per_sec" in raw:
            metrics["vitals/device/tokens_per_sec"] = raw["device/items_per_sec"]
            metrics["vitals/tokens_per_sec"] = raw["device/items_per_sec"] * world
        if "device/flops_per_sec" in raw:
            metrics["vitals/device/flops_per_sec"] = raw["device/flops_per_sec"]
        if "device/mfu" in raw:
            metrics["vitals/mfu"] = raw["device/mfu"]
        device = trainer.strategy.root_device
        if device.type == "cuda":
            metrics["vitals/device/peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        return metrics

    # Validation: no per-batch sync, no validation throughput; its wall time is taken out of training's.
    @rank_zero_only
    def on_validation_start(self, trainer: Trainer, *_: Any) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or RunningStage.TRAINING not in self._t0s:
            return
        self._val_start = self._now(trainer)

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        pass

    @rank_zero_only
    def on_validation_end(self, trainer: Trainer, *_: Any) -> None:
        if self._val_start is None or trainer.sanity_checking:
            return
        self._t0s[RunningStage.TRAINING] += self._now(trainer) - self._val_start
        self._val_start = None


__all__ = ["TokenThroughputMonitor", "samples_in_batch", "tokens_in_batch"]
