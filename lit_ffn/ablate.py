"""``lit_ffn ablate``: a multi-seed FFN ablation study, its runs and its report.

    lit_ffn ablate --config BASE.yaml --ffn swiglu dynamic_geglu iso_gmlp --seeds 0 1 2 3 4 --out DIR [fit overrides…]
    lit_ffn ablate … --print-commands            # the fit command each pair needs now
    lit_ffn ablate … --slurm-array job.sh        # a SLURM array script, one task per pair
    lit_ffn ablate --report DIR                  # rebuild the report from the runs on disk

A study is every (variant, seed) pair.  ``--ffn`` entries are names of
``configs/ffn/<name>.yaml`` (the keys of :data:`lit_ffn.ffn.BUILTIN_FFNS`) or
paths of YAML files with a ``model.ffn`` section.  Pair ``(v, s)`` is the fit

    lit_ffn fit --config BASE.yaml --config configs/ffn/<v>.yaml [overrides…] --seed_everything=<s>
        --trainer.logger.init_args.save_dir=DIR/runs --trainer.logger.init_args.name=<experiment>
        --trainer.logger.init_args.version=<v>/seed_<s>

so every run has its own directory ``DIR/runs/<experiment>/<v>/seed_<s>/``
(``config.yaml``, TensorBoard events, ``checkpoints/last.ckpt``), seed and
saved config.  Pairs run one after another, seed-major (every variant with
the first seed, then the second seed, …: a study stopped early is still
balanced), each in its own ``python -m lit_ffn.cli`` subprocess so that a
crash ends only that run; its output goes to ``DIR/logs/<v>/seed_<s>.log``.

Resumable.  A pair whose fit exited 0 having reached ``trainer.max_steps``
gets a ``DONE`` file in its run directory and is skipped from then on; a pair
with a ``last.ckpt`` but no ``DONE`` resumes with ``lit_ffn fit --config
<run>/config.yaml --ckpt_path last``; a pair with neither starts (again) from
scratch.  Rerunning the same command after a crash, a Ctrl-C or a preempted
SLURM task therefore finishes the study without redoing work.
``DIR/study.json`` records the study; a later command on the same ``DIR`` must
use the same base configs, overrides and experiment, and may add variants or
seeds.

Report.  ``DIR/results.md`` / ``results.csv``: per variant the final
validation loss (mean ± sample std over seeds, n), its difference to the
baseline with a 95% Welch CI, Welch's p-value and its Holm-adjusted value
over all comparisons (:mod:`lit_ffn.stats`), a verdict in words, parameter
counts (:mod:`lit_ffn.params`) and tokens/s.  ``DIR/curves.png``: validation
loss vs step, mean ± std band over seeds per variant.  ``DIR/gates.png``: the
gate statistics of every layer at the end of training, one panel per variant.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import yaml

from lit_ffn.errors import UserError
from lit_ffn.params import ffn_config_path
from lit_ffn.plots import read_scalars

#: Marker written into a run directory once its fit finished.
DONE = "DONE"
STUDY_FILE = "study.json"
#: ``launch(fit_argv, log_path) -> exit code``: how a pair is run.
Launcher = Callable[[list[str], Path], int]

#: Overrides the runner sets itself (the run's identity): refused from the user.
_RESERVED = re.compile(r"^--(seed_everything|ckpt_path|trainer\.logger(\.init_args)?\.(save_dir|name|version))(=|$)")


# ================================================================== the study
@dataclass(frozen=True)
class Pair:
    """One run of the study."""

    variant: str
    seed: int


@dataclass
class Study:
    """What ``DIR/study.json`` records: enough to relaunch or report every pair."""

    out: Path
    configs: list[str]
    variants: dict[str, str]  # name -> FFN YAML path (as given / resolved)
    seeds: list[int]
    overrides: list[str] = field(default_factory=list)
    experiment: str = "ablation"
    baseline: Optional[str] = None

    # ----------------------------------------------------------- layout
    @property
    def runs_dir(self) -> Path:
        return self.out / "runs"

    def run_dir(self, pair: Pair) -> Path:
        return self.runs_dir / self.experiment / pair.variant / f"seed_{pair.seed}"

    def log_path(self, pair: Pair) -> Path:
        return self.out / "logs" / pair.variant / f"seed_{pair.seed}.log"

    def pairs(self) -> list[Pair]:
        """Seed-major: every variant with the first seed, then with the second, …"""
        return [Pair(variant, seed) for seed in self.seeds for variant in self.variants]

    @property
    def baseline_name(self) -> str:
        return self.baseline or next(iter(self.variants))

    # ----------------------------------------------------------- commands
    def fresh_args(self, pair: Pair) -> list[str]:
        """``lit_ffn fit`` arguments that start ``pair`` from scratch."""
        args = ["fit"]
        for config in self.configs:
            args += ["--config", config]
        args += ["--config", self.variants[pair.variant], *self.overrides]
        return args + [
            f"--seed_everything={pair.seed}",
            f"--trainer.logger.init_args.save_dir={self.runs_dir}",
            f"--trainer.logger.init_args.name={self.experiment}",
            f"--trainer.logger.init_args.version={pair.variant}/seed_{pair.seed}",
        ]

    def resume_args(self, pair: Pair) -> list[str]:
        """``lit_ffn fit`` arguments that continue ``pair`` from its ``last.ckpt``."""
        return ["fit", "--config", str(self.run_dir(pair) / "config.yaml"), "--ckpt_path", "last"]

    def state(self, pair: Pair) -> str:
        """``"done"``, ``"resume"`` (has a checkpoint) or ``"new"``."""
        run_dir = self.run_dir(pair)
        if (run_dir / DONE).exists():
            return "done"
        if (run_dir / "config.yaml").exists() and (run_dir / "checkpoints" / "last.ckpt").exists():
            return "resume"
        return "new"

    def next_args(self, pair: Pair) -> Optional[list[str]]:
        """The fit arguments ``pair`` needs now (None: it is done)."""
        state = self.state(pair)
        return None if state == "done" else self.resume_args(pair) if state == "resume" else self.fresh_args(pair)

    def command(self) -> str:
        """The ``lit_ffn ablate`` command that runs (or resumes) this whole study."""
        args = ["lit_ffn", "ablate"]
        for config in self.configs:
            args += ["--config", config]
        builtin = lambda name, path: Path(path).as_posix().endswith(f"configs/ffn/{name}.yaml")  # noqa: E731
        args += ["--ffn", *(name if builtin(name, path) else path for name, path in self.variants.items())]
        args += ["--seeds", *map(str, self.seeds), "--out", str(self.out)]
        if self.experiment != Path(self.configs[0]).stem:
            args += ["--experiment", self.experiment]
        if self.baseline:
            args += ["--baseline", self.baseline]
        return shlex.join(args + self.overrides)

    # ----------------------------------------------------------- persistence
    def to_json(self) -> dict[str, Any]:
        return {
            "configs": self.configs,
            "variants": self.variants,
            "seeds": self.seeds,
            "overrides": self.overrides,
            "experiment": self.experiment,
            "baseline": self.baseline,
        }

    def save(self) -> None:
        """Write ``DIR/study.json`` atomically (SLURM tasks of one study may write it at the same time)."""
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / f".{STUDY_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, self.out / STUDY_FILE)

    @classmethod
    def load(cls, out: Path) -> "Study":
        path = Path(out) / STUDY_FILE
        if not path.is_file():
            raise UserError(f"{out} holds no {STUDY_FILE}: it is not a study made by lit_ffn ablate")
        data = json.loads(path.read_text())
        return cls(out=Path(out), **data)

    def merge_saved(self) -> "Study":
        """Check this study against ``DIR/study.json`` (if any) and merge its variants and seeds."""
        path = self.out / STUDY_FILE
        if not path.is_file():
            return self
        saved = Study.load(self.out)
        for key in ("configs", "overrides", "experiment"):
            if getattr(saved, key) != getattr(self, key):
                raise UserError(
                    f"{self.out} holds a study with {key}={getattr(saved, key)!r}, not {getattr(self, key)!r}: "
                    "rerun with the same base configs, overrides and experiment (variants and seeds may be added), "
                    "or use another --out"
                )
        for name, path_ in saved.variants.items():
            if name in self.variants and self.variants[name] != path_:
                raise UserError(f"variant '{name}' was {path_} in {self.out}, now {self.variants[name]}")
        variants = {**saved.variants, **self.variants}
        seeds = saved.seeds + [s for s in self.seeds if s not in saved.seeds]
        return Study(
            self.out, self.configs, variants, seeds, self.overrides, self.experiment, self.baseline or saved.baseline
        )


def make_study(
    out: str | Path,
    configs: Sequence[str],
    ffns: Sequence[str],
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
    experiment: Optional[str] = None,
    baseline: Optional[str] = None,
) -> Study:
    """Validate the user's request and merge it with the study already in ``out``."""
    if not configs:
        raise UserError("--config BASE.yaml is required (the model, data and trainer of every run)")
    for config in configs:
        if not Path(config).is_file():
            raise UserError(f"base config {config} does not exist")
    if not ffns:
        raise UserError("--ffn needs at least one variant (e.g. --ffn swiglu geglu)")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds has duplicates: {' '.join(map(str, seeds))}")
    variants: dict[str, str] = {}
    for spec in ffns:
        name, path = ffn_config_path(spec)
        if name in variants:
            raise UserError(f"variant name '{name}' given twice in --ffn (names are the YAML files' stems)")
        variants[name] = _display_path(path)
    for override in overrides:
        if _RESERVED.match(override):
            raise UserError(
                f"{override.split('=')[0]} is set by lit_ffn ablate for every run: use --seeds, --out and --experiment"
            )
        if re.match(r"^-[A-Za-z]", override):
            raise UserError(f"unknown option {override}: fit overrides are --key=value (see lit_ffn fit --help)")
    if baseline is not None and baseline not in variants and not (Path(out) / STUDY_FILE).exists():
        raise UserError(f"--baseline {baseline} is not among --ffn ({', '.join(variants)})")
    study = Study(
        out=Path(out),
        configs=[str(c) for c in configs],
        variants=variants,
        seeds=[int(s) for s in seeds],
        overrides=list(overrides),
        experiment=experiment or Path(configs[0]).stem,
        baseline=baseline,
    ).merge_saved()
    if study.baseline is not None and study.baseline not in study.variants:
        raise UserError(f"--baseline {study.baseline} is not a variant of the study ({', '.join(study.variants)})")
    return study


