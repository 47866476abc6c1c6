"""Lightning callbacks that complete lit_ffn's TensorBoard picture.

* :class:`GateStatistics` — per-layer statistics of what each FFN records as
  its gate (``gates/layer_XX/<name>_<stat>``, learned scalars such as
  DynamicGEGLU's ``s`` and ``b``, histograms at a lower cadence).
* :class:`GradNormMonitor` — ``train/grad_norm``, the global gradient norm
  before clipping.
* :class:`TokenThroughputMonitor` — tokens seen, tokens/s, FLOP/s, MFU, step
  time and peak GPU memory, on Lightning's ``ThroughputMonitor`` / ``Throughput``.
* :class:`HyperparameterSummary` — one flat HPARAMS session per run
  (``ffn``, ``seed``, shape, optimizer, …) whose metrics are ``val/loss`` and
  ``val/ppl``, so TensorBoard's HPARAMS view compares FFNs and seeds.

All four are enabled in ``configs/quickstart.yaml`` (``trainer.callbacks``).
None of them synchronises host and device on a step that does not log, and
nothing is logged per micro-batch of an accumulated optimizer step.

Logging steps.  Lightning logs the metrics of optimizer step ``k`` (0-based)
at x = ``k`` — ``trainer.fit_loop.epoch_loop._batches_that_stepped`` during
the step — and these callbacks use the same x, as Lightning's own
``LearningRateMonitor`` does.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import RunningStage, TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_only, rank_zero_warn
from torch import nn

from lit_ffn import gate_stats
from lit_ffn.errors import UserError


def logging_step(trainer: Trainer) -> int:
    """The x at which Lightning logs the current optimizer step (see the module docstring)."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def gate_recorders(pl_module: nn.Module) -> list[nn.Module]:
    """The FFNs of ``pl_module`` that can show a gate, in layer order.

    ``pl_module.ffn_modules`` (one per layer, :class:`lit_ffn.module.LitDecoder`)
    if it exists, else every submodule offering ``set_gate_observer`` in
    module order.  Either way only modules with ``set_gate_observer`` and
    ``record`` count — :class:`lit_ffn.ffn.GateRecorder` or a duck-typed
    equivalent — and what their gate *is* is decided by their own
    ``record()`` calls, never here.
    """
    candidates = getattr(pl_module, "ffn_modules", None)
    if candidates is None:
        candidates = [m for m in pl_module.modules() if m is not pl_module]
    return [m for m in candidates if callable(getattr(m, "set_gate_observer", None)) and hasattr(m, "record")]


def has_activation_checkpointing(module: nn.Module) -> bool:
    """Whether any submodule is wrapped by torch's ``checkpoint_wrapper`` (activation checkpointing)."""
    return any(hasattr(m, "_checkpoint_wrapped_module") for m in module.modules())


def _full_value(tensor: torch.Tensor) -> torch.Tensor:
    """A parameter's whole value as a flat float tensor; FSDP2 DTensors are all-gathered
    (a collective: every rank must call this on the same steps)."""
    tensor = tensor.detach()
    if hasattr(tensor, "full_tensor"):  # torch.distributed.tensor.DTensor
        tensor = tensor.full_tensor()
    return tensor.float().reshape(-1)


# --------------------------------------------------------------------------- gates
class _Accumulator:
    """Running statistics of one recorded tensor of one layer over a logging step (on the device)."""

    def __init__(self, sums: torch.Tensor, maxes: torch.Tensor, sample: torch.Tensor) -> None:
        self.sums = sums  # (5,)  see lit_ffn.gate_stats.moments
        self.maxes = maxes  # (2,)
        self.sample = sample  # (≤ histogram_samples,) float32, from the latest micro-batch

    def reset(self) -> None:
        # New tensors of the same dtype/shape/device (fill kernels, no sync), so a
        # compiled model's guards on these inputs keep holding.
        self.sums = torch.zeros_like(self.sums)
        self.maxes = torch.full_like(self.maxes, -math.inf)


