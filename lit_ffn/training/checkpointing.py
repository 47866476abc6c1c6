"""All-or-nothing checkpoint writes: a killed save never replaces a good checkpoint.

Lightning writes a checkpoint straight to its final name.  A single file goes
through ``_atomic_save`` (an fsspec transaction: a temp file in the system
temp directory, then moved — a copy, not an atomic rename, when that
directory is on another filesystem), and a distributed (FSDP) checkpoint is a
directory whose shard files are overwritten in place, so a process killed
mid-save can leave ``last.ckpt`` half old, half new.  ``ModelCheckpoint`` has
no option for this and the distributed path bypasses ``CheckpointIO``, so
:class:`AtomicCheckpoint` overrides the one method every save goes through:

1. every rank writes the checkpoint to ``.<name>.partial`` next to the target;
2. rank 0 publishes it with one atomic ``rename(2)``:

   * a file replaces ``<name>`` directly (``os.replace``);
   * a directory cannot atomically replace a non-empty directory, so it is
     renamed to a hidden, unique ``.<name>.step<N>-<id>`` and ``<name>``
     becomes a relative symlink to it, swapped in by ``os.replace`` of a new
     link over the old one; the previous target is deleted afterwards.

A kill at any point leaves ``<name>`` pointing at a complete checkpoint (the
old or the new one); leftovers (``.partial``, unlinked targets) are removed by
the next save.  Hidden names never match Lightning's ``last*.ckpt`` lookup
for ``--ckpt_path last``.  Remote (object-store) paths are left to Lightning:
object stores replace an object whole.

**No staging in the system temp directory.**  Lightning's single-file save (``TorchCheckpointIO`` →
``_atomic_save`` in ``lightning/fabric/utilities/cloud_io.py``) serializes into memory, writes that to
a file in the *system temp directory* inside an fsspec transaction and then moves (copies, across
file systems) it to its target: the checkpoint is written twice, and a node whose temp directory is
smaller than a checkpoint (node-local tmpfs) cannot save at all.  :class:`DirectCheckpointIO`, which
``AtomicCheckpoint.setup`` installs in place of Lightning's default ``TorchCheckpointIO``, writes the
serialized bytes straight to the ``.partial`` next to the target and fsyncs it; ``publish`` renames it.
A full disk or quota (``ENOSPC`` / ``EDQUOT``) during that write removes the partial file and raises
:class:`CheckpointSpaceError` — one line naming the checkpoint, the bytes it needed and the bytes free
(a sharded save, which torch.distributed.checkpoint writes itself: the bytes it had written);
the previous checkpoint is untouched (only the partial file was being written), so ``--ckpt_path last``
resumes from it once there is room.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
from pathlib import Path
from typing import Any
from weakref import proxy

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_ffn.errors import UserError

#: errno values that mean "no room": a full file system, or the user's quota on it
_NO_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
#: free bytes below which a file system counts as full when a write failed without saying why
_NEARLY_FULL = 1 << 20


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial")


def _final_of(partial: Path) -> Path | None:
    """The target a ``.partial`` name stands for (inverse of :func:`partial_path`); None for other names."""
    name = partial.name
    if name.startswith(".") and name.endswith(".partial") and len(name) > len("..partial"):
        return partial.with_name(name[1 : -len(".partial")])
    return None


def _is_remote(path: Any) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


class CheckpointSpaceError(UserError):
    """A checkpoint did not fit on its file system (full disk or quota); nothing was replaced.

    ``needed``: the size of a single-file checkpoint; ``written``: what a sharded save had written when
    it failed (its total size is not known in advance)."""

    def __init__(self, final: Path, reason: str, needed: int | None, free: int, written: int = 0) -> None:
        kept = f"the previous {final.name} is untouched" if final.exists() else f"no {final.name} was written"
        size = f"it needs {needed:,} bytes" if needed is not None else f"the sharded save had written {written:,} bytes"
        super().__init__(
            f"cannot save checkpoint {final}: {reason} ({size}, {free:,} are free on its file system); the partial "
            f"{'file' if needed is not None else 'directory'} is removed and {kept}; free space (or set "
            "checkpoint.dirpath elsewhere) and resume with --ckpt_path last"
        )


def no_space_reason(exc: BaseException) -> str | None:
    """``"no space left on device"`` / ``"disk quota exceeded"`` when ``exc`` comes from a full file system:
    an ``OSError`` in its chain, or in any rank's failure of torch's ``CheckpointException`` (sharded saves)."""
    failures = getattr(exc, "failures", None)
    candidates = [exc, *(pair[0] for pair in failures.values() if pair)] if isinstance(failures, dict) else [exc]
    for candidate in candidates:
        link: BaseException | None = candidate
        for _ in range(16):  # the cause/context chain, bounded
            if link is None:
                break
            if isinstance(link, OSError) and link.errno in _NO_SPACE:
                return _NO_SPACE[link.errno]
            link = link.__cause__ or link.__context__
    return None


def looks_full(exc: BaseException, directory: Path) -> str | None:
    """``"no space left on device"`` for torch's opaque zip-writer failure when ``directory``'s file system
    is (nearly) full: torch.distributed.checkpoint writes small objects with ``torch.save`` into a Python
    stream, whose ``ENOSPC`` reaches us as ``RuntimeError: … PytorchStreamWriter … unexpected pos`` (or
    ``file write failed``) with no ``OSError`` in its chain."""
    failures = getattr(exc, "failures", None)
    candidates = [exc, *(pair[0] for pair in failures.values() if pair)] if isinstance(failures, dict) else [exc]
    opaque = any(
        isinstance(c, RuntimeError) and ("unexpected pos" in str(c) or "file write failed" in str(c))
        for c in candidates
    )
    if opaque and shutil.disk_usage(directory).free < _NEARLY_FULL:
        return _NO_SPACE[errno.ENOSPC]
    return None


def _size(path: Path) -> int:
    try:
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        return sum(f.stat().st_size for f in files)
    except OSError:  # another rank removed it meanwhile
        return 0


def write_file(path: Path, data: memoryview, final: Path) -> None:
    """Write ``data`` to ``path`` and fsync it; on a full disk remove ``path`` and raise
    :class:`CheckpointSpaceError` naming ``final``."""
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        path.unlink(missing_ok=True)
        if err.errno not in _NO_SPACE:
            raise
        free = shutil.disk_usage(path.parent).free
        raise CheckpointSpaceError(final, _NO_SPACE[err.errno], len(data), free) from None


class DirectCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` without the detour through the system temp directory.

    A local checkpoint is serialized in memory (as Lightning's ``_atomic_save`` does: the size is then
    known for the error message, and ``torch.save`` into a Python file turns ``ENOSPC`` into an opaque
    ``RuntimeError`` from its zip writer) and written straight to the ``.partial`` next to the target,
    fsynced, then renamed over the target.  A path that already is a ``.partial`` name
    (:class:`AtomicCheckpoint`'s, which publishes it itself) is written in place.  Remote paths and
    ``storage_options`` go to Lightning's implementation.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or _is_remote(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(str(path).removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        final = _final_of(path)
        if final is not None:  # AtomicCheckpoint's partial: it publishes
            write_file(path, buffer.getbuffer(), final)
            return
        partial = partial_path(path)
        write_file(partial, buffer.getbuffer(), path)
        publish(partial, path, tag="direct")


def _owned_targets(final: Path) -> list[Path]:
    """Hidden directories this callback made for ``final`` (published or orphaned)."""
    prefix = f".{final.name}.step"
    return [p for p in final.parent.iterdir() if p.name.startswith(prefix) and p.is_dir() and not p.is_symlink()]


def publish(partial: Path, final: Path, tag: str) -> None:
    """Atomically make the complete checkpoint at ``partial`` visible as ``final`` (see the module docstring)."""
    parent = final.parent
    if final.is_dir() and not final.is_symlink():  # a real directory from a plain ModelCheckpoint: move it aside
        os.replace(final, parent / f".{final.name}.step-legacy-{os.getpid()}")
    if partial.is_dir():
        target = parent / f".{final.name}.step{tag}"
        os.replace(partial, target)
        link = parent / f".{final.name}.link"
        _remove(link)
        os.symlink(target.name, link)
        os.replace(link, final)  # the atomic switch
    else:
        with open(partial, "rb+") as f:
            os.fsync(f.fileno())
        target = None
        os.replace(partial, final)  # the atomic switch
    _fsync_dir(parent)
    for old in _owned_targets(final):  # the previous target and orphans of killed saves
        if target is None or old != target:
            shutil.rmtree(old, ignore_errors=True)


class AtomicCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose every save is all-or-nothing (module docstring); same arguments.

    It also remembers the step of its last save across a resume
    (``last_saved_step``), which the non-finite-loss guard reports.
    """

    last_saved_step: int = 0  # (no __init__ override: LightningCLI reads ModelCheckpoint's signature)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # Lightning's default single-file writer stages in the system temp dir (module docstring); a
        # CheckpointIO the user configured (e.g. AsyncCheckpointIO) is left alone.
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = DirectCheckpointIO()

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        if _is_remote(filepath):
            return super()._save_checkpoint(trainer, filepath)
        final = Path(filepath)
        partial = partial_path(final)
        if trainer.is_global_zero:
            final.parent.mkdir(parents=True, exist_ok=True)
            _remove(partial)  # left by a save that was killed
        trainer.strategy.barrier("AtomicCheckpoint.clean")
        self.last_saved_step = trainer.global_step  # before saving: it is part of the saved state
        try:
            trainer.save_checkpoint(str(partial), self.save_weights_only)  # ends with a barrier
        except BaseException as exc:  # torch's CheckpointException (sharded saves) is a BaseException
            reason = no_space_reason(exc) or looks_full(exc, final.parent)
            if reason is None or isinstance(exc, CheckpointSpaceError):
                raise
            # a sharded save: torch.distributed.checkpoint raised the same failure on every rank (its results
            # are all-reduced), so every rank is here and may meet at a barrier
            written, free = _size(partial), shutil.disk_usage(final.parent).free
            trainer.strategy.barrier("AtomicCheckpoint.no_space")
            if trainer.is_global_zero:
                _remove(partial)
            raise CheckpointSpaceError(final, reason, None, free, written) from None
        if trainer.is_global_zero:
            publish(partial, final, tag=f"{trainer.global_step}-{os.urandom(4).hex()}")
        trainer.strategy.barrier("AtomicCheckpoint.publish")

        # what ModelCheckpoint._save_checkpoint does after writing
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def save_last_now(self, trainer: Any) -> None:
        """Write ``last.ckpt`` for the current step now (a preempted run: :mod:`lit_ffn.training.preemption`),
        unless this step is saved already.  Every rank calls it."""
        if not self.save_last or self._last_global_step_saved == trainer.global_step:
            return
        # ModelCheckpoint's own "save last" path (what on_train_end uses), through the atomic _save_checkpoint
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _remove_checkpoint(self, trainer: Any, filepath: str) -> None:
        path = Path(filepath)
        if path.is_symlink():
            if trainer.is_global_zero:
                target = path.parent / os.readlink(path)
                path.unlink()
                if target.name.startswith(f".{path.name}.step"):
                    shutil.rmtree(target, ignore_errors=True)
            trainer.strategy.barrier("AtomicCheckpoint.remove")
            return
        super()._remove_checkpoint(trainer, filepath)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "last_saved_step": self.last_saved_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.last_saved_step = int(state_dict.get("last_saved_step", 0))
