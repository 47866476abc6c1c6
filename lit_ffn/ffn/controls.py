"""Positive controls: FFNs weakened on purpose, whose deficit against their parent is known in sign.

A study that cannot detect a known-worse variant cannot be trusted to detect anything smaller
(the "positive control" of experimental design).  These classes are not parameter-matched and are
not in :data:`lit_ffn.ffn.registry.BUILTINS`; their configs live in ``configs/controls/``.
"""

from __future__ import annotations

from lit_ffn.ffn.base import DEFAULT_MULTIPLE_OF, matched_hidden_dim
from lit_ffn.ffn.glu import SwiGLU


class NarrowSwiGLU(SwiGLU):
    """SwiGLU at a fraction of its parameter-matched hidden width (Shazeer 2020, eq. 6).

    ``hidden_dim = max(1, round(fraction · matched_hidden_dim(dim, 3)))``, so with the default
    ``fraction = 0.25`` the FFN has a quarter of SwiGLU's ``3·dim·hidden`` parameters at every model
    width (a scaling ladder changes ``dim`` per rung; a fixed ``hidden_dim`` would not stay a
    quarter).  Shapes as :class:`~lit_ffn.ffn.glu.GatedFFN`: ``(..., dim) → (..., dim)``.
    """

    def __init__(
        self,
        dim: int,
        fraction: float = 0.25,
        multiple_of: int = DEFAULT_MULTIPLE_OF,
        bias: bool = False,
    ) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        hidden = max(1, round(fraction * matched_hidden_dim(dim, 3, multiple_of)))
        super().__init__(dim, hidden, multiple_of, bias)
        self.fraction = fraction

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}"


__all__ = ["NarrowSwiGLU"]