class _LayerProbe:
    """The gate observer of one layer's FFN, installed only on logging steps.

    ``__call__`` is plain tensor code plus attribute updates on this object,
    which ``torch.compile`` traces into the observed variant of the compiled
    block (one recompile, no graph break, shared by all layers): the
    accumulators are created on the first observed micro-batch, which the
    callback runs eagerly, and afterwards only rebound — nothing on this
    object that a compiled graph reads (its dict keys, ``threshold``,
    ``samples``, the accumulators' dtypes and shapes) changes between steps
    or layers, so the guards keep holding.  Per-call Python state (a layer
    index, a growing list) would instead recompile per layer and micro-batch;
    a ``torch.compiler.disable``d observer would split every compiled block
    at the FFN for the rest of the run.
    """

    def __init__(self, threshold: float, samples: int) -> None:
        self.threshold = threshold
        self.samples = samples
        self.accumulators: dict[str, _Accumulator] = {}

    def __call__(self, ffn: nn.Module, name: str, tensor: torch.Tensor) -> None:
        sums, maxes = gate_stats.moments(tensor, self.threshold)
        sample = gate_stats.subsample(tensor, self.samples)
        acc = self.accumulators.get(name)
        if acc is None:  # the first observed micro-batch (run eagerly by the callback)
            self.accumulators[name] = _Accumulator(sums, maxes, sample)
        else:
            acc.sums = acc.sums + sums
            acc.maxes = torch.maximum(acc.maxes, maxes)
            acc.sample = sample


