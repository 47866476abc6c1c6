"""Items ``fit-ddp``, ``fit-fsdp2``, ``fit-fsdp``: short ``lit_ffn fit`` runs, each resumed once.

Per strategy, two processes of ``python -m lit_ffn.cli fit`` (what a user runs):

1. the reference: ``plan.fit_steps`` optimizer steps of the paper config with the strategy's config
   (``configs/strategy/<name>.yaml``), activation checkpointing and per-block compile as the plan
   says, on the dataset of ``--data-dir`` (the quickstart corpus by default), validating and keeping
   a checkpoint every ``plan.resume_step`` steps;
2. the resumed run: ``lit_ffn fit --config RUN/config.yaml --ckpt_path <the step-resume_step checkpoint>``
   in a fresh process, to the end.

:class:`~lit_ffn.bench.gpu_check.recorder.StepLog` records every batch of both; :func:`compare`
wants, per rank, the same batches (SHA-1) at the same steps and losses within
the first resumed step's loss bit for bit, later steps' losses and the final ``val/loss`` within
``plan.resume_tolerance`` (0 on CPU: all bit for bit; why on CUDA: :class:`~lit_ffn.bench.gpu_check.plan.Plan`).

Time: the strategies' chains run concurrently, all until the fits' deadline (``Context.item_deadline``,
which leaves the later items their share).  Why not one after another with a third of the time
each: on one GPU these small fits use a sliver of it, most of each process's time is start-up and
inductor's compile on the host (16 cores, a pool of compile workers per process), so side by side
each chain gets the whole window and a hang in one (NCCL, say) costs the others nothing; FSDP1
does not compile at all (below), so at most two cold compiles overlap.  Within a chain the
reference may take :data:`REFERENCE_SHARE` of the window, so the resumed run always keeps the rest;
both share one inductor cache (``TORCHINDUCTOR_CACHE_DIR``), so the resumed run starts warm.

Strategies: FSDP1 needs CUDA (Lightning refuses it on CPU): SKIP there; it runs without compile
(``plan.fit_compile_fsdp1``), as ``configs/strategy/fsdp.yaml`` ships it.  Activation checkpointing:
``model.activation_checkpointing`` for DDP and FSDP2; for FSDP1 the strategy's
``activation_checkpointing_policy`` (what ``configs/strategy/fsdp.yaml`` recommends).

Logs: each process writes ``<work>/fits/<strategy>/{reference,resumed}.log``; their last
:data:`LOG_TAIL_LINES` lines go to the combined log of ``--out-dir`` (``Context.append_log``), so a
failure comes back with its traceback, not one cut line.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from lit_ffn.bench.gpu_check import recorder
from lit_ffn.bench.gpu_check.items import FAIL, PASS, SKIP, Context, Result
from lit_ffn.bench.gpu_check.plan import REPO, STRATEGY_CONFIGS, Plan
from lit_ffn.errors import first_line

STRATEGIES = {"fit-ddp": "ddp", "fit-fsdp2": "fsdp2", "fit-fsdp": "fsdp"}
NAMES = {"ddp": "DDP", "fsdp2": "FSDP2", "fsdp": "FSDP1"}
#: Longest a single fit process may take when no --budget-s limits it.
LAUNCH_TIMEOUT_S = 900.0
#: Part of a chain's time window the reference run may use; the resumed run keeps the rest (it
#: runs half the steps and finds inductor's cache warm).
REFERENCE_SHARE = 0.6
#: Least time a fit process is given even when the budget is spent (it was started, let it try).
MIN_LAUNCH_S = 30.0
#: Lines of each fit process's log copied into the combined log.
LOG_TAIL_LINES = 120
#: Environment variables of an enclosing distributed launch that must not reach the fits.
_LAUNCH_VARS = ("MASTER_", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK", "SLURM_", "TORCHELASTIC_", "GROUP_RANK")


class FitFailed(Exception):
    """A fit process exited with an error; the message holds its last lines."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fsdp1_policy_config(path: Path) -> Path:
    """FSDP1's activation checkpointing by the strategy (after wrapping), as configs/strategy/fsdp.yaml advises."""
    path.write_text(
        yaml.safe_dump(
            {"trainer": {"strategy": {"init_args": {"activation_checkpointing_policy": ["lit_ffn.model.Block"]}}}}
        )
    )
    return path


