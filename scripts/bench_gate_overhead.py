"""Overhead of lit_ffn.callbacks.GateStatistics: step time with the callback on vs off.

    python scripts/bench_gate_overhead.py                        # quickstart shape, CPU
    python scripts/bench_gate_overhead.py --device cuda --precision bf16-mixed --steps 120 --compile

Two measurements, both with Lightning's Trainer on the quickstart model
(width 128, 4 layers, Qwen3 vocabulary, 8 × 256 tokens per step, random
tokens in memory so that data loading is not timed):

1. A/B step times.  Fits with the callback off and on, interleaved
   (off, on, off, on, …) against load drift, ``--steps`` timed steps each
   after ``--warmup`` untimed ones.  "on" uses ``--ab-every`` (default 1:
   every step observed, the worst case); the overhead at the default cadence
   ``--every`` (50) is then ``(t_on − t_off) / (every · t_off)`` when
   ``--ab-every`` is 1, or the measured ratio ``t_on / t_off − 1`` when
   ``--ab-every`` equals ``--every`` (use enough steps: a multiple of it).
2. Attributable time.  Inside the "on" fits the observer calls and the
   per-step combine/read-back are timed directly (with a device synchronize
   around them on CUDA, so this is an upper bound there): the callback's own
   cost per observed step, free of the step-time noise of a shared machine.

Prints one JSON object.  Record the machine load (``uptime``) next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_ffn.callbacks import GateStatistics
from lit_ffn.callbacks import gates as cb_module
from lit_ffn.ffn import BUILTIN_FFNS
from lit_ffn.training.module import LitDecoder


class StepTimer(L.Callback):
    """Wall time of each optimizer step (batch start → batch end, device-synchronised)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.times, self._start = device, [], 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_batch_start(self, *args) -> None:
        self._sync()
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        self._sync()
        self.times.append(time.perf_counter() - self._start)


class Attributed:
    """Accumulates the time spent in the observer and in GateStatistics' per-step combine."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds = device, 0.0

    def timed(self, fn):
        def wrapper(*args, **kwargs):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds += time.perf_counter() - start
            return out

        return wrapper


def one_fit(
    args: argparse.Namespace, every: int | None, data: torch.Tensor, attributed: Attributed | None
) -> list[float]:
    torch.manual_seed(0)
    module = LitDecoder(
        ffn=BUILTIN_FFNS[args.ffn],
        vocab_size=args.vocab,
        dim=args.dim,
        n_layers=args.layers,
        n_heads=4,
        n_kv_heads=2,
        head_dim=args.dim // 4,
        lr=3e-3,
        compile=args.compile,
    )
    device = torch.device(args.device)
    timer = StepTimer(device)
    callbacks: list[L.Callback] = [timer]
    if every is not None:
        gates = GateStatistics(every_n_steps=every, histogram_every_n_steps=0, log_last_step=False)
        if attributed is not None:
            gates.compute = attributed.timed(gates.compute)
        callbacks.insert(0, gates)
    trainer = L.Trainer(
        accelerator=args.device,
        devices=1,
        precision=args.precision,
        max_steps=args.warmup + args.steps,
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
    )
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=False)
    probe_call = cb_module._LayerProbe.__call__
    if attributed is not None:  # time every observer call (eager only: the sync would break tracing)
        cb_module._LayerProbe.__call__ = attributed.timed(probe_call)
    try:
        trainer.fit(module, train_dataloaders=loader)
    finally:
        cb_module._LayerProbe.__call__ = probe_call
    return timer.times[args.warmup :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--ffn", default="dynamic_geglu", choices=sorted(BUILTIN_FFNS))
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--every", type=int, default=50, help="the cadence to report the overhead at (the default)")
    parser.add_argument("--ab-every", type=int, default=1, help="cadence of the 'on' fits (1: every step observed)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per fit")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per fit")
    parser.add_argument("--repeats", type=int, default=3, help="off/on pairs")
    parser.add_argument("--compile", action="store_true", help="torch.compile every block (LitDecoder compile=True)")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)

    n = (args.warmup + args.steps) * args.batch_size
    data = torch.randint(0, args.vocab, (n, args.seq_len + 1), generator=torch.Generator().manual_seed(0))
    device = torch.device(args.device)
    off, on, attributed_per_step = [], [], []
    for _ in range(args.repeats):
        off += one_fit(args, None, data, None)
        attributed = Attributed(device) if args.ab_every == 1 and not args.compile else None
        on += one_fit(args, args.ab_every, data, attributed)
        if attributed is not None:  # every step, warm-up included, was observed
            attributed_per_step.append(attributed.seconds / (args.warmup + args.steps))
    t_off, t_on = statistics.median(off), statistics.median(on)
    result = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "torch": torch.__version__,
        "shape": {
            "dim": args.dim,
            "layers": args.layers,
            "vocab": args.vocab,
            "seq_len": args.seq_len,
            "batch_size": args.batch_size,
            "ffn": args.ffn,
            "precision": args.precision,
            "compile": args.compile,
        },
        "step_time_off_s": {"median": t_off, "all": off},
        "step_time_on_s": {"median": t_on, "all": on, "every_n_steps": args.ab_every},
        "load_average": os.getloadavg(),
    }
    if args.ab_every == 1:
        extra = t_on - t_off
        result["extra_per_observed_step_s"] = extra
        result[f"overhead_at_every_{args.every}_from_ab"] = extra / (args.every * t_off)
        if attributed_per_step:
            own = statistics.median(attributed_per_step)
            result["attributed_per_observed_step_s"] = own
            result[f"overhead_at_every_{args.every}_attributed"] = own / (args.every * t_off)
    else:
        result[f"overhead_at_every_{args.ab_every}_measured"] = t_on / t_off - 1
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
