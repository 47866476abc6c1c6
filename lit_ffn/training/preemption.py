"""Preemption: SIGTERM or SIGINT during ``fit`` finishes the optimizer step, saves ``last.ckpt``, stops.

SLURM preemption and ``scancel``, a Kubernetes eviction and Ctrl-C all end a run with a signal.
:class:`GracefulStop` (added to every ``lit_ffn fit`` by the CLI) turns the first SIGTERM or SIGINT into:

1. the optimizer step in progress is finished (no micro-batch of an accumulation is lost);
2. every rank agrees on the step to stop at (a signal may reach only one rank, or the ranks at
   different steps): after each optimizer step the ranks all-reduce "stop requested" (max) over a
   small gloo group, a CPU collective that never synchronises a GPU;
3. ``last.ckpt`` is written through :class:`~lit_ffn.training.checkpointing.AtomicCheckpoint` — a
   second signal, or a SIGKILL during that write, leaves the previous good checkpoint;
4. training stops and ``lit_ffn fit`` exits with 128 + the signal number (143 for SIGTERM, 130 for
   SIGINT) and one line that gives the resume command.

A second SIGINT while stopping raises ``KeyboardInterrupt`` at once (Lightning's own shutdown); further
SIGTERMs are ignored, so the checkpoint is finished.  The resumed run equals an uninterrupted one
exactly (the checkpoint is taken where Lightning's periodic ones are, at the end of an optimizer step).

Why not Lightning's own handler: on SIGTERM Lightning 2.6 raises ``SIGTERMException`` at the next
batch, possibly inside an accumulation, and saves nothing (``ModelCheckpoint(save_on_exception=...)``
saves mid-step state).  The handlers are installed at ``on_train_start`` — after Lightning installed
its own — and the previous handlers are restored when training ends.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from lit_ffn._lightning import is_accumulating

#: The signals that stop a run gracefully.
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop(Callback):
    """Stop ``fit`` at the end of the current optimizer step on SIGTERM/SIGINT and save ``last.ckpt``
    (module docstring).  ``stopped_by`` is the signal number that stopped the run (None: it was not)."""

    def __init__(self) -> None:
        super().__init__()
        self.requested: int | None = None  # the first signal received by this process
        self.stopped_by: int | None = None  # the signal the run stopped for (agreed by every rank)
        self.stopped_at_step: int | None = None
        self._previous: dict[int, Any] = {}
        self._group: Any = None

    # ------------------------------------------------------------ signals
    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is None:
            self.requested = signum
            name = signal.Signals(signum).name
            print(f"lit_ffn: {name} received: finishing this optimizer step, then saving last.ckpt", flush=True)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    # ------------------------------------------------------------ hooks
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.requested = self.stopped_by = self.stopped_at_step = None
        if trainer.world_size > 1:
            import torch.distributed as dist

            # every rank calls new_group in the same order (here); gloo: a CPU collective, no device sync
            self._group = dist.new_group(backend="gloo")
        self._install()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if is_accumulating(trainer):
            return
        signum = self._agreed_signal(trainer)
        if signum is None:
            return
        self.stopped_by, self.stopped_at_step = signum, trainer.global_step
        for callback in trainer.checkpoint_callbacks:
            save_last_now = getattr(callback, "save_last_now", None)
            if save_last_now is not None:
                save_last_now(trainer)
        trainer.should_stop = True
        rank_zero_info(f"lit_ffn: stopped after optimizer step {trainer.global_step} ({signal.Signals(signum).name})")

    def _agreed_signal(self, trainer: Trainer) -> int | None:
        """The signal some rank received (the same answer on every rank), or None."""
        if self._group is None:
            return self.requested
        import torch
        import torch.distributed as dist

        flag = torch.tensor([self.requested or 0], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        return int(flag.item()) or None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._restore()
        if self._group is not None:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group(self._group)
            self._group = None


__all__ = ["SIGNALS", "GracefulStop"]