class GateStatistics(Callback):
    """Per-layer statistics of every FFN's recorded gate tensors, logged every ``every_n_steps``.

    On a logging step, for every layer ``i`` and every tensor an FFN records
    under ``name`` (``"gate"`` for the GLU family and IsoGMLP, ``"hidden"``
    for 2-matrix FFNs, also ``"alpha"`` for DynamicGEGLU), over all elements
    (tokens × units) of the optimizer step — all micro-batches and ranks —
    TensorBoard gets ``gates/layer_{i:02d}/{name}_{stat}`` for ``stat`` in

    ========================  ==============================================
    ``mean``, ``std``         mean and population std of the values
    ``frac_near_zero``        fraction with ``|g| < threshold``
    ``frac_negative``         fraction with ``g < 0``
    ``max_abs``               largest ``|g|``
    ``min``, ``max``          extremes
    ========================  ==============================================

    plus ``gates/layer_{i:02d}/{scalar}`` for every learned scalar the FFN
    lists in ``gate_scalars()`` (DynamicGEGLU: ``s``, ``b``; the values the
    statistics were computed with, i.e. before this step's update), and
    every ``histogram_every_n_steps`` a histogram ``gates/layer_{i:02d}/{name}``
    of up to ``histogram_samples`` evenly strided values (the last
    micro-batch of rank 0).

    Cost.  The observer is installed in ``on_train_batch_start`` of a logging
    step and removed in ``on_before_backward`` (so activation-checkpoint
    recomputation is not counted twice); each ``record`` reduces its tensor
    on the device to 7 numbers (:func:`lit_ffn.gate_stats.moments`) added to
    the layer's accumulators.  At the optimizer step they are combined
    across ranks (``all_reduce`` SUM for sums and counts, MAX for maxima —
    exact, see :mod:`lit_ffn.gate_stats`) and read back with one copy.  On
    every other step nothing is installed, computed or synchronised.

    torch.compile (``compiled``).  ``"trace"``: the first observed
    micro-batch runs eagerly (``torch.compiler.set_stance("force_eager")``)
    to create the accumulators; after that a compiled model recompiles once
    for the observed variant — no graph break — and reuses both variants
    (see :class:`_LayerProbe`).  ``"eager"``: every observed step runs
    eagerly, so compiled code never sees an observer (no recompile at all;
    the observed steps are as slow as eager ones).  ``"auto"`` (default) is
    ``"eager"`` when a block is activation-checkpointed — dynamo cannot trace
    the accumulator updates inside ``torch.utils.checkpoint`` and its graph
    break would leave the blocks split, i.e. slower, on *every* later step —
    else ``"trace"``.  Either way every FFN must record the same names on
    every forward.

    Args:
        every_n_steps: log every this many optimizer steps (step 0 included).
        threshold: ``|g| < threshold`` counts as near zero.
        histogram_every_n_steps: histogram cadence in optimizer steps (0: never).
        histogram_samples: values per histogram.
        log_last_step: also log the final step (``trainer.max_steps - 1``), so a
            run always ends with a profile of its trained gates.
        compiled: how observed steps run under ``torch.compile``: ``"auto"``,
            ``"trace"`` or ``"eager"`` (above); no effect on eager models.
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        threshold: float = 1e-2,
        histogram_every_n_steps: int = 500,
        histogram_samples: int = 4096,
        log_last_step: bool = True,
        compiled: Literal["auto", "trace", "eager"] = "auto",
    ) -> None:
        super().__init__()
        if every_n_steps < 1:
            raise UserError(f"GateStatistics: every_n_steps must be >= 1, got {every_n_steps}")
        if not threshold >= 0:
            raise UserError(f"GateStatistics: threshold must be >= 0, got {threshold}")
        if histogram_every_n_steps < 0:
            raise UserError(
                f"GateStatistics: histogram_every_n_steps must be >= 0 (0: no histograms), got {histogram_every_n_steps}"
            )
        if histogram_samples < 1:
            raise UserError(f"GateStatistics: histogram_samples must be >= 1, got {histogram_samples}")
        if compiled not in ("auto", "trace", "eager"):
            raise UserError(f"GateStatistics: compiled must be 'auto', 'trace' or 'eager', got {compiled!r}")
        self.every_n_steps = every_n_steps
        self.threshold = float(threshold)
        self.histogram_every_n_steps = histogram_every_n_steps
        self.histogram_samples = histogram_samples
        self.log_last_step = log_last_step
        self.compiled = compiled
        self._always_eager = compiled == "eager"
        self._probes: list[tuple[nn.Module, _LayerProbe]] = []
        self._observing: int | None = None  # the logging step being observed
        self._eager: Any | None = None  # the force_eager stance while accumulators are created
        self._last_step: int | None = None

    # ----------------------------------------------------------- cadence
    def is_histogram_step(self, step: int) -> bool:
        return self.histogram_every_n_steps > 0 and step % self.histogram_every_n_steps == 0

    def is_logging_step(self, step: int) -> bool:
        """Whether optimizer step ``step`` (0-based) is observed."""
        last = self.log_last_step and self._last_step is not None and step == self._last_step
        return step % self.every_n_steps == 0 or self.is_histogram_step(step) or last

    # ------------------------------------------------------ installation
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After configure_model(): the blocks may now be compiled, checkpoint-wrapped or sharded.
        self._probes = [
            (ffn, _LayerProbe(self.threshold, self.histogram_samples)) for ffn in gate_recorders(pl_module)
        ]
        if not self._probes:
            rank_zero_warn(
                "GateStatistics: no FFN of this model records gates (inherit lit_ffn.ffn.GateRecorder and "
                "call self.record('gate', tensor) in forward); nothing will be logged"
            )
        self._always_eager = self.compiled == "eager" or (self.compiled == "auto" and has_activation_checkpointing(pl_module))
        self._last_step = trainer.max_steps - 1 if trainer.max_steps and trainer.max_steps > 0 else None

    def observers_installed(self) -> int:
        """How many FFNs currently have this callback's observer (tests; 0 outside logging steps)."""
        return sum(getattr(ffn, "_gate_observer", None) is probe for ffn, probe in self._probes)

    def _install(self) -> None:
        if self._always_eager or any(not probe.accumulators for _, probe in self._probes):
            self._eager = torch.compiler.set_stance("force_eager")  # applies now; undone in _uninstall
        for ffn, probe in self._probes:
            ffn.set_gate_observer(probe)

    def _uninstall(self) -> None:
        for ffn, _ in self._probes:
            ffn.set_gate_observer(None)
        if self._eager is not None:
            self._eager.__exit__(None, None, None)  # back to the previous stance
            self._eager = None

    def _reset(self) -> None:
        for _, probe in self._probes:
            for acc in probe.accumulators.values():
                acc.reset()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        step = logging_step(trainer)
        if self._observing is not None and self._observing != step:  # a step that never reached the optimizer
            self._reset()
            self._observing = None
        if not self._probes or not self.is_logging_step(step):
            return
        self._observing = step
        self._install()

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        self._uninstall()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._uninstall()  # also when training_step returned None and there was no backward

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._uninstall()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._uninstall()

    # ----------------------------------------------------------- logging
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        step = self._observing
        if step is None or step != logging_step(trainer):
            return
        self._observing = None
        metrics = self.compute(trainer)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
            if self.is_histogram_step(step):
                self._log_histograms(trainer, step)
        self._reset()

    def compute(self, trainer: Trainer) -> dict[str, float]:
        """The step's accumulators, combined across ranks, as ``{tag: value}``; one device-to-host copy.

        Every rank must call this on the same steps: it all-reduces the
        statistics and all-gathers sharded scalars.  A tensor recorded on no
        micro-batch of the step is left out.
        """
        keys, sums, maxes = [], [], []
        for layer, (_, probe) in enumerate(self._probes):
            for name, acc in probe.accumulators.items():
                keys.append((layer, name))
                sums.append(acc.sums)
                maxes.append(acc.maxes)
        parts: list[torch.Tensor] = []
        if keys:
            sums_t = trainer.strategy.reduce(torch.stack(sums), reduce_op="sum")  # (K, 5)
            maxes_t = trainer.strategy.reduce(torch.stack(maxes), reduce_op="max")  # (K, 2)
            stats = gate_stats.summarize(sums_t, maxes_t)  # (K, 7)
            parts.append(torch.cat([sums_t[:, :1], stats], dim=1).reshape(-1))  # count first: skip empty keys
        scalar_tags: list[str] = []
        for layer, (ffn, _) in enumerate(self._probes):
            for name, value in getattr(ffn, "gate_scalars", dict)().items():
                flat = _full_value(value)
                parts.append(flat.to(parts[0]) if parts else flat)
                prefix = f"gates/layer_{layer:02d}/{name}"
                scalar_tags += [prefix] if flat.numel() == 1 else [f"{prefix}_{j}" for j in range(flat.numel())]
        if not parts:
            return {}
        values = torch.cat(parts).tolist()  # the one sync of a logging step
        metrics: dict[str, float] = {}
        width = 1 + len(gate_stats.STATS)
        for i, (layer, name) in enumerate(keys):
            row = values[i * width : (i + 1) * width]
            if row[0] > 0:
                metrics.update({f"gates/layer_{layer:02d}/{name}_{stat}": v for stat, v in zip(gate_stats.STATS, row[1:])})
        metrics.update(zip(scalar_tags, values[len(keys) * width :]))
        return metrics

    def _log_histograms(self, trainer: Trainer, step: int) -> None:
        for logger in trainer.loggers:
            add_histogram = getattr(getattr(logger, "experiment", None), "add_histogram", None)
            if add_histogram is None:
                continue
            for layer, (_, probe) in enumerate(self._probes):
                for name, acc in probe.accumulators.items():
                    add_histogram(f"gates/layer_{layer:02d}/{name}", acc.sample.cpu(), global_step=step)

