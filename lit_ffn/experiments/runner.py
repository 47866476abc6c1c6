"""Running a study's pairs: one after another, each in its own process, resumably.

Pairs run seed-major (every variant with the first seed, then the second seed, …: a study stopped
early is still balanced), each in its own ``python -m lit_ffn.cli`` subprocess so that a crash ends
only that run; its output goes to ``DIR/logs/<v>/seed_<s>.log``.  ``lit_ffn ablate --workers N``
runs N pairs at once (:mod:`lit_ffn.experiments.pool`), each through :func:`run_pair` in a process of
its own.

One process at a time works on a pair: :func:`run_pair` holds an exclusive lock on
``DIR/logs/<v>/seed_<s>.lock`` (``flock``; the kernel releases it when the process ends, even by
SIGKILL) while it skips, resumes or starts the pair, so a pool, a SLURM task and a second
``lit_ffn ablate`` on the same study never train one run twice at once.

Resumable.  A pair that trained to ``trainer.max_steps`` is scored on the whole validation split
(:mod:`lit_ffn.experiments.final_eval`) and gets a ``DONE`` record (:mod:`lit_ffn.experiments.runfiles`);
it is skipped from then on.  A pair with a ``last.ckpt`` but no ``DONE`` resumes from it (or, when
that checkpoint is already at ``max_steps`` — the final evaluation failed or the process died after
the last save — is only evaluated); a pair with neither starts (again) from scratch.

A run whose loss became non-finite (``lit_ffn fit`` exit code 3) is an **outcome**, not a failure:
it is done and "diverged" (its loss counts as +∞), in the tuning stage and in the confirmation stage
alike — rerunning the same seed would diverge again, and leaving it out would report only the runs
that survived.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import yaml

from lit_ffn.errors import UserError
from lit_ffn.experiments.runfiles import logged_final_val_loss, read_done, read_final_eval, write_done
from lit_ffn.experiments.study import Pair, Study

#: ``lit_ffn fit``'s exit code when the training loss or gradients became non-finite (lit_ffn.cli).
DIVERGED_EXIT_CODE = 3

#: ``launch(fit_argv, log_path) -> exit code``: how a pair is run.
Launcher = Callable[[list[str], Path], int]


def cli_command(args: list[str]) -> list[str]:
    """The command line that runs ``lit_ffn ARGS`` with this Python."""
    return [sys.executable, "-m", "lit_ffn.cli", *args]


def log_header(args: list[str]) -> str:
    """The line a launcher writes into the pair's log before each command."""
    return f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} lit_ffn {shlex.join(args)}\n"