def fit_args(ctx: Context, strategy: str, root: Path) -> list[str]:
    """``lit_ffn fit`` arguments of the reference run of ``strategy`` under ``root``."""
    plan = ctx.plan
    configs = [ctx.configs[0], str(STRATEGY_CONFIGS[strategy]), ctx.configs[1]]
    if strategy == "fsdp":
        configs.append(str(fsdp1_policy_config(root / "fsdp1_activation_checkpointing.yaml")))
    args = ["fit", *[arg for config in configs for arg in ("--config", config)]]
    args += [
        "--seed_everything=0",
        f"--trainer.devices={plan.fit_devices}",
        f"--trainer.max_steps={plan.fit_steps}",
        "--global_batch_size=null",
        "--trainer.accumulate_grad_batches=1",
        f"--val_every_n_steps={plan.resume_step}",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={root / 'runs'}",
        "--trainer.logger.init_args.name=gpu_check",
        f"--checkpoint.every_n_train_steps={plan.resume_step}",
        "--checkpoint.save_top_k=-1",  # keep the step checkpoints: the resume starts from the middle one
        f"--model.compile={str(compiles(plan, strategy)).lower()}",
        f"--model.activation_checkpointing={str(strategy != 'fsdp').lower()}",
        f"--data.data_dir={ctx.data_dir}",
        f"--data.batch_size={plan.fit_batch_size}",
        f"--data.num_workers={plan.fit_workers}",
        f"--data.val_blocks={plan.fit_val_blocks}",
        "--trainer.callbacks+=lit_ffn.bench.gpu_check.recorder.StepLog",
        f"--trainer.callbacks.out_dir={root / 'records'}",
    ]
    return args


def compiles(plan: Plan, strategy: str) -> bool:
    """Whether the fit of ``strategy`` compiles its blocks (FSDP1: only if the plan says so)."""
    return plan.fit_compile and (strategy != "fsdp" or plan.fit_compile_fsdp1)


def launch(ctx: Context, argv: list[str], log_path: Path, timeout: float) -> None:
    """Run ``python -m lit_ffn.cli ARGV`` for at most ``timeout`` s (its output in ``log_path``); raise :class:`FitFailed`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LAUNCH_VARS)}
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        TOKENIZERS_PARALLELISM="false",
        TORCHINDUCTOR_CACHE_DIR=str(ctx.work_dir / "inductor_cache"),  # the resumed run reuses the kernels
    )
    if ctx.plan.mode == "cpu":
        env["OMP_NUM_THREADS"] = "1"  # two ranks on a small CPU
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lit_ffn.cli", *argv],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its ranks and loader workers share its process group: one kill ends all
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise FitFailed(f"killed after {timeout:.0f} s (its share of the time budget); log: {log_path}") from None
    if rc != 0:
        raise FitFailed(f"exit code {rc}: {last_error(log_path)} (log: {log_path})")


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log (a note where it does not exist)."""
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def last_error(log_path: Path) -> str:
    """The most telling line of a failed run's log: the last error line, else the last line."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error:" in line]
    return (errors or lines or ["(no output)"])[-1][:300]


def run_dir(root: Path) -> Path:
    configs = sorted((root / "runs").glob("gpu_check/*/seed_*/config.yaml"))
    if not configs:
        raise FitFailed(f"no run directory with a config.yaml under {root / 'runs'}")
    return configs[0].parent


def step_checkpoint(run: Path, step: int) -> Path:
    found = sorted((run / "checkpoints").glob(f"*step={step}.ckpt"))
    if not found:
        raise FitFailed(f"no checkpoint of step {step} in {run / 'checkpoints'}")
    return found[0]


def compare(records: list[dict[str, Any]], resume_step: int, steps: int, tolerance: float) -> tuple[list[str], dict]:
    """Problems (empty: equal) between one rank's reference and resumed records, and the numbers."""
    ref = {r["step"]: r for r in records if "step" in r and not r["resumed"]}
    res = {r["step"]: r for r in records if "step" in r and r["resumed"]}
    problems = []
    if sorted(ref) != list(range(steps)):
        problems.append(f"reference steps {sorted(ref)[:3]}…{sorted(ref)[-3:]} are not 0…{steps - 1}")
    if sorted(res) != list(range(resume_step, steps)):
        problems.append(f"resumed steps {sorted(res)} are not {resume_step}…{steps - 1}")
    common = sorted(set(ref) & set(res))
    other = [s for s in common if ref[s]["batch"] != res[s]["batch"]]
    if other:
        problems.append(f"other batches at steps {other[:5]}")
    diffs = {s: abs(float.fromhex(ref[s]["loss"]) - float.fromhex(res[s]["loss"])) for s in common}
    worst = max(diffs.values(), default=0.0)
    first = diffs.get(resume_step)
    if first:  # the restored weights on the same batch: a forward pass, bit for bit (Plan.resume_tolerance)
        problems.append(f"the first resumed step's loss differs by {first:.3g} (must be bit for bit)")
    later = max((d for s, d in diffs.items() if s != resume_step), default=0.0)
    if later > tolerance:
        problems.append(f"loss differs by up to {later:.3g} after the first resumed step (tolerance {tolerance:g})")
    vals = {
        resumed: [r for r in records if r.get("val_step") == steps and r["resumed"] is resumed]
        for resumed in (False, True)
    }
    val_diff = None
    if vals[False] and vals[True]:
        val_diff = abs(float.fromhex(vals[False][-1]["val_loss"]) - float.fromhex(vals[True][-1]["val_loss"]))
        if val_diff > tolerance:
            problems.append(f"final val/loss differs by {val_diff:.3g}")
    else:
        problems.append(f"no val/loss at step {steps} in both runs")
    data = {
        "steps_compared": len(common),
        "max_loss_difference": worst,
        "first_resumed_difference": first,
        "val_loss_difference": val_diff,
        "losses": {s: (float.fromhex(ref[s]["loss"]), float.fromhex(res[s]["loss"])) for s in common},
    }
    return problems, data


