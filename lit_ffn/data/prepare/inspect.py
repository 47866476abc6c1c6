"""``lit_ffn prepare --inspect``: the meta of a dataset and a few decoded blocks."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from lit_ffn.data.format import SPLITS, read_meta, split_dir, tokenizer_spec
from lit_ffn.data.remote import install_allow_http_fix, litdata_options
from lit_ffn.data.tokenizer import Tokenizer, load_tokenizer


def sample_blocks(
    data_dir: str | os.PathLike[str],
    split: str,
    block_size: int,
    count: int,
    meta: dict[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[tuple[int, int, list[int]]]:
    """``count`` evenly spaced blocks of ``block_size`` tokens, exactly as training reads them
    (``meta``: the dataset's, which places the splits of object-store output; ``storage_options``: as
    ``data.storage_options``).

    Returns:
        ``(index, number_of_blocks, token_ids)`` per sample.
    """
    from litdata import StreamingDataset
    from litdata.streaming.item_loader import TokensLoader

    url = split_dir(str(data_dir), meta or {}, split)
    if url.startswith("s3://"):
        install_allow_http_fix()  # litdata 0.2.76 and http:// endpoints (lit_ffn.data.remote)
    dataset = StreamingDataset(
        url, item_loader=TokensLoader(block_size=block_size), storage_options=litdata_options(url, storage_options)
    )
    total = len(dataset)
    indices = sorted({round(i * (total - 1) / max(count - 1, 1)) for i in range(min(count, total))})
    return [(index, total, dataset[index].tolist()) for index in indices]


def render_block(tokenizer: Tokenizer, ids: Sequence[int]) -> str:
    """Decode a block, showing each EOS id as a visible ``⟨eos⟩`` marker."""
    pieces, current = [], []
    for token in ids:
        if token == tokenizer.eos_id:
            pieces.append(tokenizer.decode(current))
            current = []
        else:
            current.append(token)
    pieces.append(tokenizer.decode(current))
    return "⟨eos⟩".join(pieces)


def inspect_dataset(
    data_dir: str,
    samples: int = 3,
    block_size: int = 257,
    out: Any = None,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Print the meta of a dataset and decode a few training and validation blocks."""
    out = out or sys.stdout
    meta = read_meta(data_dir, storage_options)
    print(json.dumps({key: value for key, value in meta.items() if key != "inputs"}, indent=2), file=out)
    tok = load_tokenizer(tokenizer_spec(data_dir, meta))
    for split in SPLITS:
        blocks = sample_blocks(data_dir, split, block_size, samples, meta, storage_options)
        if not blocks:
            print(f"\n--- {split}: no block of {block_size} tokens fits in one chunk ---", file=out)
        for index, total, ids in blocks:
            print(f"\n--- {split} block {index} of {total} ({len(ids)} tokens) ---", file=out)
            print(render_block(tok, ids), file=out)
