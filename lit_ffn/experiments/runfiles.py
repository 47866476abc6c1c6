"""The files :mod:`lit_ffn.experiments` keeps in a run directory, and reading them.

    <run>/DONE             the run is over (trained to ``trainer.max_steps``, or diverged): a JSON record
    <run>/final_eval.json  the final checkpoint's loss on every block of the validation split
    <run>/eval.json        lm-evaluation-harness scores (``lit_ffn ablate --eval-tasks``)

``DONE`` (:func:`write_done`) holds ``final_val_loss`` — the mean of ``final_eval.json``'s per-block
losses for a run finished by this version, the last logged ``val/loss`` for an older one — and
``diverged`` (the loss became non-finite: ``lit_ffn fit`` exit code 3; its loss counts as +∞).
Every file is written atomically (a temporary file renamed over the target), so a half-written file
never replaces a good one.  This is the bottom layer of the package: it imports nothing from it but
:mod:`lit_ffn.experiments.events`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from lit_ffn.errors import UserError

#: Marker written into a run directory once its fit finished (a JSON record).
DONE = "DONE"
#: The final checkpoint's per-block validation losses (:mod:`lit_ffn.experiments.final_eval`).
FINAL_EVAL_FILE = "final_eval.json"
#: What ``lit_ffn ablate --eval-tasks`` writes into each evaluated run directory.
EVAL_FILE = "eval.json"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temporary file, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_done(run_dir: Path) -> dict[str, Any] | None:
    """The ``DONE`` record of a run (None: not done; ``{}``: an empty or unreadable marker)."""
    path = run_dir / DONE
    return _read_json(path) if path.exists() else None


def write_done(run_dir: Path, record: dict[str, Any]) -> None:
    write_json(run_dir / DONE, record)


def read_final_eval(run_dir: Path) -> dict[str, Any] | None:
    """``final_eval.json`` of a run (None: not evaluated).  Keys: ``block_losses`` (nats/token, one
    per validation block, in block order), ``loss`` (their mean), ``blocks``, ``seq_len``, ``step``."""
    record = _read_json(run_dir / FINAL_EVAL_FILE)
    losses = record.get("block_losses")
    if not isinstance(losses, list) or not losses:
        return None
    return record


def read_eval(run_dir: Path) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` of a run's ``eval.json`` (empty when not evaluated or unreadable)."""
    return _read_json(run_dir / EVAL_FILE).get("scores", {})


def logged_final_val_loss(run_dir: Path) -> float | None:
    """The last ``val/loss`` of a run from its TensorBoard events (None: none logged)."""
    from lit_ffn.experiments.events import read_scalars

    try:
        curve = read_scalars(run_dir).get("val/loss", [])
    except UserError:
        return None
    return curve[-1][1] if curve else None


def final_loss(run_dir: Path) -> float | None:
    """Final validation loss of a done run: +inf when it diverged, None while it is not done.

    From ``DONE``'s ``final_val_loss`` (the whole validation split for runs of this version), else
    (a marker of an older lit_ffn) the last logged ``val/loss``."""
    record = read_done(run_dir)
    if record is None:
        return None
    if record.get("diverged"):
        return math.inf
    if record.get("final_val_loss") is not None:
        return float(record["final_val_loss"])
    return logged_final_val_loss(run_dir)


__all__ = [
    "DONE",
    "EVAL_FILE",
    "FINAL_EVAL_FILE",
    "final_loss",
    "logged_final_val_loss",
    "read_done",
    "read_eval",
    "read_final_eval",
    "write_done",
    "write_json",
]
