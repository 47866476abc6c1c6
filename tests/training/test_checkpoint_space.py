"""Checkpoints that survive a full disk: written straight next to their target (never staged in the
system temp directory), and a save that does not fit ends in one line, removes its partial file, keeps
the last good checkpoint — and ``--ckpt_path last`` resumes exactly once there is room."""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from lit_ffn.cli import main
from lit_ffn.training import checkpointing
from lit_ffn.training.checkpointing import CheckpointSpaceError, DirectCheckpointIO
from tests.conftest import tiny_fit_args
from tests.scaleout_helpers import read_records

RUN = Path("runs") / "tiny" / "SwiGLU" / "seed_0"


def test_a_single_file_save_never_touches_the_system_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Lightning's _atomic_save stages in tempfile.gettempdir(): with an unusable temp dir it cannot save
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-temp-dir"))
    state = {"w": torch.arange(10.0), "step": 3}
    target = tmp_path / "ckpts" / "last.ckpt"
    DirectCheckpointIO().save_checkpoint(state, target)
    assert torch.load(target, weights_only=False)["step"] == 3
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # no partial left behind
    assert not (tmp_path / "no-such-temp-dir").exists()


def test_a_full_disk_removes_the_partial_and_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "last.ckpt"
    DirectCheckpointIO().save_checkpoint({"step": 1}, target)
    old = target.read_bytes()

    def full_disk(fd: int) -> None:  # ENOSPC surfaces at fsync on NFS and quota'd file systems
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpointing.os, "fsync", full_disk)
    big = {"w": torch.zeros(1000), "step": 2}
    with pytest.raises(CheckpointSpaceError) as info:
        DirectCheckpointIO().save_checkpoint(big, target)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"cannot save checkpoint {target}: no space left on device (it needs ")
    needed = int(message.split("it needs ")[1].split(" bytes")[0].replace(",", ""))
    assert needed > 4000  # the serialized 1000-float tensor and its archive
    assert "the previous last.ckpt is untouched" in message
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_torchs_opaque_write_failure_counts_as_a_full_disk_only_when_the_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.save into a stream turns ENOSPC into this RuntimeError (seen from torch.distributed.checkpoint)."""
    from collections import namedtuple

    from torch.distributed.checkpoint.api import CheckpointException

    opaque = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    failure = CheckpointException("CheckpointException ranks:dict_keys([0])", {0: (opaque, None)})
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpointing.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 4096))
    assert checkpointing.looks_full(failure, tmp_path) == "no space left on device"
    monkeypatch.setattr(checkpointing.shutil, "disk_usage", lambda path: usage(10**9, 0, 10**9))
    assert checkpointing.looks_full(failure, tmp_path) is None  # a real bug elsewhere: not hidden
    enospc = OSError(errno.ENOSPC, "No space left on device")
    assert checkpointing.no_space_reason(CheckpointException("x", {1: (enospc, None)})) == "no space left on device"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``tmpfs(size)`` mounts a tmpfs of that size under ``tmp_path`` (skips without root); unmounted after."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root (the ENOSPC injection test covers the logic)")
        path = tmp_path / f"tmpfs{len(mounts)}"
        path.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=False, capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", str(path)], check=False)


def test_a_fit_on_a_full_disk_stops_with_one_line_and_resumes_exactly(
    tiny_dataset: Path, tmp_path: Path, tmpfs: Callable[[str], Path], capsys: pytest.CaptureFixture
) -> None:
    small_tmpfs = tmpfs("600k")  # room for one checkpoint of the tiny fit (~400 KB), not for a second one

    def args(root: Path, ckpts: Path) -> list[str]:
        return tiny_fit_args(
            tiny_dataset,
            root,
            "--checkpoint.every_n_train_steps=2",
            f"--checkpoint.dirpath={ckpts}",
            "--trainer.callbacks+=tests.scaleout_helpers.StepRecorder",
            f"--trainer.callbacks.out_dir={root / 'records'}",
            steps=6,
        )

    reference = tmp_path / "reference"
    assert main(args(reference, reference / "ckpts")) == 0

    root, ckpts = tmp_path / "full", small_tmpfs / "ckpts"
    capsys.readouterr()
    assert main(args(root, ckpts)) == 2  # the save at step 2 fits, the one at step 4 does not
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("lit_ffn: error:")]
    assert line.startswith(f"lit_ffn: error: cannot save checkpoint {ckpts / 'last.ckpt'}: no space left on device")
    assert "the previous last.ckpt is untouched" in line
    assert "Traceback" not in err
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt"]  # the partial is gone
    assert torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 2

    subprocess.run(["mount", "-o", "remount,size=4m", str(small_tmpfs)], check=True)  # space freed
    done = len(read_records(root / "records", 0))
    assert main(["fit", "--config", str(root / RUN / "config.yaml"), "--ckpt_path", "last"]) == 0
    resumed = read_records(root / "records", 0)[done:]
    expected = read_records(reference / "records", 0)[2:]  # steps 2..5
    assert [r["step"] for r in resumed] == [2, 3, 4, 5]
    assert [r["batch"] for r in resumed] == [r["batch"] for r in expected]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in expected]  # bit for bit
    final = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)
    ref = torch.load(reference / "ckpts" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["global_step"] == 6
    assert all(torch.equal(ref["state_dict"][k], final["state_dict"][k]) for k in ref["state_dict"])


@pytest.mark.scaleout
def test_a_sharded_save_on_a_full_disk_stops_every_rank_with_one_line(
    tiny_dataset: Path, tmp_path: Path, tmpfs: Callable[[str], Path]
) -> None:
    """FSDP2, 2 processes (torchrun): torch.distributed.checkpoint's CheckpointException carries the ENOSPC."""
    sharded_tmpfs = tmpfs("1200k")  # room for one 2-rank checkpoint of the tiny fit (~540 KB), not for two
    from tests.scaleout_helpers import STRATEGY_ARGS, launch

    ckpts = sharded_tmpfs / "ckpts"
    args = tiny_fit_args(
        tiny_dataset,
        tmp_path,
        *STRATEGY_ARGS["fsdp2"],
        "--checkpoint.every_n_train_steps=2",
        f"--checkpoint.dirpath={ckpts}",
        steps=6,
    )
    code, output = launch(args, "torchrun", tmp_path / "logs")
    assert code != 0
    lines = [line for line in output.splitlines() if "lit_ffn: error:" in line]
    assert len(lines) == 2, output[-3000:]  # one per rank
    assert all(
        line.endswith(
            f"lit_ffn: error: cannot save checkpoint {ckpts / 'last.ckpt'}: no space left on device (the sharded "
            f"save had written {lines[0].split('written ')[1].split(' bytes')[0]} bytes, "
            f"{lines[0].split('bytes, ')[1].split(' are free')[0]} are free on its file system); the partial directory "
            "is removed and the previous last.ckpt is untouched; free space (or set checkpoint.dirpath elsewhere) and "
            "resume with --ckpt_path last"
        )
        for line in lines
    )
    assert not (ckpts / ".last.ckpt.partial").exists()
    assert torch.load(ckpts / "last.ckpt" / "meta.pt", map_location="cpu", weights_only=False)["global_step"] == 2

    subprocess.run(["mount", "-o", "remount,size=8m", str(sharded_tmpfs)], check=True)
    code, output = launch(
        ["fit", "--config", str(tmp_path / RUN / "config.yaml"), "--ckpt_path", "last"], "torchrun", tmp_path / "logs2"
    )
    assert code == 0, output[-3000:]
    assert torch.load(ckpts / "last.ckpt" / "meta.pt", map_location="cpu", weights_only=False)["global_step"] == 6
