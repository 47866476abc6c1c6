"""Hugging Face tokenizer files for an export: ``AutoTokenizer.from_pretrained(dir)`` gives lit_ffn's ids.

Two cases, one per :mod:`lit_ffn.data.tokenizer` back end:

* :class:`~lit_ffn.data.tokenizer.HFTokenizer` — the dataset was prepared with a ``tokenizer.json``:
  that file is copied as it is.
* :class:`~lit_ffn.data.tokenizer.QwenTokenizer` — the offline Qwen ranks run by tiktoken: a
  ``tokenizer.json`` is built from them (nothing is downloaded).  tiktoken's BPE (merge the adjacent
  pair whose concatenation has the lowest rank, and take a whole pre-token that is itself in the
  vocabulary at once) is the ``tokenizers`` BPE model with ``ignore_merges=True`` and one merge
  ``(a, b)`` per way of splitting a token into two vocabulary tokens, ordered by the rank of the
  token (transformers' ``TikTokenConverter`` builds the same); bytes are spelled with GPT-2's
  byte→unicode table; the normalizer is NFC and the pre-tokenizer Qwen's split regex, as in Qwen's
  own ``tokenizer.json``; the 26 special tokens follow at ids 151,643 ….  The ids equal tiktoken's on
  the quickstart corpus (tested).

Both get a ``tokenizer_config.json`` (``PreTrainedTokenizerFast``, the EOS token, no BOS) so
transformers needs no custom code.  One difference remains by design: lit_ffn encodes a literal
``"<|endoftext|>"`` inside a text as ordinary text, Hugging Face tokenizers turn it into the special id.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
from typing import Any

from lit_ffn.data.tokenizer import QWEN3_EOS_TOKEN, HFTokenizer, QwenTokenizer, Tokenizer
from lit_ffn.errors import UserError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable unicode character map (byte-level BPE vocabularies use it)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def _spell(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[byte] for byte in token)


def bpe_vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """tiktoken ranks → the ``tokenizers`` BPE ``vocab`` and ``merges`` that encode identically.

    For every token t of rank r and every split t = a + b with a and b in the vocabulary, the merge
    (a, b) gets priority r (ties ordered by the ranks of a, then b)."""
    vocab = {_spell(token): rank for token, rank in ranks.items()}
    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            left_rank, right_rank = ranks.get(left), ranks.get(right)
            if left_rank is not None and right_rank is not None:
                merges.append((rank, left_rank, right_rank, left, right))
    merges.sort()
    return vocab, [(_spell(left), _spell(right)) for *_, left, right in merges]


def qwen_tokenizer_json(tokenizer: QwenTokenizer) -> Any:
    """A ``tokenizers.Tokenizer`` equal to lit_ffn's Qwen3 tokenizer (ids, specials, decoding)."""
    from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import Tokenizer as HFTokenizerModel

    vocab, merges = bpe_vocab_and_merges(tokenizer.mergeable_ranks)
    model = HFTokenizerModel(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=True))
    model.normalizer = normalizers.NFC()
    model.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(tokenizer.split_pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    model.decoder = decoders.ByteLevel()
    model.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = sorted(tokenizer.special_tokens.items(), key=lambda item: item[1])
    model.add_special_tokens([AddedToken(token, special=True, normalized=False) for token, _ in specials])
    for token, token_id in specials:  # added tokens take the next free ids: check they are Qwen's
        if model.token_to_id(token) != token_id:
            raise RuntimeError(
                f"internal error: special token {token} got id {model.token_to_id(token)}, not {token_id}"
            )
    return model


def tokenizer_config(eos_token: str, model_max_length: int | None) -> dict[str, Any]:
    """``tokenizer_config.json``: the stock fast tokenizer class, EOS (also as padding), no BOS."""
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": eos_token,
        "pad_token": eos_token,
        "bos_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
    }
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    return config


def write_tokenizer_files(tokenizer: Tokenizer, out_dir: Path, model_max_length: int | None = None) -> list[str]:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` for ``tokenizer`` into ``out_dir``; their names."""
    if isinstance(tokenizer, HFTokenizer):
        shutil.copyfile(tokenizer.path, out_dir / "tokenizer.json")
        eos_token = tokenizer.id_to_token(tokenizer.eos_id)
    elif isinstance(tokenizer, QwenTokenizer):
        qwen_tokenizer_json(tokenizer).save(str(out_dir / "tokenizer.json"))
        eos_token = QWEN3_EOS_TOKEN
    else:
        raise UserError(
            f"cannot write Hugging Face tokenizer files for {type(tokenizer).__name__}: lit_ffn exports the qwen3 "
            "tokenizer and tokenizer.json files"
        )
    config = tokenizer_config(eos_token, model_max_length)
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return list(TOKENIZER_FILES)


__all__ = [
    "TOKENIZER_FILES",
    "bpe_vocab_and_merges",
    "bytes_to_unicode",
    "qwen_tokenizer_json",
    "tokenizer_config",
    "write_tokenizer_files",
]
