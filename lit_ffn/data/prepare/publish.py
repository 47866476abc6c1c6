"""Safe output: build in a staging directory, move into place with one rename, clean up dead runs' leftovers."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import socket
from pathlib import Path

from lit_ffn.data.format import SPLITS
from lit_ffn.data.prepare.bpe import TOKENIZER_FILE
from lit_ffn.data.prepare.errors import OutputExistsError, PrepareError
from lit_ffn.data.prepare.workers import pause_point

_DATASET_ENTRIES = {"meta.json", TOKENIZER_FILE, *SPLITS}  # TOKENIZER_FILE: a dataset with its own BPE
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.lit_ffn-prepare-(?P<host>[^-]+)-(?P<pid>\d+)-[0-9a-f]+$")


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse to replace a dataset without ``overwrite``, and anything that is not a dataset at all."""
    if not output.exists():
        return
    if not output.is_dir():
        raise PrepareError(f"--output {output} exists and is not a directory")
    entries = {entry.name for entry in output.iterdir()}
    if not entries:
        return
    if not entries <= _DATASET_ENTRIES:
        raise PrepareError(f"--output {output} exists and is not a lit_ffn dataset: refusing to replace it")
    if not overwrite:
        raise OutputExistsError(f"{output} already holds a dataset: pass --overwrite to replace it")


def staging_dir(output: Path) -> Path:
    """A sibling of ``output`` (same file system, so renames are atomic) that names its owner process."""
    return output.parent / f".{output.name}.lit_ffn-prepare-{_host()}-{os.getpid()}-{secrets.token_hex(4)}"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname()) or "host"


def cleanup_leftovers(output: Path) -> list[Path]:
    """Remove temporary directories that killed prepares into ``output`` left on this host."""
    host = _host()
    removed = []
    for path in output.parent.glob(f".{output.name}.lit_ffn-*"):
        match = _LEFTOVER.match(path.name)
        if match and match["name"] == output.name and match["host"] == host and not _pid_alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish(staging: Path, output: Path, overwrite: bool) -> None:
    """Move the complete ``staging/dataset`` to ``output``, replacing an old dataset only if allowed.

    A replaced dataset ends up inside ``staging`` (removed by the caller), never as a sibling that
    looks like a dataset.
    """
    new = staging / "dataset"
    check_output(output, overwrite)  # again: the output may have appeared while we tokenized
    if output.exists() and not any(output.iterdir()):
        output.rmdir()
    if not output.exists():
        try:
            os.rename(new, output)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise OutputExistsError(f"{output} appeared while preparing: pass --overwrite to replace it") from exc
            raise
        return
    if not _exchange(new, output):  # atomic where supported: output is the old dataset, then the new one
        os.rename(output, staging / "replaced")  # no dataset at output until the next line
        os.rename(new, output)
    pause_point("publish")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``; False where unsupported.

    Python has no binding for it (os.rename / os.replace cannot swap two directories).
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(error, os.strerror(error), str(b))
