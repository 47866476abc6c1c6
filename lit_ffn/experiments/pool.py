"""``lit_ffn ablate --workers N``: run N pairs of a study at once on this machine, each in its own process.

Slots.  The pool has N slots; each runs one pair at a time in a worker process
(:mod:`lit_ffn.experiments.worker`: the sequential runner's :func:`~lit_ffn.experiments.runner.run_pair`;
a run of one process fits inside the worker, a run of several in a child ``lit_ffn fit``), and each slot
owns a fixed share of the machine (:func:`plan_slots`).  A CPU run of one process gets a worker forked
from a ``multiprocessing`` fork server that imported torch, Lightning and lit_ffn once for the pool
(:func:`_fork_context`); other runs (GPUs, several processes per run) a new ``python -m
lit_ffn.experiments.worker``.

* runs on GPUs (``trainer.accelerator`` gpu/cuda, or auto with a GPU visible): slot ``i`` sees GPUs
  ``i·K … i·K + K − 1`` of the visible ones through ``CUDA_VISIBLE_DEVICES`` (``K = --devices-per-run``,
  by default the runs' ``trainer.devices``, else 1); N·K GPUs must be visible;
* runs on CPU: the cores are split, ``t = max(1, C // (N·P))`` torch threads per process
  (``OMP_NUM_THREADS``/``MKL_NUM_THREADS``; C usable cores, P processes per run = ``trainer.devices``).
  The CPU split is also applied on GPU nodes (the data loaders and the final evaluation's host work).

Order.  Pairs start in the study's order (seed-major: every variant with the first seed before any
with the second, so a study stopped early is still balanced), the next free slot taking the first
pair that can start; a confirmation run whose variant's tuning is not finished waits in the queue
while later pairs start.

Resumable as the sequential runner: every file a run leaves is written atomically, a run that was
stopped resumes from its ``last.ckpt``, a done run is skipped, and a pair's lock
(:func:`~lit_ffn.experiments.runner.pair_lock`) keeps two processes off one run.  Killing the whole
pool (its process group) with SIGKILL loses at most each running fit's steps since its last checkpoint;
SIGTERM or SIGINT to the pool is passed to every worker (each fit saves ``last.ckpt`` at the end of its
optimizer step), the pool waits for them and exits 128 + the signal.  Rerun the same command to go on.

Progress.  A line per start and per finish (as the sequential runner's) and after each a progress line:
done / running / left and an ETA (:func:`eta_seconds`: the mean wall time of the runs this pool
finished, by ladder rung and stage, spread over the slots in queue order).
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lit_ffn.errors import UserError
from lit_ffn.experiments.runfiles import read_done
from lit_ffn.experiments.runner import SETTLED, needs_work, outcome_message, pair_label, start_message
from lit_ffn.experiments.study import Pair, Study
from lit_ffn.experiments.worker import OUTCOME_PREFIX, die_with_parent, forked_main


# ================================================================== slots
@dataclass(frozen=True)
class Slot:
    """One place to run a pair: its number, the environment its processes get, and how to say it."""

    index: int
    env: dict[str, str]
    label: str


@dataclass(frozen=True)
class PoolPlan:
    slots: list[Slot]
    summary: str  # one line: the split of the machine
    processes_per_run: int = 1  # 1: the worker fits in its own process (lit_ffn.experiments.worker)
    forkserver: bool = False  # workers forked from a fork server that imported torch and Lightning once


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a cgroup or ``taskset`` limit counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The CUDA devices this process sees, as ``CUDA_VISIBLE_DEVICES`` names them (indices by default)."""
    import torch

    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(count)]
    return [name.strip() for name in listed.split(",") if name.strip()][:count]


