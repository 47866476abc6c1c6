"""``lit_ffn`` command line.

* ``lit_ffn fit|validate|test …`` — LightningCLI (jsonargparse) over
  :class:`~lit_ffn.module.LitDecoder` and :class:`~lit_ffn.data.TokenDataModule`.
* ``lit_ffn prepare …`` and the other tool subcommands in :data:`TOOLS`, each
  a plain ``main(argv) -> int`` in its own module.

User mistakes end in one line on stderr (``lit_ffn: error: …``) and exit code 2,
not in a traceback.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Optional

#: Tool subcommands: name → "module:function" taking argv (without the name).
TOOLS = {
    "prepare": "lit_ffn.prepare:main",
    "ablate": "lit_ffn.ablate:main",
    "params": "lit_ffn.params:main",
    "bench": "lit_ffn.bench:main",
    "consolidate": "lit_ffn.consolidate:main",
    "plots": "lit_ffn.plots:main",
}

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


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
        "  lit_ffn consolidate CKPT_DIR OUT.ckpt            sharded (FSDP) checkpoint -> one file for one CPU\n"
    )


def main(argv: Optional[list[str]] = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0 if argv else 2
    if argv[0] in TOOLS:
        return _run_tool(argv[0], argv[1:])

    from lit_ffn.errors import user_error_message
    from lit_ffn.lightning_cli import LitFFNCLI

    if not from_command_line:  # called from Python with explicit argv: that is intended
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended")
    try:
        LitFFNCLI(args=None if from_command_line else argv)
    except Exception as err:  # noqa: BLE001 - only user errors are turned into a line
        message = user_error_message(err)
        if message is None:
            raise
        sys.stderr.write(f"lit_ffn: error: {message}\n")
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
