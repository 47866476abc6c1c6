"""The FFN contract, the parameter-matched hidden width, and gate recording.

Contract (all lit_ffn needs to know about an FFN)
-------------------------------------------------
An FFN is any ``nn.Module`` whose constructor takes the model width ``dim`` as
its first positional argument and whose ``forward`` maps a tensor of shape
``(..., dim)`` to ``(..., dim)``.  The decoder receives a *factory*
(``Callable[[int], nn.Module]``, e.g. the class itself or a
``functools.partial``) and calls it once per layer, so every layer owns fresh
weights.  Nothing else in lit_ffn may depend on which FFN it is.

Optional extras a class may offer (the built-ins all do):

* ``reset_parameters()`` for parameters that are not ``nn.Linear`` /
  ``nn.Embedding`` weights (those are initialised by the decoder), so that a
  model materialised from the meta device gets the paper's initial values;
* gate recording through :class:`GateRecorder` (below), which the
  gate-statistics callback uses.

Parameter matching
------------------
Shazeer (2020), "GLU Variants Improve Transformer", keeps the parameter count
fixed by giving 2-matrix FFNs ``d_ff = 4·d`` and 3-matrix gated FFNs
``d_ff = 8/3·d``.  Rounding both to hardware-friendly multiples independently
breaks the equality (at d=128 rounding 341.3 up to 384 adds 12%), so lit_ffn
rounds one *unit* ``u = round(4·d/3 / m)·m`` and sets

* 3-matrix hidden width ``2·u``   →  parameters ``3·d·2u = 6·d·u``
* 2-matrix hidden width ``3·u``   →  parameters ``2·d·3u = 6·d·u``

which are exactly equal for every width (bias-free; with biases the 2-matrix
FFN adds ``3u + d``, the 3-matrix one ``4u + d``).  ``u`` is within ``m/2`` of
``4·d/3``, so the widths are within ``m`` (3-matrix) and ``1.5·m`` (2-matrix)
of Shazeer's ``8/3·d`` and ``4·d``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import nn

#: Default rounding multiple ``m`` of the parameter-matching unit.  3-matrix
#: widths are multiples of 64 and 2-matrix widths of 32 (tensor-core friendly).
DEFAULT_MULTIPLE_OF = 32

GateObserver = Callable[["GateRecorder", str, torch.Tensor], None]


def matched_hidden_dim(dim: int, n_matrices: int, multiple_of: int = DEFAULT_MULTIPLE_OF) -> int:
    """Hidden width that gives a ``n_matrices``-matrix FFN ``≈ 8·dim²`` parameters.

    ``n_matrices`` is 2 (up, down) or 3 (gate, up, down); see the module
    docstring for why both are derived from one rounded unit.
    """
    if n_matrices not in (2, 3):
        raise ValueError(f"n_matrices must be 2 or 3, got {n_matrices}")
    if dim <= 0 or multiple_of <= 0:
        raise ValueError(f"dim and multiple_of must be positive, got dim={dim}, multiple_of={multiple_of}")
    unit = multiple_of * max(1, round(4 * dim / 3 / multiple_of))
    return unit * 6 // n_matrices


#: The two GELU flavours of :func:`torch.nn.functional.gelu`: exact (erf) or
#: the tanh approximation (used e.g. by GPT-2 and Gemma).
Approximate = Literal["none", "tanh"]


def resolve_hidden_dim(dim: int, hidden_dim: int | None, n_matrices: int, multiple_of: int) -> int:
    """``hidden_dim`` if given, else the parameter-matched width; validated."""
    if dim <= 0:
        raise ValueError(f"dim must be a positive integer, got dim={dim}")
    if hidden_dim is None:
        return matched_hidden_dim(dim, n_matrices, multiple_of)
    if hidden_dim <= 0:
        raise ValueError(f"hidden_dim must be a positive integer or None (parameter-matched), got {hidden_dim}")
    return hidden_dim


def check_approximate(approximate: str) -> str:
    """Validate a GELU ``approximate`` argument (``"none"`` or ``"tanh"``)."""
    if approximate not in get_args(Approximate):
        raise ValueError(f"approximate must be one of {get_args(Approximate)}, got {approximate!r}")
    return approximate


class GateRecorder(nn.Module):
    """Mixin through which an FFN shows its gate to observers.

    An FFN calls ``self.record("gate", tensor)`` in ``forward`` for every
    tensor it considers a gate (for non-gated FFNs: the hidden activation,
    under the name ``"hidden"``; DynamicGEGLU also records ``"alpha"``).  What
    counts as a gate is therefore decided by the FFN class itself.

    ``record`` is a single attribute test when nobody observes, so it costs
    nothing on steps where the callback does not log.  An observer is any
    callable ``observer(ffn, name, tensor)`` installed with
    :meth:`set_gate_observer`; it must reduce the tensor on the device
    (never sync with the host) because it runs inside the forward pass.

    ``gate_scalars()`` returns learned scalars worth logging (e.g.
    DynamicGEGLU's ``s`` and ``b``); the default is none.

    A user's own FFN opts in by inheriting from this class (or by duck-typing
    the same three methods).
    """

    _gate_observer: GateObserver | None = None

    def set_gate_observer(self, observer: GateObserver | None) -> None:
        # object.__setattr__: an nn.Module observer must not become a submodule.
        object.__setattr__(self, "_gate_observer", observer)

    def record(self, name: str, tensor: torch.Tensor) -> None:
        observer = self._gate_observer
        if observer is not None:
            observer(self, name, tensor.detach())

    def gate_scalars(self) -> dict[str, torch.Tensor]:
        return {}