def _display_path(path: Path) -> str:
    """``path`` relative to the working directory when inside it (portable commands), else absolute."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def check_configs(study: Study) -> dict[str, Any]:
    """Parse every variant's fit arguments as ``lit_ffn fit`` would (nothing is built),
    so that a config mistake is one error now rather than a failed run per pair.
    Returns ``{variant: parsed fit config}``."""
    from lit_ffn.params import FitConfigParser

    parser = FitConfigParser()
    base = parser.parse([arg for config in study.configs for arg in ("--config", config)] + study.overrides)
    logger = base.trainer.get("logger")
    class_path = str(logger.get("class_path", "")) if hasattr(logger, "get") else ""
    if not class_path.endswith("TensorBoardLogger"):
        raise UserError(
            f"trainer.logger is {class_path or logger!r}: lit_ffn ablate needs the TensorBoardLogger "
            "(its events make the report); remove that logger setting from the base config or overrides"
        )
    return {variant: parser.parse(study.fresh_args(Pair(variant, study.seeds[0]))[1:]) for variant in study.variants}


# ================================================================== running
def subprocess_launcher(args: list[str], log_path: Path) -> int:
    """Run ``python -m lit_ffn.cli ARGS`` in a child process, output appended to ``log_path``.

    The default: a crash (exception, OOM kill, segfault) ends only this run."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "a") as log:
        log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} lit_ffn {shlex.join(args)}\n")
        log.flush()
        return subprocess.run(
            [sys.executable, "-m", "lit_ffn.cli", *args], stdout=log, stderr=subprocess.STDOUT, env=env, check=False
        ).returncode