# ------------------------------------------------------------------ grad norm
class GradNormMonitor(Callback):
    """Logs ``train/grad_norm``: the total ``norm_type``-norm of all gradients, before clipping.

    ``‖g‖_p = (Σ_params ‖g_param‖_p^p)^{1/p}`` over the gradients the
    optimizer is about to use — the number ``gradient_clip_val`` is compared
    with.  Computed in ``on_before_optimizer_step`` (after the last
    micro-batch's backward, before Lightning clips) only on Lightning's
    logging steps, with :func:`torch.nn.utils.get_total_norm`; under FSDP2 the
    gradients are sharded DTensors and the norm is all-reduced with
    ``full_tensor()``; under FSDP1 they are plain tensors holding each rank's
    flat shard, so the ranks' Σ|g|ᵖ (max |g| for p = ∞) are all-reduced
    (:func:`sharded_total_norm`).  Logged with ``self.log``: a device tensor
    that Lightning reads back together with ``train/loss``.
    """

    def __init__(self, norm_type: float = 2.0) -> None:
        super().__init__()
        if not norm_type > 0:
            raise UserError(f"GradNormMonitor: norm_type must be > 0 (or inf), got {norm_type}")
        self.norm_type = float(norm_type)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        # Lightning's own test for "this step's metrics reach the logger" (ThroughputMonitor uses it too).
        if not trainer._logger_connector.should_update_logs:
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        from lightning.pytorch.strategies import FSDPStrategy

        if isinstance(trainer.strategy, FSDPStrategy) and trainer.world_size > 1:
            # every rank joins the all-reduce, also one that holds no gradient elements
            norm = sharded_total_norm(grads, self.norm_type, _all_reduce, pl_module.device)
        elif not grads:
            return
        else:
            norm = torch.nn.utils.get_total_norm(grads, norm_type=self.norm_type)
            if hasattr(norm, "full_tensor"):
                norm = norm.full_tensor()
        pl_module.log("train/grad_norm", norm, on_step=True, on_epoch=False)


