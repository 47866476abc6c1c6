"""The command line of the check: ``scripts/gpu_check.sh [--cpu] [--items …] [--out docs/results/gpu_check.md]``.

Exit status: 0 when no item FAILed (SKIPs allowed), 1 when one did, 2 for a mistake in the
arguments (one line).  The report is rewritten after every item; the closing PASS/FAIL lines go
to stdout.  Nothing is installed or downloaded: wheels of the packages a GPU machine lacks are
installed by ``scripts/gpu_check.sh`` from a local folder (``WHEELS=…``) before this runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lit_ffn.bench.cli import check_output_path
from lit_ffn.bench.gpu_check import environment, fits, gate_cost, loss_cost, preflight, sdpa, throughput
from lit_ffn.bench.gpu_check.items import FAIL, Context, Item, Result, run_item, single
from lit_ffn.bench.gpu_check.plan import Plan, fit_data_blocks, make_plan, plan_mode, write_shape_config
from lit_ffn.bench.gpu_check.report import atomic_write_text, final_lines, render
from lit_ffn.errors import UserError, run_tool

#: Every item in the order it runs, after ``preflight`` (always first; :mod:`.preflight`): the cheap,
#: decisive ones first — SDPA (its fix applies to every later model), the loss (seconds), the
#: throughput (the headline numbers) — then the fits (FSDP1, NCCL, compile and resume have never
#: run on a GPU), then the two remaining targets.  The fits get the time left less the later items'
#: shares (``min_seconds_gpu``), so neither starves the other; see :mod:`.fits` for their own split.
ITEMS = (
    Item(("sdpa",), "SDPA kernel of the paper's GQA attention", single(sdpa.run), 20),
    Item(("loss",), "loss backends vs plain F.cross_entropy: peak memory, time, equality", single(loss_cost.run), 30),
    Item(
        ("throughput",),
        "throughput: eager, compiled per loss backend, transformers' Qwen3",
        single(throughput.run_throughput),
        180,
    ),
    Item(tuple(fits.STRATEGIES), "fits resumed from a mid-run checkpoint", fits.run, 150),
    Item(("ffn",), "DynamicGEGLU vs GEGLU step time", single(throughput.run_ffn), 40),
    Item(("gates",), "gate statistics on vs off (every step, default cadence)", single(gate_cost.run), 60),
)
KEYS = [key for item in ITEMS for key in item.keys]
GROUPS = {"fits": list(fits.STRATEGIES)}
DEFAULT_OUT = "docs/results/gpu_check.md"
#: The files ``--out-dir`` holds (the device tool brings back at most 8 files from $OUT; with the
#: tee'd console log of the recipe, 4): the report, its numbers, the fits' processes' log tails.
OUT_DIR_FILES = {"out": "gpu_check.md", "json": "gpu_check.json", "log": "gpu_check_fits.log"}
DEFAULT_DATA = "data/quickstart"
#: GPU mode's default time budget: the run fits one 10-minute device call with room to spare.
GPU_BUDGET_S = 480.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpu_check",
        description="GPU acceptance check of lit_ffn (paper shape on CUDA; with --cpu or without CUDA a tiny shape).",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--cpu", action="store_true", help="CPU mode at the tiny shape even where CUDA is available")
    mode.add_argument(
        "--gpu", action="store_true", help="GPU mode or nothing: the preflight fails where CUDA is missing"
    )
    parser.add_argument(
        "--items", nargs="+", metavar="ITEM", help=f"run only these ({', '.join(KEYS)}; 'fits' = all three fits)"
    )
    parser.add_argument("--out", help=f"the Markdown report (default {DEFAULT_OUT}, or in --out-dir)")
    parser.add_argument("--json", metavar="PATH", help="also write every number as JSON")
    parser.add_argument(
        "--out-dir",
        metavar="DIR",
        help="write the report, the JSON and the fits' log tails here, as "
        + ", ".join(OUT_DIR_FILES.values())
        + " (--out/--json still win); e.g. the device tool's $OUT",
    )
    parser.add_argument(
        "--work-dir",
        default="runs/gpu_check",
        help="scratch: configs, fit runs and logs (each fit's directory is replaced)",
    )
    parser.add_argument(
        "--data-dir",
        default=DEFAULT_DATA,
        help=f"prepared dataset for the fits (default {DEFAULT_DATA}: the offline quickstart corpus, built if absent)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        help=f"no item starts after this many seconds (default {GPU_BUDGET_S:.0f} on GPU, none on CPU)",
    )
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compiled rows")
    parser.add_argument(
        "--fit-compile",
        action=argparse.BooleanOptionalAction,
        help="per-block torch.compile in the fits (default: on for GPU, off for CPU, where inductor "
        "compiles for about a minute per process)",
    )
    parser.add_argument("--fit-steps", type=int, help="optimizer steps of each fit (default 20)")
    parser.add_argument("--resume-step", type=int, help="the checkpoint the fits resume from (default 10)")
    parser.add_argument("--fit-devices", type=int, help="processes per fit (default: 1 GPU; 2 CPU processes)")
    parser.add_argument(
        "--sdpa-force-math",
        action="store_true",
        help="hold SDPA with enable_gqa to the math kernel, to exercise the kv-expansion fallback",
    )
    return parser


def selected_keys(items: list[str] | None) -> list[str]:
    if not items:
        return list(KEYS)
    chosen = []
    for entry in items:
        names = GROUPS.get(entry, [entry])
        for name in names:
            if name not in KEYS:
                raise UserError(f"--items {entry}: unknown item; choose from {', '.join(KEYS)} or 'fits'")
            chosen.append(name)
    return [key for key in KEYS if key in chosen]


def check_args(args: argparse.Namespace) -> None:
    for flag, value, low in (("--fit-steps", args.fit_steps, 2), ("--resume-step", args.resume_step, 1)):
        if value is not None and value < low:
            raise UserError(f"{flag} must be at least {low}, got {value}")
    steps = args.fit_steps or 20
    resume = args.resume_step or min(10, steps // 2)
    if resume >= steps:
        raise UserError(f"--resume-step {resume} must be smaller than --fit-steps {steps}")
    args.resume_step = resume
    if args.fit_devices is not None and args.fit_devices < 1:
        raise UserError(f"--fit-devices must be at least 1, got {args.fit_devices}")
    if args.budget_s is not None and args.budget_s <= 0:
        raise UserError(f"--budget-s must be > 0, got {args.budget_s}")
    check_output_path(args.out, "--out")
    check_output_path(args.json, "--json")


def dataset_vocab(data_dir: Path, default: bool, log: Callable[[str], None]) -> int:
    """The vocabulary of the fits' dataset, building the quickstart corpus first when it is the default and absent."""
    from lit_ffn.data.format import read_meta

    if default and not (data_dir / "meta.json").exists():
        from lit_ffn.data.corpus import ensure_quickstart_dataset_isolated

        log(f"gpu_check: building the quickstart corpus in {data_dir} (offline, Python's own documentation)")
        return int(ensure_quickstart_dataset_isolated(data_dir)["vocab_size"])
    return int(read_meta(data_dir)["vocab_size"])


