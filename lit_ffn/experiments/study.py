"""An FFN study: its runs, their directories and fit commands, and ``DIR/study.json``.

A plain study is every (variant, seed) pair.  Variants are names of
``configs/ffn/<name>.yaml`` (the names of :data:`lit_ffn.ffn.registry.BUILTINS`) or
paths of YAML files with a ``model.ffn`` section.  Pair ``(v, s)`` is the fit

    lit_ffn fit --config BASE.yaml --config configs/ffn/<v>.yaml [overrides…] --seed_everything=<s>
        --trainer.logger.init_args.save_dir=DIR/runs --trainer.logger.init_args.name=<experiment>
        --trainer.logger.init_args.version=<v>/seed_<s>

so every run has its own directory ``DIR/runs/<experiment>/<v>/seed_<s>/``
(``config.yaml``, TensorBoard events, ``checkpoints/last.ckpt``), seed and
saved config.  A run is "done" once its run directory holds a ``DONE`` file
(written by :mod:`lit_ffn.experiments.ablate` when the fit reached ``trainer.max_steps``),
"resume" when it has a ``last.ckpt`` (continued with ``lit_ffn fit --config
<run>/config.yaml --ckpt_path last``) and "new" otherwise.

Two stages and a ladder extend it (issue 14; :mod:`lit_ffn.experiments.tuning`):

* ``--tune KEY=V1,V2,…`` (+ ``--tune-seeds``): a **tuning stage**, every variant × grid point ×
  tuning seed in ``…/tune/<point>/<v>/seed_<t>/``, then a **confirmation stage**, every variant at
  its chosen point × ``--seeds`` in ``…/<v>/seed_<s>/`` (state "waiting" until the variant's
  tuning runs are all done: the choice needs them all);
* ``--ladder R1.yaml R2.yaml …``: each rung a config layered over the base (before the FFN), every
  run of both stages once per rung, under ``DIR/runs/<experiment>/<rung>/…``.  With both, each
  rung is tuned on its own (the optimal learning rate moves with model size), so a ladder of R
  rungs costs R × (variants × points × tuning seeds + variants × seeds) runs.

Seeds per variant (``--seed-count NAME=N``): a variant may run only the first N of ``--seeds``
while the baseline runs them all, so that each comparison gets the seeds its plan asks for
(:mod:`lit_ffn.experiments.planner`: a same-shape FFN may need 20 seeds where a ReLU needs 400); the
paired tests pair each variant with the baseline on the seeds both ran.

``DIR/study.json`` records the study; a later command on the same ``DIR`` must
use the same base configs, overrides, experiment, grid and tuning seeds, and may
add variants, seeds and rungs.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lit_ffn.errors import UserError, first_line
from lit_ffn.experiments import tuning
from lit_ffn.experiments.runfiles import DONE, EVAL_FILE, final_loss, logged_final_val_loss, read_eval
from lit_ffn.ffn.registry import resolve_variant

STUDY_FILE = "study.json"
#: Tuning seeds when ``--tune`` is given without ``--tune-seeds``: two, so that the choice is not one
#: seed's noise (with one, which point wins is itself a coin flip when points differ by less than the seed SD).
DEFAULT_TUNE_SEEDS = (100, 101)
#: Directory of the tuning stage inside an experiment (or rung) directory.
TUNE_DIR = "tune"

#: Overrides the runner sets itself (the run's identity): refused from the user.
_RESERVED = re.compile(r"^--(seed_everything|ckpt_path|trainer\.logger(\.init_args)?\.(save_dir|name|version))(=|$)")


# ================================================================== the study
@dataclass(frozen=True)
class Pair:
    """One run of the study: a variant and a seed, at a ladder rung ("" without a ladder), at a
    tuning grid point (its label; "" for a confirmation run or a plain study's run)."""

    variant: str
    seed: int
    rung: str = ""
    point: str = ""

    @property
    def stage(self) -> str:
        return "tune" if self.point else "confirm"

    def describe(self) -> str:
        where = "".join(f" {x}" for x in (self.rung, self.point) if x)
        return f"{self.variant} seed {self.seed}{where}"


@dataclass
class Study:
    """What ``DIR/study.json`` records: enough to relaunch or report every run."""

    out: Path
    configs: list[str]
    variants: dict[str, str]  # name -> FFN YAML path (as given / resolved)
    seeds: list[int]
    overrides: list[str] = field(default_factory=list)
    experiment: str = "ablation"
    baseline: str | None = None
    tune: dict[str, list[str]] = field(default_factory=dict)  # key -> values (lit_ffn.experiments.tuning)
    tune_seeds: list[int] = field(default_factory=list)
    tune_rule: str = tuning.DEFAULT_RULE  # how each variant's point is chosen (tuning.RULES)
    ladder: dict[str, str] = field(default_factory=dict)  # rung name -> config file
    eval_tasks: list[str] = field(default_factory=list)  # lm_eval tasks scored after each confirmation run
    eval_include_path: str | None = None
    eval_limit: float | None = None
    # declared before the runs (lit_ffn.experiments.verdicts): the one test that gives verdicts, and the
    # variants tested as controls outside the Holm family; a study.json without them used the defaults
    primary_test: str = "paired-t"
    controls: list[str] = field(default_factory=list)
    seed_counts: dict[str, int] = field(default_factory=dict)  # variant -> runs only the first N of seeds

    # ----------------------------------------------------------- layout
    @property
    def runs_dir(self) -> Path:
        return self.out / "runs"

    @property
    def rungs(self) -> list[str]:
        """The ladder's rung names in order ([""] without a ladder)."""
        return list(self.ladder) or [""]

    @property
    def points(self) -> list[tuning.Point]:
        return tuning.grid_points(self.tune) if self.tune else []

    def version(self, pair: Pair) -> str:
        """The run's path below ``runs/<experiment>/`` (the TensorBoard logger's version)."""
        parts = [pair.rung] if pair.rung else []
        if pair.point:
            parts += [TUNE_DIR, pair.point]
        return "/".join([*parts, pair.variant, f"seed_{pair.seed}"])

    def run_dir(self, pair: Pair) -> Path:
        return self.runs_dir / self.experiment / self.version(pair)

    def log_path(self, pair: Pair) -> Path:
        return self.out / "logs" / f"{self.version(pair)}.log"

    def tune_pairs(self, rung: str | None = None) -> list[Pair]:
        """The tuning stage: per rung, seed-major, then grid point, then variant."""
        labels = [tuning.point_label(p) for p in self.points]
        return [
            Pair(variant, seed, r, label)
            for r in (self.rungs if rung is None else [rung])
            for seed in self.tune_seeds
            for label in labels
            for variant in self.variants
        ]

    def seed_count(self, variant: str) -> int:
        """How many confirmation seeds ``variant`` runs: all of ``seeds``, or ``seed_counts[variant]``."""
        return self.seed_counts.get(variant, len(self.seeds))

    def seeds_of(self, variant: str) -> list[int]:
        """The confirmation seeds ``variant`` runs: the first :meth:`seed_count` of ``seeds``."""
        return self.seeds[: self.seed_count(variant)]

    def fewer_seeds(self) -> dict[str, int]:
        """``{variant: N}`` for the variants that run fewer than all of ``seeds`` (``--seed-count``), in order."""
        return {v: self.seed_count(v) for v in self.variants if self.seed_count(v) < len(self.seeds)}

    def confirm_pairs(self, rung: str | None = None) -> list[Pair]:
        """The confirmation stage (a plain study's only stage): per rung, seed-major, then variant
        (a study stopped early is still balanced); a variant with a seed count stops at it."""
        return [
            Pair(variant, seed, r)
            for r in (self.rungs if rung is None else [rung])
            for i, seed in enumerate(self.seeds)
            for variant in self.variants
            if i < self.seed_count(variant)
        ]

    def pairs(self) -> list[Pair]:
        """Every run: the tuning stage first, then the confirmation stage."""
        return self.tune_pairs() + self.confirm_pairs()

    @property
    def baseline_name(self) -> str:
        return self.baseline or next(iter(self.variants))

    # ----------------------------------------------------------- tuning
    def final_loss(self, pair: Pair) -> float | None:
        """Final validation loss of a done run (inf: it diverged), None while it is not done
        (:func:`lit_ffn.experiments.runfiles.final_loss`)."""
        return final_loss(self.run_dir(pair))

    def tuning_losses(self, variant: str, rung: str = "") -> dict[tuning.Point, list[float]] | None:
        """``{point: [final loss per tuning seed]}`` of a variant, None while any of its tuning runs is not done."""
        losses: dict[tuning.Point, list[float]] = {}
        for point in self.points:
            label = tuning.point_label(point)
            values = [self.final_loss(Pair(variant, seed, rung, label)) for seed in self.tune_seeds]
            if any(v is None for v in values):
                return None
            losses[point] = [math.nan if v is None else v for v in values]
        return losses

    def choice(self, variant: str, rung: str = "") -> tuning.Choice | None:
        """The variant's chosen grid point at a rung (None while tuning is incomplete)."""
        losses = self.tuning_losses(variant, rung)
        return None if losses is None else tuning.choose(self.tune, losses, self.tune_rule)

    def tuning_progress(self, variant: str, rung: str = "") -> tuple[int, int]:
        """(done, total) tuning runs of a variant at a rung."""
        pairs = [p for p in self.tune_pairs(rung) if p.variant == variant]
        return sum(self.state(p) == "done" for p in pairs), len(pairs)

    # ----------------------------------------------------------- commands
    def _point_args(self, pair: Pair) -> list[str]:
        if pair.point:
            point = next(p for p in self.points if tuning.point_label(p) == pair.point)
            return tuning.point_overrides(point)
        if not self.tune:
            return []
        chosen = self.choice(pair.variant, pair.rung)
        if chosen is None:
            done, total = self.tuning_progress(pair.variant, pair.rung)
            raise UserError(
                f"{pair.describe()} is a confirmation run: it starts once {pair.variant}'s tuning runs are all done "
                f"({done} of {total} are)"
            )
        return tuning.point_overrides(chosen.point)

    def fresh_args(self, pair: Pair) -> list[str]:
        """``lit_ffn fit`` arguments that start ``pair`` from scratch (a confirmation run: at its chosen point)."""
        args = ["fit"]
        for config in self.configs:
            args += ["--config", config]
        if pair.rung:
            args += ["--config", self.ladder[pair.rung]]
        args += ["--config", self.variants[pair.variant], *self.overrides, *self._point_args(pair)]
        return [
            *args,
            f"--seed_everything={pair.seed}",
            f"--trainer.logger.init_args.save_dir={self.runs_dir}",
            f"--trainer.logger.init_args.name={self.experiment}",
            f"--trainer.logger.init_args.version={self.version(pair)}",
        ]

    def resume_args(self, pair: Pair) -> list[str]:
        """``lit_ffn fit`` arguments that continue ``pair`` from its ``last.ckpt``."""
        return ["fit", "--config", str(self.run_dir(pair) / "config.yaml"), "--ckpt_path", "last"]

    def state(self, pair: Pair) -> str:
        """``"done"``, ``"resume"`` (has a checkpoint), ``"new"``, or ``"waiting"`` (a confirmation
        run whose variant's tuning is not finished)."""
        run_dir = self.run_dir(pair)
        if (run_dir / DONE).exists():
            return "done"
        if (run_dir / "config.yaml").exists() and (run_dir / "checkpoints" / "last.ckpt").exists():
            return "resume"
        if self.tune and not pair.point and self.tuning_losses(pair.variant, pair.rung) is None:
            return "waiting"
        return "new"

    def next_args(self, pair: Pair) -> list[str] | None:
        """The fit arguments ``pair`` needs now (None: it is done or waiting)."""
        state = self.state(pair)
        if state in ("done", "waiting"):
            return None
        return self.resume_args(pair) if state == "resume" else self.fresh_args(pair)

    def eval_args(self, pair: Pair) -> list[str] | None:
        """``lit_ffn evaluate`` arguments that score a done confirmation run on ``eval_tasks``
        (None: nothing to evaluate, or it already has every task)."""
        if not self.eval_tasks or pair.stage != "confirm":
            return None
        run_dir = self.run_dir(pair)
        if all(task in read_eval(run_dir) for task in self.eval_tasks):
            return None
        args = ["evaluate", "--ckpt", str(run_dir), "--tasks", ",".join(self.eval_tasks), "--out",
                str(run_dir / EVAL_FILE)]  # fmt: skip
        if self.eval_include_path:
            args += ["--include-path", self.eval_include_path]
        if self.eval_limit is not None:
            args += ["--limit", f"{self.eval_limit:g}"]
        return args

    def command(self) -> str:
        """The ``lit_ffn ablate`` command that runs (or resumes) this whole study."""
        args = ["lit_ffn", "ablate"]
        for config in self.configs:
            args += ["--config", config]
        builtin = lambda name, path: Path(path).as_posix().endswith(f"configs/ffn/{name}.yaml")  # noqa: E731
        args += ["--ffn", *(name if builtin(name, path) else path for name, path in self.variants.items())]
        for key, values in self.tune.items():
            args += ["--tune", f"{key}={','.join(values)}"]
        if self.tune_seeds:
            args += ["--tune-seeds", *map(str, self.tune_seeds)]
        if self.tune and self.tune_rule != tuning.DEFAULT_RULE:
            args += ["--tune-rule", self.tune_rule]
        if self.ladder:
            args += ["--ladder", *self.ladder.values()]
        args += ["--seeds", *map(str, self.seeds), "--out", str(self.out)]
        if self.seed_counts:
            args += ["--seed-count", *(f"{name}={n}" for name, n in self.seed_counts.items())]
        if self.eval_tasks:
            args += ["--eval-tasks", ",".join(self.eval_tasks)]
        if self.eval_include_path:
            args += ["--eval-include-path", self.eval_include_path]
        if self.eval_limit is not None:
            args += ["--eval-limit", f"{self.eval_limit:g}"]
        if self.experiment != Path(self.configs[0]).stem:
            args += ["--experiment", self.experiment]
        if self.baseline:
            args += ["--baseline", self.baseline]
        if self.primary_test != "paired-t":
            args += ["--primary-test", self.primary_test]
        if self.controls:
            args += ["--control", *self.controls]
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
            "tune": self.tune,
            "tune_seeds": self.tune_seeds,
            "tune_rule": self.tune_rule,
            "ladder": self.ladder,
            "eval_tasks": self.eval_tasks,
            "eval_include_path": self.eval_include_path,
            "eval_limit": self.eval_limit,
            "primary_test": self.primary_test,
            "controls": self.controls,
            "seed_counts": self.seed_counts,
        }

    def save(self) -> None:
        """Write ``DIR/study.json`` atomically (SLURM tasks of one study may write it at the same time)."""
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / f".{STUDY_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, self.out / STUDY_FILE)

    @classmethod
    def load(cls, out: Path) -> Study:
        path = Path(out) / STUDY_FILE
        if not path.is_file():
            raise UserError(f"{out} holds no {STUDY_FILE}: it is not a study made by lit_ffn ablate")
        data = json.loads(path.read_text())
        return cls(out=Path(out), **data)

    def merge_saved(self) -> Study:
        """Check this study against ``DIR/study.json`` (if any) and merge its variants, seeds and rungs."""
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
        if saved.tune != self.tune or saved.tune_seeds != self.tune_seeds or saved.tune_rule != self.tune_rule:
            if not saved.tune:
                raise UserError(f"{self.out} holds a study without --tune: rerun it without, or use another --out")
            saved_grid = " ".join(f"--tune {k}={','.join(v)}" for k, v in saved.tune.items())
            raise UserError(
                f"{self.out} was tuned with {saved_grid} --tune-seeds {' '.join(map(str, saved.tune_seeds))} "
                f"--tune-rule {saved.tune_rule}: a changed grid or tuning seeds (or rule) would change the choices its "
                "confirmation runs used; "
                "rerun with those, or use another --out"
            )
        for name, path_ in saved.variants.items():
            if name in self.variants and self.variants[name] != path_:
                raise UserError(f"variant '{name}' was {path_} in {self.out}, now {self.variants[name]}")
        for name, path_ in saved.ladder.items():
            if name in self.ladder and self.ladder[name] != path_:
                raise UserError(f"ladder rung '{name}' was {path_} in {self.out}, now {self.ladder[name]}")
        if (saved.ladder and not self.ladder) or (self.ladder and not saved.ladder):
            raise UserError(
                f"{self.out} holds a study {'with' if saved.ladder else 'without'} --ladder: rerun it the same way "
                "(rungs may be added), or use another --out"
            )
        if saved.primary_test != self.primary_test:
            raise UserError(
                f"{self.out} declared --primary-test {saved.primary_test} before its runs, not {self.primary_test}: "
                "the primary test is fixed with the study; rerun with it, or use another --out"
            )
        if saved.controls and self.controls and saved.controls != self.controls:
            raise UserError(
                f"{self.out} declared --control {' '.join(saved.controls)} before its runs, not "
                f"{' '.join(self.controls)}: rerun with those (or without --control), or use another --out"
            )
        variants = {**saved.variants, **self.variants}
        seeds = saved.seeds + [s for s in self.seeds if s not in saved.seeds]
        ladder = {**saved.ladder, **self.ladder}
        return Study(
            self.out,
            self.configs,
            variants,
            seeds,
            self.overrides,
            self.experiment,
            self.baseline or saved.baseline,
            self.tune,
            self.tune_seeds,
            self.tune_rule,
            ladder,
            # evaluation does not change a run: the newest settings apply (runs lacking a task are scored)
            self.eval_tasks or saved.eval_tasks,
            self.eval_include_path if self.eval_tasks else saved.eval_include_path,
            self.eval_limit if self.eval_tasks else saved.eval_limit,
            self.primary_test,
            self.controls or saved.controls,
            {**saved.seed_counts, **self.seed_counts},
        )


