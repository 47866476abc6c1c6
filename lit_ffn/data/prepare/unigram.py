"""The unigram reference line: what token frequencies alone score on the validation split.

A model that learnt nothing but the training split's token frequencies predicts every token with

    p(t) = (c_t + α) / (N + α·V)                     (add-α / Lidstone smoothing)

where ``c_t`` counts token ``t`` in the training split, ``N = Σ_t c_t`` and ``V`` is the tokenizer's
vocabulary size (every id it can produce, so no validation token has probability 0).  Its
cross-entropy on the validation split, in nats per token,

    H = −(1/M) Σ_{i=1..M} ln p(v_i)  =  −(1/M) Σ_t m_t ln p(t)

(``m_t`` the validation count of ``t``, ``M = Σ_t m_t``), is written to ``meta.json`` as
``unigram_val_loss`` with ``unigram_smoothing = α``.  ``M`` counts *every* token of the validation
split, EOS included.  A fit scores the targets of its validation blocks instead: blocks of
``seq_len + 1`` tokens drop their first token and each chunk's short tail, and ``data.val_blocks``
may take only the first blocks; on the quickstart dataset these differ from ``H`` by a few hundredths
of a nat (docs/data.md), far less than what a model that learns past frequencies gains.

A model that beats ``H`` has learnt something beyond frequencies; one that does not, has not.
"""

from __future__ import annotations

import numpy as np

#: α of the add-α smoothing; small, so frequent tokens keep their empirical probability.
UNIGRAM_SMOOTHING = 0.01


def unigram_cross_entropy(train_counts: np.ndarray, val_counts: np.ndarray, alpha: float = UNIGRAM_SMOOTHING) -> float:
    """``H`` above (nats per validation token) from two count vectors of length ``V``.

    Args:
        train_counts: ``(V,)`` token counts of the training split.
        val_counts: ``(V,)`` token counts of the validation split (at least one token).
        alpha: the smoothing constant α > 0.
    """
    train = np.asarray(train_counts, dtype=np.float64)
    val = np.asarray(val_counts, dtype=np.float64)
    if train.shape != val.shape or train.ndim != 1:
        raise ValueError(f"count vectors must have the same length, got {train.shape} and {val.shape}")
    log_p = np.log(train + alpha) - np.log(train.sum() + alpha * len(train))
    return float(-(val * log_p).sum() / val.sum())


def token_counts(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """``(vocab_size,)`` int64 counts of the ids in ``tokens``."""
    return np.bincount(np.asarray(tokens, dtype=np.int64), minlength=vocab_size)
