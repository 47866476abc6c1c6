"""Two-matrix (non-gated) FFNs: ``FFN(x) = act(x·W_up)·W_down``.

Shapes: ``x`` is ``(..., dim)``, ``W_up`` maps ``dim → hidden_dim`` and
``W_down`` maps ``hidden_dim → dim``.  With the default width
``hidden_dim = matched_hidden_dim(dim, 2) = 3u`` these have exactly as many
parameters (``6·dim·u``) as the 3-matrix gated FFNs of :mod:`lit_ffn.ffn.glu`
(bias-free; with ``bias=True`` the bias counts differ slightly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_ffn.ffn.base import DEFAULT_MULTIPLE_OF, Approximate, GateRecorder, check_approximate, resolve_hidden_dim


class MLPFFN(GateRecorder):
    """Base of the 2-matrix FFNs: ``y = down_proj(act(up_proj(x)))``.

    Vaswani et al. (2017), "Attention Is All You Need", eq. (2), with the
    activation ``act`` left to subclasses (override :meth:`activation`).

    Shapes: ``x (..., dim) → up_proj → (..., hidden_dim) → act → down_proj →
    (..., dim)``.  Records ``"hidden"`` = ``act(up_proj(x))``, shape
    ``(..., hidden_dim)``.
    """

    n_matrices = 2

    def __init__(
        self,
        dim: int,
        hidden_dim: int | None = None,
        multiple_of: int = DEFAULT_MULTIPLE_OF,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.hidden_dim = resolve_hidden_dim(dim, hidden_dim, self.n_matrices, multiple_of)
        self.up_proj = nn.Linear(dim, self.hidden_dim, bias=bias)
        self.down_proj = nn.Linear(self.hidden_dim, dim, bias=bias)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define activation()")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(self.up_proj(x))
        self.record("hidden", hidden)
        return self.down_proj(hidden)


class ReLUFFN(MLPFFN):
    """``y = ReLU(x·W_up)·W_down`` — the original Transformer FFN.

    Vaswani et al. (2017), "Attention Is All You Need", eq. (2):
    ``FFN(x) = max(0, x·W1 + b1)·W2 + b2`` (here bias-free by default).
    """

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


class GELUFFN(MLPFFN):
    """``y = GELU(x·W_up)·W_down`` with ``GELU(z) = z·Φ(z)``.

    Hendrycks & Gimpel (2016), "Gaussian Error Linear Units (GELUs)", eq. (1)
    ``GELU(z) = z·Φ(z)``; ``approximate="tanh"`` uses their tanh approximation
    ``0.5·z·(1 + tanh(√(2/π)·(z + 0.044715·z³)))``.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int | None = None,
        multiple_of: int = DEFAULT_MULTIPLE_OF,
        bias: bool = False,
        approximate: Approximate = "none",
    ) -> None:
        super().__init__(dim, hidden_dim, multiple_of, bias)
        self.approximate = check_approximate(approximate)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLUFFN(MLPFFN):
    """``y = Swish(x·W_up)·W_down`` with ``Swish(z) = SiLU(z) = z·σ(z)``.

    Ramachandran, Zoph & Le (2017), "Searching for Activation Functions",
    ``f(x) = x·σ(βx)`` with ``β = 1``.
    """

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


class ReLU2FFN(MLPFFN):
    """``y = ReLU(x·W_up)²·W_down`` — squared ReLU.

    So et al. (2021), "Primer: Searching for Efficient Transformers for
    Language Modeling", squared-ReLU activation ``max(0, z)²``.
    """

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()
