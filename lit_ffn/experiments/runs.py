"""What the report reads from each run directory: final loss (whole validation split, per block),
divergence, the validation curve, throughput, config, commit, and the dataset's unigram reference.

Everything is read back from the run's files (``DONE``, ``final_eval.json``, ``config.yaml``,
TensorBoard events; :mod:`lit_ffn.experiments.runfiles`), so ``lit_ffn ablate --report DIR``
rebuilds the report at any time.  The analysis and report modules read runs only through here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lit_ffn.errors import UserError
from lit_ffn.experiments.events import read_scalars, wall_times
from lit_ffn.experiments.runfiles import read_done, read_final_eval
from lit_ffn.experiments.study import Pair, Study
from lit_ffn.provenance import run_commit
from lit_ffn.training.batch_plan import device_count

#: lit_ffn's throughput tag, then its name in runs written before it moved to the ``vitals`` group.
_THROUGHPUT_TAGS = ("vitals/tokens_per_sec", "train/tokens_per_sec")


def tokens_per_step(config: dict[str, Any]) -> int | None:
    """Tokens per optimizer step from a resolved config (None if the world size is not a plain number)."""
    trainer, data = config.get("trainer") or {}, config.get("data") or {}
    try:
        devices = device_count(trainer.get("devices", 1))  # 8, "8", "0,1" or [0, 1]; not "auto"
    except UserError:
        return None
    try:
        return (
            int(data["batch_size"])
            * int(data["seq_len"])
            * int(trainer.get("accumulate_grad_batches") or 1)
            * devices
            * int(trainer.get("num_nodes") or 1)
        )
    except (KeyError, TypeError, ValueError):
        return None


def tokens_per_second(scalars: dict[str, list], config: dict[str, Any], run_dir: Path) -> tuple[float | None, str]:
    """Training throughput of a run and where it came from.

    1. a throughput tag (``vitals/tokens_per_sec`` of lit_ffn's
       ``TokenThroughputMonitor``, ``train/tokens_per_sec`` in older runs, else any ``…tokens_per_sec`` or Lightning
       ``…items_per_sec`` that is not per device): the median of its values;
    2. else the wall times of the ``train/loss`` events: the median over
       consecutive logged steps of ``tokens per step · Δstep / Δt``
       (the median drops intervals that contain a validation or a restart).
    """
    tags = [t for t in _THROUGHPUT_TAGS if t in scalars] or sorted(
        t for t in scalars if t.endswith(("tokens_per_sec", "items_per_sec")) and "device" not in t
    )
    if tags:
        return _median(sorted(v for _, v in scalars[tags[0]])), tags[0]
    per_step = tokens_per_step(config)
    points = wall_times(run_dir, "train/loss") if per_step and "train/loss" in scalars else []
    rates = sorted(
        per_step * (s1 - s0) / (w1 - w0) for (s0, w0), (s1, w1) in itertools.pairwise(points) if w1 > w0 and s1 > s0
    )
    return (_median(rates), "train/loss wall times") if rates else (None, "n/a")


def _median(values: Sequence[float]) -> float:
    n = len(values)
    return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


@dataclass
class RunResult:
    """What the report needs from one run directory."""

    pair: Pair
    status: str  # "done", "incomplete" (started, not done) or "missing"
    val_curve: list[tuple[int, float]] = field(default_factory=list)
    tokens_per_s: float | None = None
    tokens_per_s_source: str = "n/a"
    has_gates: bool = False  # logged gates/layer_XX/… statistics (lit_ffn.callbacks.GateStatistics)
    config: dict[str, Any] = field(default_factory=dict)
    commit: str = "unknown"  # lit_ffn.provenance.run_commit
    diverged: bool = False  # the loss became non-finite (an outcome: its loss is +inf)
    block_losses: list[float] | None = None  # final checkpoint, every validation block (final_eval.json)
    block_docs: list[int] | None = None  # the document each block starts in (final_eval.json, when recorded)
    done_loss: float | None = None  # DONE's final_val_loss
    train_curve: list[tuple[int, float]] = field(default_factory=list)  # train/loss as logged (dense)

    @property
    def final(self) -> tuple[int, float] | None:
        """(step, val/loss) of the last logged validation."""
        return self.val_curve[-1] if self.val_curve else None

    @property
    def loss(self) -> float | None:
        """The run's final validation loss (None: not done or nothing recorded; inf: diverged): the mean
        of its per-block losses on the whole split, else DONE's value, else the last logged val/loss."""
        if self.status != "done":
            return None
        if self.diverged:
            return math.inf
        if self.block_losses:
            return math.fsum(self.block_losses) / len(self.block_losses)
        if self.done_loss is not None:
            return self.done_loss
        return self.final[1] if self.final else None

    @property
    def loss_source(self) -> str:
        """Where :attr:`loss` comes from, in words (results.md's metric line counts the runs of each)."""
        if self.block_losses:
            return "final_eval.json (the final checkpoint on every validation block)"
        if self.done_loss is not None:
            return "DONE's final_val_loss"
        return "the last logged val/loss"