def in_process_launcher(args: list[str], log_path: Path) -> int:
    """Run the fit inside this process (tests, debugging): faster to start, but a
    hard crash takes the whole study down.  Exceptions become exit code 1."""
    import traceback

    from lit_ffn.cli import main as cli_main

    try:
        return cli_main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except Exception:  # noqa: BLE001 - a failed run must not end the study
        traceback.print_exc()
        return 1


def _checkpoint_step(path: Path) -> Optional[int]:
    """``global_step`` of a Lightning checkpoint (memory-mapped: tensors are not read)."""
    import torch

    try:
        return int(torch.load(path, map_location="cpu", mmap=True, weights_only=False)["global_step"])
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is "not finished"
        return None


def _finished(run_dir: Path) -> tuple[bool, str]:
    """Whether a fit that exited 0 really reached ``trainer.max_steps`` (not e.g. an interrupt)."""
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        return False, f"no {config_path}"
    max_steps = int((yaml.safe_load(config_path.read_text()).get("trainer") or {}).get("max_steps") or -1)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if max_steps <= 0 or not ckpt.exists():
        return True, "finished"
    step = _checkpoint_step(ckpt)
    if step is None or step < max_steps:
        return False, f"stopped at step {step} < max_steps {max_steps}"
    return True, f"step {step}"


def run_pair(study: Study, pair: Pair, launch: Launcher = subprocess_launcher, clean_checkpoints: bool = False) -> str:
    """Bring one pair to DONE (skip, resume or start); returns its final state
    (``"done"``, ``"skipped"`` or ``"failed: …"``)."""
    state = study.state(pair)
    if state == "done":
        return "skipped"
    run_dir = study.run_dir(pair)
    if state == "new" and run_dir.exists():
        # A previous attempt died before its first checkpoint: its events would
        # duplicate steps, so start from an empty directory (inside DIR/runs only).
        shutil.rmtree(run_dir)
    args = study.fresh_args(pair) if state == "new" else study.resume_args(pair)
    start = time.time()
    code = launch(args, study.log_path(pair))
    wall = time.time() - start
    if code != 0:
        return f"failed: exit code {code}"
    ok, detail = _finished(run_dir)
    if not ok:
        return f"failed: {detail}"
    (run_dir / DONE).write_text(
        json.dumps(
            {
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                "wall_s": round(wall, 1),
                "resumed": state == "resume",
                "detail": detail,
                "command": shlex.join(["lit_ffn", *args]),
            },
            indent=2,
        )
        + "\n"
    )
    if clean_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return "done"


