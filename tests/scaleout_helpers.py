"""Test-only helpers for 2-process CPU runs (tests/distributed/test_resume.py, tests/distributed/test_distributed.py).

Runs are launched the two ways a cluster starts ranks: through
``scripts/launch_torchrun.sh`` (torchrun) and as one process per rank with
``LOCAL_RANK``/``MASTER_ADDR``/… set, as SLURM's srun does; each rank runs
plain ``python -m lit_ffn.cli``.

:class:`StepRecorder` (a callback, given with ``--trainer.callbacks+=``, so it
is also in the run's ``config.yaml`` and comes back on resume) writes one
JSON line per training batch and rank to ``<out_dir>/rank<r>.jsonl``: the
global step the batch starts at, a hash of the batch, the loss as
``float.hex`` (bitwise comparison), and the gradient norm before and after
clipping.  At the end of fit rank 0 saves the full (unsharded) model state
dict to ``<out_dir>/full_state.pt``.  When the environment asks for them, it
also injects two faults a real cluster produces:

* ``LITFFN_TEST_KILL_IN_SAVE=<step>``: the checkpoint save at that global
  step writes its files, then truncates every one of them to half its size
  (a save cut short), touches ``$LITFFN_TEST_MARKER`` and blocks until the
  test SIGKILLs every process of the run — like a node dying mid-write;
* ``LITFFN_TEST_NAN_AT=<rank>:<step>``: the training loss of that rank at that
  global step is NaN (the step, not the batch index: the runs cross epochs, where
  batch indices start again).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch


def total_grad_norm(module: torch.nn.Module) -> float:
    """L2 norm over all gradients; a collective under FSDP2 (DTensor gradients), so call it on every rank."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.nn.utils.get_total_norm(grads)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


