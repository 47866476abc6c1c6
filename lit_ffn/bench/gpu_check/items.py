"""The items of a check: their results, the context they share, and the runner that never lets one
item's failure stop the others.

An item is a function ``(Context, keys) -> Result | list[Result]`` (:func:`single` adapts ``(Context) -> Result``).  It raises :class:`Skip` when it cannot run here (no
CUDA, no time left); any other exception becomes a FAIL whose summary is the exception's first line
(the traceback goes to the log).  Each result holds one summary line, Markdown details and the raw
numbers (``data``, for the JSON file).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_ffn.bench.gpu_check.plan import PAPER_CONFIG, Plan, write_shape_config
from lit_ffn.errors import first_line

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


class Skip(Exception):
    """This item cannot run here; the message says why."""


@dataclass
class Result:
    key: str
    title: str
    status: str  # PASS, FAIL or SKIP
    summary: str  # one line
    details: list[str] = field(default_factory=list)  # Markdown lines
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Context:
    """What the items share: the plan, the scratch directory, the configs, the time budget and
    the decisions earlier items made (``sdpa_gqa``: the SDPA item's choice, used by every later model)."""

    plan: Plan
    work_dir: Path
    data_dir: Path
    shape_config: Path
    compile_backend: str = "inductor"
    sdpa_force_math: bool = False
    sdpa_gqa: str = "native"
    matmul_flops: float | None = None  # the device's measured dense-matmul rate in the compute dtype
    deadline: float = float("inf")  # time.monotonic() after which no item starts
    #: when the running item should be done: the deadline less the later items' shares (set by the CLI)
    item_deadline: float = float("inf")
    log: Callable[[str], None] = print
    #: the combined log of the fits' processes (``--out-dir``), or None
    combined_log: Path | None = None
    _log_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def configs(self) -> list[str]:
        """``--config`` files of every model: the paper config, then the mode's changes."""
        return [str(PAPER_CONFIG), str(self.shape_config)]

    def set_sdpa_gqa(self, mode: str) -> None:
        """Build every later model with ``model.sdpa_gqa=mode`` (the SDPA item's fix)."""
        self.sdpa_gqa = mode
        write_shape_config(self.plan, self.shape_config, mode)

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def append_log(self, title: str, text: str) -> None:
        """Append ``text`` under a ``==== title`` line to the combined log (threads may call at once)."""
        if self.combined_log is None:
            return
        with self._log_lock, open(self.combined_log, "a") as f:
            f.write(f"==== {title}\n{text.rstrip()}\n\n")


@dataclass(frozen=True)
class Item:
    """One item of the check, or a group run together (the fits: ``keys`` are their result keys)."""

    keys: tuple[str, ...]
    title: str
    run: Callable[[Context, list[str]], Result | list[Result]]
    #: the least time (s) to leave for it at the GPU shape: with less of the budget left it is skipped
    min_seconds_gpu: float = 0.0


def single(fn: Callable[[Context], Result]) -> Callable[[Context, list[str]], Result]:
    """An item function of one result, in the form :class:`Item` calls."""
    return lambda ctx, keys: fn(ctx)


def run_item(item: Item, ctx: Context, keys: list[str]) -> list[Result]:
    """Run ``item`` for ``keys``; a :class:`Skip` or any exception becomes its results instead of ending the check."""
    start = time.monotonic()
    needed = item.min_seconds_gpu if ctx.plan.mode == "gpu" else 0.0
    left = ctx.seconds_left()
    if left < needed:
        summary = f"not started: {max(left, 0):.0f} s of --budget-s left, it needs about {needed:.0f} s"
        return [Result(key, item.title, SKIP, summary) for key in keys]
    ctx.log(f"gpu_check: {', '.join(keys)}: {item.title}")
    try:
        out = item.run(ctx, keys)
        results = out if isinstance(out, list) else [out]
    except Skip as skip:
        results = [Result(key, item.title, SKIP, str(skip)) for key in keys]
    except (Exception, SystemExit) as err:  # noqa: BLE001 - one item's failure is its FAIL line; the others still run
        ctx.log(traceback.format_exc())
        ctx.append_log(f"{', '.join(keys)}: traceback", traceback.format_exc())
        results = [Result(key, item.title, FAIL, f"{type(err).__name__}: {first_line(err)}") for key in keys]
    if len(results) == 1:  # a group's results time themselves
        results[0].seconds = time.monotonic() - start
    for result in results:
        ctx.log(f"gpu_check: {result.status} {result.key}: {result.summary} ({result.seconds:.0f} s)")
    return results


__all__ = ["FAIL", "PASS", "SKIP", "Context", "Item", "Result", "Skip", "run_item", "single"]
