"""User-facing errors: one line that says what was wrong and how to fix it."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(ValueError):
    """A mistake in the user's input (config, data, paths).  The CLI prints it
    as ``lit_ffn: error: <message>`` and exits with status 2."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def run_tool(prog: str, body: Callable[[], int | None]) -> int:
    """Run the body of a tool command (``lit_ffn prepare``, ``params``, ``bench``, …) and return its exit code.

    A :class:`UserError` becomes one line ``<prog>: error: <message>`` on stderr and exit code 2;
    argparse's own exit (``--help``, or a usage error it already printed) keeps its code.
    """
    try:
        return int(body() or 0)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    except UserError as err:
        print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