def sharded_total_norm(
    local_grads: list[torch.Tensor], norm_type: float, all_reduce: Any, device: Any = "cpu"
) -> torch.Tensor:
    """‖g‖_p of gradients whose elements are split across ranks (FSDP1's flat shards), this rank
    holding ``local_grads``: ``(all_reduce_sum(Σ_local |g|ᵖ))^{1/p}``, or ``all_reduce_max(max |g|)``
    for p = ∞.  ``all_reduce(tensor, op)`` reduces in place over the ranks, ``op`` "sum" or "max"."""
    local_grads = [g for g in local_grads if g.numel()]
    local = (
        torch.nn.utils.get_total_norm(local_grads, norm_type=norm_type).float()
        if local_grads
        else torch.zeros((), device=device)
    )
    if math.isinf(norm_type):
        all_reduce(local, "max")
        return local
    powered = local.pow(norm_type)
    all_reduce(powered, "sum")
    return powered.pow(1.0 / norm_type)


def _all_reduce(tensor: torch.Tensor, op: str) -> None:
    import torch.distributed as dist

    dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)


# ---------------------------------------------------------------- throughput
def tokens_in_batch(batch: Any) -> int:
    """Predicted tokens in a ``(B, T+1)`` block batch: ``B·T``."""
    return int(batch.shape[0]) * (int(batch.shape[1]) - 1)


def samples_in_batch(batch: Any) -> int:
    return int(batch.shape[0])


def measure_matmul_flops(device: torch.device, dtype: torch.dtype, size: int = 1024, repeats: int = 5) -> float:
    """Dense-matmul FLOP/s this device reaches right now: the best of ``repeats`` timed ``size³`` matmuls.

    A stand-in peak for MFU where no datasheet number applies (CPUs).  Shared
    or busy machines give lower, noisier values.
    """
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    best = math.inf
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


