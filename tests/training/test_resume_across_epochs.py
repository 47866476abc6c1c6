"""Exact resume across epoch boundaries: a run resumed from any checkpoint is the uninterrupted run at every step.

A run on a dataset of 5 training batches an epoch, 16 optimizer steps (three epoch boundaries),
validation every 4 steps, a checkpoint after every step:

* resumed from *each* checkpoint (Lightning's Trainer with lit_ffn's module, data and checkpoint;
  ``data.num_workers`` 0 and 2), every training batch, every training loss (the bits of the float),
  every validation loss and the final weights equal the uninterrupted run's;
* ``lit_ffn fit`` stopped by SIGTERM inside its second epoch or SIGKILL inside its third, then
  resumed with ``--ckpt_path last``, equals the uninterrupted ``lit_ffn fit`` the same way.

What this catches (lit_ffn/data/datamodule.py, ``ResumableLoader.__iter__``): litdata kept its
``restore`` flag until an iterator ran to StopIteration, Lightning ends an epoch after ``len(loader)``
batches, so the epoch after a resumed one replayed the checkpoint's position instead of reshuffling.
The 2-process versions (DDP, FSDP2) are tests/distributed/test_resume.py, whose runs cross epochs too.

A resumed run here never saves a checkpoint at the end of an epoch: such a save rewrote litdata's
restored state to "the whole epoch yielded", which happened to hide the bug (the replay was empty).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lit_ffn.cli import main
from lit_ffn.data import TokenDataModule
from lit_ffn.experiments.events import read_scalars
from lit_ffn.training.checkpointing import AtomicCheckpoint
from lit_ffn.training.module import LitDecoder
from tests.conftest import TINY_VOCAB, tiny_fit_args
from tests.scaleout_helpers import read_records

SEQ_LEN, BATCH = 127, 8
EPOCH = 5  # training batches an epoch on small_dataset at this shape (asserted below)
STEPS = 3 * EPOCH + 1  # four epochs (three boundaries); the last step validates
CHECKPOINT_EVERY = 4  # lit_ffn fit's saves: never at an epoch's end (5, 10, 15), see the module docstring


def run_dir(root: Path) -> Path:
    return root / "runs" / "tiny" / "SwiGLU" / "seed_0"


def fit_args(data: Path, root: Path, num_workers: int) -> list[str]:
    return tiny_fit_args(
        data,
        root,
        f"--data.seq_len={SEQ_LEN}",
        f"--data.batch_size={BATCH}",
        f"--data.num_workers={num_workers}",
        "--trainer.val_check_interval=4",
        f"--checkpoint.every_n_train_steps={CHECKPOINT_EVERY}",
        "--trainer.callbacks+=tests.scaleout_helpers.StepRecorder",
        f"--trainer.callbacks.out_dir={root / 'records'}",
        steps=STEPS,
    )


def outcome(root: Path) -> dict:
    """What must not change: per-step batches and loss bits, validation losses, final weights.

    A step recorded twice (trained after the last save of a SIGKILLed process, then again after the
    resume) must have been trained the same way both times.
    """
    records = read_records(root / "records", 0)
    scalars = read_scalars(run_dir(root))
    final = torch.load(run_dir(root) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    steps: dict[int, tuple[str, str]] = {}
    for r in records:
        assert steps.setdefault(r["step"], (r["batch"], r["loss"])) == (r["batch"], r["loss"]), r["step"]
    return {
        "steps": steps,
        "trained": [r["step"] for r in records],
        "val": dict(scalars["val/loss"]),
        "weights": final["state_dict"],
        "global_step": final["global_step"],
    }


class Outcome(Callback):
    """Per step: a digest of the batch and the bits of the training loss; per validation: the loss."""

    def __init__(self) -> None:
        self.steps: dict[int, tuple[str, str]] = {}
        self.val: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        digest = hashlib.blake2b(batch.numpy().tobytes(), digest_size=8).hexdigest()
        assert trainer.global_step - 1 not in self.steps, "a step was trained twice"
        self.steps[trainer.global_step - 1] = (digest, float(loss.detach()).hex())

    def on_validation_end(self, trainer, pl_module) -> None:
        self.val[trainer.global_step] = float(trainer.callback_metrics["val/loss"])


def trainer_fit(data: Path, root: Path, num_workers: int, ckpt: Path | None = None) -> tuple[Outcome, dict]:
    """Lightning's Trainer with lit_ffn's module and data; a fresh run saves after every step, a resumed one never."""
    torch.manual_seed(0)
    module = LitDecoder(vocab_size=TINY_VOCAB, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8, lr=1e-2)
    datamodule = TokenDataModule(
        str(data), seq_len=SEQ_LEN, batch_size=BATCH, num_workers=num_workers, seed=3, val_blocks=8
    )
    outcome = Outcome()
    callbacks: list[Callback] = [outcome]
    if ckpt is None:
        callbacks.append(
            AtomicCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=1, save_top_k=-1, filename="{step}")
        )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=STEPS,
        val_check_interval=4,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        enable_checkpointing=ckpt is None,
        callbacks=callbacks,
    )
    trainer.fit(module, datamodule, ckpt_path=ckpt, weights_only=False)
    return outcome, module.state_dict()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_run_resumed_from_every_checkpoint_is_the_uninterrupted_run(
    small_dataset: Path, tmp_path: Path, num_workers: int
) -> None:
    assert TokenDataModule(str(small_dataset), seq_len=SEQ_LEN, batch_size=BATCH).num_blocks("train") // BATCH == EPOCH
    reference, weights = trainer_fit(small_dataset, tmp_path / "reference", num_workers)
    assert sorted(reference.steps) == list(range(STEPS)) and sorted(reference.val) == [4, 8, 12, 16]
    batches = [reference.steps[s][0] for s in range(STEPS)]
    assert len(set(batches[:EPOCH])) == EPOCH and batches[:EPOCH] != batches[EPOCH : 2 * EPOCH]  # reshuffled
    # every checkpoint; with 2 workers (slower fits) one at each position in an epoch, in epochs 1-3
    for step in range(1, STEPS) if num_workers == 0 else (4, 5, 7, 11, 13):
        ckpt = tmp_path / "reference" / "checkpoints" / f"step={step}.ckpt"
        resumed, resumed_weights = trainer_fit(small_dataset, tmp_path / f"from_{step}", num_workers, ckpt)
        assert resumed.steps == {s: v for s, v in reference.steps.items() if s >= step}, f"resumed at step {step}"
        assert resumed.val == {s: v for s, v in reference.val.items() if s > step}, f"resumed at step {step}"
        assert all(torch.equal(resumed_weights[k], w) for k, w in weights.items()), f"resumed at step {step}"


@pytest.fixture(scope="module")
def cli_reference(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted ``lit_ffn fit`` (2 loader workers), checkpoint after every step."""
    root = tmp_path_factory.mktemp("cli_reference")
    assert main(fit_args(small_dataset, root, num_workers=2)) == 0
    return outcome(root)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_fit_stopped_in_a_later_epoch_resumes_exactly(
    cli_reference, small_dataset: Path, tmp_path: Path, how
) -> None:
    step = EPOCH + 2 if how == "SIGTERM" else 2 * EPOCH + 3  # inside the second / third epoch
    repo = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "LITFFN_TEST_SIGNAL_AT": f"0:{step}:{how}",
        "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]),
    }
    # a process of its own: SIGKILL leaves it no chance to clean up, as on a real machine
    stopped = subprocess.run(
        [sys.executable, "-m", "lit_ffn.cli", *fit_args(small_dataset, tmp_path, num_workers=2)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert stopped.returncode == (-signal.SIGKILL if how == "SIGKILL" else 128 + signal.SIGTERM), stopped.stderr[-3000:]
    saved = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # SIGTERM finishes the step and saves after it; SIGKILL leaves the last periodic save (inside the epoch)
    assert saved["global_step"] == (step + 1 if how == "SIGTERM" else step // CHECKPOINT_EVERY * CHECKPOINT_EVERY)
    assert saved["global_step"] % EPOCH != 0  # resumed inside an epoch, with a boundary still ahead
    assert main(["fit", "--config", str(run_dir(tmp_path) / "config.yaml"), "--ckpt_path", "last"]) == 0
    resumed = outcome(tmp_path)  # the records of both processes, each step equal to the reference
    redone = list(range(saved["global_step"], step))  # SIGKILL: trained by the killed process after its last save
    assert resumed["trained"] == sorted([*range(STEPS), *redone])  # only the work after the last save redone
    assert resumed["steps"] == cli_reference["steps"]
    assert resumed["val"] == cli_reference["val"] and STEPS in resumed["val"]  # the final validation loss too
    assert resumed["global_step"] == cli_reference["global_step"] == STEPS
    assert all(torch.equal(resumed["weights"][k], w) for k, w in cli_reference["weights"].items())