#: The last logged ``val/loss`` of a run (the name older callers use).
final_val_loss = logged_final_val_loss


def make_study(
    out: str | Path,
    configs: Sequence[str],
    ffns: Sequence[str],
    seeds: Sequence[int],
    overrides: Sequence[str] = (),
    experiment: str | None = None,
    baseline: str | None = None,
    tune: Sequence[str] = (),
    tune_seeds: Sequence[int] | None = None,
    ladder: Sequence[str] = (),
    tune_rule: str | None = None,
    eval_tasks: Sequence[str] = (),
    eval_include_path: str | None = None,
    eval_limit: float | None = None,
    primary_test: str | None = None,
    controls: Sequence[str] = (),
    seed_counts: Sequence[str] = (),
) -> Study:
    """Validate the user's request and merge it with the study already in ``out``.  ``primary_test`` None:
    the saved study's (a new study: :data:`lit_ffn.experiments.verdicts.DEFAULT_PRIMARY_TEST`)."""
    from lit_ffn.experiments.verdicts import DEFAULT_PRIMARY_TEST, check_controls, check_primary_test

    if not configs:
        raise UserError("--config BASE.yaml is required (the model, data and trainer of every run)")
    for config in configs:
        if not Path(config).is_file():
            raise UserError(f"base config {config} does not exist")
    if not ffns:
        raise UserError("--ffn needs at least one variant (e.g. --ffn swiglu geglu)")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds has duplicates: {' '.join(map(str, seeds))}")
    grid = tuning.parse_tune(tune)
    if grid and tune_seeds is None:
        saved = Path(out) / STUDY_FILE
        tune_seeds = (Study.load(Path(out)).tune_seeds if saved.is_file() else []) or list(DEFAULT_TUNE_SEEDS)
    tune_seeds = list(tune_seeds or [])
    if grid and not tune_seeds:
        raise UserError("--tune needs tuning seeds: give --tune-seeds T1 T2 (disjoint from --seeds) or leave it out")
    if tune_seeds and not grid:
        raise UserError("--tune-seeds without --tune: give the grid, e.g. --tune model.lr=1e-4,3e-4,1e-3")
    if tune_rule is not None and not grid:
        raise UserError("--tune-rule without --tune: give the grid, e.g. --tune model.lr=1e-3,2e-3,4e-3,8e-3")
    if grid and tune_rule is None:  # a study's own rule (a study from before rules existed: mean), else the default
        saved = Path(out) / STUDY_FILE
        tune_rule = Study.load(Path(out)).tune_rule if saved.is_file() else tuning.DEFAULT_RULE
    tune_rule = tuning.check_rule(tune_rule, grid, len(tune_seeds)) if grid else tuning.DEFAULT_RULE
    if len(set(tune_seeds)) != len(tune_seeds):
        raise UserError(f"--tune-seeds has duplicates: {' '.join(map(str, tune_seeds))}")
    overlap = sorted(set(seeds) & set(tune_seeds))
    if overlap:
        raise UserError(
            f"seed(s) {' '.join(map(str, overlap))} are in both --seeds and --tune-seeds: the confirmation runs need "
            "fresh seeds (the choice was made on the tuning seeds' noise), so make the two sets disjoint"
        )
    variants: dict[str, str] = {}
    for spec in ffns:
        name, path = resolve_variant(spec, generated_dir=Path(out) / "ffn_configs")
        if name in variants:
            raise UserError(f"variant name '{name}' given twice in --ffn (names are the YAML files' stems)")
        if grid and name == TUNE_DIR:
            raise UserError(f"a variant may not be named '{TUNE_DIR}' in a tuned study (it names the tuning stage)")
        variants[name] = _display_path(path)
    for override in overrides:
        if _RESERVED.match(override):
            raise UserError(
                f"{override.split('=')[0]} is set by lit_ffn ablate for every run: use --seeds, --out and --experiment"
            )
        if re.match(r"^-[A-Za-z]", override):
            raise UserError(f"unknown option {override}: fit overrides are --key=value (see lit_ffn fit --help)")
    saved_file = Path(out) / STUDY_FILE
    if primary_test is None:
        primary_test = Study.load(Path(out)).primary_test if saved_file.is_file() else DEFAULT_PRIMARY_TEST
    check_primary_test(primary_test)
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
        tune=grid,
        tune_seeds=[int(s) for s in tune_seeds],
        tune_rule=tune_rule,
        ladder=read_ladder(ladder, variants),
        eval_tasks=list(eval_tasks),
        eval_include_path=_display_path(Path(eval_include_path)) if eval_include_path else None,
        eval_limit=eval_limit,
        primary_test=primary_test,
        controls=list(controls),
        seed_counts=parse_seed_counts(seed_counts),
    ).merge_saved()
    if study.baseline is not None and study.baseline not in study.variants:
        raise UserError(f"--baseline {study.baseline} is not a variant of the study ({', '.join(study.variants)})")
    check_controls(study.controls, list(study.variants), study.baseline_name)
    check_seed_counts(study)
    return study