def run_resources(configs: Sequence[Any]) -> tuple[str, Any]:
    """``(accelerator, trainer.devices)`` of a study's runs from their parsed fit configs: the
    accelerator as ``"gpu"`` or ``"cpu"``; one line when the runs disagree or ask for something else."""
    seen: set[tuple[str, str]] = set()
    for config in configs:
        trainer = config.trainer if hasattr(config, "trainer") else config["trainer"]
        accelerator = str(trainer.get("accelerator", "auto")).lower()
        seen.add((accelerator, json.dumps(trainer.get("devices", "auto"), default=str)))
    if len(seen) != 1:
        listed = ", ".join(f"accelerator={a} devices={d}" for a, d in sorted(seen))
        raise UserError(f"--workers: the study's runs ask for different devices ({listed}): one pool cannot split them")
    accelerator, devices = next(iter(seen))
    if accelerator in ("gpu", "cuda"):
        kind = "gpu"
    elif accelerator == "cpu":
        kind = "cpu"
    elif accelerator == "auto":
        kind = "gpu" if visible_gpus() else "cpu"
    else:
        raise UserError(
            f"--workers splits CPU cores or CUDA GPUs; the runs ask for trainer.accelerator={accelerator}: "
            "run the study without --workers"
        )
    return kind, json.loads(devices)


def _devices_count(devices: Any) -> int | None:
    """``trainer.devices`` as a count (None: ``auto``/-1, every device the process sees)."""
    if devices in ("auto", -1, "-1", None):
        return None
    if isinstance(devices, int) and not isinstance(devices, bool):
        return devices
    if isinstance(devices, str) and devices.strip().isdigit():
        return int(devices)
    raise UserError(
        f"trainer.devices={devices!r} names particular devices; with --workers each run sees only its own "
        "devices: give a count (e.g. --trainer.devices=1)"
    )


