"""SIGTERM / SIGINT during fit: the step is finished, last.ckpt saved, the exit code and one line say how to
resume — and the resumed run equals an uninterrupted one exactly (single process; 2 processes in
tests/distributed/test_resume.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from lit_ffn.cli import main
from lit_ffn.experiments.events import read_scalars
from tests.conftest import tiny_fit_args
from tests.scaleout_helpers import read_records

STEPS = 6


def args(tiny_dataset: Path, root: Path, *extra: str) -> list[str]:
    return tiny_fit_args(
        tiny_dataset,
        root,
        "--checkpoint.every_n_train_steps=100",  # only the preemption save can give the resume its checkpoint
        "--trainer.callbacks+=tests.scaleout_helpers.StepRecorder",
        f"--trainer.callbacks.out_dir={root / 'records'}",
        *extra,
        steps=STEPS,
    )


def final_state(root: Path) -> dict[str, torch.Tensor]:
    ckpt = root / "runs" / "tiny" / "SwiGLU" / "seed_0" / "checkpoints" / "last.ckpt"
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.parametrize(("name", "accumulate"), [("SIGTERM", 1), ("SIGINT", 2)])
def test_a_signal_saves_the_step_and_the_resumed_run_equals_the_uninterrupted_one(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
    name: str, accumulate: int,
) -> None:  # fmt: skip
    extra = (f"--trainer.accumulate_grad_batches={accumulate}",)
    reference = tmp_path / "reference"
    assert main(args(tiny_dataset, reference, *extra)) == 0

    interrupted = tmp_path / "interrupted"
    monkeypatch.setenv("LITFFN_TEST_SIGNAL_AT", f"0:3:{name}")  # during optimizer step 3 (its first micro-batch)
    code = main(args(tiny_dataset, interrupted, *extra))
    err = capsys.readouterr().err
    run_dir = interrupted / "runs" / "tiny" / "SwiGLU" / "seed_0"
    assert code == 128 + getattr(signal, name)
    (line,) = [line for line in err.splitlines() if line.startswith("lit_ffn: interrupted")]
    assert line == (
        f"lit_ffn: interrupted by {name} after step 4; last.ckpt is saved: resume with "
        f"`lit_ffn fit --config {run_dir / 'config.yaml'} --ckpt_path last`"
    )
    stopped = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert stopped["global_step"] == 4  # step 3 was finished (all its micro-batches), then saved
    assert [r["step"] for r in read_records(interrupted / "records", 0)] == sorted(
        [s for s in range(4) for _ in range(accumulate)]
    )

    monkeypatch.delenv("LITFFN_TEST_SIGNAL_AT")
    assert main(["fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "last"]) == 0
    ref_records = read_records(reference / "records", 0)
    resumed = read_records(interrupted / "records", 0)
    assert [r["batch"] for r in resumed] == [r["batch"] for r in ref_records]  # no batch repeated or skipped
    assert [r["loss"] for r in resumed] == [r["loss"] for r in ref_records]  # bit for bit
    ref_state, state = final_state(reference), final_state(interrupted)
    assert all(torch.equal(ref_state[k], state[k]) for k in ref_state)
    ref_val = read_scalars(reference / "runs" / "tiny" / "SwiGLU" / "seed_0")["val/loss"]
    val = read_scalars(run_dir)["val/loss"]
    assert dict(val)[STEPS] == dict(ref_val)[STEPS]


def test_signal_handlers_are_restored_after_fit(tiny_dataset: Path, tmp_path: Path) -> None:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    assert main(args(tiny_dataset, tmp_path)) == 0
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_ckpt_path_auto_starts_fresh_then_resumes(tiny_dataset: Path, tmp_path: Path) -> None:
    """The resubmit-the-same-command mode of job scripts (scripts/slurm.sbatch)."""
    fresh = tiny_fit_args(tiny_dataset, tmp_path, "--ckpt_path=auto", steps=2)
    assert main(fresh) == 0
    ckpt = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] == 2
    assert main(tiny_fit_args(tiny_dataset, tmp_path, "--ckpt_path=auto", steps=3)) == 0
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] == 3


def test_a_signal_during_the_checkpoint_write_lets_it_finish_and_stops_after(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from lit_ffn.training import checkpointing

    real_publish = checkpointing.publish

    def publish_with_a_signal(partial: Path, final: Path, tag: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the save at step 2 is being published
        real_publish(partial, final, tag)

    monkeypatch.setattr(checkpointing, "publish", publish_with_a_signal)
    assert main(tiny_fit_args(tiny_dataset, tmp_path, "--checkpoint.every_n_train_steps=2", steps=6)) == 143
    ckpt = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)  # complete and loadable
    assert saved["global_step"] == 2
    assert not list(ckpt.parent.glob("*.partial"))