def chain(ctx: Context, strategy: str) -> Result:
    """Reference fit, resumed fit, comparison for one strategy."""
    key = next(k for k, v in STRATEGIES.items() if v == strategy)
    plan, title = ctx.plan, title_of(ctx, strategy)
    root = ctx.work_dir / "fits" / strategy
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    reference = fit_args(ctx, strategy, root)
    details = [f"Reference: `python -m lit_ffn.cli {' '.join(reference)}`"]
    window = min(LAUNCH_TIMEOUT_S, max(ctx.item_deadline - time.monotonic(), 2 * MIN_LAUNCH_S))
    end = time.monotonic() + window
    logs = [root / "reference.log"]
    try:
        try:
            launch(ctx, reference, logs[0], max(REFERENCE_SHARE * window, MIN_LAUNCH_S))
            run = run_dir(root)
            checkpoint = step_checkpoint(run, plan.resume_step)
            resumed = ["fit", "--config", str(run / "config.yaml"), "--ckpt_path", str(checkpoint)]
            details.append(f"Resumed: `python -m lit_ffn.cli {' '.join(resumed)}`")
            logs.append(root / "resumed.log")
            launch(ctx, resumed, logs[1], max(end - time.monotonic(), MIN_LAUNCH_S))
        finally:
            for path in logs:
                ctx.append_log(f"{key}: {path.stem} run ({path})", tail(path, LOG_TAIL_LINES))
    except FitFailed as err:
        return Result(key, title, FAIL, str(err), details)
    problems, data = [], {}
    for rank in range(plan.fit_devices):
        rank_problems, data[f"rank{rank}"] = compare(
            recorder.read(root / "records", rank), plan.resume_step, plan.fit_steps, plan.resume_tolerance
        )
        problems += [f"rank {rank}: {p}" for p in rank_problems]
    setup = (
        f"{plan.fit_devices} process(es), {plan.precision}, micro-batch {plan.fit_batch_size} × {plan.seq_len}, "
        f"compile {'on' if compiles(plan, strategy) else 'off'}, activation checkpointing on"
    )
    details.insert(0, setup + ".")
    if problems:
        return Result(key, title, FAIL, "; ".join(problems), details, data)
    rank0 = data["rank0"]
    exact = rank0["max_loss_difference"] == 0 and all(d["max_loss_difference"] == 0 for d in data.values())
    equality = "losses equal bit for bit"
    if not exact:  # compare() passed: the first resumed step was bit for bit on every rank
        equality = f"first resumed step bit for bit, later steps within {rank0['max_loss_difference']:.2e}"
    summary = (
        f"resumed at step {plan.resume_step} in a new process: steps {plan.resume_step}–{plan.fit_steps - 1} "
        f"on the same batches, {equality}, final val/loss difference {rank0['val_loss_difference']:.1e} ({setup})"
    )
    return Result(key, title, PASS, summary, details, data)


def title_of(ctx: Context, strategy: str) -> str:
    return f"{ctx.plan.fit_steps}-step fit resumed at step {ctx.plan.resume_step}, {NAMES[strategy]}"


def run(ctx: Context, keys: list[str]) -> list[Result]:
    """The fits of ``keys`` (``fit-ddp`` …), their strategies' chains concurrently."""
    results: dict[str, Result] = {}
    todo = []
    for key in keys:
        strategy = STRATEGIES[key]
        if strategy == "fsdp" and ctx.plan.device.type != "cuda":
            results[key] = Result(
                key, title_of(ctx, strategy), SKIP, "needs CUDA (Lightning's FSDPStrategy refuses CPU)"
            )
        else:
            todo.append(strategy)

    def guarded(strategy: str) -> Result:
        key = next(k for k, v in STRATEGIES.items() if v == strategy)
        start = time.monotonic()
        try:
            result = chain(ctx, strategy)
        except Exception as err:  # noqa: BLE001 - one strategy's failure is its FAIL line
            result = Result(key, title_of(ctx, strategy), FAIL, f"{type(err).__name__}: {first_line(err)}")
        result.seconds = time.monotonic() - start
        return result

    if todo:
        with ThreadPoolExecutor(max_workers=len(todo)) as pool:
            for result in pool.map(guarded, todo):
                results[result.key] = result
    return [results[key] for key in keys]


__all__ = ["STRATEGIES", "FitFailed", "chain", "compare", "compiles", "fit_args", "last_error", "launch", "run", "tail"]
