"""Choosing the next token from logits: greedy, temperature, top-k, top-p (nucleus).

For logits ``z`` (B, V) of the last position:

* greedy (``temperature == 0``): ``argmax_v z_v``;
* otherwise ``p = softmax(z / temperature)`` restricted to

  - top-k: the ``k`` most likely tokens (ties at the k-th logit are all kept),
  - top-p: the smallest set of most likely tokens whose probability sums to at least ``top_p``
    (Holtzman et al. 2020; the most likely token is always kept),

  renormalised, and one token is drawn from it with the caller's ``torch.Generator``: the same seed
  gives the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lit_ffn.errors import UserError


@dataclass(frozen=True)
class Sampling:
    """How to pick tokens.  ``temperature == 0`` is greedy decoding (top-k and top-p then do nothing).

    Attributes:
        temperature: ``≥ 0``; the logits are divided by it before the softmax.
        top_k: keep the ``k ≥ 1`` most likely tokens (None: all).
        top_p: keep the most likely tokens up to cumulative probability ``0 < top_p ≤ 1`` (None: all).
    """

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:  # also NaN
            raise UserError(f"--temperature must be ≥ 0 (0: greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"--top-k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


GREEDY = Sampling()


def filter_logits(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """(B, V) logits / temperature with the tokens top-k and top-p exclude set to −inf (float32)."""
    z = logits.float() / sampling.temperature
    if sampling.top_k is not None and sampling.top_k < z.shape[-1]:
        kth = torch.topk(z, sampling.top_k, dim=-1).values[..., -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    if sampling.top_p is not None and sampling.top_p < 1:
        sorted_z, order = torch.sort(z, dim=-1, descending=True)
        probs = torch.softmax(sorted_z, dim=-1)
        # drop a token when the tokens before it already reach top_p: the first token always stays
        drop_sorted = probs.cumsum(dim=-1) - probs >= sampling.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        z = z.masked_fill(drop, float("-inf"))
    return z


def next_token(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, V) logits → (B,) int64 token ids."""
    if sampling.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(filter_logits(logits, sampling), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


__all__ = ["GREEDY", "Sampling", "filter_logits", "next_token"]
