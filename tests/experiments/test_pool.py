"""`lit_ffn ablate --workers N`: the local pool (lit_ffn.experiments.pool, lit_ffn.experiments.worker).

The end-to-end test runs the real thing: `python -m lit_ffn.cli ablate --workers 2` in its own
process group, stopped by SIGTERM, rerun, killed by SIGKILL, rerun to the end; its results must equal
a sequential study's bit for bit.  The other tests are fast checks of the slots, the ETA, the lock and
the one-line errors.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lit_ffn.errors import UserError
from lit_ffn.experiments import ablate
from lit_ffn.experiments.ablate import in_process_launcher
from lit_ffn.experiments.pool import eta_seconds, plan_slots, usable_cores
from lit_ffn.experiments.runner import pair_lock, run_pair
from lit_ffn.experiments.study import DONE, Pair, Study
from tests.experiments.test_ablate import write_base_config

#: Two FFNs of the test (SwiGLU's and ReLU's numbers): each records the torch threads of the process that
#: runs it; SlowReLU's training holds at its third step (after the step-2 checkpoint) while the file that
#: POOL_TEST_GATE names exists, so the test stops the pool with that run surely in the middle of training.
FFNS = """
import os
import time
from pathlib import Path

import torch

from lit_ffn.ffn import ReLUFFN, SwiGLU


def _record_threads():
    record = os.environ.get("POOL_TEST_THREADS_DIR")
    if record:
        Path(record, f"{os.getpid()}.txt").write_text(str(torch.get_num_threads()))


class QuickSwiGLU(SwiGLU):
    def forward(self, x):
        _record_threads()
        return super().forward(x)


class SlowReLU(ReLUFFN):
    def forward(self, x):
        _record_threads()
        if self.training:
            self.calls = getattr(self, "calls", 0) + 1
            gate = os.environ.get("POOL_TEST_GATE")
            while self.calls == 3 and gate and os.path.exists(gate):
                time.sleep(0.05)
        return super().forward(x)
"""


def ckpt_step(run_dir: Path) -> int | None:
    path = run_dir / "checkpoints" / "last.ckpt"
    if not path.exists():
        return None
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
    except Exception:  # noqa: BLE001 - being replaced right now
        return None


def wait_until(condition: Callable[[], bool], process: subprocess.Popen, output: Path, timeout: float = 600) -> None:
    end = time.time() + timeout
    while not condition():
        if process.poll() is not None or time.time() > end:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"the pool ended or hung before the moment to stop it:\n{output.read_text()[-3000:]}")
        time.sleep(0.05)


def group_gone(pgid: int, timeout: float = 30) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def fit_launches(study: Study, pair: Pair) -> list[str]:
    """The `lit_ffn fit` commands written into a pair's log (one header per launch)."""
    path = study.log_path(pair)
    return [line for line in path.read_text().splitlines() if re.match(r"# \S+ \S+ lit_ffn fit ", line)]


def results(study: Study) -> dict[Pair, tuple]:
    """Each run's final numbers: the whole-split loss, its per-block losses, the last logged val/loss."""
    out = {}
    for pair in study.pairs():
        run_dir = study.run_dir(pair)
        done = json.loads((run_dir / DONE).read_text())
        blocks = json.loads((run_dir / "final_eval.json").read_text())["block_losses"]
        out[pair] = (done["final_val_loss"], tuple(blocks), done["logged_val_loss"])
    return out


