"""One config parser for every tool: ``lit_ffn fit``'s own, and its errors as one line.

``lit_ffn params``, ``lit_ffn bench`` and ``lit_ffn ablate`` parse configs exactly as ``fit``
does — the same defaults, ``--config`` composition and links — through :class:`FitConfigParser`,
and build a module from the parsed ``model`` section with :func:`build_module`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from lit_ffn.errors import UserError
from lit_ffn.ffn.registry import BUILTINS, builtin_class_paths, init_arg_names
from lit_ffn.model_config import model_kwargs


def _ffn_message(detail: str) -> str:
    """The message for any problem with ``model.ffn``."""
    bad_path = re.search(r"Got value: ([\w.]+)\s*$", detail) or re.search(r"(?:but|string:) ([\w.]+)", detail)
    unknown_option = re.search(r"Option '(\w+)' is not accepted", detail)
    class_path = re.search(r"class_path='([\w.]+)'", detail)
    if unknown_option and class_path:
        accepted = ", ".join(init_arg_names(class_path.group(1))) or "none"
        return (
            f"model.ffn: {class_path.group(1)} has no init argument '{unknown_option.group(1)}' "
            f"(it accepts: {accepted})"
        )
    if class_path and "Parser key" in detail:  # a bad value for an init argument
        inner = detail.split("callable class:", 1)[-1]
        inner = re.sub(r"\. Got value: Namespace\(.*$", "", inner).strip()
        return f"model.ffn ({class_path.group(1)}): {inner}"
    if bad_path:
        name = bad_path.group(1)
        hint = f" (did you mean --config configs/ffn/{name.lower()}.yaml?)" if name.lower() in BUILTINS else ""
        return (
            f"unknown FFN class '{name}' for model.ffn{hint}: use a built-in "
            f"({builtin_class_paths()}) or the import path of your own class (package.module.Class, "
            "importable from PYTHONPATH, taking the width as its first argument)"
        )
    return "model.ffn: " + detail


def user_error_message(err: BaseException) -> str | None:
    """One actionable line for a user error (None: a bug, let it raise).

    :class:`UserError` speaks for itself; jsonargparse parse errors are
    condensed, with dedicated messages for ``model.ffn``.
    """
    from jsonargparse import ArgumentError

    if isinstance(err, UserError):
        return " ".join(str(err).split())
    if not isinstance(err, ArgumentError):
        return None
    text = " ".join(str(err).split())
    text = re.sub(r"Type typing\.Callable\[.*?\] expects a function or a callable class: ", "", text)
    key = re.match(r'Parser key "([\w.]+)": (.*)$', text)
    if key and key.group(1) == "model.ffn":
        return _ffn_message(key.group(2).lstrip("- "))
    if key:
        return f"{key.group(1)}: {key.group(2)}"
    return text


class FitConfigParser:
    """Parses ``lit_ffn fit`` arguments into the resolved config without building
    anything: LitFFNCLI's own parser (so defaults, ``--config`` composition and
    links are exactly those of ``fit``), built once and reused."""

    def __init__(self) -> None:
        import warnings

        from lit_ffn.training.lightning_cli import LitFFNCLI

        # args=[...] from Python is intended here (LightningCLI warns when sys.argv is also set).
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended")

        class _ParseOnly(LitFFNCLI):
            def _set_seed(self) -> None: ...
            def before_instantiate_classes(self) -> None: ...
            def instantiate_classes(self) -> None: ...
            def after_instantiate_classes(self) -> None: ...
            def _run_subcommand(self, subcommand: str | None) -> None: ...

        self._cli = _ParseOnly(args=["fit"])

    def parse(self, args: Sequence[str]) -> Any:
        """The ``fit`` section (a jsonargparse Namespace) for ``lit_ffn fit ARGS``."""
        try:
            return self._cli.parser.parse_args(["fit", *args]).fit
        except Exception as err:  # turn parse errors into one line
            message = user_error_message(err)
            if message is None:
                raise
            raise UserError(message) from None


def build_module(model: Any) -> Any:
    """A :class:`~lit_ffn.training.module.LitDecoder` from a parsed or saved ``model`` section."""
    from lit_ffn.training.module import LitDecoder

    return LitDecoder(**model_kwargs(model, LitDecoder))


__all__ = ["FitConfigParser", "build_module", "model_kwargs", "user_error_message"]