def plan_slots(
    workers: int,
    accelerator: str,
    devices: Any,
    devices_per_run: int | None = None,
    cores: int | None = None,
    gpus: Sequence[str] | None = None,
) -> PoolPlan:
    """The slots of a pool of ``workers`` for runs on ``accelerator`` (``"gpu"``/``"cpu"``) with
    ``trainer.devices = devices`` (module docstring).  ``cores``/``gpus``: this machine's by default."""
    if workers < 1:
        raise UserError(f"--workers {workers}: must be at least 1 (how many runs go at once)")
    if devices_per_run is not None and devices_per_run < 1:
        raise UserError(f"--devices-per-run {devices_per_run}: must be at least 1")
    cores = usable_cores() if cores is None else cores
    count = _devices_count(devices)
    if accelerator == "gpu":
        gpus = visible_gpus() if gpus is None else list(gpus)
        per_run = devices_per_run or count or 1
        if count is not None and count != per_run:
            raise UserError(
                f"--devices-per-run {per_run} but the runs' trainer.devices={count}: make them equal "
                f"(--trainer.devices={per_run}, or --devices-per-run {count})"
            )
        if workers * per_run > len(gpus):
            fits = len(gpus) // per_run
            seen = f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''} visible" + (f" ({','.join(gpus)})" if gpus else "")
            if fits:
                hint = f"use --workers {fits} or fewer"
            elif gpus:
                hint = f"not one run fits: use --devices-per-run {len(gpus)} or fewer"
            else:
                hint = "run on CPU (--trainer.accelerator=cpu) or where GPUs are"
            raise UserError(
                f"--workers {workers} with {per_run} GPU{'s' if per_run > 1 else ''} per run needs "
                f"{workers * per_run} GPUs, {seen}: {hint}"
            )
        threads = max(1, cores // (workers * per_run))
        groups = [gpus[i * per_run : (i + 1) * per_run] for i in range(workers)]
        slots = [
            Slot(i + 1, {"CUDA_VISIBLE_DEVICES": ",".join(g), **_thread_env(threads)}, f"GPU {','.join(g)}")
            for i, g in enumerate(groups)
        ]
        summary = (
            f"{workers} worker{'s' if workers > 1 else ''}, {per_run} GPU{'s' if per_run > 1 else ''} per run "
            f"({' | '.join(','.join(g) for g in groups)}); {threads} torch thread{'s' if threads > 1 else ''} "
            f"per process ({cores} cores)"
        )
        return PoolPlan(slots, summary, per_run)
    if devices_per_run not in (None, 1):
        raise UserError(
            f"--devices-per-run {devices_per_run} is for runs on GPUs; these runs are on CPU, where "
            "trainer.devices sets the processes per run and the pool splits the cores"
        )
    processes = count or 1
    threads = max(1, cores // (workers * processes))
    per = f" × {processes} processes" if processes > 1 else ""
    note = f" (more processes than cores: they share {cores} cores)" if workers * processes > cores else ""
    summary = (
        f"{workers} worker{'s' if workers > 1 else ''} on CPU{per}: {cores} cores, {threads} torch "
        f"thread{'s' if threads > 1 else ''} per run (OMP_NUM_THREADS={threads}){note}"
    )
    slots = [Slot(i + 1, _thread_env(threads), f"{threads} thread{'s' if threads > 1 else ''}") for i in range(workers)]
    forkserver = processes == 1 and "forkserver" in multiprocessing.get_all_start_methods()
    return PoolPlan(slots, summary, processes, forkserver)


def _thread_env(threads: int) -> dict[str, str]:
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


# ================================================================== ETA
def eta_seconds(left: Sequence[float], running_remaining: Sequence[float], workers: int) -> float:
    """When the last run ends if each slot takes the next pair in queue order as it frees up:
    ``running_remaining`` is the time the running pairs still need (one slot each), ``left`` the
    estimate of each queued pair.  (List scheduling; the queue's order is the pool's own.)"""
    slots = sorted([*running_remaining, *[0.0] * max(0, workers - len(running_remaining))])
    for estimate in left:
        slots[0] += estimate
        slots.sort()
    return max(slots, default=0.0)


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@dataclass
class _Clock:
    """Wall times of runs by (rung, stage), for the ETA: those this pool finished (start to end of
    the worker), else the ``wall_s`` of the fits that earlier commands finished from scratch (``DONE``)."""

    times: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    earlier: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, pair: Pair, seconds: float, earlier: bool = False) -> None:
        (self.earlier if earlier else self.times).setdefault((pair.rung, pair.stage), []).append(seconds)

    def estimate(self, pair: Pair) -> float | None:
        key = (pair.rung, pair.stage)
        for source in (self.times, self.earlier):
            chosen = source.get(key) or [t for ts in source.values() for t in ts]
            if chosen:
                return sum(chosen) / len(chosen)
        return None


# ================================================================== the pool
class _Forked:
    """A worker forked from the fork server (:func:`~lit_ffn.experiments.worker.forked_main`), with the
    two calls of ``subprocess.Popen`` the pool uses."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self.process = process

    def poll(self) -> int | None:
        return self.process.exitcode  # None while it runs; -N when signal N ended it (as Popen's)

    def send_signal(self, signum: int) -> None:
        if self.process.exitcode is None and self.process.pid is not None:
            try:
                os.kill(self.process.pid, signum)
            except ProcessLookupError:
                pass


@functools.cache
def _fork_context() -> multiprocessing.context.BaseContext:
    """The ``forkserver`` context whose server imports :mod:`lit_ffn.experiments.forkserver_preload`.

    Why a fork server: a CPU run at the ladder's small rungs trains in a few seconds, while a new Python
    process spends ~10 s importing torch, Lightning and torchmetrics (measured: 8 runs of d032l1 with
    ``--workers 2`` took 119 s as fresh processes, 64 s forked; docs/experiments.md § 3).  Forking the
    pool itself instead would copy whatever state the pool has; the server holds only imports, and a
    forked child still gets a fresh process per run (a crash ends one run, a signal reaches one fit)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["lit_ffn.experiments.forkserver_preload"])
    return context