def _kill_in_save(trainer: L.Trainer, step: int, marker: Path) -> None:
    """Make ``trainer.save_checkpoint`` (what ModelCheckpoint calls) cut the save at ``step`` short and hang."""
    original = trainer.save_checkpoint

    def save_checkpoint(filepath: Any, *args: Any, **kwargs: Any) -> None:
        original(filepath, *args, **kwargs)
        if trainer.global_step != step:
            return
        if trainer.is_global_zero:
            path = Path(filepath)
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            for file in files:
                os.truncate(file, file.stat().st_size // 2)
            partial = marker.with_name(marker.name + ".tmp")
            partial.write_text(str(filepath))
            os.replace(partial, marker)  # the test polls for the marker: never let it see an empty one
        while True:  # the test sends SIGKILL to the process group
            time.sleep(1)

    trainer.save_checkpoint = save_checkpoint


class StepRecorder(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.row: dict[str, Any] = {}
        self.nan_hook: Any = None
        self.signalled = False

    def _write(self, trainer: L.Trainer, row: dict[str, Any]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / f"rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        kill_step = os.environ.get("LITFFN_TEST_KILL_IN_SAVE")
        if kill_step and stage == "fit":
            _kill_in_save(trainer, int(kill_step), Path(os.environ["LITFFN_TEST_MARKER"]))

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.row = {
            "step": trainer.global_step,
            "batch_idx": batch_idx,
            "batch": hashlib.sha1(batch.cpu().numpy().tobytes()).hexdigest(),
        }
        signal_at = os.environ.get("LITFFN_TEST_SIGNAL_AT")  # "rank:step:SIGTERM": a preemption mid-step
        if signal_at:
            rank, step, name = signal_at.split(":")
            if int(rank) == trainer.global_rank and trainer.global_step == int(step) and not self.signalled:
                self.signalled = True  # once, at the first micro-batch of that optimizer step
                os.kill(os.getpid(), getattr(signal, name))
        nan_at = os.environ.get("LITFFN_TEST_NAN_AT")
        if nan_at and nan_at == f"{trainer.global_rank}:{trainer.global_step}":
            # NaN from the final norm onwards: this rank's loss for this batch only
            self.nan_hook = pl_module.model.norm.register_forward_hook(lambda mod, inp, out: out * float("nan"))

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        self.row["pre_clip_norm"] = total_grad_norm(pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.nan_hook is not None:
            self.nan_hook.remove()
            self.nan_hook = None
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.row["loss"] = float(loss.detach().float()).hex()
        self.row["post_clip_norm"] = total_grad_norm(pl_module)
        self.row["skipped"] = pl_module.nonfinite_guard.skipped
        self._write(trainer, self.row)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(pl_module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if trainer.is_global_zero:
            torch.save(state, self.out_dir / "full_state.pt")


def read_records(out_dir: Path, rank: int) -> list[dict[str, Any]]:
    path = Path(out_dir) / f"rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------- launching
REPO = Path(__file__).resolve().parents[1]
STRATEGY_ARGS = {  # the shipped configs, moved to CPU / fp32 / 2 processes (gloo)
    name: [
        "--config",
        str(REPO / "configs" / "strategy" / f"{name}.yaml"),
        "--trainer.accelerator=cpu",
        "--trainer.precision=32-true",
        "--trainer.devices=2",
    ]
    for name in ("fsdp2", "ddp")
}
NPROCS = 2
LAUNCHERS = {"fsdp2": "torchrun", "ddp": "srun-like"}  # both ways of starting ranks get exercised
#: the runs' data (conftest's small_dataset at seq_len 127, 4 blocks per rank and step): an epoch is
#: EPOCH optimizer steps, so every run crosses two epoch boundaries and each resume point below lies
#: inside the second epoch; checkpoints every 3 steps never fall on an epoch's end (a save there would
#: hide a resume that replays the wrong epoch: tests/training/test_resume_across_epochs.py)
EPOCH = 5
STEPS = 12  # optimizer steps of every run
CHECKPOINT_EVERY = 3
KILL_STEP = 9  # the save at this step is cut short and the processes SIGKILLed
NAN_AT = "1:1"  # rank 1's loss at step 1 is NaN (skipped: model.nonfinite=skip)
#: a preemption that reaches one rank only, during optimizer step 6: the ranks must agree to stop after it
SIGNALS = {"fsdp2": "1:6:SIGTERM", "ddp": "0:6:SIGINT"}
#: loader workers of every 2-process run (the worker count is part of the data order, and DDP and FSDP2
#: must see the same batches; 0 workers cross epochs in tests/training/test_resume_across_epochs.py)
NUM_WORKERS = 2
LAUNCH_TIMEOUT = 600


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(argv: list[str], launcher: str, logs: Path, **env: str) -> list[subprocess.Popen]:
    """Start a 2-rank run of ``lit_ffn ARGV``; all its processes share one new process group (for SIGKILL).

    ``launcher``: ``"torchrun"`` (``scripts/launch_torchrun.sh``) or ``"srun-like"`` (one
    ``python -m lit_ffn.cli`` per rank with ``LOCAL_RANK`` set, which Lightning's
    LightningEnvironment treats as externally created processes).  Output goes to ``logs/*.log``.
    """
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "LITFFN_TEST_",
                "MASTER_",
                "LOCAL_RANK",
                "NODE_RANK",
                "WORLD_SIZE",
                "RANK",
                "SLURM_",
                "TORCHELASTIC_",
                "GROUP_RANK",
                "LOCAL_WORLD_SIZE",
            )
        )
    }
    base.update(
        PYTHONPATH=str(REPO),
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        **env,
    )
    logs.mkdir(parents=True, exist_ok=True)
    if launcher == "torchrun":
        commands = [
            (
                ["bash", str(REPO / "scripts" / "launch_torchrun.sh"), *argv],
                {**base, "NPROC_PER_NODE": str(NPROCS), "PYTHON": sys.executable},
            )
        ]
    else:
        commands = [
            (
                [sys.executable, "-m", "lit_ffn.cli", *argv],
                {**base, "NODE_RANK": "0", "WORLD_SIZE": str(NPROCS), "LOCAL_RANK": str(rank)},
            )
            for rank in range(NPROCS)
        ]
    procs: list[subprocess.Popen] = []
    for index, (command, environment) in enumerate(commands):
        with open(logs / f"process{index}.log", "w") as log:
            procs.append(
                subprocess.Popen(
                    command,
                    cwd=REPO,
                    env=environment,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    process_group=0 if index == 0 else procs[0].pid,
                )
            )
    return procs


def _output(logs: Path) -> str:
    return "\n".join(log.read_text() for log in sorted(logs.glob("process*.log")))


def launch(argv: list[str], launcher: str, logs: Path, **env: str) -> tuple[int, str]:
    """Run to the end; (the worst exit code, every process's output)."""
    procs = _start(argv, launcher, logs, **env)
    try:
        for proc in procs:
            proc.wait(timeout=LAUNCH_TIMEOUT)
    finally:
        _kill(procs)
    return max(proc.returncode for proc in procs), _output(logs)


def _kill(procs: list[subprocess.Popen]) -> None:
    """SIGKILL the run: its process group and every descendant.

    torchrun starts its workers in sessions of their own, so killing the group
    alone would orphan them (hanging in a collective until gloo's timeout);
    the descendants are listed before anything is killed."""
    import psutil

    descendants = []
    for proc in procs:
        try:
            descendants += psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(procs[0].pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in descendants:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(descendants, timeout=30)
    for proc in procs:
        proc.wait()


def launch_and_kill_in_save(argv: list[str], launcher: str, logs: Path, marker: Path, step: int, **env: str) -> None:
    """Run until the checkpoint save at ``step`` has been cut short, then SIGKILL every process."""
    procs = _start(argv, launcher, logs, LITFFN_TEST_KILL_IN_SAVE=str(step), LITFFN_TEST_MARKER=str(marker), **env)
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    try:
        while not marker.exists():
            if any(proc.poll() is not None for proc in procs):
                _kill(procs)
                raise AssertionError(f"run ended before the save at step {step}:\n{_output(logs)[-6000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no save at step {step} within {LAUNCH_TIMEOUT} s")
            time.sleep(0.2)
    finally:
        _kill(procs)


@dataclass
class Runs:
    """An uninterrupted run, and a run killed mid-save then resumed with ``--ckpt_path last``."""

    strategy: str
    reference: Path  # run directory
    reference_records: Path
    interrupted: Path
    interrupted_records: Path
    killed_save: str  # the path the killed save was writing
    resume_output: str
    signalled: Path  # a run stopped by a signal to one rank (SIGNALS[strategy]), then resumed
    signalled_records: Path
    signal_rc: int
    signal_output: str


def tiny_scaleout_args(data_dir: Path, root: Path, strategy: str, records: Path) -> list[str]:
    from tests.conftest import tiny_fit_args

    return tiny_fit_args(
        data_dir,
        root,
        *STRATEGY_ARGS[strategy],
        "--trainer.gradient_clip_val=0.5",
        f"--checkpoint.every_n_train_steps={CHECKPOINT_EVERY}",
        "--data.seq_len=127",
        f"--data.num_workers={NUM_WORKERS}",
        "--model.nonfinite=skip",
        "--trainer.callbacks+=tests.scaleout_helpers.StepRecorder",
        f"--trainer.callbacks.out_dir={records}",
        steps=STEPS,
    )


def run_dir(root: Path) -> Path:
    return root / "runs" / "tiny" / "SwiGLU" / "seed_0"


def make_runs(strategy: str, data_dir: Path, base: Path) -> Runs:
    ref_root, int_root = base / f"{strategy}_reference", base / f"{strategy}_interrupted"
    launcher = LAUNCHERS[strategy]
    rc, output = launch(
        tiny_scaleout_args(data_dir, ref_root, strategy, ref_root / "records"),
        launcher,
        ref_root / "logs",
        LITFFN_TEST_NAN_AT=NAN_AT,
    )
    assert rc == 0, output[-6000:]

    marker = base / f"{strategy}_killed_in_save"
    launch_and_kill_in_save(
        tiny_scaleout_args(data_dir, int_root, strategy, int_root / "records"),
        launcher,
        int_root / "logs_killed",
        marker,
        KILL_STEP,
        LITFFN_TEST_NAN_AT=NAN_AT,
    )
    rc, resume_output = launch(
        ["fit", "--config", str(run_dir(int_root) / "config.yaml"), "--ckpt_path", "last"],
        launcher,
        int_root / "logs_resumed",
        LITFFN_TEST_NAN_AT=NAN_AT,
    )
    assert rc == 0, resume_output[-6000:]

    sig_root = base / f"{strategy}_signalled"
    signal_rc, signal_output = launch(
        tiny_scaleout_args(data_dir, sig_root, strategy, sig_root / "records"),
        launcher,
        sig_root / "logs_signalled",
        LITFFN_TEST_NAN_AT=NAN_AT,
        LITFFN_TEST_SIGNAL_AT=SIGNALS[strategy],
    )
    shutil.copytree(sig_root / "records", sig_root / "records_before_resume")  # what the signalled run did
    rc, output = launch(
        ["fit", "--config", str(run_dir(sig_root) / "config.yaml"), "--ckpt_path", "last"],
        launcher,
        sig_root / "logs_resumed",
        LITFFN_TEST_NAN_AT=NAN_AT,
    )
    assert rc == 0, output[-6000:]
    return Runs(
        strategy,
        run_dir(ref_root),
        ref_root / "records",
        run_dir(int_root),
        int_root / "records",
        marker.read_text(),
        resume_output,
        run_dir(sig_root),
        sig_root / "records",
        signal_rc,
        signal_output,
    )


# Kept at module level, not in the fixture: a fixture imported into two test modules is two
# fixtures to pytest (one per module), and these runs are the expensive part of the suite.
_RUNS: dict[str, Runs] = {}
_FAILED: dict[str, str] = {}  # strategy -> the test whose fixture call failed making its runs
_BASE: list[Path] = []


@pytest.fixture(scope="session")
def scaleout_runs(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Runs]:
    """``scaleout_runs("fsdp2" | "ddp")``: the two 2-process CPU runs of that strategy, made once per session."""

    def get(strategy: str) -> Runs:
        if strategy in _FAILED:  # the runs' directories are half made: do not retry into them
            pytest.fail(f"the {strategy} runs failed while setting up {_FAILED[strategy]}: see that test's output")
        if strategy not in _RUNS:
            if not _BASE:
                _BASE.append(tmp_path_factory.mktemp("scaleout"))
            try:
                _RUNS[strategy] = make_runs(strategy, small_dataset, _BASE[0])
            except BaseException:
                _FAILED[strategy] = os.environ.get("PYTEST_CURRENT_TEST", "an earlier test").split(" ")[0]
                raise
        return _RUNS[strategy]

    return get