@pytest.mark.scaleout  # three pools of real processes: a minute on 2 idle cores
def test_pool_survives_sigterm_and_sigkill_and_equals_the_sequential_study(
    tmp_path: Path, tiny_dataset: Path, monkeypatch
) -> None:
    (tmp_path / "pool_test_ffns.py").write_text(textwrap.dedent(FFNS))
    quick, slow = tmp_path / "quick.yaml", tmp_path / "slow.yaml"
    quick.write_text("model:\n  ffn:\n    class_path: pool_test_ffns.QuickSwiGLU\n")
    slow.write_text("model:\n  ffn:\n    class_path: pool_test_ffns.SlowReLU\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pythonpath = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    base = write_base_config(tmp_path / "base.yaml", tiny_dataset, steps=4)  # a checkpoint every step

    def argv(out: Path) -> list[str]:
        return ["--config", str(base), "--ffn", str(quick), str(slow), "--seeds", "0", "1", "--out", str(out)]

    # the reference: the sequential runner, in this process, at the pool's threads per run
    threads = max(1, usable_cores() // 2)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert ablate.main(argv(tmp_path / "sequential"), launch=in_process_launcher) == 0
    finally:
        torch.set_num_threads(before)
    expected = results(Study.load(tmp_path / "sequential"))

    out = tmp_path / "pool"
    record = tmp_path / "threads"
    record.mkdir()
    a0, b0, b1 = Pair("quick", 0), Pair("slow", 0), Pair("slow", 1)

    gate = tmp_path / "gate"

    def start_pool(phase: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"{phase}.out"
        env = {**os.environ, "POOL_TEST_THREADS_DIR": str(record), "POOL_TEST_GATE": str(gate)}
        command = [sys.executable, "-m", "lit_ffn.cli", "ablate", *argv(out), "--workers", "2"]
        with open(log, "w") as handle:
            process = subprocess.Popen(
                command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        return process, log

    def study() -> Study:
        return Study.load(out)

    def done(pair: Pair) -> bool:
        return (out / "runs" / "base" / pair.variant / f"seed_{pair.seed}" / DONE).exists()

    def held(pair: Pair) -> bool:
        """Held at its third step by the gate: checkpoints at steps 1 and 2 written, not done."""
        return not done(pair) and (ckpt_step(out / "runs" / "base" / pair.variant / f"seed_{pair.seed}") or 0) >= 2

    # 1. SIGTERM to the pool process alone, once quick/0 is done and slow/0 is held in the middle of training
    gate.touch()
    process, log = start_pool("sigterm")
    wait_until(lambda: "[1/4] quick seed 0: done" in log.read_text() and held(b0), process, log)
    # --report works while the pool runs: runs in progress are "started, not finished"
    assert ablate.main(["--report", str(out)]) == 0
    assert "slow seed 0: started, not finished" in (out / "results.md").read_text()
    process.send_signal(signal.SIGTERM)  # the pool passes it on to its workers, they to their fits
    b0_log = out / "logs" / "slow" / "seed_0.log"
    wait_until(lambda: "SIGTERM received" in b0_log.read_text(), process, log)
    gate.unlink()  # the held step finishes; the fit saves last.ckpt there and stops
    assert process.wait(timeout=300) == 128 + signal.SIGTERM, log.read_text()
    assert group_gone(process.pid), "a worker or fit outlived the pool"
    text = log.read_text()
    assert "lit_ffn ablate: pool of 2 workers on CPU" in text and f"OMP_NUM_THREADS={threads}" in text, text
    assert "rerun the same command to resume the study" in text
    starts = [int(m) for m in re.findall(r"^\[(\d)/4\] .*: (?:starting|resuming)", text, re.M)]
    assert starts[:2] == [1, 2] and starts == sorted(starts), text  # seed-major: quick/0, slow/0, quick/1, …
    assert re.search(r"^\[2/4\] slow seed 0: starting", text, re.M)
    assert re.search(r"^progress: 1 done, \d running, \d left; ETA \d", text, re.M), text  # an ETA once a run ended
    assert ckpt_step(study().run_dir(b0)) == 3 and study().state(b0) == "resume"  # saved at the step it was in
    done_first = {p: (study().run_dir(p) / DONE).read_text() for p in study().pairs() if study().state(p) == "done"}
    assert a0 in done_first and b0 not in done_first

    # 2. rerun; SIGKILL the whole process group once slow/1 is held in the middle of training
    gate.touch()
    process, log = start_pool("sigkill")
    wait_until(lambda: done(b0) and held(b1), process, log)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert group_gone(process.pid)
    gate.unlink()
    assert study().state(b1) == "resume"
    done_second = {p: (study().run_dir(p) / DONE).read_text() for p in study().pairs() if study().state(p) == "done"}
    stamps = {p: (study().run_dir(p) / "checkpoints" / "last.ckpt").stat().st_mtime_ns for p in done_second}

    # 3. rerun to the end
    process, log = start_pool("finish")
    assert process.wait(timeout=600) == 0, log.read_text()
    text = log.read_text()
    assert f"{len(done_second)} of 4 runs already done: skipped" in text
    assert "ETA after the first run ends" not in text  # estimated at once from the earlier runs' DONE records
    assert re.findall(r"^progress: .*$", text, re.M)[-1].startswith("progress: 4 done, 0 running, 0 left"), text

    # nothing lost: every run done, each with the sequential study's numbers, bit for bit
    final = study()
    assert all(final.state(p) == "done" for p in final.pairs())
    assert results(final) == expected
    # nothing run twice: a run done before a kill was never launched again, its files untouched
    for pair, text_done in done_second.items():
        assert (final.run_dir(pair) / DONE).read_text() == text_done
        assert (final.run_dir(pair) / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamps[pair]
    assert len(fit_launches(final, a0)) == 1 and done_first[a0] == done_second[a0]
    # the interrupted runs continued from their checkpoints (resume commands), not from scratch
    for pair in (b0, b1):
        launches = fit_launches(final, pair)
        assert sum("--ckpt_path last" not in line for line in launches) == 1, launches
        assert json.loads((final.run_dir(pair) / DONE).read_text())["resumed"] is True
    # every process that ran a model (fits and workers' final evaluations) had its share of the cores
    seen = {path.read_text() for path in record.glob("*.txt")}
    assert seen == {str(threads)}
    # the workers were forked from the fork server: torch was imported before the worker's first line
    for pair in final.pairs():
        headers = [line for line in study().log_path(pair).read_text().splitlines() if "ablate worker (pid" in line]
        assert headers and all(f"torch threads {threads}; forked from the pool's fork server" in h for h in headers)


# ------------------------------------------------------------------ fast checks
def test_cpu_slots_split_the_cores() -> None:
    plan = plan_slots(2, "cpu", 1, cores=2)
    assert [s.env["OMP_NUM_THREADS"] for s in plan.slots] == ["1", "1"]
    assert "2 cores, 1 torch thread per run (OMP_NUM_THREADS=1)" in plan.summary
    plan = plan_slots(3, "cpu", 1, cores=8)
    assert [s.env["OMP_NUM_THREADS"] for s in plan.slots] == ["2", "2", "2"] and len(plan.slots) == 3
    plan = plan_slots(2, "cpu", 2, cores=8)  # 2 processes per run (DDP on CPU)
    assert plan.slots[0].env["OMP_NUM_THREADS"] == "2" and "× 2 processes" in plan.summary
    assert "share 2 cores" in plan_slots(4, "cpu", 1, cores=2).summary
    assert all("CUDA_VISIBLE_DEVICES" not in s.env for s in plan.slots)


def test_only_cpu_runs_of_one_process_are_forked_from_the_fork_server() -> None:
    """A fork server imports torch once for the pool; a run that spawns other ranks (DDP) re-runs its
    command, and a GPU slot's CUDA_VISIBLE_DEVICES must be in place before CUDA is loaded: both keep
    a new Python per run."""
    assert plan_slots(2, "cpu", 1, cores=2).forkserver
    assert plan_slots(2, "cpu", "auto", cores=2).forkserver
    assert not plan_slots(2, "cpu", 2, cores=8).forkserver
    assert not plan_slots(2, "gpu", 1, cores=16, gpus=["0", "1"]).forkserver


def test_a_module_that_fails_in_the_fork_server_costs_only_its_head_start(tmp_path: Path, monkeypatch) -> None:
    """multiprocessing's preload lets any error but ImportError end the fork server, and with it every run:
    the preload module imports each module itself and passes over a failure."""
    from lit_ffn.experiments.forkserver_preload import MODULES, preload

    (tmp_path / "broken_optional_dependency.py").write_text("raise RuntimeError('no credentials file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    failed = preload(["json", "broken_optional_dependency", "no_such_module_here"])
    assert failed == {
        "broken_optional_dependency": "RuntimeError: no credentials file",
        "no_such_module_here": "ModuleNotFoundError: No module named 'no_such_module_here'",
    }
    assert "lit_ffn.cli" in MODULES and "torch.utils.tensorboard" in MODULES


def test_gpu_slots_get_their_own_devices() -> None:
    plan = plan_slots(4, "gpu", 1, cores=16, gpus=["0", "1", "2", "3", "4"])
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in plan.slots] == ["0", "1", "2", "3"]
    assert plan.slots[0].env["OMP_NUM_THREADS"] == "4"
    plan = plan_slots(2, "gpu", "auto", devices_per_run=2, cores=16, gpus=["4", "5", "6", "7"])
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in plan.slots] == ["4,5", "6,7"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in plan_slots(2, "gpu", 2, gpus=list("0123")).slots] == ["0,1", "2,3"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: plan_slots(0, "cpu", 1, cores=2), "--workers 0: must be at least 1"),
        (
            lambda: plan_slots(3, "gpu", 1, gpus=["0", "1"]),
            "--workers 3 with 1 GPU per run needs 3 GPUs, 2 GPUs visible (0,1): use --workers 2 or fewer",
        ),
        (lambda: plan_slots(1, "gpu", 1, gpus=[]), "needs 1 GPUs, 0 GPUs visible: run on CPU"),
        (lambda: plan_slots(1, "gpu", 4, gpus=["0", "1"]), "not one run fits: use --devices-per-run 2 or fewer"),
        (lambda: plan_slots(2, "gpu", 1, devices_per_run=2, gpus=list("0123")), "trainer.devices=1: make them equal"),
        (lambda: plan_slots(2, "gpu", [0, 1], gpus=list("0123")), "names particular devices"),
        (lambda: plan_slots(2, "cpu", 1, devices_per_run=2), "--devices-per-run 2 is for runs on GPUs"),
    ],
)
def test_bad_pools_are_one_line(call, message: str) -> None:
    with pytest.raises(UserError) as err:
        call()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_eta_spreads_the_queue_over_the_slots() -> None:
    # slots free at 0 and 5 s; three 10 s runs: 0→10→20 on one slot, 5→15 on the other
    assert eta_seconds([10, 10, 10], [5], 2) == 20
    assert eta_seconds([], [7, 3], 2) == 7
    assert eta_seconds([4, 4], [], 4) == 4  # fewer runs than slots


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "0"], "--workers 0: must be at least 1"),
        (["--workers", "2", "--task", "0"], "--task I runs one pair"),
        (["--workers", "1", "--trainer.accelerator=gpu"], "0 GPUs visible"),
    ],
)
def test_pool_user_errors_are_one_line_before_any_run(tmp_path: Path, capsys, extra, message) -> None:
    if "gpu" in str(extra) and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    base = write_base_config(tmp_path / "base.yaml", tmp_path / "no_data")
    assert ablate.main(["--config", str(base), "--ffn", "swiglu", "--out", str(tmp_path / "s"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lit_ffn ablate: error:") and message in err[0], err
    assert not (tmp_path / "s" / "runs").exists()


def test_a_pair_held_by_another_process_is_not_touched(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("model:\n  dim: 32\n")
    study = Study(out=tmp_path / "s", configs=[str(base)], variants={"swiglu": "configs/ffn/swiglu.yaml"}, seeds=[0])
    pair = Pair("swiglu", 0)
    launched = []
    with pair_lock(study, pair) as mine:  # what a worker, a SLURM task or another `lit_ffn ablate` holds
        assert mine
        outcome = run_pair(study, pair, lambda args, log: launched.append(args) or 0)
    assert outcome.startswith("failed: another process is working on it now") and launched == []
    assert not study.run_dir(pair).exists()


def test_slurm_scripts_leave_the_local_pool_out() -> None:
    argv = ["--config", "b.yaml", "--workers", "4", "--devices-per-run=2", "--slurm-array", "job.sh", "--seeds", "0"]
    assert ablate._ablate_argv_without_mode(argv) == ["--config", "b.yaml", "--seeds", "0"]


#: A stand-in worker (no training): writes the pair's DONE with a loss and the outcome line; the run
#: given a gate file waits until that file exists.
FAKE_WORKER = """
import json, os, sys, time
run_dir, gate, loss = sys.argv[1], sys.argv[2], float(sys.argv[3])
required = sys.argv[4] if len(sys.argv) > 4 else ""
if required and not os.path.exists(required):  # started before the run it depends on had finished
    print("lit_ffn ablate worker: outcome: failed: started before " + required)
    sys.exit(0)
end = time.time() + 300
while gate and not os.path.exists(gate) and time.time() < end:
    time.sleep(0.05)
os.makedirs(run_dir, exist_ok=True)
with open(os.path.join(run_dir, "DONE"), "w") as f:
    json.dump({"final_val_loss": loss, "diverged": False}, f)
print("lit_ffn ablate worker: outcome: " + ("done" if not gate or os.path.exists(gate) else "failed: gate"))
"""


def test_a_confirmation_run_waits_for_its_tuning_while_later_runs_start(tmp_path: Path, monkeypatch, capsys) -> None:
    """Tuned study, 2 workers: b's confirmation run starts while a's tuning still runs (a's last tuning
    run is held until b's confirmation is done), and a's confirmation starts once a's tuning is done.

    "Done" means its DONE record is written: the pool may start a's confirmation in the same poll in
    which it sees the held tuning run's process end, or even before, so the order of the two progress
    lines is not part of the contract; a's confirmation worker checks the record exists when it starts."""
    from lit_ffn.experiments import pool

    study = Study(
        out=tmp_path / "s", configs=["base.yaml"], variants={"a": "a.yaml", "b": "b.yaml"}, seeds=[0],
        tune={"model.lr": ["1e-3", "3e-3"]}, tune_seeds=[100],
    )  # fmt: skip
    b_confirmed = study.run_dir(Pair("b", 0)) / DONE
    losses = {"model.lr=1e-3": 2.0, "model.lr=3e-3": 1.0}

    def fake(study_: Study, pair: Pair, clean: bool, in_process: bool = True) -> list[str]:
        held = pair == Pair("a", 100, "", "model.lr=3e-3")
        loss = str(losses.get(pair.point, 1.5))
        required = str(study_.run_dir(Pair("a", 100, "", "model.lr=3e-3")) / DONE) if pair == Pair("a", 0) else ""
        gate = str(b_confirmed) if held else ""
        return [sys.executable, "-c", FAKE_WORKER, str(study_.run_dir(pair)), gate, loss, required]

    monkeypatch.setattr(pool, "worker_command", fake)
    plan = dataclasses.replace(plan_slots(2, "cpu", 1, cores=2), forkserver=False)  # workers as commands
    outcomes = pool.run_pool(study, plan, poll_s=0.05)
    assert set(outcomes.values()) == {"done"} and len(outcomes) == 6
    lines = capsys.readouterr().out.splitlines()
    b_start = next(i for i, line in enumerate(lines) if line.startswith("[6/6] b seed 0 (confirmation): starting at"))
    a_tuned = next(
        i for i, line in enumerate(lines) if line.startswith("[3/6] a seed 100 model.lr=3e-3 (tuning): done")
    )
    a_start = next(i for i, line in enumerate(lines) if line.startswith("[5/6] a seed 0 (confirmation): starting at"))
    assert b_start < a_tuned and b_start < a_start  # b confirmed while a's tuning was held
    assert "starting at model.lr=3e-3" in lines[a_start]  # the chosen point: the lower loss


def test_the_report_reads_runs_in_progress(tmp_path: Path) -> None:
    """`--report` while a pool runs: a run whose config.yaml is half-written and whose events file ends
    in a partial record is listed as started, not finished; the done runs are reported."""
    from torch.utils.tensorboard import SummaryWriter

    from tests.experiments.test_ablate import write_run

    base = tmp_path / "base.yaml"
    base.write_text("model:\n  dim: 32\n")
    study = Study(out=tmp_path / "s", configs=[str(base)], variants={"swiglu": "configs/ffn/swiglu.yaml",
                  "relu": "configs/ffn/relu.yaml"}, seeds=[0, 1])  # fmt: skip
    study.save()
    for pair in (Pair("swiglu", 0), Pair("relu", 0), Pair("swiglu", 1)):
        write_run(study, pair, [(10, 4.0 + 0.1 * (pair.variant == "relu") + 0.01 * pair.seed)])
    running = study.run_dir(Pair("relu", 1))
    running.mkdir(parents=True)
    (running / "config.yaml").write_text("trainer:\n  max_steps: 10\nmodel:\n  ffn: {class_path: lit_ffn.ffn.Re")
    writer = SummaryWriter(str(running))
    for step in range(5):
        writer.add_scalar("train/loss", 6.0 - step, step)
    writer.close()
    events = next(running.glob("events.out.tfevents.*"))
    events.write_bytes(events.read_bytes()[:-5])
    assert ablate.main(["--report", str(study.out)]) == 0
    md = (study.out / "results.md").read_text()
    assert "relu seed 1: started, not finished" in md and "swiglu" in md
