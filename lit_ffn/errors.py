"""User-facing errors: one line that says what was wrong and how to fix it."""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Optional


class UserError(ValueError):
    """A mistake in the user's input (config, data, paths).  The CLI prints it
    as ``lit_ffn: error: <message>`` and exits with status 2."""


def builtin_ffn_list() -> str:
    from lit_ffn.ffn import BUILTIN_FFNS

    classes = dict.fromkeys(f"lit_ffn.ffn.{cls.__name__}" for cls in BUILTIN_FFNS.values())
    return ", ".join(classes)


def _init_arg_names(class_path: str) -> list[str]:
    try:
        module_name, _, name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module_name), name)
        return [p for p in inspect.signature(cls).parameters if p not in ("self", "dim")]
    except Exception:  # the class itself is the problem; the caller says so
        return []


def _ffn_message(detail: str) -> str:
    """The message for any problem with ``model.ffn``."""
    bad_path = re.search(r"Got value: ([\w.]+)\s*$", detail) or re.search(r"(?:but|string:) ([\w.]+)", detail)
    unknown_option = re.search(r"Option '(\w+)' is not accepted", detail)
    class_path = re.search(r"class_path='([\w.]+)'", detail)
    if unknown_option and class_path:
        accepted = ", ".join(_init_arg_names(class_path.group(1))) or "none"
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
        hint = ""
        from lit_ffn.ffn import BUILTIN_FFNS

        if name.lower() in BUILTIN_FFNS:
            hint = f" (did you mean --config configs/ffn/{name.lower()}.yaml?)"
        return (
            f"unknown FFN class '{name}' for model.ffn{hint}: use a built-in "
            f"({builtin_ffn_list()}) or the import path of your own class (package.module.Class, "
            "importable from PYTHONPATH, taking the width as its first argument)"
        )
    return "model.ffn: " + detail


def user_error_message(err: BaseException) -> Optional[str]:
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