def run_study(
    study: Study,
    launch: Launcher = subprocess_launcher,
    pairs: Optional[Iterable[Pair]] = None,
    clean_checkpoints: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[Pair, str]:
    """Run the study's pairs (all by default) one after another; returns each pair's outcome."""
    study.save()
    pairs = list(study.pairs() if pairs is None else pairs)
    outcomes: dict[Pair, str] = {}
    for i, pair in enumerate(pairs, 1):
        label = f"[{i}/{len(pairs)}] {pair.variant} seed {pair.seed}"
        state = study.state(pair)
        if state != "done":
            what = "resuming" if state == "resume" else "starting"
            echo(f"{label}: {what} (log: {study.log_path(pair)})")
        start = time.time()
        outcomes[pair] = outcome = run_pair(study, pair, launch, clean_checkpoints)
        if outcome == "skipped":
            echo(f"{label}: already done, skipped")
        elif outcome == "done":
            echo(f"{label}: done in {time.time() - start:.0f} s")
        else:
            echo(f"{label}: FAILED ({outcome[len('failed: ') :]}); last lines of {study.log_path(pair)}:")
            echo(_tail(study.log_path(pair)))
    return outcomes


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "    (no log)"
    return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])


# ================================================================== cluster
def print_commands(study: Study) -> str:
    """One line per pair: the ``lit_ffn fit`` command it needs now (a comment when done)."""
    lines = []
    for pair in study.pairs():
        args = study.next_args(pair)
        lines.append(f"# {pair.variant} seed {pair.seed}: done" if args is None else shlex.join(["lit_ffn", *args]))
    return "\n".join(lines)


def slurm_script(study: Study, ablate_argv: Sequence[str], sbatch: Sequence[str] = ()) -> str:
    """A SLURM array script: task ``i`` runs pair ``i`` through ``lit_ffn ablate … --task i``,
    so that a requeued or resubmitted task skips, resumes or starts its pair like a local rerun."""
    n = len(study.pairs())
    python = shlex.quote(sys.executable)
    header = [
        "#!/bin/bash",
        f"#SBATCH --job-name={study.experiment}",
        f"#SBATCH --array=0-{n - 1}",
        f"#SBATCH --output={study.out.resolve()}/logs/slurm_%A_%a.out",
        "#SBATCH --ntasks=1",
        *[f"#SBATCH {option}" for option in sbatch],
    ]
    pairs = "\n".join(f"#   task {i}: {p.variant} seed {p.seed}" for i, p in enumerate(study.pairs()))
    return "\n".join(
        [
            *header,
            "#",
            f"# lit_ffn ablation '{study.experiment}': {len(study.variants)} variants x {len(study.seeds)} seeds "
            f"= {n} tasks, one (variant, seed) pair each:",
            pairs,
            "# Submit:  sbatch THIS_FILE   (a task that is resubmitted skips/resumes its pair)",
            f"# Report once all tasks ended:  lit_ffn ablate --report {shlex.quote(str(study.out))}",
            "#   e.g. sbatch --dependency=afterany:<array job id> --wrap "
            f'"{python} -m lit_ffn.cli ablate --report {shlex.quote(str(study.out.resolve()))}"',
            "set -euo pipefail",
            f"cd {shlex.quote(str(Path.cwd().resolve()))}",
            f'{python} -m lit_ffn.cli ablate {shlex.join(ablate_argv)} --task "$SLURM_ARRAY_TASK_ID"',
            "",
        ]
    )


