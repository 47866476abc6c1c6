"""Measuring: peak memory per model, and the interleaved timing loop."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lit_ffn.bench.runners import Runner
from lit_ffn.bench.settings import Settings


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class MemoryMeter:
    """Peak memory above a baseline: CUDA allocator statistics, or the CPU process's peak RSS."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu_ok = device.type == "cpu" and Path("/proc/self/clear_refs").exists()
        if device.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated() minus the allocation before the model was built"
        elif self.cpu_ok:
            self.method = (
                "peak RSS of the process (VmHWM, reset via /proc/self/clear_refs) minus the RSS "
                "before the model was built"
            )
        else:
            self.method = "not available on this platform"
        self.baseline = 0

    @staticmethod
    def _status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def start(self) -> None:
        from lit_ffn.loss import release_workspace

        release_workspace()  # the loss's CPU scratch buffer is counted for the model that (re)allocates it
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
        elif self.cpu_ok:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            except OSError:
                self.cpu_ok, self.method = False, "not available (cannot reset /proc/self/clear_refs)"
            self.baseline = self._status("VmRSS")

    def peak(self) -> int | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self.baseline
        if self.cpu_ok:
            return self._status("VmHWM") - self.baseline
        return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = (len(ordered) - 1) * q
    low, high = int(index), min(int(index) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def run_benchmark(
    runner_factories: list[Callable[[], Runner]], settings: Settings, log: Callable[[str], None] = lambda _: None
) -> list[Runner]:
    """Build each model and warm it up (measuring its memory), then time all of them interleaved."""
    device = settings.device
    generator = torch.Generator().manual_seed(settings.seed)
    meter = MemoryMeter(device)
    runners: list[Runner] = []
    blocks = torch.randint(
        0,
        settings.vocab_size,
        (settings.warmup + settings.steps, settings.batch_size, settings.seq_len + 1),
        generator=generator,
    )
    # the same data for every model
    batches = [(block[:, :-1].contiguous().to(device), block[:, 1:].contiguous().to(device)) for block in blocks]
    for factory in runner_factories:
        meter.start()
        runner = factory()
        runners.append(runner)
        log(f"warming up {runner.name} ({settings.warmup} steps)")
        try:
            for i in range(settings.warmup):
                runner.losses.append(float(runner.step(*batches[i])))
            _sync(device)
        except torch.OutOfMemoryError:  # reported as such: a sweep over --batch-size finds the largest that fits
            runner.error = "out of memory"
            runner.release()
            log(f"{runner.name}: out of memory")
            continue
        runner.peak_mem = meter.peak()
    timed = [runner for runner in runners if runner.error is None]
    if len(timed) > 1:  # one untimed step each: buffers shared across models (the loss's CPU workspace) settle
        for runner in timed:
            runner.step(*batches[settings.warmup - 1])
    log(f"timing {settings.steps} steps of {len(timed)} model(s), interleaved")
    for i in range(settings.warmup, settings.warmup + settings.steps):
        for runner in timed:
            _sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            loss = runner.step(*batches[i])
            _sync(device)
            runner.times.append(time.perf_counter() - start)
            runner.cpu_times.append(time.process_time() - cpu_start)
            runner.losses.append(float(loss))  # after the clock stops: reading the loss syncs
    return runners


__all__ = ["MemoryMeter", "percentile", "run_benchmark"]
