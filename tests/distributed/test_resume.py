"""Exact resume and kill-during-save, with 2 CPU processes (gloo) under FSDP2 and DDP.

For each strategy two runs of the same config are made (``tests.scaleout_helpers``):

* the reference: ``STEPS`` optimizer steps, uninterrupted;
* the interrupted run: its checkpoint save at ``KILL_STEP`` is cut short (every
  file truncated) and every process SIGKILLed; then
  ``lit_ffn fit --config RUN/config.yaml --ckpt_path last`` resumes it from the
  previous good checkpoint (step 6, inside the second epoch) to the end, across
  the next epoch boundary.

Both runs carry a NaN loss on rank 1, batch 1, skipped by ``model.nonfinite=skip``
(the skip count must survive the resume too) and clip gradients by norm.
Per-step records (batch hash, loss bits, gradient norms) must be identical.
"""

from __future__ import annotations

import pytest
import torch

from tests.scaleout_helpers import (  # noqa: F401 - fixture
    CHECKPOINT_EVERY,
    EPOCH,
    KILL_STEP,
    SIGNALS,
    STEPS,
    read_records,
    scaleout_runs,
)

pytestmark = pytest.mark.scaleout
STRATEGIES = ["fsdp2", "ddp"]
GOOD_STEP = KILL_STEP - CHECKPOINT_EVERY  # the last complete checkpoint before the killed save


def stitched(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split an interrupted run's records into (before the kill, after the resume) at the step that goes back."""
    for i in range(1, len(records)):
        if records[i]["step"] <= records[i - 1]["step"]:
            return records[:i], records[i:]
    raise AssertionError(f"no resume found in records {[r['step'] for r in records]}")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_resume_reproduces_the_uninterrupted_run(scaleout_runs, strategy: str) -> None:  # noqa: F811
    runs = scaleout_runs(strategy)
    for rank in (0, 1):
        reference = read_records(runs.reference_records, rank)
        before, after = stitched(read_records(runs.interrupted_records, rank))
        assert [r["step"] for r in reference] == list(range(STEPS))
        # the runs cross epochs (batch indices start again), and the resume point lies inside one
        assert [r["batch_idx"] for r in reference] == [s % EPOCH for s in range(STEPS)]
        assert EPOCH < GOOD_STEP < 2 * EPOCH < STEPS
        assert after[0]["step"] == GOOD_STEP  # resumed from the last good checkpoint, not the killed save
        assert [r["step"] for r in before][-1] == KILL_STEP - 1
        combined = [r for r in before if r["step"] < GOOD_STEP] + after
        # the data stream continues: no repeated, no skipped batch
        assert [r["batch"] for r in combined] == [r["batch"] for r in reference]
        assert len({r["batch"] for r in reference}) == STEPS
        # the same numbers, bit for bit: losses, gradient norms before and after clipping
        for key in ("loss", "pre_clip_norm", "post_clip_norm", "skipped"):
            assert [r[key] for r in combined] == [r[key] for r in reference], (rank, key)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_killed_save_leaves_last_checkpoint_loadable(scaleout_runs, strategy: str) -> None:  # noqa: F811
    runs = scaleout_runs(strategy)
    checkpoints = runs.interrupted / "checkpoints"
    assert runs.killed_save.endswith(".last.ckpt.partial")  # the cut-short save never wrote to last.ckpt
    assert "Restoring states from the checkpoint path at" in runs.resume_output
    assert str(checkpoints / "last.ckpt") in runs.resume_output
    # the resumed run published its own saves and removed the debris of the killed one
    assert sorted(p.name for p in checkpoints.iterdir() if not p.name.startswith(".last.ckpt.step")) == ["last.ckpt"]
    last = checkpoints / "last.ckpt"
    meta = torch.load(last / "meta.pt" if last.is_dir() else last, map_location="cpu", weights_only=False)
    assert meta["global_step"] == STEPS


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_skipped_nonfinite_step_is_counted_and_changes_nothing(scaleout_runs, strategy: str) -> None:  # noqa: F811
    runs = scaleout_runs(strategy)
    rank0, rank1 = (read_records(runs.reference_records, rank) for rank in (0, 1))
    assert rank1[1]["loss"] == "nan" and rank0[1]["loss"] != "nan"  # only rank 1 saw it…
    for records in (rank0, rank1):  # …and both ranks dropped the step's gradients
        assert records[1]["post_clip_norm"] == 0.0
        assert [r["skipped"] for r in records] == [0] + [1] * (STEPS - 1)
    last = runs.interrupted / "checkpoints" / "last.ckpt"
    meta = torch.load(last / "meta.pt" if last.is_dir() else last, map_location="cpu", weights_only=False)
    assert meta["nonfinite_guard"] == {"skipped": 1}  # restored from the step-2 checkpoint and saved again


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_signal_to_one_rank_stops_every_rank_after_the_step_and_resumes_exactly(scaleout_runs, strategy: str) -> None:  # noqa: F811
    runs = scaleout_runs(strategy)
    _rank, step, name = SIGNALS[strategy].split(":")
    assert runs.signal_rc != 0  # the run ended early, and says so
    assert f"lit_ffn: interrupted by {name} after step {int(step) + 1}; last.ckpt is saved" in runs.signal_output
    assert f"--config {runs.signalled / 'config.yaml'} --ckpt_path last" in runs.signal_output
    for rank in (0, 1):  # only one rank got the signal; both stopped after the same step
        reference = read_records(runs.reference_records, rank)
        before = read_records(runs.signalled.parents[3] / "records_before_resume", rank)
        assert [r["step"] for r in before] == list(range(int(step) + 1)), rank
        # resumed where it stopped: nothing redone, nothing lost, the same numbers bit for bit
        combined = read_records(runs.signalled_records, rank)
        assert [r["step"] for r in combined] == list(range(STEPS))
        for key in ("batch", "loss", "pre_clip_norm", "post_clip_norm", "skipped"):
            assert [r[key] for r in combined] == [r[key] for r in reference], (rank, key)