class TokenThroughputMonitor(ThroughputMonitor):
    """Tokens seen, tokens/s, FLOP/s, MFU, step time and peak GPU memory, on Lightning's ``Throughput``.

    Tags (x = Lightning's logging step; logged on Lightning's logging steps):

    ``train/tokens_seen``              predicted tokens so far, all ranks (``B·T`` per micro-batch)
    ``train/time``                     training wall time so far (validation excluded), seconds
    ``train/step_time``                seconds per optimizer step since the previous log
    ``train/tokens_per_sec``           all ranks; ``train/device/tokens_per_sec`` per device
    ``train/device/flops_per_sec``     model FLOPs (``LitDecoder.flops_per_token(T)·B·T`` per micro-batch) per second
    ``train/mfu``                      ``device/flops_per_sec / available_flops``
    ``train/device/peak_memory_gib``   ``torch.cuda.max_memory_allocated`` (CUDA only)

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
        available_flops: peak FLOP/s of one device for MFU.  ``None``: Lightning's
            table for the device and precision (knows e.g. A100, H100; not CPUs
            and not every H200 name — MFU is then not logged); a number: that
            peak (e.g. ``989.4e12`` for bf16 dense on an H100/H200 SXM, the
            value Lightning lists for "h100 sxm"); ``"measure"``: the best
            of a few timed 1024³ matmuls in the compute dtype on the device at
            setup (a practical ceiling for CPUs, logged once as
            ``train/device/available_flops``).
        window_size: logging steps per rate window (≥ 2).
    """

    def __init__(self, available_flops: float | Literal["measure"] | None = None, window_size: int = 2) -> None:
        if isinstance(available_flops, str) and available_flops != "measure":
            raise UserError(f"TokenThroughputMonitor: available_flops must be a number, 'measure' or null, got {available_flops!r}")
        if isinstance(available_flops, (int, float)) and not available_flops > 0:
            raise UserError(f"TokenThroughputMonitor: available_flops must be > 0, got {available_flops}")
        if window_size < 2:
            raise UserError(f"TokenThroughputMonitor: window_size must be >= 2 (rates need two points), got {window_size}")
        super().__init__(batch_size_fn=samples_in_batch, length_fn=tokens_in_batch, window_size=window_size)
        self.requested_flops = available_flops
        self._flops_cache: dict[int, float | None] = {}
        self._pending_flops = 0.0
        self._has_flops = True
        self._steps = 0
        self._last_log: tuple[float, int] = (0.0, 0)
        self._val_start: float | None = None
        self._peak_logged = False
        self._world = 1
        self._before: dict[str, float] = {"tokens_seen": 0.0, "time": 0.0}  # earlier fits of a resumed run

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._world = trainer.world_size
        if self.requested_flops == "measure":
            dtype = torch.float32 if self._compute_dtype(trainer) not in (torch.bfloat16, torch.float16) else self._compute_dtype(trainer)
            self.available_flops = measure_matmul_flops(trainer.strategy.root_device, dtype)
            rank_zero_info(f"TokenThroughputMonitor: measured peak {self.available_flops / 1e9:.1f} GFLOP/s ({dtype}) for MFU")
        elif self.requested_flops is not None:
            self.available_flops = float(self.requested_flops)
        for throughput in self._throughputs.values():
            throughput.available_flops = self.available_flops
        if self.available_flops is None and stage == TrainerFn.FITTING:
            device = trainer.strategy.root_device
            name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
            rank_zero_warn(
                f"TokenThroughputMonitor: Lightning knows no peak FLOP/s for {name!r}; train/mfu is not logged. "
                "Set available_flops (a number, or 'measure') on the callback."
            )

    @staticmethod
    def _compute_dtype(trainer: Trainer) -> torch.dtype:
        from lightning.pytorch.callbacks.throughput_monitor import _plugin_to_compute_dtype

        return _plugin_to_compute_dtype(trainer.precision_plugin)

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
        self._peak_logged = False

    @rank_zero_only
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: Any) -> None:
        stage = RunningStage.TRAINING
        self._lengths[stage] += tokens_in_batch(batch)
        self._samples[stage] += samples_in_batch(batch)
        self._batches[stage] += 1
        flops = self._flops_per_batch(pl_module, batch) if self._has_flops else None
        if flops is None:
            self._has_flops = False
        else:
            self._pending_flops += flops
        if trainer.fit_loop._should_accumulate():  # mid optimizer step: nothing is logged per micro-batch
            return
        self._steps += 1
        if not trainer._logger_connector.should_update_logs:
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
            "train/tokens_seen": self._before["tokens_seen"] + raw["lengths"] * world,
            "train/time": self._before["time"] + raw["time"],
        }
        last_time, last_steps = self._last_log
        if self._steps > last_steps:
            metrics["train/step_time"] = (elapsed - last_time) / (self._steps - last_steps)
        self._last_log = (elapsed, self._steps)
        if "device/items_per_sec" in raw:
            metrics["train/device/tokens_per_sec"] = raw["device/items_per_sec"]
            metrics["train/tokens_per_sec"] = raw["device/items_per_sec"] * world
        if "device/flops_per_sec" in raw:
            metrics["train/device/flops_per_sec"] = raw["device/flops_per_sec"]
        if "device/mfu" in raw:
            metrics["train/mfu"] = raw["device/mfu"]
        if self.requested_flops == "measure" and not self._peak_logged:
            metrics["train/device/available_flops"] = float(self.available_flops)
            self._peak_logged = True
        device = trainer.strategy.root_device
        if device.type == "cuda":
            metrics["train/device/peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
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


# ---------------------------------------------------------------- hparams
def run_hyperparameters(trainer: Trainer, pl_module: LightningModule) -> dict[str, int | float | str | bool]:
    """A flat ``{name: scalar}`` description of a run for TensorBoard's HPARAMS view.

    ``ffn`` is the variant name of the run directory (``GEGLU-approximate=tanh``),
    ``ffn_class`` the class; ``seed`` comes from ``seed_everything``; the other
    scalar init arguments of the module, the data shape (``seq_len``,
    ``batch_size``, ``tokens_per_step``) and a few trainer settings follow.
    Lists and other values become strings.
    """
    from lit_ffn.lightning_cli import ffn_variant_name

    hparams = dict(getattr(pl_module, "hparams", {}) or {})
    ffn = hparams.pop("ffn", None)
    params: dict[str, Any] = {}
    if ffn is not None and (hasattr(ffn, "get") or hasattr(ffn, "class_path")) and ffn_variant_name(ffn) != "ffn":
        params["ffn"] = ffn_variant_name(ffn)
    else:
        params["ffn"] = getattr(pl_module, "ffn_name", type(ffn).__name__ if ffn is not None else "none")
    params["ffn_class"] = params["ffn"].split("-", 1)[0]
    seed = os.environ.get("PL_GLOBAL_SEED")
    params["seed"] = int(seed) if seed is not None and seed.lstrip("-").isdigit() else -1
    logger = trainer.logger
    if logger is not None and getattr(logger, "name", None):
        params["experiment"] = str(logger.name)
    for key, value in hparams.items():
        params[key] = value
    datamodule = trainer.datamodule
    for key in ("seq_len", "batch_size"):
        if hasattr(datamodule, key):
            params[key] = getattr(datamodule, key)
    if "seq_len" in params and "batch_size" in params:
        params["tokens_per_step"] = params["seq_len"] * params["batch_size"] * trainer.accumulate_grad_batches * trainer.world_size
    params.update(
        max_steps=trainer.max_steps,
        accumulate_grad_batches=trainer.accumulate_grad_batches,
        world_size=trainer.world_size,
        precision=str(trainer.precision),
        gradient_clip_val=float(trainer.gradient_clip_val or 0.0),
    )
    if hasattr(pl_module, "num_parameters"):
        params["num_parameters"] = int(pl_module.num_parameters())
    model = getattr(pl_module, "model", None)
    if model is not None and hasattr(model, "num_parameters"):
        try:
            params["num_parameters_non_embedding"] = int(model.num_parameters(exclude_embedding=True))
        except TypeError:
            pass
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in params.items()}


