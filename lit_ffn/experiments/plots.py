"""Plots made from runs' TensorBoard event files (PNG, matplotlib's Agg backend, no display needed).

A *run directory* is a TensorBoardLogger version directory,
``<save_dir>/<experiment>/<ffn variant>/seed_<seed>/``, holding one or more
``events.out.tfevents.*`` files (a resumed run adds one per resume).

* :func:`read_scalars` — ``{tag: [(step, value), …]}`` of one run.
* :func:`gate_profile` — the gate statistics of one run per layer at one step
  (default: the last logged one).
* :func:`plot_gate_profile` — ``gates.png``: gate statistics per layer at the
  end of training, one column of panels per run (variant).
* :func:`plot_gate_series` — gate statistics over training, one line per layer.
* :func:`plot_curves` — one scalar (e.g. ``val/loss``) over steps, the mean of
  each group of runs (seeds) with its min–max band.

Command line (``python -m lit_ffn.experiments.plots …`` works too)::

    lit_ffn plots profile --out gates.png LABEL=RUN_DIR …
    lit_ffn plots series --out alpha.png --stats alpha_std,s,b LABEL=RUN_DIR …
    lit_ffn plots curves --out curves.png --tag val/loss LABEL=RUN_DIR[,RUN_DIR…] …

Gate tags are those of :class:`lit_ffn.callbacks.GateStatistics`:
``gates/layer_XX/<name>_<stat>`` (``stat`` in :data:`lit_ffn.callbacks.gate_stats.STATS`)
and ``gates/layer_XX/<scalar>``.  Nothing here knows which FFN recorded which
name: panels show whatever the runs contain.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from lit_ffn.callbacks.gate_stats import STATS
from lit_ffn.errors import UserError, run_tool
from lit_ffn.experiments.events import PathLike, Series, read_scalars

#: The statistics :func:`plot_gate_profile` shows by default, one row each.
PROFILE_STATS = ("mean", "std", "frac_near_zero", "frac_negative", "max_abs")
_GATE_TAG = re.compile(r"^(?:z_)?gates/layer_(\d+)/(.+)$")  # z_gates/ since issue 24, gates/ before


# ------------------------------------------------------------------ reading
def split_gate_tag(tag: str) -> tuple[int, str, str | None] | None:
    """``gates/layer_03/alpha_std`` → ``(3, "alpha", "std")``; ``gates/layer_03/s`` → ``(3, "s", None)``; else None."""
    match = _GATE_TAG.match(tag)
    if match is None:
        return None
    layer, rest = int(match.group(1)), match.group(2)
    for stat in sorted(STATS, key=len, reverse=True):  # "max_abs" before "max"
        if rest.endswith("_" + stat) and len(rest) > len(stat) + 1:
            return layer, rest[: -len(stat) - 1], stat
    return layer, rest, None


def gate_profile(
    run_dir_or_scalars: PathLike | Mapping[str, Series], step: int | None = None
) -> dict[str, list[float]]:
    """Gate statistics per layer at ``step`` (default: the last step with gate tags).

    Returns ``{"<name>_<stat>" or "<scalar>": [layer 0 value, layer 1 value, …]}``
    (NaN where a layer lacks the tag).
    """
    scalars = run_dir_or_scalars if isinstance(run_dir_or_scalars, Mapping) else read_scalars(run_dir_or_scalars)
    gate_tags = {tag: split_gate_tag(tag) for tag in scalars}
    gate_tags = {tag: parts for tag, parts in gate_tags.items() if parts is not None}
    if not gate_tags:
        return {}
    if step is None:
        step = max(s for tag in gate_tags for s, _ in scalars[tag])
    n_layers = 1 + max(layer for layer, _, _ in gate_tags.values())
    profile: dict[str, list[float]] = {}
    for tag, (layer, name, stat) in gate_tags.items():
        key = name if stat is None else f"{name}_{stat}"
        values = dict(scalars[tag])
        profile.setdefault(key, [math.nan] * n_layers)[layer] = values.get(step, math.nan)
    return profile


def _gate_names(profile: Mapping[str, list[float]]) -> tuple[list[str], list[str]]:
    """(recorded tensor names, learned scalar names) present in a profile, in first-seen order."""
    names, scalars = [], []
    for key in profile:
        for stat in sorted(STATS, key=len, reverse=True):
            if key.endswith("_" + stat):
                name = key[: -len(stat) - 1]
                if name not in names:
                    names.append(name)
                break
        else:
            scalars.append(key)
    return names, scalars


# ------------------------------------------------------------------ drawing
def _figure(rows: int, cols: int, width: float = 3.6, height: float = 2.5):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _save(fig, out_png: PathLike) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    return out_png


def plot_gate_profile(
    runs: Mapping[str, PathLike],
    out_png: PathLike,
    stats: Sequence[str] = PROFILE_STATS,
    step: int | None = None,
    title: str | None = None,
) -> Path:
    """Gate statistics per layer at the end of training: a column per run, a row per statistic.

    In each panel x is the layer and there is one line per recorded tensor
    (``gate``, ``alpha``, ``hidden``…); a last row shows learned scalars
    (DynamicGEGLU's ``s``, ``b``) when any run has them.  Rows share their y
    axis so that variants compare at a glance.  ``step``: the step to show
    (default: each run's last logged gate step).
    """
    if not runs:
        raise UserError("plot_gate_profile needs at least one run")
    profiles = {label: gate_profile(run_dir, step) for label, run_dir in runs.items()}
    for label, profile in profiles.items():
        if not profile:
            raise UserError(f"run {label!r} ({runs[label]}) has no gates/ tags: was GateStatistics enabled?")
    has_scalars = any(_gate_names(p)[1] for p in profiles.values())
    rows = list(stats) + (["learned scalars"] if has_scalars else [])
    fig, axes = _figure(len(rows), len(profiles))
    for col, (label, profile) in enumerate(profiles.items()):
        names, scalar_names = _gate_names(profile)
        for row, stat in enumerate(rows):
            ax = axes[row][col]
            keys = scalar_names if stat == "learned scalars" else [f"{n}_{stat}" for n in names]
            for key in keys:
                if key in profile:
                    values = profile[key]
                    ax.plot(range(len(values)), values, marker="o", label=key)
            _label_panel(ax, row, col, len(rows), label, stat, "layer")
    return _finish_grid(fig, axes, title, out_png)


def plot_gate_series(
    runs: Mapping[str, PathLike],
    stats: Sequence[str],
    out_png: PathLike,
    title: str | None = None,
) -> Path:
    """Gate statistics over training: a row per ``stats`` entry, a column per run, a line per layer.

    ``stats`` are tag suffixes after ``gates/layer_XX/``, e.g.
    ``["alpha_std", "s", "b", "gate_frac_near_zero"]``; a run without one
    shows "n/a".
    """
    if not runs or not stats:
        raise UserError("plot_gate_series needs at least one run and one statistic")
    data = {label: read_scalars(run_dir) for label, run_dir in runs.items()}
    fig, axes = _figure(len(stats), len(data))
    for col, (label, scalars) in enumerate(data.items()):
        for row, stat in enumerate(stats):
            ax = axes[row][col]
            for tag in sorted(scalars):
                parts = split_gate_tag(tag)
                if parts is None or (parts[1] if parts[2] is None else f"{parts[1]}_{parts[2]}") != stat:
                    continue
                steps, values = zip(*scalars[tag])
                ax.plot(steps, values, marker=".", label=f"layer {parts[0]}")
            _label_panel(ax, row, col, len(stats), label, stat, "step")
    return _finish_grid(fig, axes, title, out_png)


def mean_band(
    series: Sequence[Series], band: str = "minmax"
) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps, and the mean and band over ``series`` at each step (over the runs that have it): the band
    is min–max (``band="minmax"``) or mean ± sample std (``band="std"``; 0 where one run has the step)."""
    by_step: dict[int, list[float]] = {}
    for points in series:
        for step, value in points:
            by_step.setdefault(step, []).append(value)
    steps = sorted(by_step)
    mean = [sum(by_step[s]) / len(by_step[s]) for s in steps]
    if band == "std":
        std = [statistics.stdev(by_step[s]) if len(by_step[s]) > 1 else 0.0 for s in steps]
        return steps, mean, [m - d for m, d in zip(mean, std)], [m + d for m, d in zip(mean, std)]
    return steps, mean, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps]


def plot_series_groups(
    groups: Mapping[str, Sequence[Series]],
    out_png: PathLike,
    ylabel: str,
    title: str | None = None,
    band: str = "minmax",
    zoom_second_half: bool = False,
) -> Path:
    """Curves over steps: per group (e.g. one FFN's seeds) the mean with a shaded band (:func:`mean_band`);
    the legend gives the number of runs and the mean final value.  ``zoom_second_half`` adds a right
    panel on the second half of training, where variants separate (``lit_ffn ablate``'s curves.png)."""
    from matplotlib import colormaps

    groups = {label: series for label, series in groups.items() if series}
    if not groups:
        raise UserError("no curves to plot: every group is empty")
    fig, axes = _figure(
        1, 2 if zoom_second_half else 1, width=6.5 if zoom_second_half else 6.0, height=5.0 if zoom_second_half else 4.0
    )
    axes = list(axes[0])
    colors = colormaps["tab20" if len(groups) > 10 else "tab10"]
    max_step, zoom = 0, []
    for i, (label, series) in enumerate(groups.items()):
        steps, mean, lo, hi = mean_band(series, band)
        max_step = max(max_step, steps[-1])
        for ax in axes:
            ax.plot(
                steps,
                mean,
                color=colors(i),
                marker="." if zoom_second_half else None,
                label=f"{label} (n={len(series)}, final {mean[-1]:.4f})",
            )
            if len(series) > 1:
                ax.fill_between(steps, lo, hi, color=colors(i), alpha=0.2, linewidth=0)
        zoom += [(lo_, hi_) for step, lo_, hi_ in zip(steps, lo, hi) if step >= max_step / 2]
    if zoom_second_half and max_step > 0:
        axes[1].set_xlim(max_step / 2, max_step * 1.02)
        if zoom:
            low, high = min(z[0] for z in zoom), max(z[1] for z in zoom)
            pad = 0.05 * (high - low) or 0.01
            axes[1].set_ylim(low - pad, high + pad)
        axes[1].set_title("second half of training")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        axes[0].set_title(title)
    return _save(fig, out_png)


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Centred running mean over ``window`` points (shrinking at the ends: no padding invented)."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if window <= 1 or x.size < 3:
        return x.tolist()
    half = window // 2
    cumulative = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(x.size)
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, x.size)
    return ((cumulative[hi] - cumulative[lo]) / (hi - lo)).tolist()