def _read_config(run_dir: Path) -> dict[str, Any]:
    """A run's ``config.yaml`` ({} while absent, or half-written as Lightning writes it at the start of a
    fit: a report made while ``lit_ffn ablate --workers`` runs must not stop on a run in progress)."""
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def read_run(study: Study, pair: Pair) -> RunResult:
    run_dir = study.run_dir(pair)
    if not run_dir.exists():
        return RunResult(pair, "missing")
    record = read_done(run_dir)
    status = "incomplete" if record is None else "done"
    final_eval = read_final_eval(run_dir)
    config = _read_config(run_dir)
    try:
        scalars = read_scalars(run_dir)
    except UserError:  # no events file yet
        scalars = {}
    tps, source = tokens_per_second(scalars, config, run_dir)
    has_gates = any(tag.startswith(("z_gates/layer_", "gates/layer_")) for tag in scalars)  # new, old runs
    done_loss = (record or {}).get("final_val_loss")
    return RunResult(
        pair,
        status,
        list(scalars.get("val/loss", [])),
        tps,
        source,
        has_gates,
        config,
        run_commit(run_dir),
        diverged=bool((record or {}).get("diverged")),
        block_losses=[float(x) for x in final_eval["block_losses"]] if final_eval else None,
        block_docs=[int(x) for x in final_eval["block_docs"]] if final_eval and final_eval.get("block_docs") else None,
        done_loss=float(done_loss) if isinstance(done_loss, (int, float)) else None,
        train_curve=list(scalars.get("train/loss", [])),
    )


def read_runs(study: Study, pairs: Sequence[Pair] | None = None) -> dict[Pair, RunResult]:
    return {pair: read_run(study, pair) for pair in (study.pairs() if pairs is None else pairs)}


# ================================================================== the unigram reference
def unigram_reference(config: dict[str, Any]) -> float | None:
    """The dataset's unigram reference of a run (nats/token: the validation blocks under the training
    split's token frequencies, ``meta.json``'s ``unigram_val_loss``), None when the dataset has none.

    A model whose final loss does not beat it has learned no more than token frequencies."""
    data_dir = (config.get("data") or {}).get("data_dir")
    if not data_dir:
        return None
    from lit_ffn.data import format as data_format

    try:
        meta = data_format.read_meta(str(data_dir))
    except UserError:
        return None
    reader = getattr(data_format, "unigram_reference", None)  # lit_ffn.data.format (issue 22), when present
    value = reader(meta) if callable(reader) else meta.get("unigram_val_loss")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def study_reference(runs: dict[Pair, RunResult]) -> float | None:
    """The unigram reference of a set of runs (one dataset; the first config that names one)."""
    seen: set[str] = set()
    for run in runs.values():
        data_dir = str((run.config.get("data") or {}).get("data_dir", ""))
        if run.config and data_dir not in seen:
            seen.add(data_dir)
            value = unigram_reference(run.config)
            if value is not None:
                return value
    return None


#: The name older callers use.
_tokens_per_step = tokens_per_step

__all__ = ["RunResult", "read_run", "read_runs", "study_reference", "tokens_per_second", "tokens_per_step",
           "unigram_reference"]  # fmt: skip
