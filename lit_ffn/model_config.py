"""A :class:`~lit_ffn.model.Decoder` from a ``model`` config section, built as ``lit_ffn fit`` builds it.

A ``model`` section (parsed by ``lit_ffn fit``, or saved in a run's ``config.yaml`` or a checkpoint's
hyper-parameters) holds the decoder's shape and its FFN as ``class_path``/``init_args``.
:func:`model_kwargs` picks a class's init arguments out of it (the FFN turned into its per-layer
factory, :func:`lit_ffn.ffn.registry.factory`); :func:`build_decoder` builds the decoder from them.
The training module builds its decoder here and inference rebuilds a trained one here, so both get
the same model from the same section.  This module sits below training, callbacks and inference:
it imports only :mod:`lit_ffn.model` and :mod:`lit_ffn.ffn`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from lit_ffn.ffn.registry import factory
from lit_ffn.model import Decoder


def model_kwargs(model: Any, cls: Any) -> dict[str, Any]:
    """The init arguments of ``cls`` found in a parsed/saved ``model`` section, ``ffn`` as a factory
    (the class's own defaults fill what the section lacks)."""
    accepted = inspect.signature(cls).parameters
    kwargs = {key: model[key] for key in accepted if key in model}
    if "ffn" in kwargs:
        kwargs["ffn"] = factory(kwargs["ffn"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return kwargs


def build_decoder(model: Mapping[str, Any] | Any) -> Decoder:
    """The decoder a ``model`` section describes, freshly initialised (keys the section lacks take
    the decoder's defaults).  Errors are the decoder's and the FFN's own (``ValueError``/``TypeError``):
    each caller names its source (the training module checks every value first, ``lit_ffn.training.checks``)."""
    return Decoder(**model_kwargs(model, Decoder))


__all__ = ["build_decoder", "model_kwargs"]
