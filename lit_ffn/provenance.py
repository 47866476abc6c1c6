"""Which code produced a run: the git commit (and whether the tree was dirty), the lit_ffn version
and the versions of the libraries that decide the numbers.

Every ``lit_ffn fit`` writes :func:`provenance` to ``<run dir>/provenance.json`` (one entry per
fit of the run, so a resumed run records each process that trained it); HPARAMS shows the commit,
and ``lit_ffn ablate``'s report gives the commit of each run.  modded-nanogpt logs its code with
every run for the same reason: a results table must be able to say which code trained it.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

#: Libraries whose versions are recorded (``None`` when not installed).
PACKAGES = ("torch", "lightning", "litdata", "transformers", "jsonargparse", "torchmetrics", "numpy")

PROVENANCE_FILE = "provenance.json"

#: Set in every entry written by a lit_ffn whose resumed runs reshuffle at the next epoch boundary
#: like the uninterrupted run (lit_ffn.data.datamodule.ResumableLoader.__iter__, commit de050d4).  A fit
#: resumed by an older lit_ffn replayed the rest of its first epoch at the next boundary instead.
EPOCH_RESUME_FIX = "epoch_resume_exact"

#: The checkout lit_ffn is imported from (an installed wheel has no ``.git`` here).
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def lit_ffn_version() -> str:
    try:
        return version("lit_ffn")
    except PackageNotFoundError:
        import lit_ffn

        return getattr(lit_ffn, "__version__", "unknown")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """``{"python": "3.11.7", "torch": "2.14.1", …}``."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for package in packages:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


def _git(*args: str, root: Path) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.lru_cache(maxsize=4)
def git_state(root: Path = SOURCE_ROOT) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout at ``root``.

    ``dirty`` is true when tracked files differ from the commit (``git status --porcelain
    --untracked-files=no``): untracked files such as ``runs/`` or ``data/`` do not count.  Cached:
    the code does not change under a running process.
    """
    if not (root / ".git").exists():
        return {"commit": None, "dirty": None}
    commit = _git("rev-parse", "HEAD", root=root)
    status = _git("status", "--porcelain", "--untracked-files=no", root=root)
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def short_commit(state: dict[str, Any]) -> str:
    """``4cee13f``, ``4cee13f+dirty`` or ``unknown``."""
    commit = state.get("commit")
    if not commit:
        return "unknown"
    return commit[:7] + ("+dirty" if state.get("dirty") else "")


def provenance() -> dict[str, Any]:
    """What this process is: code (git commit, dirty flag, lit_ffn version), libraries, command, time."""
    return {
        "git": git_state(),
        "lit_ffn": lit_ffn_version(),
        "versions": package_versions(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "host": platform.node(),
        "pid": os.getpid(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        EPOCH_RESUME_FIX: True,
    }


def write_provenance(run_dir: Path) -> Path:
    """Append this process's :func:`provenance` to ``run_dir/provenance.json`` (a list: one entry per
    fit of the run), written atomically so that a kill never leaves half a file."""
    path = Path(run_dir) / PROVENANCE_FILE
    entries = read_provenance(run_dir)
    entries.append(provenance())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(entries, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_provenance(run_dir: Path) -> list[dict[str, Any]]:
    """The entries of ``run_dir/provenance.json`` (``[]`` when there is none or it is unreadable)."""
    try:
        data = json.loads((Path(run_dir) / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def resumed_before_epoch_fix(run_dir: Path) -> bool:
    """Whether a fit of this run resumed it (``--ckpt_path``, after an earlier fit) with a lit_ffn older
    than the epoch-boundary fix: such a run repeated part of an epoch if it crossed a boundary after the
    resume, so it is not the uninterrupted run (its data order, and so its pairing with other variants
    of its seed, differs)."""
    entries = read_provenance(run_dir)
    return any(
        "--ckpt_path" in " ".join(map(str, entry.get("command", []))) and not entry.get(EPOCH_RESUME_FIX)
        for entry in entries[1:]
    )


def run_commit(run_dir: Path) -> str:
    """The short commit(s) that trained a run: ``4cee13f``, ``4cee13f, 9d0258c+dirty`` after a resume
    with other code, or ``unknown``; a run resumed by a lit_ffn older than the epoch-boundary fix says so
    (:func:`resumed_before_epoch_fix`), so a report never mixes it silently with uninterrupted runs."""
    commits = dict.fromkeys(short_commit(entry.get("git", {})) for entry in read_provenance(run_dir))
    text = ", ".join(commits) if commits else "unknown"
    if resumed_before_epoch_fix(run_dir):
        text += " ⚠ resumed before the epoch-resume fix (de050d4): its data order differs after the next epoch boundary"
    return text


__all__ = [
    "EPOCH_RESUME_FIX",
    "PROVENANCE_FILE",
    "git_state",
    "lit_ffn_version",
    "package_versions",
    "provenance",
    "read_provenance",
    "resumed_before_epoch_fix",
    "run_commit",
    "short_commit",
    "write_provenance",
]
