"""Item ``gates``: what :class:`lit_ffn.callbacks.GateStatistics` costs a training step.

Three Lightning fits of the paper model with DynamicGEGLU (the FFN that records the most: gate,
alpha and its learned scalars), on random tokens held in memory, interleaved: the callback **off**,
on **every step**, and at its **default cadence** (``every_n_steps=50``).  Each fit runs
``gate_warmup`` untimed steps, then ``gate_steps`` timed ones as one window — the device is
synchronised only at the window's two ends, so CUDA's asynchronous execution is kept and the
callback's one device-to-host copy per logging step is what shows.  Reported: time per step of
each, the measured overheads, and the overhead at a cadence k derived from the every-step fits,
(t_every − t_off) / (k · t_off).  PASS needs the statistics logged exactly on their steps (and
never when off).
"""

from __future__ import annotations

import gc
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import Logger

from lit_ffn.bench.gpu_check.items import FAIL, PASS, Context, Result
from lit_ffn.bench.settings import ModelConfigs
from lit_ffn.callbacks import GateStatistics

DEFAULT_EVERY = 50  # GateStatistics' default every_n_steps
PAPER_EVERY = 25  # configs/paper/qwen3_83m.yaml
OVERHEAD_TARGET = 0.02  # docs/benchmarks.md: ≤ 2% at the default cadence


class GateStepLogger(Logger):
    """Remembers the steps at which ``z_gates/*`` metrics were logged (nothing is written)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate_steps: set[int] = set()

    @property
    def name(self) -> str:
        return "gpu_check"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if step is not None and any(key.startswith("z_gates/") for key in metrics):
            self.gate_steps.add(step)


class WindowTimer(L.Callback):
    """Wall time from the start of optimizer step ``first`` to the end of training, synchronised at both ends."""

    def __init__(self, first: int, device: torch.device) -> None:
        self.first, self.device = first, device
        self.start: float | None = None
        self.elapsed = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self.start is None and trainer.global_step == self.first:
            self._sync()
            self.start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._sync()
        self.elapsed = time.perf_counter() - (self.start if self.start is not None else time.perf_counter())


def one_fit(ctx: Context, configs: ModelConfigs, every: int | None, data: torch.Tensor) -> tuple[float, set[int]]:
    """(seconds per timed step, the steps that logged gate statistics) of one fit."""
    plan = ctx.plan
    torch.manual_seed(0)
    lit = configs.build({"class_path": "lit_ffn.ffn.DynamicGEGLU"})
    timer, logger = WindowTimer(plan.gate_warmup, plan.device), GateStepLogger()
    callbacks: list[L.Callback] = [timer]
    if every is not None:
        callbacks.insert(0, GateStatistics(every_n_steps=every, histogram_every_n_steps=0, log_last_step=False))
    trainer = L.Trainer(
        accelerator="gpu" if plan.device.type == "cuda" else "cpu",
        devices=1,
        precision=plan.precision,
        max_steps=plan.gate_warmup + plan.gate_steps,
        logger=logger,
        log_every_n_steps=configs.config.trainer.get("log_every_n_steps") or 50,
        callbacks=callbacks,
        gradient_clip_val=configs.config.trainer.get("gradient_clip_val"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    loader = torch.utils.data.DataLoader(data, batch_size=plan.batch_size, shuffle=False)
    trainer.fit(lit, train_dataloaders=loader)
    seconds = timer.elapsed / plan.gate_steps
    del trainer, lit, loader
    gc.collect()
    if plan.device.type == "cuda":
        torch.cuda.empty_cache()
    return seconds, logger.gate_steps


def expected_steps(every: int | None, total: int) -> set[int]:
    return set() if every is None else {step for step in range(total) if step % every == 0}


def run(ctx: Context) -> Result:
    key, title = "gates", "gate statistics on vs off (every step, default cadence)"
    plan = ctx.plan
    configs = ModelConfigs(ctx.configs)
    total = plan.gate_warmup + plan.gate_steps
    generator = torch.Generator().manual_seed(0)
    data = torch.randint(0, plan.vocab_size, (total * plan.batch_size, plan.seq_len + 1), generator=generator)
    arms: dict[str, int | None] = {"off": None, "every step": 1, f"every {DEFAULT_EVERY} (default)": DEFAULT_EVERY}
    times: dict[str, list[float]] = {name: [] for name in arms}
    problems = []
    for _ in range(plan.gate_repeats):
        for name, every in arms.items():
            seconds, logged = one_fit(ctx, configs, every, data)
            times[name].append(seconds)
            if logged != expected_steps(every, total):
                problems.append(f"{name}: gate statistics logged at steps {sorted(logged)[:8]}")
    t = {name: min(values) for name, values in times.items()}  # the least disturbed of the repeats
    t_off, t_every, t_default = t["off"], t["every step"], t[f"every {DEFAULT_EVERY} (default)"]
    derived = {k: (t_every - t_off) / (k * t_off) for k in (DEFAULT_EVERY, PAPER_EVERY)}
    details = [
        (
            f"DynamicGEGLU, {plan.precision}, micro-batch {plan.batch_size} × {plan.seq_len}, {plan.gate_warmup} untimed + "
            f"{plan.gate_steps} timed steps per fit (one window), {plan.gate_repeats} interleaved repeat(s), best shown."
        ),
        "",
        "| GateStatistics | time per step | vs off |",
        "|---|---|---|",
    ]
    for name in arms:
        details.append(f"| {name} | {t[name] * 1e3:.2f} ms | {100 * (t[name] / t_off - 1):+.2f}% |")
    details.append(
        f"\nDerived from the every-step fits: {100 * derived[DEFAULT_EVERY]:+.3f}% at every {DEFAULT_EVERY} steps "
        f"(the default), {100 * derived[PAPER_EVERY]:+.3f}% at every {PAPER_EVERY} (the paper config)."
    )
    data_out = {
        "seconds_per_step": times,
        "overhead_every_step": t_every / t_off - 1,
        "overhead_default_measured": t_default / t_off - 1,
        "overhead_derived": {str(k): v for k, v in derived.items()},
        "target": {
            "value": derived[DEFAULT_EVERY],
            "target": OVERHEAD_TARGET,
            "met": derived[DEFAULT_EVERY] <= OVERHEAD_TARGET,
        },
    }
    if problems:
        return Result(key, title, FAIL, "; ".join(problems), details, data_out)
    summary = (
        f"every step {100 * (t_every / t_off - 1):+.1f}%, default cadence {100 * (t_default / t_off - 1):+.2f}% "
        f"measured / {100 * derived[DEFAULT_EVERY]:+.3f}% derived ({t_off * 1e3:.1f} ms/step off)"
    )
    return Result(key, title, PASS, summary, details, data_out)


__all__ = ["GateStepLogger", "WindowTimer", "expected_steps", "one_fit", "run"]
