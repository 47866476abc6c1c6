"""Three-matrix gated FFNs, the GLU family of Shazeer (2020).

Shazeer (2020), "GLU Variants Improve Transformer", eq. (6)::

    FFN_act(x) = (act(x·W) ⊗ x·V)·W2

with ``W = gate_proj``, ``V = up_proj``, ``W2 = down_proj`` (Hugging Face
naming, so e.g. Llama/Qwen ``mlp.*_proj`` weights load by name).  Shapes:
``x (..., dim)``; ``gate_proj``, ``up_proj``: ``dim → hidden_dim``;
``down_proj``: ``hidden_dim → dim``.  The default
``hidden_dim = matched_hidden_dim(dim, 3) = 2u`` (≈ 8/3·dim) gives exactly the
parameter count ``6·dim·u`` of the 2-matrix FFNs in :mod:`lit_ffn.ffn.mlp`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_ffn.ffn.base import DEFAULT_MULTIPLE_OF, Approximate, GateRecorder, check_approximate, resolve_hidden_dim


class GatedFFN(GateRecorder):
    """Base of the GLU family: ``y = down_proj(act(gate_proj(x)) ⊙ up_proj(x))``.

    Subclasses choose ``act`` by overriding :meth:`activation`.  Records
    ``"gate"`` = ``act(gate_proj(x))``, shape ``(..., hidden_dim)``.
    """

    n_matrices = 3

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
        self.gate_proj = nn.Linear(dim, self.hidden_dim, bias=bias)
        self.up_proj = nn.Linear(dim, self.hidden_dim, bias=bias)
        self.down_proj = nn.Linear(self.hidden_dim, dim, bias=bias)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define activation()")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.activation(self.gate_proj(x))
        self.record("gate", gate)
        return self.down_proj(gate * self.up_proj(x))


class GLU(GatedFFN):
    """``y = (σ(x·W) ⊙ x·V)·W2`` — the original sigmoid gate.

    Dauphin et al. (2017), "Language Modeling with Gated Convolutional
    Networks"; as an FFN: Shazeer (2020), eq. (6), ``FFN_GLU``.
    """

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


class Bilinear(GatedFFN):
    """``y = (x·W ⊙ x·V)·W2`` — GLU without a nonlinearity.

    Shazeer (2020), eq. (6), ``FFN_Bilinear``.  The recorded ``"gate"`` is
    the raw projection ``x·W``.
    """

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return x


class ReGLU(GatedFFN):
    """``y = (ReLU(x·W) ⊙ x·V)·W2``.

    Shazeer (2020), eq. (6), ``FFN_ReGLU``.
    """

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


class GEGLU(GatedFFN):
    """``y = (GELU(x·W) ⊙ x·V)·W2``.

    Shazeer (2020), eq. (6), ``FFN_GEGLU``.  ``approximate="none"`` is the
    exact ``GELU(z) = z·Φ(z)``; ``"tanh"`` the tanh approximation used by
    Gemma (``gelu_pytorch_tanh``).
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


class SwiGLU(GatedFFN):
    """``y = (Swish(x·W) ⊙ x·V)·W2`` with ``Swish(z) = SiLU(z) = z·σ(z)``.

    Shazeer (2020), eq. (6), ``FFN_SwiGLU`` (β = 1); the FFN of Llama, Qwen
    and most current LLMs.
    """

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)
