"""Reading a run's TensorBoard event files: the one reader behind the report, the plots and the tools."""

from __future__ import annotations

from pathlib import Path

from lit_ffn.errors import UserError

PathLike = str | Path
#: ``[(step, value), …]`` sorted by step.
Series = list[tuple[int, float]]


def _scalar_events(run_dir: PathLike) -> dict[str, dict[int, tuple[float, float]]]:
    """``{tag: {step: (value, wall_time)}}`` over every events file of the directory (TensorBoard's
    ``EventAccumulator``, nothing dropped); a step written twice (a resumed run) keeps its last write."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not any(run_dir.glob("events.out.tfevents.*")):
        raise UserError(f"{run_dir} is not a run directory (no events.out.tfevents.* files in it)")
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: {event.step: (float(event.value), float(event.wall_time)) for event in events.Scalars(tag)}
        for tag in events.Tags()["scalars"]
    }


def read_scalars(run_dir: PathLike) -> dict[str, Series]:
    """All scalar series of a run: ``{tag: [(step, value), …]}`` sorted by step."""
    return {
        tag: sorted((step, value) for step, (value, _) in by_step.items())
        for tag, by_step in _scalar_events(run_dir).items()
    }


def wall_times(run_dir: PathLike, tag: str) -> list[tuple[int, float]]:
    """``[(step, wall_time), …]`` of one scalar of a run (``[]`` when the run has no such tag)."""
    try:
        by_step = _scalar_events(run_dir).get(tag, {})
    except UserError:
        return []
    return sorted((step, wall) for step, (_, wall) in by_step.items())


__all__ = ["PathLike", "Series", "read_scalars", "wall_times"]
