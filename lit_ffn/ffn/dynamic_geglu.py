"""DynamicGEGLU: a GEGLU whose output is scaled by a per-token learned gate."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_ffn.ffn.base import DEFAULT_MULTIPLE_OF, Approximate, check_approximate
from lit_ffn.ffn.glu import GatedFFN


class DynamicGEGLU(GatedFFN):
    """GEGLU scaled by a per-token scalar ``α`` computed from the input norm.

    The DynamicGEGLU paper (the research this repository supports), eq. (2)–(3)::

        FFN(x) = (α(x) · GELU(x·W) ⊙ x·V)·W2
        α(x)   = σ(s · ‖LayerNorm(x)‖₂ + b)

    with ``W = gate_proj``, ``V = up_proj``, ``W2 = down_proj``.

    Shapes: ``x (..., dim)``; ``gate_proj``, ``up_proj``: ``dim → hidden_dim``;
    ``down_proj``: ``hidden_dim → dim``; ``α (..., 1)`` — one scalar per token,
    broadcast over the hidden units.  ``LayerNorm = nn.LayerNorm(dim)``
    (elementwise affine, weight 1 and bias 0 at init), ``‖·‖₂`` the L2 norm
    over the last dim, ``s`` and ``b`` learned scalars initialised to
    ``s_init = 0.1`` and ``b_init = 0``.  ``α`` is computed in (at least)
    fp32 — LayerNorm, norm and sigmoid — so it stays accurate under bf16.

    Note on the initial gate: with unit weight and zero bias, ``LayerNorm(x)``
    has zero mean and unit variance over the ``dim`` features, so
    ``‖LayerNorm(x)‖₂ = √dim`` for *every* token (up to the ``eps`` of the
    variance).  Hence at init ``α = σ(0.1·√dim)`` is the same constant for all
    tokens (≈ 0.91 at dim=512).  Only the learned LayerNorm affine makes ``α``
    vary from token to token; ``s`` and ``b`` alone just move that constant.

    ``s`` and ``b`` are stored with shape ``(1,)`` rather than ``()``: a
    0-dim parameter cannot be sharded on dim 0 by FSDP2's ``fully_shard``.

    Parameters: the GEGLU's ``3·dim·hidden_dim`` plus ``2·dim + 2`` for the
    LayerNorm affine and ``s``, ``b``.  Records ``"gate"`` = ``GELU(x·W)``
    ``(..., hidden_dim)`` and ``"alpha"`` = ``α`` ``(..., 1)``.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int | None = None,
        multiple_of: int = DEFAULT_MULTIPLE_OF,
        bias: bool = False,
        approximate: Approximate = "none",
        s_init: float = 0.1,
        b_init: float = 0.0,
    ) -> None:
        super().__init__(dim, hidden_dim, multiple_of, bias)
        self.approximate = check_approximate(approximate)
        self.s_init = float(s_init)
        self.b_init = float(b_init)
        self.norm = nn.LayerNorm(dim)
        self.s = nn.Parameter(torch.empty(1))
        self.b = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Restore ``s``, ``b`` and the LayerNorm to their initial values.

        The ``nn.Linear`` weights are left to the decoder's initialisation.
        """
        self.norm.reset_parameters()
        with torch.no_grad():
            self.s.fill_(self.s_init)
            self.b.fill_(self.b_init)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)

    def compute_alpha(self, x: torch.Tensor) -> torch.Tensor:
        """``α = σ(s·‖LayerNorm(x)‖₂ + b)``, shape ``(..., 1)``, in at least fp32."""
        dtype = torch.promote_types(x.dtype, torch.float32)
        norm = self.norm
        normed = F.layer_norm(x.to(dtype), norm.normalized_shape, norm.weight.to(dtype), norm.bias.to(dtype), norm.eps)
        length = torch.linalg.vector_norm(normed, dim=-1, keepdim=True)
        return torch.sigmoid(self.s.to(dtype) * length + self.b.to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.compute_alpha(x)
        gate = self.activation(self.gate_proj(x))
        self.record("gate", gate)
        self.record("alpha", alpha)
        return self.down_proj(alpha.to(gate.dtype) * gate * self.up_proj(x))

    def gate_scalars(self) -> dict[str, torch.Tensor]:
        return {"s": self.s, "b": self.b}

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}, s_init={self.s_init}, b_init={self.b_init}"