# ================================================================== reading runs
def _wall_times(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """``[(step, wall_time), …]`` of one scalar over every events file of a run (a step
    logged twice, as a resumed run does, keeps its latest).  Hand-written next to
    :func:`lit_ffn.plots.read_scalars` because that reader keeps values, not wall times."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    latest: dict[int, float] = {}
    for events_file in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events_file), size_guidance={"scalars": 0})
        accumulator.Reload()
        if tag in accumulator.Tags().get("scalars", []):
            for event in accumulator.Scalars(tag):
                latest[event.step] = max(event.wall_time, latest.get(event.step, -math.inf))
    return sorted(latest.items())


_THROUGHPUT_TAGS = ("train/tokens_per_sec",)


def _tokens_per_step(config: dict[str, Any]) -> Optional[int]:
    """Tokens per optimizer step from a resolved config (None if the world size is not a plain number)."""
    trainer, data = config.get("trainer") or {}, config.get("data") or {}
    devices = trainer.get("devices", 1)
    devices = len(devices) if isinstance(devices, list) else devices
    if not isinstance(devices, int) or devices < 1:
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


def tokens_per_second(scalars: dict[str, list], config: dict[str, Any], run_dir: Path) -> tuple[Optional[float], str]:
    """Training throughput of a run and where it came from.

    1. a throughput tag (``train/tokens_per_sec`` of lit_ffn's
       ``TokenThroughputMonitor``, else any ``…tokens_per_sec`` or Lightning
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
    per_step = _tokens_per_step(config)
    points = _wall_times(run_dir, "train/loss") if per_step and "train/loss" in scalars else []
    rates = sorted(
        per_step * (s1 - s0) / (w1 - w0) for (s0, w0), (s1, w1) in zip(points, points[1:]) if w1 > w0 and s1 > s0
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
    tokens_per_s: Optional[float] = None
    tokens_per_s_source: str = "n/a"
    has_gates: bool = False  # logged gates/layer_XX/… statistics (lit_ffn.callbacks.GateStatistics)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> Optional[tuple[int, float]]:
        """(step, val/loss) of the last validation."""
        return self.val_curve[-1] if self.val_curve else None


def read_run(study: Study, pair: Pair) -> RunResult:
    run_dir = study.run_dir(pair)
    if not run_dir.exists():
        return RunResult(pair, "missing")
    status = "done" if (run_dir / DONE).exists() else "incomplete"
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").exists() else {}
    try:
        scalars = read_scalars(run_dir)
    except UserError:  # no events file yet
        scalars = {}
    tps, source = tokens_per_second(scalars, config, run_dir)
    has_gates = any(tag.startswith("gates/layer_") for tag in scalars)
    return RunResult(pair, status, list(scalars.get("val/loss", [])), tps, source, has_gates, config)


# ================================================================== the report
@dataclass
class VariantRow:
    """One line of results.md / results.csv."""

    variant: str
    values: dict[int, float]  # seed -> final val loss (finished runs only)
    final_steps: list[int]
    summary: Any  # lit_ffn.stats.Summary
    test: Any  # lit_ffn.stats.WelchResult, or None for the baseline
    p_holm: float
    verdict: str
    params: Any  # lit_ffn.params.ParamCount, or None
    tokens_per_s: Optional[float]
    tokens_per_s_source: str


def _verdict(test: Any, p_holm: float, baseline: str, n_comparisons: int) -> str:
    if test is None:
        return "baseline"
    if math.isnan(test.p):
        return "no test (needs n ≥ 2 in both, and some spread)"
    direction = "lower" if test.diff < 0 else "higher"
    if test.p >= 0.05:
        return "no detectable difference"
    if n_comparisons > 1 and not p_holm < 0.05:
        return f"{direction} loss (p < 0.05, but not after Holm over {n_comparisons} comparisons)"
    return f"**{direction} loss than {baseline}** (p < 0.05{', also after Holm' if n_comparisons > 1 else ''})"


def build_rows(study: Study, runs: dict[Pair, RunResult], baseline: str) -> list[VariantRow]:
    from lit_ffn import stats
    from lit_ffn.params import count_parameters

    finished = {
        variant: {r.pair.seed: r for r in runs.values() if r.pair.variant == variant and r.status == "done" and r.final}
        for variant in study.variants
    }
    base_values = [r.final[1] for r in finished[baseline].values()]
    others = [v for v in study.variants if v != baseline]
    tests = {v: stats.welch([r.final[1] for r in finished[v].values()], base_values) for v in others}
    holm = dict(zip(others, stats.holm([tests[v].p for v in others])))
    rows = []
    for variant in [baseline, *others]:
        done = finished[variant]
        any_config = next((r.config for r in runs.values() if r.pair.variant == variant and r.config), None)
        try:
            params = count_parameters(any_config["model"]) if any_config else None
        except Exception:  # noqa: BLE001 - e.g. a user FFN not importable here: the table says "—"
            params = None
        tps = [r.tokens_per_s for r in done.values() if r.tokens_per_s is not None]
        test = tests.get(variant)
        p_holm = holm.get(variant, math.nan)
        rows.append(
            VariantRow(
                variant=variant,
                values={seed: r.final[1] for seed, r in sorted(done.items())},
                final_steps=sorted({r.final[0] for r in done.values()}),
                summary=stats.summarize(r.final[1] for r in done.values()),
                test=test,
                p_holm=p_holm,
                verdict=_verdict(test, p_holm, baseline, len(others)),
                params=params,
                tokens_per_s=sum(tps) / len(tps) if tps else None,
                tokens_per_s_source=next(
                    (r.tokens_per_s_source for r in done.values() if r.tokens_per_s is not None), "n/a"
                ),
            )
        )
    return rows


def _fmt_signed(x: float, decimals: int) -> str:
    return "—" if math.isnan(x) else f"{x:+.{decimals}f}"


def results_markdown(study: Study, rows: list[VariantRow], runs: dict[Pair, RunResult], baseline: str) -> str:
    from lit_ffn.stats import _decimals, format_mean_std, format_p

    k = len(rows) - 1
    stds = [r.summary.std for r in rows if not math.isnan(r.summary.std)]
    d = _decimals(min(stds)) if stds else 4
    steps = sorted({s for r in rows for s in r.final_steps})
    max_steps = (
        ", ".join(
            sorted(
                {
                    str((r.config.get("trainer") or {}).get("max_steps"))
                    for r in runs.values()
                    if r.status == "done" and r.config
                }
            )
        )
        or "—"
    )
    lines = [
        f"# Ablation: {study.experiment}",
        "",
        f"- base config: {', '.join(f'`{c}`' for c in study.configs)}"
        + (f"; overrides: `{' '.join(study.overrides)}`" if study.overrides else ""),
        f"- variants: {', '.join(study.variants)}; seeds: {' '.join(map(str, study.seeds))}; baseline: **{baseline}**",
        f"- metric: final validation loss — the last `val/loss` point of each run (trained for {max_steps} "
        f"optimizer steps; TensorBoard step {', '.join(map(str, steps)) or '—'}): the token-weighted mean "
        "next-token cross-entropy over the validation set, in nats; lower is better",
        f"- runs: `{study.runs_dir}/{study.experiment}/<variant>/seed_<seed>/` (config.yaml, TensorBoard events); "
        f"command: `{study.command()}`",
        "",
        f"| variant | n | final val loss (mean ± std) | Δ vs {baseline} | 95% CI of Δ | p (Welch) | "
        f"p (Holm, k={k}) | verdict | params (total) | FFN params | tokens/s |",
        "|---|---:|---|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        t = row.test
        if t is None:
            delta = ci = p = p_holm = "—"
        else:
            delta = _fmt_signed(t.diff, d)
            ci = "—" if math.isnan(t.ci_low) else f"[{t.ci_low:+.{d}f}, {t.ci_high:+.{d}f}]"
            p, p_holm = format_p(t.p), format_p(row.p_holm)
        params = f"{row.params.total:,}" if row.params else "—"
        ffn_params = f"{row.params.ffn:,}" if row.params else "—"
        tps = f"{row.tokens_per_s:,.0f}" if row.tokens_per_s is not None else "—"
        lines.append(
            f"| {row.variant} | {row.summary.n} | {format_mean_std(row.summary.mean, row.summary.std)} | {delta} "
            f"| {ci} | {p} | {p_holm} | {row.verdict} | {params} | {ffn_params} | {tps} |"
        )
    sources = sorted({r.tokens_per_s_source for r in rows if r.tokens_per_s is not None})
    lines += [
        "",
        "How to read this table:",
        "",
        "- **n** finished seeds per variant; **mean ± std** over seeds (sample std, ddof 1). Seeds differ in "
        "initialisation and data order (`seed_everything` drives both); the validation set is the same for all.",
        f"- **Δ** = variant − {baseline} (negative: lower loss than the baseline). **95% CI** and **p** come from "
        "Welch's unequal-variance two-sample t-test (two-sided, Welch–Satterthwaite degrees of freedom, "
        "`scipy.stats`); the CI excludes 0 exactly when p < 0.05.",
        f"- **Holm**: Holm–Bonferroni adjusted p over the k = {k} comparisons with the baseline; it keeps the chance "
        "of *any* false positive among them at 5%. Trust a difference when it survives Holm: with many variants, "
        "a raw p < 0.05 is expected about once in 20 comparisons by chance alone.",
        '- With few seeds the t-test has little power: "no detectable difference" is not evidence of equality; '
        "read the CI as the range of differences the data allow. A significant difference at one scale (model "
        "size, steps, data) need not hold at another.",
        "- **params**: total with the tied embedding counted once; **FFN params**: all layers' FFNs "
        f"(`lit_ffn params`). **tokens/s**: training throughput, mean over seeds, from {', '.join(sources) or '—'} "
        "(shared or busy machines make it noisy).",
        "",
        "Final validation loss per seed:",
        "",
        "| variant | " + " | ".join(f"seed {s}" for s in study.seeds) + " |",
        "|---|" + "---:|" * len(study.seeds),
    ]
    for row in rows:
        cells = [f"{row.values[s]:.{d}f}" if s in row.values else "—" for s in study.seeds]
        lines.append(f"| {row.variant} | " + " | ".join(cells) + " |")
    problems = [r for r in runs.values() if r.status != "done" or not r.final]
    if problems:
        lines += ["", "Not included (rerun the same `lit_ffn ablate` command to finish them):", ""]
        for r in sorted(problems, key=lambda r: (r.pair.variant, r.pair.seed)):
            why = {"missing": "not started", "incomplete": "started, not finished"}.get(r.status, "no val/loss logged")
            lines.append(f"- {r.pair.variant} seed {r.pair.seed}: {why}")
    lines += ["", "![validation loss, mean ± std over seeds](curves.png)", ""]
    if any(r.has_gates for r in runs.values()):
        lines += ["![gate statistics per layer at the end of training](gates.png)", ""]
    return "\n".join(lines)


CSV_FIELDS = [
    "variant",
    "n",
    "seeds",
    "final_step",
    "val_loss_mean",
    "val_loss_std",
    "val_loss_values",
    "delta_vs_baseline",
    "ci95_low",
    "ci95_high",
    "t",
    "df",
    "p_welch",
    "p_holm",
    "significant_holm",
    "verdict",
    "params_total",
    "params_non_embedding",
    "params_ffn",
    "tokens_per_s",
    "tokens_per_s_source",
]


def results_csv_rows(rows: list[VariantRow]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        t = row.test
        out.append(
            {
                "variant": row.variant,
                "n": row.summary.n,
                "seeds": " ".join(map(str, row.values)),
                "final_step": " ".join(map(str, row.final_steps)),
                "val_loss_mean": row.summary.mean,
                "val_loss_std": row.summary.std,
                "val_loss_values": " ".join(repr(v) for v in row.values.values()),
                "delta_vs_baseline": t.diff if t else "",
                "ci95_low": t.ci_low if t else "",
                "ci95_high": t.ci_high if t else "",
                "t": t.t if t else "",
                "df": t.df if t else "",
                "p_welch": t.p if t else "",
                "p_holm": row.p_holm if t else "",
                "significant_holm": bool(row.p_holm < 0.05) if t else "",
                "verdict": row.verdict.replace("**", ""),
                "params_total": row.params.total if row.params else "",
                "params_non_embedding": row.params.non_embedding if row.params else "",
                "params_ffn": row.params.ffn if row.params else "",
                "tokens_per_s": row.tokens_per_s if row.tokens_per_s is not None else "",
                "tokens_per_s_source": row.tokens_per_s_source,
            }
        )
    return out


def plot_curves(study: Study, runs: dict[Pair, RunResult], path: Path) -> None:
    """``curves.png``: validation loss vs step of the finished runs, the mean over
    seeds with a ±1 std band (sample std) per variant; the right panel zooms on
    the second half of training, where the variants separate.

    Not :func:`lit_ffn.plots.plot_curves`: that one shades min–max and has no
    zoom, while the report's table speaks in mean ± std."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5), layout="constrained")
    axes = fig.subplots(1, 2)
    colors = colormaps["tab20" if len(study.variants) > 10 else "tab10"]
    max_step, zoom = 0, []
    for i, variant in enumerate(study.variants):
        curves = [
            dict(r.val_curve) for r in runs.values() if r.pair.variant == variant and r.status == "done" and r.val_curve
        ]
        if not curves:
            continue
        steps = sorted(set().union(*curves))
        values = [[c[s] for c in curves if s in c] for s in steps]
        mean = np.array([np.mean(v) for v in values])
        std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values])
        max_step = max(max_step, steps[-1])
        for ax in axes:
            ax.plot(
                steps, mean, color=colors(i), marker=".", label=f"{variant} (n={len(curves)}, final {mean[-1]:.4f})"
            )
            ax.fill_between(steps, mean - std, mean + std, color=colors(i), alpha=0.2, linewidth=0)
        zoom += list(zip(steps, mean - std, mean + std))
    zoom = [(lo, hi) for step, lo, hi in zoom if step >= max_step / 2]
    if max_step > 0:
        axes[1].set_xlim(max_step / 2, max_step * 1.02)
    if zoom:
        lo, hi = min(z[0] for z in zoom), max(z[1] for z in zoom)
        pad = 0.05 * (hi - lo) or 0.01
        axes[1].set_ylim(lo - pad, hi + pad)
    axes[0].set_title(f"{study.experiment}: validation loss (mean ± std over seeds)")
    axes[1].set_title("second half of training")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylabel("val/loss (nats)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=110)


def plot_gates(study: Study, runs: dict[Pair, RunResult], path: Path) -> bool:
    """``gates.png`` through :func:`lit_ffn.plots.plot_gate_profile`: the gate
    statistics of every layer at the end of training, a column of panels per
    variant (its first finished seed that logged gate statistics; seeds are
    not averaged).  Returns False (and draws nothing) when no run logged gate
    statistics (``lit_ffn.callbacks.GateStatistics`` not enabled)."""
    from lit_ffn.plots import plot_gate_profile

    shown = {}
    for variant in study.variants:
        run = next((r for r in runs.values() if r.pair.variant == variant and r.status == "done" and r.has_gates), None)
        if run is not None:
            shown[f"{variant} (seed {run.pair.seed})"] = study.run_dir(run.pair)
    if not shown:
        return False
    plot_gate_profile(shown, path, title=f"{study.experiment}: gate statistics per layer at the end of training")
    return True


def write_report(study: Study, baseline: Optional[str] = None) -> dict[str, Path]:
    """Read every run of ``study`` and write results.md, results.csv, curves.png, gates.png into ``study.out``."""
    baseline = baseline or study.baseline_name
    if baseline not in study.variants:
        raise UserError(f"baseline '{baseline}' is not a variant of the study ({', '.join(study.variants)})")
    runs = {pair: read_run(study, pair) for pair in study.pairs()}
    rows = build_rows(study, runs, baseline)
    paths = {"md": study.out / "results.md", "csv": study.out / "results.csv", "curves": study.out / "curves.png"}
    paths["md"].write_text(results_markdown(study, rows, runs, baseline))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(results_csv_rows(rows))
    plot_curves(study, runs, paths["curves"])
    if plot_gates(study, runs, study.out / "gates.png"):
        paths["gates"] = study.out / "gates.png"
    return paths


# ================================================================== CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit_ffn ablate",
        description="Train every (FFN variant, seed) pair of a study, resumably, and report the final validation "
        "loss per variant with Welch's t-test against a baseline. Any other --key=value is a `lit_ffn fit` "
        "override applied to every run.",
        epilog="example: lit_ffn ablate --config configs/quickstart.yaml --ffn swiglu geglu dynamic_geglu "
        "--seeds 0 1 2 --out runs/ablation_quickstart",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="BASE.yaml",
        help="base config of every run (repeatable, composed in order)",
    )
    parser.add_argument(
        "--ffn",
        nargs="+",
        default=[],
        metavar="NAME_OR_YAML",
        help="variants: configs/ffn/<NAME>.yaml names or YAML paths; the first is the baseline",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0, 1, 2],
        metavar="S",
        help="seeds (seed_everything: init and data order; default: 0 1 2)",
    )
    parser.add_argument("--out", metavar="DIR", help="study directory (runs/, logs/, study.json, results.*)")
    parser.add_argument(
        "--experiment", help="experiment name: DIR/runs/<experiment>/… (default: the base config's stem)"
    )
    parser.add_argument("--baseline", metavar="NAME", help="variant to compare against (default: the first --ffn)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--print-commands", action="store_true", help="print the fit command each pair needs now")
    mode.add_argument("--slurm-array", metavar="FILE", help="write a SLURM array script (one task per pair)")
    mode.add_argument("--report", metavar="DIR", help="only rebuild DIR/results.* from the runs on disk")
    mode.add_argument("--task", type=int, metavar="I", help="run only pair I (what each SLURM array task calls)")
    parser.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra #SBATCH line for --slurm-array, e.g. --sbatch=--gres=gpu:1 (repeatable)",
    )
    parser.add_argument(
        "--clean-checkpoints",
        action="store_true",
        help="delete a run's checkpoints/ once it is done (saves disk; it can no longer be extended)",
    )
    return parser


def _ablate_argv_without_mode(argv: Sequence[str]) -> list[str]:
    """The user's ablate arguments minus ``--slurm-array FILE`` and ``--sbatch …`` (for the SLURM script)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--slurm-array", "--sbatch"):
            skip = True
            continue
        if arg.startswith(("--slurm-array=", "--sbatch=")):
            continue
        out.append(arg)
    return out


def main(argv: Optional[list[str]] = None, launch: Launcher = subprocess_launcher) -> int:
    """Entry point of ``lit_ffn ablate``: 0 when every pair is done, 1 when some failed, 2 on a user error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, overrides = parser.parse_known_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        if args.report:
            study = Study.load(Path(args.report))
            paths = write_report(study, args.baseline)
            print(f"wrote {', '.join(str(p) for p in paths.values())}")
            return 0
        if not args.out:
            raise UserError("--out DIR is required (where the runs and the report go)")
        study = make_study(args.out, args.config, args.ffn, args.seeds, overrides, args.experiment, args.baseline)
        check_configs(study)
        if args.print_commands:
            print(print_commands(study))
            return 0
        if args.slurm_array:
            study.save()
            (study.out / "logs").mkdir(exist_ok=True)  # SLURM does not create the --output directory
            script = Path(args.slurm_array)
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text(slurm_script(study, _ablate_argv_without_mode(argv), args.sbatch))
            script.chmod(0o755)
            print(f"wrote {script} ({len(study.pairs())} array tasks); submit with: sbatch {script}")
            return 0
        pairs = study.pairs()
        if args.task is not None:
            if not 0 <= args.task < len(pairs):
                raise UserError(f"--task {args.task} is out of range: the study has pairs 0..{len(pairs) - 1}")
            outcomes = run_study(study, launch, [pairs[args.task]], args.clean_checkpoints)
            return 0 if all(o in ("done", "skipped") for o in outcomes.values()) else 1
        try:
            outcomes = run_study(study, launch, pairs, args.clean_checkpoints)
        except KeyboardInterrupt:
            print("\nlit_ffn ablate: interrupted; rerun the same command to resume the study", file=sys.stderr)
            return 130
        paths = write_report(study)
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
        failed = [f"{p.variant} seed {p.seed}" for p, o in outcomes.items() if o not in ("done", "skipped")]
        if failed:
            print(
                f"lit_ffn ablate: {len(failed)} run(s) failed: {', '.join(failed)}; see {study.out / 'logs'} "
                "and rerun the same command to retry them",
                file=sys.stderr,
            )
            return 1
        return 0
    except UserError as err:
        print(f"lit_ffn ablate: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


__all__ = [
    "DONE",
    "Pair",
    "RunResult",
    "Study",
    "build_rows",
    "check_configs",
    "in_process_launcher",
    "main",
    "make_study",
    "plot_curves",
    "plot_gates",
    "print_commands",
    "read_run",
    "results_markdown",
    "run_pair",
    "run_study",
    "slurm_script",
    "subprocess_launcher",
    "tokens_per_second",
    "write_report",
]