@dataclass
class _Job:
    pair: Pair
    slot: Slot
    process: subprocess.Popen | _Forked
    start: float
    log: Any  # the open log file (closed when the worker ends)
    offset: int  # the log's size when the worker started: its outcome line is after it


class Interrupted(Exception):
    """The pool was stopped by a signal (its workers saved and ended); ``signum`` is the signal."""

    def __init__(self, signum: int, outcomes: dict[Pair, str]) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum, self.outcomes = signum, outcomes


def worker_argv(study: Study, pair: Pair, clean_checkpoints: bool, in_process: bool = True) -> list[str]:
    """The arguments of :func:`lit_ffn.experiments.worker.main` that bring ``pair`` to DONE."""
    argv = [str(study.out), json.dumps(asdict(pair))]
    return argv + (["--in-process"] if in_process else []) + (["--clean-checkpoints"] if clean_checkpoints else [])


def worker_command(study: Study, pair: Pair, clean_checkpoints: bool, in_process: bool = True) -> list[str]:
    """The command of a worker process of its own (a new Python) that brings ``pair`` to DONE."""
    return [
        sys.executable,
        "-m",
        "lit_ffn.experiments.worker",
        *worker_argv(study, pair, clean_checkpoints, in_process),
    ]


def _worker_outcome(log_path: Path, offset: int, code: int) -> str:
    """The outcome the worker wrote as its last line (its exit code when it wrote none: killed).
    Only what this worker wrote counts (the log from ``offset`` on: earlier attempts' lines are above)."""
    try:
        with open(log_path, "rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines[-50:]):
        if line.startswith(OUTCOME_PREFIX):
            return line[len(OUTCOME_PREFIX) :]
    return f"failed: worker exit code {code}"


def _start_worker(study: Study, pair: Pair, plan: PoolPlan, slot: Slot, log: Any, clean: bool) -> Any:
    """The worker that brings ``pair`` to DONE on ``slot``, its output appended to ``log``: forked
    from the fork server (``plan.forkserver``) or a new ``python -m lit_ffn.experiments.worker``."""
    if plan.forkserver:
        argv = worker_argv(study, pair, clean, in_process=True)
        process = _fork_context().Process(
            target=forked_main, args=(argv, dict(slot.env), str(log.name)), name=f"worker {slot.index}"
        )
        log.flush()
        process.start()
        return _Forked(process)
    return subprocess.Popen(
        worker_command(study, pair, clean, plan.processes_per_run == 1),
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **slot.env, "PYTHONUNBUFFERED": "1"},
        preexec_fn=die_with_parent,  # noqa: PLW1509 - the pool has no threads of its own
    )


def _print_now(line: str) -> None:
    print(line, flush=True)  # progress lines reach a log file as they happen, not when a buffer fills


