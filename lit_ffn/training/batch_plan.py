"""Global batch and validation cadence in optimizer steps, whatever the GPU count.

A protocol is stated per optimizer step ("batch 128 sequences, validate every
50 steps"), but Lightning's Trainer takes the micro-batch view:
``accumulate_grad_batches`` and an integer ``val_check_interval`` counted in
micro-batches.  Keeping them consistent by hand when moving from 1 GPU to 8 is
an easy way to silently change the experiment (validation every 400 steps
instead of 50, or a batch of 1,024).  Two top-level options of ``lit_ffn fit``
say what is meant and this module derives Lightning's settings from them:

    accumulate_grad_batches = global_batch_size / (data.batch_size · devices · num_nodes)
    val_check_interval      = val_every_n_steps · accumulate_grad_batches      (micro-batches)

Lightning has no option for either (its ``val_check_interval`` counts
micro-batches, see ``_TrainingEpochLoop._should_check_val_fx``), hence this.

Both hold while an epoch is a whole number of accumulations.  At the end of an
epoch Lightning steps the optimizer on whatever micro-batches it has (a smaller
batch) and starts accumulating afresh, so validation, counted in micro-batches
across epochs, drifts off the optimizer-step cadence: :func:`epoch_remainder_warning`
says so at the start of training (``LitDecoder.on_train_start``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lit_ffn.errors import UserError

Devices = int | str | Sequence[int] | None


def device_count(devices: Devices) -> int:
    """How many devices per node ``trainer.devices`` asks for: ``4`` or ``"4"`` → 4,
    ``[0, 1]`` or ``"0,1"`` → 2.  ``"auto"`` and ``-1`` depend on the machine, so they
    are refused here: the global batch must not change with what a node happens to have."""
    if isinstance(devices, bool):
        raise UserError(f"trainer.devices={devices!r} is not a device count")
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, (list, tuple)) and devices:
        return len(devices)
    if isinstance(devices, str):
        text = devices.strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
        ids = [part for part in text.split(",") if part.strip()]
        if "," in text and ids and all(part.strip().isdigit() for part in ids):
            return len(ids)
    raise UserError(
        f"global_batch_size needs a definite device count, but trainer.devices={devices!r}: "
        "set trainer.devices to a number (e.g. --trainer.devices=8)"
    )


@dataclass(frozen=True)
class BatchPlan:
    """Lightning's settings derived from the per-step protocol.

    ``accumulate_grad_batches``: micro-batches per optimizer step on each device.
    ``val_check_interval``: micro-batches between validations (None: not derived).
    """

    accumulate_grad_batches: int
    val_check_interval: int | None


def plan_batches(
    *,
    micro_batch: int,
    devices: Devices,
    num_nodes: int,
    accumulate_grad_batches: int,
    val_check_interval: Any,
    global_batch_size: int | None,
    val_every_n_steps: int | None,
) -> BatchPlan:
    """Derive ``accumulate_grad_batches`` and ``val_check_interval`` (see the module docstring).

    ``accumulate_grad_batches`` of 1 is Lightning's default and is replaced; any
    other value, and any ``val_check_interval`` given next to ``val_every_n_steps``,
    must agree with what is derived (a saved run config holds both) or it is an error.
    """
    if global_batch_size is not None and global_batch_size < 1:
        raise UserError(f"global_batch_size must be a positive number of sequences, got {global_batch_size}")
    if val_every_n_steps is not None and val_every_n_steps < 1:
        raise UserError(f"val_every_n_steps must be a positive number of optimizer steps, got {val_every_n_steps}")
    accumulate = int(accumulate_grad_batches or 1)
    if global_batch_size is not None:
        world = device_count(devices) * int(num_nodes or 1)
        per_step = micro_batch * world
        if global_batch_size % per_step:
            raise UserError(
                f"global_batch_size {global_batch_size} is not a multiple of data.batch_size {micro_batch} × "
                f"{world} device(s) = {per_step}: choose a data.batch_size that divides "
                f"{global_batch_size / world:g} sequences per device"
            )
        derived = global_batch_size // per_step
        if accumulate not in (1, derived):
            raise UserError(
                f"trainer.accumulate_grad_batches={accumulate} contradicts global_batch_size {global_batch_size} "
                f"(= data.batch_size {micro_batch} × {world} device(s) × {derived}): drop one of the two"
            )
        accumulate = derived
    interval: int | None = None
    if val_every_n_steps is not None:
        interval = val_every_n_steps * accumulate
        if val_check_interval is not None and val_check_interval != interval:
            raise UserError(
                f"trainer.val_check_interval={val_check_interval} contradicts val_every_n_steps {val_every_n_steps} "
                f"(= {interval} micro-batches at accumulate_grad_batches {accumulate}): set only val_every_n_steps"
            )
    return BatchPlan(accumulate_grad_batches=accumulate, val_check_interval=interval)


def plan_for_config(config: Any) -> BatchPlan | None:
    """The plan for a parsed ``lit_ffn fit`` config (a jsonargparse Namespace with
    ``global_batch_size``, ``val_every_n_steps``, ``trainer`` and ``data``); None when
    neither option is set, so Lightning's own settings stand."""
    global_batch, every = config.get("global_batch_size"), config.get("val_every_n_steps")
    if global_batch is None and every is None:
        return None
    trainer = config.trainer
    return plan_batches(
        micro_batch=config.data.batch_size,
        devices=trainer.get("devices"),
        num_nodes=trainer.get("num_nodes") or 1,
        accumulate_grad_batches=trainer.get("accumulate_grad_batches") or 1,
        val_check_interval=trainer.get("val_check_interval"),
        global_batch_size=global_batch,
        val_every_n_steps=every,
    )


def epoch_remainder_warning(micro_batches_per_epoch: float, accumulate_grad_batches: int, max_steps: int) -> str | None:
    """A warning when an epoch ends partway through an accumulation (None: it does not).

    ``micro_batches_per_epoch``: Lightning's ``trainer.num_training_batches`` (per
    process, after ``limit_train_batches``; ``inf`` for a loader without length).
    Only a run that reaches the end of an epoch is affected: ``max_steps`` × accumulate
    micro-batches more than one epoch holds, or ``max_steps`` = -1.
    """
    n, accumulate = micro_batches_per_epoch, int(accumulate_grad_batches)
    if accumulate <= 1 or not n or math.isinf(n):
        return None
    n = int(n)
    remainder = n % accumulate
    if remainder == 0 or (max_steps >= 0 and max_steps * accumulate <= n):
        return None
    if n < accumulate:
        fix = "use more training data or a larger data.batch_size"
    else:
        fix = f"set trainer.limit_train_batches={n - remainder} (a multiple of {accumulate}) or use more training data"
    return (
        f"an epoch holds {n} micro-batches per process, not a multiple of accumulate_grad_batches={accumulate}: "
        f"Lightning steps the optimizer on the last {remainder} of each epoch (a smaller batch than the others) "
        f"and validation, counted in micro-batches, drifts off its optimizer-step cadence; {fix}"
    )
