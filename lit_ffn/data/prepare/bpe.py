"""``prepare --train-tokenizer``: a byte-level BPE sized to the study, trained on the training split only.

The vocabulary is learnt by Hugging Face ``tokenizers`` (``BpeTrainer``, Sennrich et al. 2016, on
GPT-2's byte-level pre-tokenizer, Radford et al. 2019): ids ``0 … S−1`` are the special tokens
(:data:`SPECIAL_TOKENS`, the EOS first), ids ``S … S+255`` the 256 bytes, then one id per merge, so
``vocab_size = S + 256 + merges``.  Only documents the hash split sends to *training*
(:func:`~lit_ffn.data.prepare.documents.is_val` false) are read; validation documents never reach the
trainer, so the validation loss is not helped by a vocabulary fitted to it.

Determinism: the documents arrive in work-item order (sorted inputs, row order), and the trainer
breaks ties between equally frequent pairs by pair id, so the same inputs and ``vocab_size`` give a
byte-identical ``tokenizer.json`` (tested, also across processes with different hash seeds).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lit_ffn.data.prepare.documents import clean_text, is_val, iter_raw_batches
from lit_ffn.data.prepare.errors import PrepareError
from lit_ffn.data.prepare.sources import WorkItem

#: Special tokens of a trained vocabulary; the first is the EOS appended after every document.
SPECIAL_TOKENS = ("<|endoftext|>",)
BYTE_ALPHABET = 256
#: The smallest ``--vocab-size``: the specials and the 256 bytes, no merge.
MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + BYTE_ALPHABET
TOKENIZER_FILE = "tokenizer.json"


def check_vocab_size(vocab_size: object) -> int:
    """``vocab_size`` as an int, or a one-line :class:`PrepareError` saying why it cannot be one."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise PrepareError(f"--vocab-size must be a positive integer, got {vocab_size!r}")
    if vocab_size < MIN_VOCAB_SIZE:
        raise PrepareError(
            f"--vocab-size {vocab_size} is smaller than the byte alphabet plus specials "
            f"({BYTE_ALPHABET} + {len(SPECIAL_TOKENS)} = {MIN_VOCAB_SIZE}): use at least {MIN_VOCAB_SIZE}"
        )
    return vocab_size


def training_texts(items: Sequence[WorkItem], threshold: int, batch_rows: int) -> Iterator[str]:
    """The cleaned text of every *training* document, in work-item order (validation ones are skipped)."""
    for item in items:
        for raw_batch in iter_raw_batches(item, batch_rows):
            for value in raw_batch:
                cleaned = clean_text(value) if isinstance(value, (str, bytes, bytearray)) else None
                if isinstance(cleaned, tuple) and not is_val(cleaned[1], threshold):
                    yield cleaned[0]


def byte_level_bpe(vocab_size: int, special_tokens: Sequence[str]) -> tuple[Any, Any]:
    """An untrained byte-level BPE (GPT-2's byte-level pre-tokenizer and decoder) and its trainer:
    ``special_tokens`` take the first ids, then the 256 byte symbols, then merges up to ``vocab_size``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return tokenizer, trainer


def train_bpe(texts: Iterator[str], vocab_size: int, path: Path) -> dict[str, Any]:
    """Train a byte-level BPE of exactly ``vocab_size`` ids on ``texts``, save it to ``path``; its meta record.

    Raises:
        PrepareError: the texts hold too few distinct pairs to reach ``vocab_size`` (nothing is saved).
    """
    import tokenizers

    check_vocab_size(vocab_size)
    tokenizer, trainer = byte_level_bpe(vocab_size, SPECIAL_TOKENS)
    documents = 0

    def counted() -> Iterator[str]:
        nonlocal documents
        for text in texts:
            documents += 1
            yield text

    tokenizer.train_from_iterator(counted(), trainer=trainer)
    reached = tokenizer.get_vocab_size(with_added_tokens=True)
    if reached < vocab_size:
        raise PrepareError(
            f"--vocab-size {vocab_size} is larger than the training split can support ({documents} documents give "
            f"only {reached} tokens): use --vocab-size {reached} or less, or more text"
        )
    tokenizer.save(str(path))
    return {
        "algorithm": "byte-level BPE",
        "library": f"tokenizers {tokenizers.__version__}",
        "vocab_size": vocab_size,
        "special_tokens": list(SPECIAL_TOKENS),
        "trained_on": "train split only",
        "documents": documents,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