def parse_seed_counts(specs: Sequence[str]) -> dict[str, int]:
    """``["geglu=40", …]`` -> ``{"geglu": 40, …}`` (``--seed-count``); one line for a malformed entry."""
    counts: dict[str, int] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name or not value.strip().isdigit():
            raise UserError(
                f"--seed-count {spec}: write NAME=N, N a whole number of seeds (e.g. --seed-count geglu=40)"
            )
        if name in counts:
            raise UserError(f"--seed-count gives '{name}' twice")
        counts[name] = int(value)
    return counts


def check_seed_counts(study: Study) -> None:
    """Each ``--seed-count`` names a variant other than the baseline, with 2 ≤ N ≤ the number of seeds."""
    for name, n in study.seed_counts.items():
        if name not in study.variants:
            raise UserError(
                f"--seed-count {name}={n}: '{name}' is not a variant of the study ({', '.join(study.variants)})"
            )
        if name == study.baseline_name:
            raise UserError(
                f"--seed-count {name}={n}: '{name}' is the baseline, which runs every seed (each variant is paired "
                "with it on the seeds both ran); give the seed count to the other variants"
            )
        if not 2 <= n <= len(study.seeds):
            raise UserError(
                f"--seed-count {name}={n}: must be between 2 (a paired test needs two seeds) and the "
                f"{len(study.seeds)} seeds of --seeds"
            )