def output_paths(args: argparse.Namespace, work_dir: Path) -> Path:
    """Fill ``args.out``/``args.json`` from ``--out-dir``; the combined fit log's path."""
    if args.out_dir:
        out_dir = Path(args.out_dir).expanduser()
        out_dir.mkdir(parents=True, exist_ok=True)
        args.out = args.out or str(out_dir / OUT_DIR_FILES["out"])
        args.json = args.json or str(out_dir / OUT_DIR_FILES["json"])
        return out_dir / OUT_DIR_FILES["log"]
    args.out = args.out or DEFAULT_OUT
    return work_dir / OUT_DIR_FILES["log"]


def compiles(args: argparse.Namespace, mode: str) -> bool:
    """Whether this run compiles anything (inductor builds C/C++, Triton its launcher)."""
    fit_compile = args.fit_compile if args.fit_compile is not None else mode == "gpu"
    return args.compile_backend == "inductor" or (fit_compile and any(k in fits.STRATEGIES for k in args.keys))


def check(argv: list[str], log: Callable[[str], None] | None = None) -> tuple[int, list[Result]]:
    """Run the check with ``argv``; (exit status, results).  The report is written to ``--out``.

    ``preflight`` runs first; where it FAILs nothing else runs (exit 1, one line), so a machine
    without a compiler, a driver or a package costs seconds, not the time of the items before it.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    args = build_parser().parse_args(argv)
    args.keys = keys = selected_keys(args.items)
    args.command = environment.command_line(argv)
    start = time.monotonic()
    work_dir = Path(args.work_dir).expanduser().absolute()
    work_dir.mkdir(parents=True, exist_ok=True)
    combined_log = output_paths(args, work_dir)
    check_args(args)
    combined_log.write_text("")  # this run's log tails only
    mode = plan_mode(args)
    pre = preflight.run(mode, compiles(args, mode), work_dir)
    if pre.status == FAIL:  # its FAIL line below is the one line on the console
        plan = make_plan(args, 0, mode)
        facts = {"command": " ".join(args.command), "budget_s": None}
        write(args, facts, plan, [pre], keys, time.monotonic() - start)
        print("\n".join(final_lines([pre])), flush=True)
        return 1, [pre]
    log(f"gpu_check: {pre.status} preflight: {pre.summary}")
    data_dir = Path(args.data_dir).expanduser().absolute()
    vocab = dataset_vocab(data_dir, args.data_dir == DEFAULT_DATA, log)
    plan = make_plan(args, vocab, mode)
    if vocab > plan.vocab_size:
        raise UserError(
            f"--data-dir {args.data_dir}: its vocabulary ({vocab:,}) is larger than the model's ({plan.vocab_size:,})"
        )
    if any(key in fits.STRATEGIES for key in keys):
        log(f"gpu_check: {fit_data_blocks(plan, data_dir)}")  # or one line, before any model is built
    threads = torch.get_num_threads()
    if plan.torch_threads:
        torch.set_num_threads(plan.torch_threads)
    try:
        return run_items(args, plan, keys, work_dir, data_dir, start, log, [pre], combined_log)
    finally:
        torch.set_num_threads(threads)


def item_deadline(deadline: float, now: float, later: list[Item], plan: Plan, own: float) -> float:
    """When an item should be done: ``deadline`` less the later items' shares, but at least its own."""
    if plan.mode != "gpu":
        return deadline
    reserve = sum(item.min_seconds_gpu for item in later)
    return max(deadline - reserve, now + own)