def run_pool(
    study: Study,
    plan: PoolPlan,
    pairs: Sequence[Pair] | None = None,
    clean_checkpoints: bool = False,
    echo: Callable[[str], None] | None = None,
    poll_s: float = 0.2,
) -> dict[Pair, str]:
    """Run the study's pairs (all by default) on the plan's slots; returns each pair's outcome
    (those of :func:`~lit_ffn.experiments.runner.run_pair`).  Raises :class:`Interrupted` after a
    SIGTERM/SIGINT, once every worker has ended."""
    echo = echo or _print_now
    study.save()
    pairs = list(study.pairs() if pairs is None else pairs)
    number = {pair: i for i, pair in enumerate(pairs, 1)}
    outcomes: dict[Pair, str] = {}
    queue = [p for p in pairs if needs_work(study, p, clean_checkpoints)]
    for pair in pairs:
        if pair not in queue:
            outcomes[pair] = "skipped"
    echo(f"lit_ffn ablate: pool of {plan.summary}")
    if outcomes:
        echo(f"{len(outcomes)} of {len(pairs)} runs already done: skipped")
    free, running, clock = list(plan.slots), {}, _Clock()
    for pair in outcomes:
        record = read_done(study.run_dir(pair)) or {}
        if isinstance(record.get("wall_s"), (int, float)) and not record.get("resumed"):
            clock.add(pair, float(record["wall_s"]), earlier=True)
    stopped: list[int] = []  # the signals received (the handler only records and passes on: no printing)
    announced = False

    def stop(signum: int, frame: Any) -> None:
        if not stopped:
            for job in running.values():
                if job.process.poll() is None:
                    job.process.send_signal(signal.SIGTERM)
        stopped.append(signum)

    def progress() -> None:
        settled = sum(o in SETTLED for o in outcomes.values())
        failed = len(outcomes) - settled
        now, estimates = time.time(), [clock.estimate(p) for p in queue]
        remaining = [clock.estimate(j.pair) for j in running.values()]
        if all(e is not None for e in estimates + remaining):
            left_s = [e for e in estimates if e is not None]
            running_s = [max(0.0, e - (now - j.start)) for e, j in zip(remaining, running.values()) if e is not None]
            eta = format_duration(eta_seconds(left_s, running_s, len(plan.slots)))
        else:
            eta = "after the first run ends"
        failures = f" ({failed} failed or not started)" if failed else ""
        echo(f"progress: {settled} done{failures}, {len(running)} running, {len(queue)} left; ETA {eta}")

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            while free and queue and not stopped:
                pair = next((p for p in queue if study.state(p) != "waiting"), None)
                if pair is None:
                    break
                queue.remove(pair)
                slot = free.pop(0)
                label = pair_label(study, pair, number[pair], len(pairs))
                starting = start_message(study, pair) or f"finishing (log: {study.log_path(pair)})"
                log_path = study.log_path(pair)
                log_path.parent.mkdir(parents=True, exist_ok=True)
                log = open(log_path, "a")  # closed when the worker ends
                offset = log.tell()
                process = _start_worker(study, pair, plan, slot, log, clean_checkpoints)
                running[slot.index] = _Job(pair, slot, process, time.time(), log, offset)
                if stopped:  # the signal came while it was being started
                    process.send_signal(signal.SIGTERM)
                echo(f"{label}: {starting} [worker {slot.index}: {slot.label}]")
                progress()
            if not running:
                break  # all done, or only confirmation runs whose tuning failed are left, or stopped
            time.sleep(poll_s)
            if stopped and not announced:
                announced = True
                echo(f"lit_ffn ablate: {signal.Signals(stopped[0]).name}: stopping the {len(running)} running "
                     "runs (each saves last.ckpt at the end of its optimizer step)")  # fmt: skip
            for index, job in list(running.items()):
                code = job.process.poll()
                if code is None:
                    continue
                del running[index]
                job.log.close()
                free.append(job.slot)
                free.sort(key=lambda s: s.index)
                seconds = time.time() - job.start
                outcome = _worker_outcome(study.log_path(job.pair), job.offset, code)
                outcomes[job.pair] = outcome
                if outcome in ("done", "diverged"):
                    clock.add(job.pair, seconds)
                label = pair_label(study, job.pair, number[job.pair], len(pairs))
                if stopped and outcome not in SETTLED:
                    echo(f"{label}: stopped ({outcome.removeprefix('failed: ')}); a rerun resumes it")
                else:
                    echo(outcome_message(study, job.pair, label, outcome, seconds))
                if not stopped:
                    progress()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for pair in queue:
        outcomes[pair] = "waiting" if study.state(pair) == "waiting" else "failed: not started"
    if stopped:
        raise Interrupted(stopped[0], outcomes)
    return {pair: outcomes[pair] for pair in pairs}


__all__ = [
    "Interrupted",
    "PoolPlan",
    "Slot",
    "eta_seconds",
    "plan_slots",
    "run_pool",
    "run_resources",
    "worker_argv",
    "worker_command",
]
