"""FFNs "of the user's own" for tests/inference: importable by class path, unknown to lit_ffn."""

from __future__ import annotations

import torch
from torch import nn

from lit_ffn.ffn import SwiGLU


class ScaledTanhMLP(nn.Module):
    """A 2-matrix FFN lit_ffn does not ship: ``scale · W₂ tanh(W₁ x)``."""

    def __init__(self, dim: int, hidden_mult: int = 2, scale: float = 1.5) -> None:
        super().__init__()
        self.scale = scale
        self.w1 = nn.Linear(dim, hidden_mult * dim, bias=False)
        self.w2 = nn.Linear(hidden_mult * dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.w2(torch.tanh(self.w1(x)))


class DoubledSwiGLU(SwiGLU):
    """A SwiGLU subclass that changes ``forward``: by its class alone it would look exportable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)
