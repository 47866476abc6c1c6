"""The errors of ``lit_ffn prepare`` (one line each)."""

from __future__ import annotations

from lit_ffn.errors import UserError


class PrepareError(UserError):
    """A mistake in what ``prepare`` was asked to do; the message is one line."""


class OutputExistsError(PrepareError):
    """The output directory already holds a dataset and ``overwrite`` was not given."""
