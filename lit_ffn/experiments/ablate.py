"""``lit_ffn ablate``: run a multi-seed FFN ablation study, resumably, and write its report.

    lit_ffn ablate --config BASE.yaml --ffn swiglu dynamic_geglu iso_gmlp --seeds 0 1 2 3 4 --out DIR [fit overrides…]
    lit_ffn ablate … --print-commands            # the fit command each pair needs now
    lit_ffn ablate … --slurm-array job.sh        # a SLURM array script, one task per pair
    lit_ffn ablate --report DIR                  # rebuild the report from the runs on disk
    lit_ffn ablate … --tune model.lr=1e-4,3e-4,1e-3 --tune-seeds 100 101   # tune per variant, confirm on --seeds
    lit_ffn ablate … --ladder configs/ladder/cpu/*.yaml                    # every run at each rung; scaling fits

The study — its pairs, run directories, fit commands and ``DIR/study.json`` —
is :mod:`lit_ffn.experiments.study`; the report (``results.md``, ``results.csv``,
``curves.png``, ``gates.png``) is :mod:`lit_ffn.experiments.report`.  This module
runs the pairs: one after another, seed-major (every variant with the first
seed, then the second seed, …: a study stopped early is still balanced), each
in its own ``python -m lit_ffn.cli`` subprocess so that a crash ends only that
run; its output goes to ``DIR/logs/<v>/seed_<s>.log``.

Resumable.  A pair whose fit exited 0 having reached ``trainer.max_steps``
gets a ``DONE`` file in its run directory (with its final validation loss) and
is skipped from then on; a pair with a ``last.ckpt`` but no ``DONE`` resumes
from it; a pair with neither starts (again) from scratch.  Rerunning the same
command after a crash, a Ctrl-C or a preempted SLURM task therefore finishes
the study without redoing work.

Tuned studies run the tuning stage first; a confirmation run starts once its
variant's tuning runs (at its rung) are all done, at the chosen point.  A
tuning run whose loss became non-finite (``lit_ffn fit`` exit code 3) is done
and "diverged": that point's loss counts as +inf.  A confirmation run that
diverges has failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import yaml

from lit_ffn.errors import UserError
from lit_ffn.experiments.report import write_report
from lit_ffn.experiments.study import DONE, Pair, Study, check_configs, final_val_loss, make_study

#: ``lit_ffn fit``'s exit code when the training loss or gradients became non-finite (lit_ffn.cli).
DIVERGED_EXIT_CODE = 3

#: ``launch(fit_argv, log_path) -> exit code``: how a pair is run.
Launcher = Callable[[list[str], Path], int]


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


def _checkpoint_step(path: Path) -> int | None:
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
    (``"done"``, ``"diverged"`` (a tuning run), ``"skipped"``, ``"waiting"`` (a confirmation run
    whose tuning is not finished) or ``"failed: …"``)."""
    state = study.state(pair)
    if state == "done":
        failed = evaluate_pair(study, pair, launch)
        if failed is None and clean_checkpoints:
            shutil.rmtree(study.run_dir(pair) / "checkpoints", ignore_errors=True)
        return failed or "skipped"
    if state == "waiting":
        return "waiting"
    run_dir = study.run_dir(pair)
    if state == "new" and run_dir.exists():
        # A previous attempt died before its first checkpoint: its events would
        # duplicate steps, so start from an empty directory (inside DIR/runs only).
        shutil.rmtree(run_dir)
    try:
        args = study.fresh_args(pair) if state == "new" else study.resume_args(pair)
    except UserError as err:  # e.g. every tuning run of this variant diverged: no point to confirm at
        return f"failed: {' '.join(str(err).split())}"
    start = time.time()
    code = launch(args, study.log_path(pair))
    wall = time.time() - start
    diverged = code == DIVERGED_EXIT_CODE and pair.stage == "tune"
    if code != 0 and not diverged:
        why = " (the loss became non-finite)" if code == DIVERGED_EXIT_CODE else ""
        return f"failed: exit code {code}{why}"
    ok, detail = (True, "diverged") if diverged else _finished(run_dir)
    if not ok:
        return f"failed: {detail}"
    loss = None if diverged else final_val_loss(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DONE).write_text(
        json.dumps(
            {
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                "wall_s": round(wall, 1),
                "resumed": state == "resume",
                "detail": detail,
                "final_val_loss": loss,
                "diverged": diverged,
                "command": shlex.join(["lit_ffn", *args]),
            },
            indent=2,
        )
        + "\n"
    )
    failed = evaluate_pair(study, pair, launch)  # before --clean-checkpoints: it reads last.ckpt
    if failed:
        return failed
    if clean_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return "diverged" if diverged else "done"


