"""One pair of a study in a process of its own: what each slot of ``lit_ffn ablate --workers N`` runs.

    python -m lit_ffn.experiments.worker DIR '{"variant": "swiglu", "seed": 0, "rung": "", "point": ""}'
        [--in-process] [--clean-checkpoints]

or, for runs of one CPU process, :func:`forked_main` in a child of a ``multiprocessing`` fork server
that imported torch, Lightning and lit_ffn once for the whole pool (:mod:`lit_ffn.experiments.pool`).

It loads ``DIR/study.json`` and brings the pair to DONE through :func:`lit_ffn.experiments.runner.run_pair`
— the sequential runner's own code, under the pair's lock: skip, resume from ``last.ckpt`` or start,
then the final evaluation, ``DONE`` and any ``--eval-tasks``.  A run of one process
(``--in-process``: ``trainer.devices`` 1) fits inside the worker, which saves a Python, torch and
Lightning start-up per run; a run of several processes fits in a child ``python -m lit_ffn.cli`` as in
the sequential runner (Lightning's DDP launcher starts the other ranks by re-running that command).
The pool gives the worker its share of the machine in its environment
(``CUDA_VISIBLE_DEVICES``; ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, which torch reads at start-up)
and its stdout/stderr are the pair's log.  Its last line is ``OUTCOME_PREFIX`` + the outcome; its
exit code is 0 when the pair is settled (done, skipped, diverged), 1 otherwise.

Signals.  During training a fit inside the worker handles SIGTERM/SIGINT itself (it finishes the
optimizer step and saves ``last.ckpt``: :mod:`lit_ffn.training.preemption`); a fit in a child gets
it passed on as SIGTERM.  Nothing new is started after a signal, and without training in progress
the worker exits at once (every file it writes is written atomically).  The worker and
its fit each get SIGTERM when their parent dies (Linux ``PR_SET_PDEATHSIG``), so a pool killed alone
by SIGKILL leaves no run going on behind a rerun's back.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from lit_ffn.experiments.runner import SETTLED, cli_command, in_process_launcher, log_header, run_pair
from lit_ffn.experiments.study import Pair, Study

#: How the worker's last line starts: the pool reads the outcome from it.
OUTCOME_PREFIX = "lit_ffn ablate worker: outcome: "


def _threads_note() -> str:
    """``", torch threads N"`` when torch is imported, else nothing."""
    torch = sys.modules.get("torch")
    return f", torch threads {torch.get_num_threads()}" if torch is not None else ""


def die_with_parent() -> None:
    """In a child before ``exec``: SIGTERM when the parent process dies (Linux; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl in this libc: the pool then relies on its process group
        pass


class _Worker:
    """The fit in progress (if any) and the signal that stops the worker (if any)."""

    def __init__(self, in_process: bool) -> None:
        self.in_process = in_process
        self.fit: subprocess.Popen | None = None
        self.stopped_by: int | None = None

    def handle(self, signum: int, frame: Any) -> None:
        first = self.stopped_by is None
        self.stopped_by = self.stopped_by or signum
        if self.fit is None:  # (an in-process fit outside training: in_process_launcher returns the code)
            raise SystemExit(128 + signum)
        if first and self.fit.poll() is None:
            self.fit.send_signal(signal.SIGTERM)  # once: a second signal would not let it finish its save

    def launch(self, args: list[str], log_path: Path) -> int:
        """The fit in this process (:func:`~lit_ffn.experiments.runner.in_process_launcher`), or as
        :func:`~lit_ffn.experiments.runner.subprocess_launcher` plus signal forwarding and
        ``die_with_parent``; either way the worker's own stdout is the log already."""
        if self.stopped_by is not None:
            return 128 + self.stopped_by
        sys.stdout.write(log_header(args))
        sys.stdout.flush()
        if self.in_process:
            return in_process_launcher(args, log_path)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.fit = subprocess.Popen(cli_command(args), env=env, preexec_fn=die_with_parent)  # noqa: PLW1509
        try:
            return self.fit.wait()
        finally:
            self.fit = None


def forked_main(argv: list[str], env: dict[str, str], log_path: str) -> None:
    """:func:`main` in a process forked from the pool's fork server (Unix; CPU runs of one process).

    The fork server imported torch before this slot's environment existed, and OpenMP reads
    ``OMP_NUM_THREADS`` when it is loaded, so the slot's share of the cores is applied here with
    ``torch.set_num_threads``; the slot's other variables go into ``os.environ`` for what reads them
    later.  stdout/stderr become the pair's log (appended), line-buffered, and the process gets SIGTERM
    when its parent, the fork server, ends (the fork server ends with the pool)."""
    started = f"forked from the pool's fork server (pid {os.getppid()})"
    os.environ.update(env)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    die_with_parent()
    threads = env.get("OMP_NUM_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    sys.exit(main(argv, started))


def main(argv: list[str] | None = None, started: str = "a new Python process") -> int:
    """Bring the pair to DONE; ``started``: how this process began (the log's first line says it)."""
    parser = argparse.ArgumentParser(prog="python -m lit_ffn.experiments.worker", description=__doc__.split("\n")[0])
    parser.add_argument("out", help="the study directory (holds study.json)")
    parser.add_argument("pair", help="the pair as JSON: variant, seed, rung, point")
    parser.add_argument("--in-process", action="store_true", help="fit in this process (runs of one process)")
    parser.add_argument("--clean-checkpoints", action="store_true")
    args = parser.parse_args(argv)
    worker = _Worker(args.in_process)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, worker.handle)
    study = Study.load(Path(args.out))
    pair = Pair(**json.loads(args.pair))
    print(
        f"# lit_ffn ablate worker (pid {os.getpid()}): {pair.describe()}; "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}{_threads_note()}; {started}",
        flush=True,
    )
    outcome = run_pair(study, pair, worker.launch, args.clean_checkpoints)
    if worker.stopped_by is not None and outcome not in SETTLED:
        outcome = f"failed: stopped by {signal.Signals(worker.stopped_by).name}"
    print(f"{OUTCOME_PREFIX}{outcome}", flush=True)
    return 0 if outcome in SETTLED else 1


if __name__ == "__main__":
    sys.exit(main())