class HyperparameterSummary(Callback):
    """Writes one HPARAMS session per run: :func:`run_hyperparameters` with metrics ``val/loss``, ``val/ppl``.

    The metrics are the run's own scalar tags — TensorBoard's HPARAMS view
    shows their latest values, so it compares FFNs and seeds by their final
    validation loss with no duplicate ``hp/…`` scalar and no placeholder point.
    Lightning's automatic hyperparameter logging (the nested config plus an
    ``hp_metric = -1``) is switched off for the module so that each run has
    exactly one session.  A resumed fit (``ckpt_path``) writes nothing: the
    run's first events file already holds its session.

    Args:
        metrics: scalar tags shown as HPARAMS metric columns.
    """

    def __init__(self, metrics: list[str] | None = None) -> None:
        super().__init__()
        self.metrics = list(metrics) if metrics is not None else ["val/loss", "val/ppl", "train/loss"]

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == TrainerFn.FITTING:
            # The flag `save_hyperparameters(logger=False)` sets: Lightning then skips logger.log_hyperparams.
            pl_module._log_hyperparams = False

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.ckpt_path is not None or not trainer.loggers:
            return
        self._write(trainer, run_hyperparameters(trainer, pl_module))

    @rank_zero_only
    def _write(self, trainer: Trainer, params: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(params, metrics={})  # kept for hparams.yaml; {}: no hp_metric placeholder
                writer = logger.experiment._get_file_writer()  # as TensorBoardLogger.log_hyperparams does
                for summary in hparams_summary(params, {name: 0.0 for name in self.metrics}):
                    writer.add_summary(summary)
            else:
                logger.log_hyperparams(params)


__all__ = [
    "GateStatistics",
    "GradNormMonitor",
    "HyperparameterSummary",
    "TokenThroughputMonitor",
    "gate_recorders",
    "logging_step",
    "measure_matmul_flops",
    "run_hyperparameters",
]
