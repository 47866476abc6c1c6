"""IsoGMLP: gMLP's spatial gating unit made position-wise (lit_ffn's definition)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_ffn.ffn.base import DEFAULT_MULTIPLE_OF, GateRecorder, resolve_hidden_dim


class IsoGMLP(GateRecorder):
    """Position-wise gMLP block: ``y = (Z₁ ⊙ LayerNorm(Z₂))·V``, ``[Z₁, Z₂] = GELU(x·U)``.

    **This is lit_ffn's own definition**; no public definition of "IsoGMLP"
    exists.  It reads gMLP — Liu et al. (2021), "Pay Attention to MLPs",
    eq. (1) ``Z = σ(XU)``, ``Z̃ = s(Z)``, ``Y = Z̃V``, with the split spatial
    gating unit ``s(Z) = Z₁ ⊙ f_{W,b}(LayerNorm(Z₂))`` (Sec. 2.1) — and drops
    the spatial (cross-token) projection ``f_{W,b}``, so that the block is a
    drop-in position-wise FFN::

        Z      = GELU(x·U)                 U = up_proj:   dim → 2·hidden_dim
        Z₁, Z₂ = Z[..., :h], Z[..., h:]    each (..., hidden_dim)
        y      = (Z₁ ⊙ LayerNorm(Z₂))·V    V = down_proj: hidden_dim → dim

    Shapes: ``x (..., dim) → Z (..., 2h) → Z₁ ⊙ LayerNorm(Z₂) (..., h) →
    y (..., dim)``; ``norm = nn.LayerNorm(h)`` (elementwise affine).

    The default ``h = matched_hidden_dim(dim, 3)`` gives ``3·dim·h`` matrix
    parameters, exactly SwiGLU's, plus an inherent ``2h`` for the LayerNorm
    affine (≈ ``2/(3·dim)`` relative: 0.5 % at dim=128, 0.13 % at dim=512).
    Records ``"gate"`` = ``LayerNorm(Z₂)``, shape ``(..., hidden_dim)``.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int | None = None,
        multiple_of: int = DEFAULT_MULTIPLE_OF,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.hidden_dim = resolve_hidden_dim(dim, hidden_dim, 3, multiple_of)
        self.up_proj = nn.Linear(dim, 2 * self.hidden_dim, bias=bias)
        self.norm = nn.LayerNorm(self.hidden_dim)
        self.down_proj = nn.Linear(self.hidden_dim, dim, bias=bias)

    def reset_parameters(self) -> None:
        """Restore the LayerNorm to weight 1, bias 0 (the decoder inits the ``nn.Linear``s)."""
        self.norm.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z1, z2 = F.gelu(self.up_proj(x)).chunk(2, dim=-1)
        gate = self.norm(z2)
        self.record("gate", gate)
        return self.down_proj(z1 * gate)
