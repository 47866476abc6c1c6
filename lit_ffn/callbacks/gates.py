"""``GateStatistics``: per-layer statistics of what each FFN records as its gate.

``z_gates/layer_XX/<name>_<stat>`` for every tensor an FFN records (:class:`lit_ffn.ffn.GateRecorder`),
learned scalars such as DynamicGEGLU's ``s`` and ``b``, histograms at a lower cadence.  Nothing is
synchronised between host and device on a step that does not log, and nothing is logged per
micro-batch of an accumulated optimizer step.  Logged at Lightning's x for the optimizer step
(:func:`lit_ffn._lightning.logging_step`), as Lightning's own ``LearningRateMonitor`` does.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch import nn

from lit_ffn._lightning import logging_step
from lit_ffn.callbacks import gate_stats
from lit_ffn.errors import UserError

#: The group of every gate tag.  TensorBoard orders groups (the part before the first ``/``) alphabetically
#: and opens the first two: the ``z_`` puts the dozens of gate cards after ``train/`` (loss, lr, throughput) and
#: ``val/``, which then open first (docs/gates.md, "What the first screen shows").  Runs before this change
#: logged ``gates/…``: the readers (lit_ffn.experiments) accept both.
TAG_PREFIX = "z_gates"


def _has_histograms(logger: Any) -> bool:
    """Whether the logger's experiment writes histograms (TensorBoard's ``SummaryWriter.add_histogram``)."""
    return getattr(getattr(logger, "experiment", None), "add_histogram", None) is not None


def gate_recorders(pl_module: nn.Module) -> list[nn.Module]:
    """The FFNs of ``pl_module`` that can show a gate, in layer order.

    ``pl_module.ffn_modules`` (one per layer, :class:`lit_ffn.training.module.LitDecoder`)
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


class _Accumulator:
    """Running statistics of one recorded tensor of one layer over a logging step (on the device)."""

    def __init__(self, sums: torch.Tensor, maxes: torch.Tensor, sample: torch.Tensor) -> None:
        self.sums = sums  # (5,)  see lit_ffn.callbacks.gate_stats.moments
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
        # the FFN's learned scalars as seen inside its forward, where every sharding strategy has
        # gathered them (FSDP1 with use_orig_params leaves a rank that owns none of a parameter an empty
        # view outside forward, so reading the parameter later would lose it on that rank)
        self.scalars: dict[str, torch.Tensor] = {}

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
        scalars = getattr(ffn, "gate_scalars", None)
        if scalars is not None:
            for key, value in scalars().items():
                if not hasattr(value, "full_tensor"):  # FSDP2 DTensors are gathered at compute()
                    self.scalars[key] = value.detach().float().reshape(-1).clone()


class GateStatistics(Callback):
    """Per-layer statistics of every FFN's recorded gate tensors, logged every ``every_n_steps``.

    On a logging step, for every layer ``i`` and every tensor an FFN records
    under ``name`` (``"gate"`` for the GLU family and IsoGMLP, ``"hidden"``
    for 2-matrix FFNs, also ``"alpha"`` for DynamicGEGLU), over all elements
    (tokens × units) of the optimizer step — all micro-batches and ranks —
    TensorBoard gets ``z_gates/layer_{i:02d}/{name}_{stat}`` for ``stat`` in

    ========================  ==============================================
    ``mean``, ``std``         mean and population std of the values
    ``frac_near_zero``        fraction with ``|g| < threshold``
    ``frac_negative``         fraction with ``g < 0``
    ``max_abs``               largest ``|g|``
    ``min``, ``max``          extremes
    ========================  ==============================================

    plus ``z_gates/layer_{i:02d}/{scalar}`` for every learned scalar the FFN
    lists in ``gate_scalars()`` (DynamicGEGLU: ``s``, ``b``; the values the
    statistics were computed with, i.e. before this step's update), and
    every ``histogram_every_n_steps`` a histogram ``z_gates/layer_{i:02d}/{name}``
    of up to ``histogram_samples`` evenly strided values (the last
    micro-batch of rank 0).

    Cost.  The observer is installed in ``on_train_batch_start`` of a logging
    step and removed in ``on_before_backward`` (so activation-checkpoint
    recomputation is not counted twice); each ``record`` reduces its tensor
    on the device to 7 numbers (:func:`lit_ffn.callbacks.gate_stats.moments`) added to
    the layer's accumulators.  At the optimizer step they are combined
    across ranks (``all_reduce`` SUM for sums and counts, MAX for maxima —
    exact, see :mod:`lit_ffn.callbacks.gate_stats`) and read back with one copy.  On
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
        self._probes = [(ffn, _LayerProbe(self.threshold, self.histogram_samples)) for ffn in gate_recorders(pl_module)]
        if not self._probes:
            rank_zero_warn(
                "GateStatistics: no FFN of this model records gates (inherit lit_ffn.ffn.GateRecorder and "
                "call self.record('gate', tensor) in forward); nothing will be logged"
            )
        self._always_eager = self.compiled == "eager" or (
            self.compiled == "auto" and has_activation_checkpointing(pl_module)
        )
        self._last_step = trainer.max_steps - 1 if trainer.max_steps and trainer.max_steps > 0 else None
        if self.histogram_every_n_steps > 0 and self._probes:
            self._say_where_histograms_go(trainer)

    @staticmethod
    def _say_where_histograms_go(trainer: Trainer) -> None:
        """Once per fit: which loggers get no histograms (they have no ``add_histogram``, e.g. CSV)."""
        without = [type(logger).__name__ for logger in trainer.loggers if not _has_histograms(logger)]
        if without:
            where = "no logger of this run" if len(without) == len(trainer.loggers) else "TensorBoard only"
            rank_zero_info(
                f"GateStatistics: {', '.join(without)} cannot store histograms, so gate histograms go to {where}; "
                "the statistics (z_gates/layer_XX/*) are logged to every logger"
            )

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
        for layer, (ffn, probe) in enumerate(self._probes):
            for name, value in getattr(ffn, "gate_scalars", dict)().items():
                flat = probe.scalars[name] if name in probe.scalars else _full_value(value)
                parts.append(flat.to(parts[0]) if parts else flat)
                prefix = f"{TAG_PREFIX}/layer_{layer:02d}/{name}"
                scalar_tags += [prefix] if flat.numel() == 1 else [f"{prefix}_{j}" for j in range(flat.numel())]
        if not parts:
            return {}
        values = torch.cat(parts).tolist()  # the one sync of a logging step
        metrics: dict[str, float] = {}
        width = 1 + len(gate_stats.STATS)
        for i, (layer, name) in enumerate(keys):
            row = values[i * width : (i + 1) * width]
            if row[0] > 0:
                metrics.update(
                    {f"{TAG_PREFIX}/layer_{layer:02d}/{name}_{stat}": v for stat, v in zip(gate_stats.STATS, row[1:])}
                )
        metrics.update(zip(scalar_tags, values[len(keys) * width :]))
        return metrics

    def _log_histograms(self, trainer: Trainer, step: int) -> None:
        for logger in trainer.loggers:
            if not _has_histograms(logger):
                continue
            add_histogram = logger.experiment.add_histogram
            for layer, (_, probe) in enumerate(self._probes):
                for name, acc in probe.accumulators.items():
                    add_histogram(f"{TAG_PREFIX}/layer_{layer:02d}/{name}", acc.sample.cpu(), global_step=step)


__all__ = ["TAG_PREFIX", "GateStatistics", "gate_recorders", "has_activation_checkpointing"]
