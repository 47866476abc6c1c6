"""Publishing a prepared dataset to an object store (``--output s3://bucket/prefix``, ``gs://…``), without rename.

Object stores have no rename, but they replace one object whole.  So the dataset is built locally
(under ``$TMPDIR``, :func:`local_build_dir`, as for a local output) and uploaded as a new *version*, and ``meta.json`` — the only
object readers look for first — is written last and names that version and every file in it
(:mod:`lit_ffn.data.format`)::

    1. upload PREFIX/<version>/{train,val}/chunk-*.bin, then each split's index.json
    2. PUT PREFIX/meta.json   {"root": "<version>", "files": {split: {name: bytes}}, …}   <- the commit
    3. delete PREFIX/<other versions>  (the replaced dataset, leftovers of killed prepares)

A prepare killed before step 2 leaves the previous ``meta.json`` (the old dataset, complete and
untouched) or none (readers see no dataset; a rerun redoes the upload into a new version and step 3
removes the orphan).  ``--overwrite`` deletes the old version only after the new ``meta.json`` is in
place.  A fit still streaming the replaced version loses chunks it has not cached yet: replace a
dataset between runs, not under them.  Files go through fsspec (s3fs, gcsfs), with the storage
options and timeouts of :mod:`lit_ffn.data.remote`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lit_ffn.data.format import META_FILE, SPLITS, filesystem
from lit_ffn.data.prepare.errors import OutputExistsError, PrepareError
from lit_ffn.data.prepare.publish import _host, _pid_alive
from lit_ffn.data.prepare.workers import pause_point
from lit_ffn.data.remote import remote_error

VERSION_PREFIX = "v-"
_LOCAL_BUILD = re.compile(r"^lit_ffn-prepare-(?P<host>[^-]+)-(?P<pid>\d+)-[0-9a-f]+$")


def is_remote(output: str) -> bool:
    """Whether ``--output`` names an object store (anything with a scheme but ``file://``)."""
    return "://" in output and not output.startswith("file://")


def local_build_dir() -> Path:
    """A new ``$TMPDIR/lit_ffn-prepare-<host>-<pid>-<id>/dataset`` to build in before the upload; the build
    directories of killed prepares on this host (their process gone) are removed first."""
    root = Path(tempfile.gettempdir())
    for path in root.glob("lit_ffn-prepare-*"):
        match = _LOCAL_BUILD.match(path.name)
        if match and match["host"] == _host() and not _pid_alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
    build = root / f"lit_ffn-prepare-{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
    build.mkdir()
    return build / "dataset"


class RemoteOutput:
    """``--output URL``: its checks and its upload (module docstring)."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.fs, path = filesystem(self.url, PrepareError, storage_options)
        self.path = path.rstrip("/")

    def check(self, overwrite: bool) -> None:
        """Refuse to replace a dataset without ``overwrite``, and a prefix holding other objects at all."""
        with self._errors():
            if self.fs.exists(f"{self.path}/{META_FILE}"):
                if not overwrite:
                    raise OutputExistsError(f"{self.url} already holds a dataset: pass --overwrite to replace it")
                return
            others = [name for name in self._names() if not name.startswith(VERSION_PREFIX)]
        if others:
            raise PrepareError(
                f"--output {self.url} holds other objects ({others[0]}, …) and no lit_ffn dataset: refusing to write "
                "into it; choose an empty prefix"
            )

    def publish(self, dataset: Path, overwrite: bool) -> dict[str, Any]:
        """Upload the complete local ``dataset`` as a new version, commit it with ``meta.json``, then delete
        the other versions.  Returns the meta as written."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        version = f"{VERSION_PREFIX}{stamp}-{secrets.token_hex(4)}"
        meta = json.loads((dataset / META_FILE).read_text(encoding="utf-8"))
        files: dict[str, dict[str, int]] = {}
        with self._errors():
            self.check(overwrite)  # again: the output may have appeared while we tokenized
            for split in SPLITS:
                local = sorted(p for p in (dataset / split).iterdir() if p.is_file())
                # chunks first, the index after them: a half-uploaded split has no index.json
                for file in sorted(local, key=lambda p: p.name == "index.json"):
                    self.fs.put_file(str(file), f"{self.path}/{version}/{split}/{file.name}")
                    pause_point("upload")
                files[split] = {file.name: file.stat().st_size for file in local}
            meta.update(root=version, files=files)
            self.fs.pipe_file(f"{self.path}/{META_FILE}", (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
            pause_point("commit")
            for name in self._names():
                if name.startswith(VERSION_PREFIX) and name != version:
                    self.fs.rm(f"{self.path}/{name}", recursive=True)
        return meta

    def _names(self) -> list[str]:
        try:
            entries = self.fs.ls(self.path, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return [str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries]

    def _errors(self) -> Any:
        return _OneLine(self.url)


class _OneLine:
    """Turn an object-store failure (unreachable, denied, no bucket) into one :class:`PrepareError` line."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, PrepareError):
            return
        message = remote_error(self.url, exc)
        if message is not None:
            raise PrepareError(message) from None
