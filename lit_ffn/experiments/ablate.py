"""``lit_ffn ablate``: run a multi-seed FFN ablation study, resumably, and write its report.

    lit_ffn ablate --config BASE.yaml --ffn swiglu dynamic_geglu iso_gmlp --seeds 0 1 2 3 4 --out DIR [fit overrides…]
    lit_ffn ablate … --print-commands            # the fit command each pair needs now
    lit_ffn ablate … --slurm-array job.sh        # a SLURM array script, one task per pair
    lit_ffn ablate --report DIR                  # rebuild the report from the runs on disk
    lit_ffn ablate … --tune model.lr=1e-4,3e-4,1e-3 --tune-seeds 100 101   # tune per variant, confirm on --seeds
    lit_ffn ablate … --ladder configs/ladder/cpu/*.yaml                    # every run at each rung; scaling fits
    lit_ffn ablate … --out PILOT --plan --target-mdd 0.02                  # seeds needed, from a pilot's runs
    lit_ffn ablate … --workers 4 [--devices-per-run 2]                    # 4 runs at once on this machine

The command line of a study: planning is :mod:`lit_ffn.experiments.study` (pairs, run
directories, fit commands, ``DIR/study.json``), running :mod:`lit_ffn.experiments.runner`
(one subprocess per pair, resumable: rerunning the same command after a crash, a Ctrl-C or a
preempted SLURM task finishes the study without redoing work, and a finished study's rerun only
rewrites the report), or N at a time with ``--workers N`` (:mod:`lit_ffn.experiments.pool`: each
in its own process, on its own GPUs or share of the CPU cores), the report
:mod:`lit_ffn.experiments.report`.  This module parses the arguments and writes
``--print-commands`` / ``--slurm-array`` output.

Tuned studies run the tuning stage first (``--tune-seeds``, default 100 101); a confirmation run
starts once its variant's tuning runs (at its rung) are all done, at the chosen point.  A run whose
loss became non-finite (``lit_ffn fit`` exit code 3) is done and "diverged": its loss counts as +∞
in the tuning choice and in the comparisons (divergence rate, rank test).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from lit_ffn.errors import UserError
from lit_ffn.experiments import tuning
from lit_ffn.experiments.pool import Interrupted, PoolPlan, plan_slots, run_pool, run_resources
from lit_ffn.experiments.report import write_report
from lit_ffn.experiments.runner import (  # noqa: F401 - re-exported: the launchers and codes belong to the CLI too
    DIVERGED_EXIT_CODE,
    SETTLED,
    Launcher,
    in_process_launcher,
    run_pair,
    run_study,
    subprocess_launcher,
)
from lit_ffn.experiments.study import DEFAULT_TUNE_SEEDS, Study, check_configs, make_study


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
        "loss per variant against a baseline with the study's primary test (one Holm family per study). Any other --key=value is a `lit_ffn fit` "
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
    parser.add_argument(
        "--seed-count",
        nargs="+",
        default=[],
        metavar="NAME=N",
        help="run variant NAME on only the first N of --seeds (the baseline runs them all; each comparison is paired "
        "on the seeds both ran): the seeds each comparison's plan asks for (--plan)",
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
        "--tune-seeds",
        nargs="+",
        type=int,
        default=None,
        metavar="T",
        help=f"seeds of the tuning runs, disjoint from --seeds (default with --tune: "
        f"{' '.join(map(str, DEFAULT_TUNE_SEEDS))}; one seed makes the choice itself a coin flip)",
    )
    parser.add_argument(
        "--tune-rule",
        "--lr-rule",
        dest="tune_rule",
        choices=tuning.RULES,
        default=None,
        help=f"how each variant's grid point is chosen from its tuning runs: mean (lowest mean loss), upper "
        "(lowest mean + t_{n-1,0.8}·SE: a point whose seeds disagree is penalised), fit (lowest value of a "
        "parabola fitted through the means; one numeric key), quiet (the quieter of the two lowest means when "
        "the runner-up is within noise of the best: less seed noise for the confirmation); default "
        f"{tuning.DEFAULT_RULE} "
        "(lit_ffn.experiments.tuning; the simulation behind the default: docs/experiments.md)",
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
    _add_verdict_arguments(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--print-commands", action="store_true", help="print the fit command each pair needs now")
    mode.add_argument("--slurm-array", metavar="FILE", help="write a SLURM array script (one task per pair)")
    mode.add_argument("--report", metavar="DIR", help="only rebuild DIR/results.* from the runs on disk")
    mode.add_argument("--task", type=int, metavar="I", help="run only pair I (what each SLURM array task calls)")
    mode.add_argument(
        "--plan",
        nargs="?",
        const="",
        default=None,
        metavar="PILOT_DIR",
        help="print the seeds per variant each comparison needs for --target-mdd, from the finished runs of a "
        "pilot study (PILOT_DIR, else --out), and write plan.json (the report states the MDD it was planned "
        "for); runs nothing (lit_ffn.experiments.planner)",
    )
    parser.add_argument("--target-mdd", type=float, metavar="D", help="--plan: the difference (nats) to detect")
    parser.add_argument("--alpha", type=float, default=0.05, help="--plan: two-sided level (default 0.05)")
    parser.add_argument("--power", type=float, default=0.8, help="--plan: power (default 0.8)")
    parser.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra #SBATCH line for --slurm-array, e.g. --sbatch=--gres=gpu:1 (repeatable)",
    )
    # ---- the local pool (lit_ffn.experiments.pool)
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run N pairs at once on this machine, each in its own process: on GPUs each run gets its own "
        "(CUDA_VISIBLE_DEVICES), on CPU the cores are split (OMP_NUM_THREADS = cores // N); default: one at a time",
    )
    parser.add_argument(
        "--devices-per-run",
        type=int,
        metavar="K",
        help="with --workers on GPUs: GPUs per run (default: the runs' trainer.devices, else 1)",
    )
    parser.add_argument(
        "--clean-checkpoints",
        action="store_true",
        help="delete a run's checkpoints/ once it is done (saves disk; it can no longer be extended)",
    )
    return parser


def _add_verdict_arguments(parser: argparse.ArgumentParser) -> None:
    """``--primary-test`` and ``--control``: declared with the study, before its runs (study.json)."""
    from lit_ffn.experiments.verdicts import DEFAULT_PRIMARY_TEST, PRIMARY_TESTS

    parser.add_argument(
        "--primary-test",
        metavar="TEST",
        help=f"the one test whose Holm-adjusted result gives the verdicts, declared with the study: "
        f"{', '.join(PRIMARY_TESTS)} (default for a new study: {DEFAULT_PRIMARY_TEST}); every other test is secondary",
    )
    parser.add_argument(
        "--control",
        nargs="+",
        default=[],
        metavar="NAME",
        help="variants whose effect is known in advance (e.g. a narrowed FFN): tested on their own, outside the "
        "Holm family, reported as 'control detected / not detected'",
    )


def _ablate_argv_without_mode(argv: Sequence[str]) -> list[str]:
    """The user's ablate arguments minus ``--slurm-array FILE``, ``--sbatch …`` and the local pool's
    ``--workers``/``--devices-per-run`` (for the SLURM script: each task runs one pair)."""
    with_value = ("--slurm-array", "--sbatch", "--workers", "--devices-per-run")
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in with_value:
            skip = True
            continue
        if arg.startswith(tuple(f"{option}=" for option in with_value)):
            continue
        out.append(arg)
    return out


def pool_plan(args: argparse.Namespace, configs: dict) -> PoolPlan:
    """The local pool's slots for ``--workers``/``--devices-per-run`` and the runs' parsed configs."""
    accelerator, devices = run_resources(list(configs.values()))
    return plan_slots(args.workers, accelerator, devices, args.devices_per_run)


def main(argv: list[str] | None = None, launch: Launcher = subprocess_launcher) -> int:
    """Entry point of ``lit_ffn ablate``: 0 when every pair is done, 1 when some failed, 2 on a user error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, overrides = parser.parse_known_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        if args.plan is not None:  # before make_study: a plan reads a pilot and runs nothing
            from lit_ffn.experiments.planner import plan_command

            return plan_command(args.plan or None, args.out, args.target_mdd, args.alpha, args.power, args.baseline)
        if args.target_mdd is not None:
            raise UserError("--target-mdd is for --plan (the seeds a study needs); add --plan")
        if args.report:
            study = Study.load(Path(args.report))
            paths = write_report(study, args.baseline, primary_test=args.primary_test, controls=args.control)
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
            tune_rule=args.tune_rule,
            eval_tasks=args.eval_tasks,
            eval_include_path=args.eval_include_path,
            eval_limit=args.eval_limit,
            primary_test=args.primary_test,
            controls=args.control,
            seed_counts=args.seed_count,
        )
        configs = check_configs(study)
        if args.workers is not None and args.task is not None:
            raise UserError("--task I runs one pair (a SLURM array task); --workers N is for running the study here")
        local = args.workers is not None and not (args.print_commands or args.slurm_array)
        plan = pool_plan(args, configs) if local else None  # the pool's mistakes: one line now, nothing run
        if study.eval_tasks:  # unknown tasks and a missing lm-eval fail now, not after the first run
            from lit_ffn.inference.evaluate import require_lm_eval, task_manager

            require_lm_eval()
            task_manager(study.eval_tasks, study.eval_include_path)
        if study.tune and len(study.tune_seeds) < 2:
            print(
                f"lit_ffn ablate: note: one tuning seed ({study.tune_seeds[0]}): which point wins is then itself "
                "random wherever points differ by less than the seed-to-seed spread; the report flags the choice "
                "(default: --tune-seeds 100 101)",
                file=sys.stderr,
            )
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
            return 0 if all(o in SETTLED for o in outcomes.values()) else 1
        try:
            if plan is not None:
                outcomes = run_pool(study, plan, pairs, args.clean_checkpoints)
            else:
                outcomes = run_study(study, launch, pairs, args.clean_checkpoints)
        except KeyboardInterrupt:
            print("\nlit_ffn ablate: interrupted; rerun the same command to resume the study", file=sys.stderr)
            return 130
        except Interrupted as stop:
            print(f"lit_ffn ablate: {stop}; rerun the same command to resume the study", file=sys.stderr)
            return 128 + stop.signum
        paths = write_report(study)
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
        failed = [p.describe() for p, o in outcomes.items() if o not in (*SETTLED, "waiting")]
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