def read_ladder(files: Sequence[str], variants: dict[str, str]) -> dict[str, str]:
    """``{rung name: file}`` (names are the files' stems), each file checked: it parses, is a mapping
    and leaves ``model.ffn`` alone (the variants are what the ladder compares)."""
    rungs: dict[str, str] = {}
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise UserError(f"ladder file {file} does not exist")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise UserError(f"ladder file {file} does not parse as YAML: {first_line(err)}") from None
        if not isinstance(data, dict):
            raise UserError(f"ladder file {file} is not a mapping of config keys (e.g. model: {{dim: 64}})")
        if isinstance(data.get("model"), dict) and "ffn" in data["model"]:
            raise UserError(
                f"ladder file {file} sets model.ffn: a rung may change the shape, steps or anything else, "
                "not the FFN (the variants come from --ffn)"
            )
        name = path.stem
        if name in rungs:
            raise UserError(f"ladder rung name '{name}' given twice (names are the files' stems)")
        if name in variants or name == TUNE_DIR:
            raise UserError(f"ladder rung '{name}' has the name of a variant or of the tuning stage: rename the file")
        rungs[name] = _display_path(path)
    return rungs


def _display_path(path: Path) -> str:
    """``path`` relative to the working directory when inside it (portable commands), else absolute."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def check_configs(study: Study) -> dict[str, Any]:
    """Parse every variant's fit arguments as ``lit_ffn fit`` would (nothing is built), at every
    rung and grid point, so that a config mistake is one error now rather than a failed run each.
    Returns ``{variant: parsed fit config}`` (the first rung, the first grid point)."""
    from lit_ffn.training.batch_plan import plan_for_config
    from lit_ffn.training.config import FitConfigParser

    parser = FitConfigParser()
    base = parser.parse([arg for config in study.configs for arg in ("--config", config)] + study.overrides)
    logger = base.trainer.get("logger")
    class_path = str(logger.get("class_path", "")) if hasattr(logger, "get") else ""
    if not class_path.endswith("TensorBoardLogger"):
        raise UserError(
            f"trainer.logger is {class_path or logger!r}: lit_ffn ablate needs the TensorBoardLogger "
            "(its events make the report); remove that logger setting from the base config or overrides"
        )
    for key in study.tune:
        _check_tune_key(base, key)
    seed = (study.tune_seeds or study.seeds)[0]
    labels = [tuning.point_label(p) for p in study.points] or [""]
    configs: dict[str, Any] = {}
    for rung in study.rungs:
        for variant in study.variants:
            for label in labels:
                pair = Pair(variant, seed, rung, label)
                try:
                    config = parser.parse(study.fresh_args(pair)[1:])
                except UserError as err:
                    where = f" (ladder rung {study.ladder[rung]})" if rung else ""
                    raise UserError(f"{pair.describe()}{where}: {err}" if rung or label else str(err)) from None
                plan_for_config(config)  # global_batch_size / val_every_n_steps errors, as `lit_ffn fit` would raise
                configs.setdefault(variant, config)
    return configs


def _check_tune_key(base: Any, key: str) -> None:
    """A tuned key must be a fit option: one line naming the closest key when it is not."""
    import difflib

    try:
        known = key in base
    except (KeyError, TypeError):
        known = False
    if known:
        return
    keys = [k for k in base.keys() if not k.startswith("__")] if hasattr(base, "keys") else []
    close = difflib.get_close_matches(key, keys, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UserError(f"--tune {key}: not a `lit_ffn fit` option{hint}; see `lit_ffn fit --help`")