def subprocess_launcher(args: list[str], log_path: Path) -> int:
    """Run ``python -m lit_ffn.cli ARGS`` in a child process, output appended to ``log_path``.

    The default: a crash (exception, OOM kill, segfault) ends only this run."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "a") as log:
        log.write(log_header(args))
        log.flush()
        return subprocess.run(cli_command(args), stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode


def in_process_launcher(args: list[str], log_path: Path) -> int:
    """Run the fit inside this process (tests, debugging): faster to start, but a
    hard crash takes the whole study down.  Exceptions become exit code 1."""
    import traceback

    from lit_ffn.cli import main as cli_main

    try:
        return cli_main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except Exception:  # noqa: BLE001 - a failed run must not end the study
        traceback.print_exc()
        return 1


def _checkpoint_step(path: Path) -> int | None:
    """``global_step`` of a Lightning checkpoint (memory-mapped: tensors are not read)."""
    import torch

    try:
        return int(torch.load(path, map_location="cpu", mmap=True, weights_only=False)["global_step"])
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is "not finished"
        return None


def _max_steps(run_dir: Path) -> int:
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        return -1
    return int((yaml.safe_load(config_path.read_text()).get("trainer") or {}).get("max_steps") or -1)


def _finished(run_dir: Path) -> tuple[bool, str]:
    """Whether a fit that exited 0 really reached ``trainer.max_steps`` (not e.g. an interrupt)."""
    if not (run_dir / "config.yaml").exists():
        return False, f"no {run_dir / 'config.yaml'}"
    max_steps = _max_steps(run_dir)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if max_steps <= 0 or not ckpt.exists():
        return True, "finished"
    step = _checkpoint_step(ckpt)
    if step is None or step < max_steps:
        return False, f"stopped at step {step} < max_steps {max_steps}"
    return True, f"step {step}"


def _trained_to_the_end(run_dir: Path) -> bool:
    """A resumable run whose ``last.ckpt`` already holds ``max_steps`` steps: only its evaluation is missing."""
    max_steps = _max_steps(run_dir)
    step = _checkpoint_step(run_dir / "checkpoints" / "last.ckpt")
    return max_steps > 0 and step is not None and step >= max_steps


def _final_evaluation(run_dir: Path) -> tuple[dict | None, str | None]:
    """(final_eval record, None) or (None, "failed: …"): the whole-split final loss of a trained run."""
    from lit_ffn.experiments.final_eval import evaluate_run

    try:
        return evaluate_run(run_dir), None
    except UserError as err:
        return None, f"failed: final evaluation: {' '.join(str(err).split())}"
    except Exception as err:  # noqa: BLE001 - a failed evaluation must not end the study
        return None, f"failed: final evaluation: {type(err).__name__}: {' '.join(str(err).split())[:300]}"


def _upgrade_done(study: Study, pair: Pair) -> None:
    """A run done by an older lit_ffn has no ``final_eval.json``: score it now when its checkpoint is
    still there (its ``DONE`` record, and so a tuning choice made from it, stays as it was)."""
    run_dir = study.run_dir(pair)
    record = read_done(run_dir) or {}
    if record.get("diverged") or read_final_eval(run_dir) is not None:
        return
    if (run_dir / "checkpoints" / "last.ckpt").exists():
        _final_evaluation(run_dir)  # best effort: the report falls back to the logged val/loss


def lock_path(study: Study, pair: Pair) -> Path:
    """The lock file of a pair (beside its log: the run directory itself may be deleted and restarted)."""
    return study.log_path(pair).with_suffix(".lock")


@contextlib.contextmanager
def pair_lock(study: Study, pair: Pair) -> Iterator[bool]:
    """Hold the pair's exclusive lock for the block; yields False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (one process per study there)
        yield True
        return
    path = lock_path(study, pair)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_pair(study: Study, pair: Pair, launch: Launcher = subprocess_launcher, clean_checkpoints: bool = False) -> str:
    """Bring one pair to DONE (skip, resume or start) under its lock (:func:`pair_lock`); returns its
    final state (``"done"``, ``"diverged"``, ``"skipped"``, ``"waiting"`` (a confirmation run whose
    tuning is not finished) or ``"failed: …"``, also when another process is working on it)."""
    with pair_lock(study, pair) as mine:
        if not mine:
            return f"failed: another process is working on it now (it holds {lock_path(study, pair)})"
        return _run_pair(study, pair, launch, clean_checkpoints)


def needs_work(study: Study, pair: Pair, clean_checkpoints: bool = False) -> bool:
    """Whether :func:`run_pair` would do anything for ``pair`` (False: it would only say "skipped")."""
    if study.state(pair) != "done":
        return True
    run_dir = study.run_dir(pair)
    diverged = bool((read_done(run_dir) or {}).get("diverged"))
    has_checkpoint = (run_dir / "checkpoints" / "last.ckpt").exists()
    if has_checkpoint and not diverged and read_final_eval(run_dir) is None:
        return True  # _upgrade_done scores it
    if not diverged and study.eval_args(pair) is not None:
        return True  # evaluate_pair has tasks to score
    return clean_checkpoints and has_checkpoint


def _run_pair(study: Study, pair: Pair, launch: Launcher, clean_checkpoints: bool) -> str:
    state = study.state(pair)
    if state == "done":
        _upgrade_done(study, pair)
        failed = evaluate_pair(study, pair, launch)
        if failed is None and clean_checkpoints:
            shutil.rmtree(study.run_dir(pair) / "checkpoints", ignore_errors=True)
        return failed or "skipped"
    if state == "waiting":
        return "waiting"
    run_dir = study.run_dir(pair)
    if state == "new" and run_dir.exists():
        # A previous attempt died before its first checkpoint: its events would
        # duplicate steps, so start from an empty directory (inside DIR/runs only).
        shutil.rmtree(run_dir)
    try:
        args = study.fresh_args(pair) if state == "new" else study.resume_args(pair)
    except UserError as err:  # e.g. every tuning run of this variant diverged: no point to confirm at
        return f"failed: {' '.join(str(err).split())}"
    start = time.time()
    if state == "resume" and _trained_to_the_end(run_dir):
        code = 0  # trained already (its final evaluation failed, or the process died after the last save)
    else:
        code = launch(args, study.log_path(pair))
    wall = time.time() - start
    diverged = code == DIVERGED_EXIT_CODE
    if code != 0 and not diverged:
        return f"failed: exit code {code}"
    ok, detail = (True, "diverged") if diverged else _finished(run_dir)
    if not ok:
        return f"failed: {detail}"
    record: dict | None = None
    if not diverged:
        record, failed = _final_evaluation(run_dir)
        if failed:
            return failed
    logged = None if diverged else logged_final_val_loss(run_dir)
    write_done(
        run_dir,
        {
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "wall_s": round(wall, 1),
            "resumed": state == "resume",
            "detail": detail,
            "final_val_loss": None if record is None else record["loss"],
            "final_val_blocks": None if record is None else record["blocks"],
            "logged_val_loss": logged,
            "diverged": diverged,
            "command": shlex.join(["lit_ffn", *args]),
        },
    )
    failed = evaluate_pair(study, pair, launch)  # before --clean-checkpoints: it reads last.ckpt
    if failed:
        return failed
    if clean_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return "diverged" if diverged else "done"