def run_items(
    args: argparse.Namespace,
    plan: Plan,
    keys: list[str],
    work_dir: Path,
    data_dir: Path,
    start: float,
    log: Callable[[str], None],
    first: list[Result] | None = None,
    combined_log: Path | None = None,
) -> tuple[int, list[Result]]:
    """Every selected item in order after ``first`` (the preflight), the report rewritten after each;
    (exit status, results)."""
    budget = args.budget_s if args.budget_s is not None else (GPU_BUDGET_S if plan.mode == "gpu" else None)
    facts = environment.describe(plan.device, args.command)
    facts["budget_s"] = budget
    rate = environment.matmul_rate(plan.device, plan.compute_dtype)
    facts["matmul"] = (
        (f"{rate / 1e12:.1f} TFLOP/s" if rate >= 1e12 else f"{rate / 1e9:.1f} GFLOP/s")
        + f" ({environment.MATMUL_SIZE.get(plan.device.type)}³ "
        f"{str(plan.compute_dtype).removeprefix('torch.')} matmul, best of 3, at the start of this run)"
    )
    ctx = Context(
        plan=plan,
        work_dir=work_dir,
        data_dir=data_dir,
        shape_config=write_shape_config(plan, work_dir / "shape.yaml"),
        compile_backend=args.compile_backend,
        sdpa_force_math=args.sdpa_force_math,
        matmul_flops=rate,
        deadline=start + budget if budget else float("inf"),
        log=log,
        combined_log=combined_log,
    )
    log(f"gpu_check: {plan.describe()}; items: {', '.join(keys)}")
    results: list[Result] = list(first or [])
    write(args, facts, plan, results, keys, time.monotonic() - start)
    chosen_items = [item for item in ITEMS if any(key in keys for key in item.keys)]
    for index, item in enumerate(chosen_items):
        chosen = [key for key in item.keys if key in keys]
        ctx.item_deadline = item_deadline(
            ctx.deadline, time.monotonic(), chosen_items[index + 1 :], plan, item.min_seconds_gpu
        )
        results += run_item(item, ctx, chosen)
        done = {r.key for r in results}
        write(args, facts, plan, results, [k for k in keys if k not in done], time.monotonic() - start)
    print("\n".join(final_lines(results)), flush=True)
    return (1 if any(r.status == FAIL for r in results) else 0), results


def write(
    args: argparse.Namespace, facts: dict, plan: Plan, results: list[Result], pending: list[str], wall: float
) -> None:
    """Rewrite the report (and the JSON); a failure here is logged, never the end of a GPU run."""
    try:
        atomic_write_text(Path(args.out), render(facts, plan, results, pending, wall))
        if args.json:
            payload = {"facts": facts, "mode": plan.mode, "results": [vars(r) for r in results]}
            atomic_write_text(Path(args.json), json.dumps(payload, indent=1, default=str) + "\n")
    except Exception as err:  # noqa: BLE001 - the PASS/FAIL lines on stdout and the log still say everything
        print(f"gpu_check: could not write the report: {type(err).__name__}: {err}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; a mistake in the arguments is one line and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    torch.manual_seed(0)
    status: list[int] = []

    def body() -> None:
        status.append(check(argv)[0])

    code = run_tool("gpu_check", body)
    return code if code else (status[0] if status else 0)


__all__ = ["ITEMS", "KEYS", "OUT_DIR_FILES", "build_parser", "check", "item_deadline", "main"]
