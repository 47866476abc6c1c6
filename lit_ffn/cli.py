"""``lit_ffn`` command line.

* ``lit_ffn fit|validate|test …`` — LightningCLI (jsonargparse) over
  :class:`~lit_ffn.training.module.LitDecoder` and :class:`~lit_ffn.data.TokenDataModule`.
* ``lit_ffn prepare …`` and the other tool subcommands in :data:`TOOLS`, each
  a plain ``main(argv) -> int`` in its own module.

User mistakes end in one line on stderr (``lit_ffn: error: …``) and exit code 2,
not in a traceback; a fit whose loss or gradients became non-finite ends the same
way with exit code 3 (:class:`~lit_ffn.training.guards.NonFiniteLossError`: a
diverged run, which ``lit_ffn ablate``'s tuning stage records as such).
"""

from __future__ import annotations

import difflib
import importlib
import signal
import sys
import warnings

#: Tool subcommands: name → "module:function" taking argv (without the name).
TOOLS = {
    "prepare": "lit_ffn.data.prepare.cli:main",
    "ablate": "lit_ffn.experiments.ablate:main",
    "params": "lit_ffn.experiments.params:main",
    "bench": "lit_ffn.bench.cli:main",
    "consolidate": "lit_ffn.distributed.consolidate:main",
    "plots": "lit_ffn.experiments.plots:main",
    "generate": "lit_ffn.inference.cli:generate_main",
    "evaluate": "lit_ffn.inference.cli:evaluate_main",
    "export": "lit_ffn.inference.cli:export_main",
}

#: LightningCLI subcommands lit_ffn supports (no ``predict``: LitDecoder has no predict_step).
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test")


def _run_tool(name: str, argv: list[str]) -> int:
    module_name, func_name = TOOLS[name].split(":")
    return int(getattr(importlib.import_module(module_name), func_name)(argv) or 0)


def _usage() -> str:
    return (
        "usage: lit_ffn {" + ",".join(LIGHTNING_SUBCOMMANDS + tuple(TOOLS)) + "} …\n"
        "  lit_ffn fit --config configs/quickstart.yaml     train (LightningCLI; --help for all options)\n"
        "  lit_ffn prepare --input FILES… --output DIR      tokenize text into litdata chunks\n"
        "  lit_ffn ablate --config B.yaml --ffn A B --out D  multi-seed FFN study and its report\n"
        "  lit_ffn params --config B.yaml                   parameter counts of every FFN variant\n"
        "  lit_ffn bench --config B.yaml [--ffn A B] …      time training steps on this device (--help for all)\n"
        "  lit_ffn consolidate CKPT_DIR OUT.ckpt            sharded (FSDP) checkpoint -> one file for one CPU\n"
        "  lit_ffn plots profile|series|curves --out X.png …  PNG plots from runs' TensorBoard event files\n"
        "  lit_ffn generate --ckpt RUN|CKPT --prompt TEXT    continue a prompt with a trained model (KV cache)\n"
        "  lit_ffn evaluate --ckpt RUN|CKPT --tasks A,B      lm-evaluation-harness tasks (pip install -e '.[eval]')\n"
        "  lit_ffn export --ckpt RUN|CKPT --out DIR          a Hugging Face model directory (stock Qwen3ForCausalLM)\n"
    )


def _unknown_command(name: str) -> int:
    commands = LIGHTNING_SUBCOMMANDS + tuple(TOOLS)
    close = difflib.get_close_matches(name, commands, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    sys.stderr.write(f"lit_ffn: error: unknown command '{name}'{hint}; commands: {', '.join(commands)}\n")
    return 2


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.stderr.write(_usage())
        return 2
    if argv[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0
    if argv[0] in TOOLS:
        return _run_tool(argv[0], argv[1:])
    if argv[0] not in LIGHTNING_SUBCOMMANDS and not argv[0].startswith("-"):
        return _unknown_command(argv[0])

    from lit_ffn.training.config import user_error_message
    from lit_ffn.training.lightning_cli import LitFFNCLI

    # Two warnings that do not apply to lit_ffn runs and would teach users to ignore warnings:
    # lit_ffn's datasets split their items across DataLoader workers themselves (litdata's
    # StreamingDataset; ValBlocks by worker id), so their __len__ is right with any num_workers;
    # the LeafSpec deprecation is raised inside Lightning 2.6 by newer torch releases.
    warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    if not from_command_line:  # called from Python with explicit argv: that is intended
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended")
    try:
        cli = LitFFNCLI(args=None if from_command_line else argv)
    except Exception as err:  # only user errors are turned into a line
        from lit_ffn.training.guards import NonFiniteLossError

        message = user_error_message(err)
        if message is None:
            raise
        sys.stderr.write(f"lit_ffn: error: {message}\n")
        return 3 if isinstance(err, NonFiniteLossError) else 2
    if cli.subcommand == "fit" and cli.trainer.is_global_zero:
        sys.stdout.write(cli.summary() + "\n")
    stop = getattr(cli, "graceful_stop", None)
    if stop is not None and stop.stopped_by is not None:  # SIGTERM / SIGINT: saved, stopped (training/preemption.py)
        name = signal.Signals(stop.stopped_by).name
        if cli.trainer.is_global_zero:
            sys.stderr.write(
                f"lit_ffn: interrupted by {name} after step {stop.stopped_at_step}; last.ckpt is saved: resume with "
                f"`{cli.resume_command()}`\n"
            )
        return 128 + stop.stopped_by
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