def evaluate_pair(study: Study, pair: Pair, launch: Launcher) -> str | None:
    """Score a done confirmation run on the study's ``--eval-tasks`` (``lit_ffn evaluate``, into its
    ``eval.json``) unless it has them all; returns ``"failed: …"`` or None.  Its training stays done:
    a rerun only retries the evaluation.  A diverged run has nothing to score."""
    if (read_done(study.run_dir(pair)) or {}).get("diverged"):
        return None
    args = study.eval_args(pair)
    if args is None:
        return None
    if not (study.run_dir(pair) / "checkpoints" / "last.ckpt").exists():
        return (
            "failed: its checkpoint was deleted (--clean-checkpoints) before it was evaluated: retrain it to score it"
        )
    code = launch(args, study.log_path(pair))
    return None if code == 0 else f"failed: evaluation exit code {code}"


def run_study(
    study: Study,
    launch: Launcher = subprocess_launcher,
    pairs: Iterable[Pair] | None = None,
    clean_checkpoints: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[Pair, str]:
    """Run the study's pairs (all by default) one after another; returns each pair's outcome."""
    study.save()
    pairs = list(study.pairs() if pairs is None else pairs)
    outcomes: dict[Pair, str] = {}
    for i, pair in enumerate(pairs, 1):
        label = pair_label(study, pair, i, len(pairs))
        starting = start_message(study, pair)
        if starting:
            echo(f"{label}: {starting}")
        start = time.time()
        outcomes[pair] = outcome = run_pair(study, pair, launch, clean_checkpoints)
        echo(outcome_message(study, pair, label, outcome, time.time() - start))
    return outcomes


def pair_label(study: Study, pair: Pair, i: int, n: int) -> str:
    """``[i/n] swiglu seed 0 (tuning)``: how the runner's lines name a pair."""
    stage = " (tuning)" if pair.stage == "tune" else " (confirmation)" if study.tune else ""
    return f"[{i}/{n}] {pair.describe()}{stage}"


def start_message(study: Study, pair: Pair) -> str | None:
    """``starting`` / ``resuming`` (… ``at`` the chosen tuning point) with the log path; None when the
    pair will not be trained (done or waiting)."""
    state = study.state(pair)
    if state not in ("new", "resume"):
        return None
    what = "resuming" if state == "resume" else "starting"
    if pair.stage == "confirm" and study.tune and state == "new":
        try:
            what += f" at {study.choice(pair.variant, pair.rung).label}"
        except UserError:  # every tuning run diverged: run_pair reports it
            pass
    return f"{what} (log: {study.log_path(pair)})"


def outcome_message(study: Study, pair: Pair, label: str, outcome: str, seconds: float) -> str:
    """The line that reports a pair's outcome (a failure: with the last lines of its log)."""
    if outcome == "skipped":
        return f"{label}: already done, skipped"
    if outcome == "done":
        return f"{label}: done in {seconds:.0f} s"
    if outcome == "diverged":
        return f"{label}: diverged (non-finite loss) after {seconds:.0f} s: an outcome, counted as +inf (not retried)"
    if outcome == "waiting":
        done, total = study.tuning_progress(pair.variant, pair.rung)
        return f"{label}: waits for {pair.variant}'s tuning runs ({done} of {total} done); not started"
    return f"{label}: FAILED ({outcome.removeprefix('failed: ')}); last lines of {study.log_path(pair)}:\n" + _tail(
        study.log_path(pair)
    )


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "    (no log)"
    return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])


#: Outcomes of a pair that leave nothing to do.
SETTLED = ("done", "skipped", "diverged")

__all__ = [
    "DIVERGED_EXIT_CODE",
    "SETTLED",
    "Launcher",
    "cli_command",
    "evaluate_pair",
    "in_process_launcher",
    "log_header",
    "needs_work",
    "outcome_message",
    "pair_label",
    "pair_lock",
    "run_pair",
    "run_study",
    "start_message",
    "subprocess_launcher",
]
