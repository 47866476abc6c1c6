"""A multi-seed FFN ablation study: its (variant, seed) pairs, their run
directories and fit commands, and ``DIR/study.json``.

A study is every (variant, seed) pair.  Variants are names of
``configs/ffn/<name>.yaml`` (the names of :data:`lit_ffn.ffn.registry.BUILTINS`) or
paths of YAML files with a ``model.ffn`` section.  Pair ``(v, s)`` is the fit

    lit_ffn fit --config BASE.yaml --config configs/ffn/<v>.yaml [overrides…] --seed_everything=<s>
        --trainer.logger.init_args.save_dir=DIR/runs --trainer.logger.init_args.name=<experiment>
        --trainer.logger.init_args.version=<v>/seed_<s>

so every run has its own directory ``DIR/runs/<experiment>/<v>/seed_<s>/``
(``config.yaml``, TensorBoard events, ``checkpoints/last.ckpt``), seed and
saved config.  A pair is "done" once its run directory holds a ``DONE`` file
(written by :mod:`lit_ffn.experiments.ablate` when the fit reached ``trainer.max_steps``),
"resume" when it has a ``last.ckpt`` (continued with ``lit_ffn fit --config
<run>/config.yaml --ckpt_path last``) and "new" otherwise.

``DIR/study.json`` records the study; a later command on the same ``DIR`` must
use the same base configs, overrides and experiment, and may add variants or
seeds.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_ffn.errors import UserError
from lit_ffn.ffn.registry import resolve_variant

#: Marker written into a run directory once its fit finished.
DONE = "DONE"
STUDY_FILE = "study.json"

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
    baseline: str | None = None

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
        return [
            *args,
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

    def next_args(self, pair: Pair) -> list[str] | None:
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
    def load(cls, out: Path) -> Study:
        path = Path(out) / STUDY_FILE
        if not path.is_file():
            raise UserError(f"{out} holds no {STUDY_FILE}: it is not a study made by lit_ffn ablate")
        data = json.loads(path.read_text())
        return cls(out=Path(out), **data)

    def merge_saved(self) -> Study:
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
    experiment: str | None = None,
    baseline: str | None = None,
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
        name, path = resolve_variant(spec, generated_dir=Path(out) / "ffn_configs")
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
    configs = {variant: parser.parse(study.fresh_args(Pair(variant, study.seeds[0]))[1:]) for variant in study.variants}
    for config in configs.values():
        plan_for_config(config)  # global_batch_size / val_every_n_steps errors, as `lit_ffn fit` would raise them
    return configs