def evaluate_pair(study: Study, pair: Pair, launch: Launcher) -> str | None:
    """Score a done confirmation run on the study's ``--eval-tasks`` (``lit_ffn evaluate``, into its
    ``eval.json``) unless it has them all; returns ``"failed: …"`` or None.  Its training stays done:
    a rerun only retries the evaluation."""
    args = study.eval_args(pair)
    if args is None:
        return None
    if not (study.run_dir(pair) / "checkpoints" / "last.ckpt").exists():
        return (
            "failed: its checkpoint was deleted (--clean-checkpoints) before it was evaluated: retrain it to score it"
        )
    code = launch(args, study.log_path(pair))
    return None if code == 0 else f"failed: evaluation exit code {code}"


def run_study(
    study: Study,
    launch: Launcher = subprocess_launcher,
    pairs: Iterable[Pair] | None = None,
    clean_checkpoints: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[Pair, str]:
    """Run the study's pairs (all by default) one after another; returns each pair's outcome."""
    study.save()
    pairs = list(study.pairs() if pairs is None else pairs)
    outcomes: dict[Pair, str] = {}
    for i, pair in enumerate(pairs, 1):
        stage = " (tuning)" if pair.stage == "tune" else " (confirmation)" if study.tune else ""
        label = f"[{i}/{len(pairs)}] {pair.describe()}{stage}"
        state = study.state(pair)
        if state in ("new", "resume"):
            what = "resuming" if state == "resume" else "starting"
            if pair.stage == "confirm" and study.tune and state == "new":
                try:
                    what += f" at {study.choice(pair.variant, pair.rung).label}"
                except UserError:  # every tuning run diverged: run_pair reports it
                    pass
            echo(f"{label}: {what} (log: {study.log_path(pair)})")
        start = time.time()
        outcomes[pair] = outcome = run_pair(study, pair, launch, clean_checkpoints)
        if outcome == "skipped":
            echo(f"{label}: already done, skipped")
        elif outcome == "done":
            echo(f"{label}: done in {time.time() - start:.0f} s")
        elif outcome == "diverged":
            echo(f"{label}: diverged (non-finite loss) after {time.time() - start:.0f} s: its point counts as +inf")
        elif outcome == "waiting":
            done, total = study.tuning_progress(pair.variant, pair.rung)
            echo(f"{label}: waits for {pair.variant}'s tuning runs ({done} of {total} done); not started")
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
        state = study.state(pair)
        if state == "waiting":
            done, total = study.tuning_progress(pair.variant, pair.rung)
            lines.append(
                f"# {pair.describe()}: confirmation run, waits for {pair.variant}'s tuning ({done} of {total} runs "
                "done): print the commands again once they are"
            )
            continue
        try:
            args = study.next_args(pair)
            if args is None and study.state(pair) == "done":
                args = study.eval_args(pair)
        except UserError as err:  # a confirmation run with no point to run at (every tuning run diverged)
            lines.append(f"# {pair.describe()}: {' '.join(str(err).split())}")
            continue
        lines.append(f"# {pair.describe()}: done" if args is None else shlex.join(["lit_ffn", *args]))
    return "\n".join(lines)


def slurm_script(
    study: Study, ablate_argv: Sequence[str], sbatch: Sequence[str] = (), tasks: range | None = None, stage: str = ""
) -> str:
    """A SLURM array script: task ``i`` runs pair ``i`` through ``lit_ffn ablate … --task i``,
    so that a requeued or resubmitted task skips, resumes or starts its pair like a local rerun.
    ``tasks``: the pairs of this array (default all; a tuned study writes one script per stage)."""
    pairs = study.pairs()
    tasks = range(len(pairs)) if tasks is None else tasks
    python = shlex.quote(sys.executable)
    header = [
        "#!/bin/bash",
        f"#SBATCH --job-name={study.experiment}{'_' + stage if stage else ''}",
        f"#SBATCH --array={tasks.start}-{tasks.stop - 1}",
        f"#SBATCH --output={study.out.resolve()}/logs/slurm_%A_%a.out",
        "#SBATCH --ntasks=1",
        *[f"#SBATCH {option}" for option in sbatch],
    ]
    listed = "\n".join(f"#   task {i}: {pairs[i].describe()}" for i in tasks)
    what = f"the {stage} stage: " if stage else ""
    return "\n".join(
        [
            *header,
            "#",
            f"# lit_ffn ablation '{study.experiment}', {what}{len(tasks)} tasks, one run each:",
            listed,
            "# Submit:  sbatch THIS_FILE   (a task that is resubmitted skips/resumes its run)",
            f"# Report once all tasks ended:  lit_ffn ablate --report {shlex.quote(str(study.out))}",
            (
                "#   e.g. sbatch --dependency=afterany:<array job id> --wrap "
                f'"{python} -m lit_ffn.cli ablate --report {shlex.quote(str(study.out.resolve()))}"'
            ),
            "set -euo pipefail",
            f"cd {shlex.quote(str(Path.cwd().resolve()))}",
            f'{python} -m lit_ffn.cli ablate {shlex.join(ablate_argv)} --task "$SLURM_ARRAY_TASK_ID"',
            "",
        ]
    )


def write_slurm_scripts(study: Study, script: Path, ablate_argv: Sequence[str], sbatch: Sequence[str]) -> str:
    """Write the SLURM array script(s); returns what to tell the user.  A tuned study gets two:
    ``FILE`` (tuning) and ``FILE``'s ``_confirm`` sibling, to submit with ``--dependency=afterok``."""
    study.save()
    (study.out / "logs").mkdir(exist_ok=True)  # SLURM does not create the --output directory
    script.parent.mkdir(parents=True, exist_ok=True)
    n, n_tune = len(study.pairs()), len(study.tune_pairs())
    if not n_tune:
        script.write_text(slurm_script(study, ablate_argv, sbatch))
        script.chmod(0o755)
        return f"wrote {script} ({n} array tasks); submit with: sbatch {script}"
    confirm = script.with_name(f"{script.stem}_confirm{script.suffix}")
    script.write_text(slurm_script(study, ablate_argv, sbatch, range(n_tune), "tuning"))
    confirm.write_text(slurm_script(study, ablate_argv, sbatch, range(n_tune, n), "confirmation"))
    for path in (script, confirm):
        path.chmod(0o755)
    return (
        f"wrote {script} ({n_tune} tuning tasks) and {confirm} ({n - n_tune} confirmation tasks); submit with: "
        f"jid=$(sbatch --parsable {script}) && sbatch --dependency=afterok:$jid {confirm}"
    )


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
    parser.add_argument(
        "--tune",
        action="append",
        default=[],
        metavar="KEY=V1,V2,…",
        help="tune KEY per variant over these values (repeatable: the grid is the product) on --tune-seeds; "
        "each variant is then confirmed at its best point on --seeds",
    )
    parser.add_argument(
        "--tune-seeds", nargs="+", type=int, default=[], metavar="T", help="seeds of the tuning runs (not in --seeds)"
    )
    parser.add_argument(
        "--eval-tasks",
        type=lambda text: [t.strip() for t in text.split(",") if t.strip()],
        default=[],
        metavar="A,B",
        help="after each confirmation run, score it on these lm-evaluation-harness tasks (lit_ffn evaluate; "
        "needs pip install -e '.[eval]'); results.md gains per-task accuracy with the same tests",
    )
    parser.add_argument("--eval-include-path", metavar="DIR", help="a directory of your own lm_eval task YAMLs")
    parser.add_argument("--eval-limit", type=float, metavar="N", help="documents per task (lm_eval --limit)")
    parser.add_argument(
        "--ladder",
        nargs="+",
        default=[],
        metavar="RUNG.yaml",
        help="scaling ladder: every run once per rung config (layered over the base); loss-vs-compute fits "
        "and compute multipliers in the report",
    )
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


def main(argv: list[str] | None = None, launch: Launcher = subprocess_launcher) -> int:
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
        study = make_study(
            args.out,
            args.config,
            args.ffn,
            args.seeds,
            overrides,
            args.experiment,
            args.baseline,
            tune=args.tune,
            tune_seeds=args.tune_seeds,
            ladder=args.ladder,
            eval_tasks=args.eval_tasks,
            eval_include_path=args.eval_include_path,
            eval_limit=args.eval_limit,
        )
        check_configs(study)
        if study.eval_tasks:  # unknown tasks and a missing lm-eval fail now, not after the first run
            from lit_ffn.inference.evaluate import require_lm_eval, task_manager

            require_lm_eval()
            task_manager(study.eval_tasks, study.eval_include_path)
        if len(study.ladder) == 1:
            print(
                f"lit_ffn ablate: note: --ladder has a single rung ({next(iter(study.ladder))}): no scaling fit is "
                "possible; the report gives that rung's tables only (add rungs for a fit)",
                file=sys.stderr,
            )
        if args.print_commands:
            print(print_commands(study))
            return 0
        if args.slurm_array:
            print(write_slurm_scripts(study, Path(args.slurm_array), _ablate_argv_without_mode(argv), args.sbatch))
            return 0
        pairs = study.pairs()
        if args.task is not None:
            if not 0 <= args.task < len(pairs):
                raise UserError(f"--task {args.task} is out of range: the study has pairs 0..{len(pairs) - 1}")
            if study.state(pairs[args.task]) == "waiting":
                study.fresh_args(pairs[args.task])  # raises the one line: which tuning runs it waits for
            outcomes = run_study(study, launch, [pairs[args.task]], args.clean_checkpoints)
            return 0 if all(o in ("done", "skipped", "diverged") for o in outcomes.values()) else 1
        try:
            outcomes = run_study(study, launch, pairs, args.clean_checkpoints)
        except KeyboardInterrupt:
            print("\nlit_ffn ablate: interrupted; rerun the same command to resume the study", file=sys.stderr)
            return 130
        paths = write_report(study)
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
        failed = [p.describe() for p, o in outcomes.items() if o not in ("done", "skipped", "diverged", "waiting")]
        waiting = [p.describe() for p, o in outcomes.items() if o == "waiting"]
        if waiting and not failed:
            failed = waiting  # cannot happen without a failure upstream, but never report an unfinished study as ok
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