def plot_training_curves(
    groups: Mapping[str, Sequence[tuple[Series, Series]]], out_png: PathLike, title: str | None = None
) -> Path:
    """``lit_ffn ablate``'s curves.png: per group (one variant's seeds, each run a ``(train/loss, val/loss)``
    pair of series) the **training loss**, smoothed (a centred running mean over ~5% of its logged points),
    averaged over runs on a common step grid with a ±1 std band, and the **validation points as markers**
    (mean ± std over runs at each validation step, no line through them).  The right panel zooms on the
    second half of training, where variants separate."""
    import numpy as np
    from matplotlib import colormaps

    groups = {label: runs for label, runs in groups.items() if runs}
    if not groups:
        raise UserError("no curves to plot: every group is empty")
    fig, axes = _figure(1, 2, width=6.5, height=5.0)
    axes = list(axes[0])
    colors = colormaps["tab20" if len(groups) > 10 else "tab10"]
    max_step = max((s for runs in groups.values() for t, v in runs for s, _ in (*t, *v)), default=0)
    zoom: list[float] = []
    for i, (label, runs) in enumerate(groups.items()):
        color = colors(i)
        trains = [t for t, _ in runs if len(t) > 1]
        if trains:
            end = min(t[-1][0] for t in trains)
            grid = np.linspace(max(t[0][0] for t in trains), end, 200)
            curves = []
            for t in trains:
                steps, values = zip(*t)
                window = max(1, len(values) // 20)
                curves.append(np.interp(grid, steps, smooth(values, window)))
            stack = np.array(curves)
            mean = stack.mean(axis=0)
            std = stack.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
            for ax in axes:
                ax.plot(grid, mean, color=color, label=f"{label} train (n={len(curves)})")
                ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            zoom += list((mean - std)[grid >= max_step / 2]) + list((mean + std)[grid >= max_step / 2])
        vals = [v for _, v in runs if v]
        if vals:
            steps, mean_v, lo, hi = mean_band(vals, "std")
            err = [np.subtract(mean_v, lo), np.subtract(hi, mean_v)]
            for ax in axes:
                ax.errorbar(steps, mean_v, yerr=err, fmt="o", color=color, markeredgecolor="black", capsize=3,
                            linestyle="none", label=f"{label} val (final {mean_v[-1]:.4f})")  # fmt: skip
            zoom += [y for s, a, b in zip(steps, lo, hi) if s >= max_step / 2 for y in (a, b)]
    if max_step > 0:
        axes[1].set_xlim(max_step / 2, max_step * 1.02)
        if zoom:
            low, high = min(zoom), max(zoom)
            pad = 0.05 * (high - low) or 0.01
            axes[1].set_ylim(low - pad, high + pad)
        axes[1].set_title("second half of training")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if title:
        axes[0].set_title(title, fontsize=9)
    return _save(fig, out_png)


def plot_curves(
    groups: Mapping[str, Sequence[PathLike]], tag: str, out_png: PathLike, title: str | None = None
) -> Path:
    """``tag`` over steps of run directories: for each group (e.g. one FFN's seeds) the mean, shaded
    from min to max (:func:`plot_series_groups`)."""
    if not groups:
        raise UserError("plot_curves needs at least one group of runs")
    series_groups: dict[str, list[Series]] = {}
    for label, run_dirs in groups.items():
        series = []
        for run_dir in run_dirs:
            scalars = read_scalars(run_dir)
            if tag not in scalars:
                raise UserError(f"run {run_dir} has no scalar {tag!r} (it has e.g. {', '.join(sorted(scalars)[:5])})")
            series.append(scalars[tag])
        if not series:
            raise UserError(f"group {label!r} has no runs")
        series_groups[label] = series
    return plot_series_groups(series_groups, out_png, ylabel=tag, title=title)


def _label_panel(ax, row: int, col: int, n_rows: int, column_title: str, row_label: str, x_label: str) -> None:
    """A grid panel: the run's name above the top row, the statistic left of the first column, the
    x label under the bottom row; then :func:`_finish_panel`."""
    if row == 0:
        ax.set_title(column_title)
    if col == 0:
        ax.set_ylabel(row_label)
    if row == n_rows - 1:
        ax.set_xlabel(x_label)
    _finish_panel(ax)


def _finish_grid(fig, axes, title: str | None, out_png: PathLike) -> Path:
    """A shared y range per row of panels, the figure's title, and the PNG."""
    for row_axes in axes:
        _share_y(row_axes)
    if title:
        fig.suptitle(title)
    return _save(fig, out_png)


def _finish_panel(ax) -> None:
    """Legend and integer x ticks for a panel with lines; a grey "n/a" for an empty one."""
    if ax.lines:
        ax.legend(fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes, color="gray")


def _share_y(row_axes) -> None:
    """Give the panels of one row a common y range (ignoring empty ones)."""
    limits = [ax.get_ylim() for ax in row_axes if ax.lines]
    if len(limits) > 1:
        lo, hi = min(low for low, _ in limits), max(high for _, high in limits)
        for ax in row_axes:
            if ax.lines:
                ax.set_ylim(lo, hi)


# ------------------------------------------------------------ command line
def _labelled(items: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        label, sep, paths = item.partition("=")
        if not sep:
            label, paths = Path(item).as_posix(), item
        out[label] = [p for p in paths.split(",") if p]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lit_ffn plots", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    profile = sub.add_parser("profile", help="gate statistics per layer at the end of training")
    profile.add_argument("runs", nargs="+", help="LABEL=RUN_DIR (or RUN_DIR)")
    profile.add_argument("--out", required=True)
    profile.add_argument("--stats", default=",".join(PROFILE_STATS), help="comma-separated (default: %(default)s)")
    series = sub.add_parser("series", help="gate statistics over training, per layer")
    series.add_argument("runs", nargs="+", help="LABEL=RUN_DIR (or RUN_DIR)")
    series.add_argument("--out", required=True)
    series.add_argument("--stats", required=True, help="comma-separated, e.g. alpha_std,s,b,gate_frac_near_zero")
    curves = sub.add_parser("curves", help="a scalar over steps, mean and min-max over each group's runs")
    curves.add_argument("groups", nargs="+", help="LABEL=RUN_DIR[,RUN_DIR…]")
    curves.add_argument("--out", required=True)
    curves.add_argument("--tag", default="val/loss")

    def body() -> None:
        args = parser.parse_args(argv)
        if args.kind == "curves":
            out = plot_curves(_labelled(args.groups), args.tag, args.out)
        else:
            runs = {label: paths[0] for label, paths in _labelled(args.runs).items()}
            stats = [s for s in args.stats.split(",") if s]
            out = (
                plot_gate_profile(runs, args.out, stats)
                if args.kind == "profile"
                else plot_gate_series(runs, stats, args.out)
            )
        print(out)

    return run_tool("lit_ffn plots", body)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
