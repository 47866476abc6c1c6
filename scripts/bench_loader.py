#!/usr/bin/env python
"""Benchmark the training data loader: tokens/s that ``TokenDataModule.train_dataloader()`` delivers.

Writes a synthetic dataset of random int32 token ids with litdata's ``optimize`` (64 MB chunks, as
``lit_ffn prepare`` writes them) plus the ``meta.json`` the DataModule reads, warms the page cache
with one read of every chunk, then for each worker count builds the DataModule's own training loader
(shuffled StreamingDataset + StreamingDataLoader, exactly what ``lit_ffn fit`` uses) and times it in
a fresh interpreter per configuration, as a training process would start (a process that already
iterated litdata data or ran ``optimize`` keeps threads whose locks a forked worker can inherit:
measured here, its workers took 5-7 s to deliver a first batch instead of 0.2 s).  Prints a Markdown
table.

    python scripts/bench_loader.py [--tokens 128M] [--seq-len 2048] [--batch-size 8] [--workers 1 2 4]

Numbers:
* first batch: seconds from ``iter(loader)`` to the first batch (worker start-up, index reading);
* tokens/s: ``batches × batch_size × seq_len`` over the wall time of the timed batches (after the
  first ``--warmup`` batches), the model-visible tokens (each block is ``seq_len + 1`` ids);
* batches/s: the same in batches.
The loop does nothing with a batch: this is the loader's ceiling; a training step that takes longer
than ``1 / batches/s`` never waits for data (workers prefetch 2 batches each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ITEM_TOKENS = 1 << 22  # 4M tokens (16 MB) per generated item


def parse_count(text: str) -> int:
    """``"256M"`` -> 268435456 (K, M, G: powers of 2^10)."""
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text.rstrip("KMG")) * scale)


def _random_tokens(index: int, vocab_size: int):  # litdata fn: one item of random ids, seeded by its index
    import numpy as np
    import torch

    rng = np.random.default_rng(index)
    return torch.from_numpy(rng.integers(0, vocab_size, ITEM_TOKENS, dtype=np.int32))


def make_dataset(root: Path, tokens: int, vocab_size: int, chunk_bytes: int) -> dict:
    """``root/{train,val}`` litdata token chunks and a ``meta.json`` as ``lit_ffn prepare`` writes them."""
    import functools

    from litdata import optimize
    from litdata.streaming.item_loader import TokensLoader

    from lit_ffn.data.prepare import DTYPE, FORMAT, FORMAT_VERSION

    items = {"train": max(1, tokens // ITEM_TOKENS), "val": 1}
    for split, count in items.items():
        start = 0 if split == "train" else items["train"]
        optimize(
            fn=functools.partial(_random_tokens, vocab_size=vocab_size),
            inputs=list(range(start, start + count)),
            output_dir=str(root / split),
            num_workers=1,
            chunk_bytes=chunk_bytes,
            item_loader=TokensLoader(),
            reorder_files=False,
            verbose=False,
        )
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tokenizer": "synthetic (uniform random ids)",
        "vocab_size": vocab_size,
        "eos_id": 0,
        "dtype": DTYPE,
        "splits": {split: {"documents": 0, "tokens": count * ITEM_TOKENS} for split, count in items.items()},
        "skipped": {},
        "inputs": [],
    }
    (root / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def warm_page_cache(root: Path) -> int:
    total = 0
    for path in sorted(root.rglob("*.bin")):
        with open(path, "rb") as file:
            while block := file.read(1 << 24):
                total += len(block)
    return total


def time_loader(data_dir: Path, seq_len: int, batch_size: int, workers: int, warmup: int, batches: int) -> dict:
    from lit_ffn.data import TokenDataModule

    dm = TokenDataModule(str(data_dir), seq_len=seq_len, batch_size=batch_size, num_workers=workers, seed=0)
    dm.setup("fit")
    loader = dm.train_dataloader()
    started = time.perf_counter()
    iterator = iter(loader)
    batch = next(iterator)
    first = time.perf_counter() - started
    assert tuple(batch.shape) == (batch_size, seq_len + 1), batch.shape
    for _ in range(warmup):
        next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - started
    del iterator  # stop the workers before the next configuration
    return {
        "first": first,
        "seconds": seconds,
        "batches": batches,
        "tokens_per_s": batches * batch_size * seq_len / seconds,
        "batches_per_s": batches / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:  # one configuration, in its own interpreter
        root, workers, seq_len, batch_size, warmup, batches = argv[1:]
        result = time_loader(Path(root), int(seq_len), int(batch_size), int(workers), int(warmup), int(batches))
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tokens", type=parse_count, default=parse_count("128M"), help="training tokens (default 128M)"
    )
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batches", type=int, default=500, help="timed batches per configuration")
    parser.add_argument("--warmup", type=int, default=20, help="untimed batches after the first")
    parser.add_argument("--vocab-size", type=int, default=151_669)
    parser.add_argument("--chunk-bytes", type=parse_count, default=parse_count("64M"))
    parser.add_argument("--keep", type=Path, help="directory to write the dataset to and keep (reused if present)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        root = args.keep or Path(tmp) / "ds"
        if not (root / "meta.json").exists():
            root.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            make_dataset(root, args.tokens, args.vocab_size, args.chunk_bytes)
            print(f"wrote {root} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        cached = warm_page_cache(root)
        chunks = len(json.loads((root / "train" / "index.json").read_text())["chunks"])
        rows = []
        for workers in args.workers:
            child = [
                sys.executable,
                __file__,
                "--child",
                str(root),
                str(workers),
                str(args.seq_len),
                str(args.batch_size),
                str(args.warmup),
                str(args.batches),
            ]
            output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
            rows.append((workers, json.loads(output.strip().splitlines()[-1])))

    load = os.getloadavg()
    print(
        f"\nDataset: {cached / 2**20:,.0f} MiB of int32 tokens ({chunks} training chunks of "
        f"{args.chunk_bytes / 2**20:.0f} MiB), page cache warm; seq_len {args.seq_len}, batch {args.batch_size}; "
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (shared machine).\n"
    )
    print("| workers | first batch (s) | timed batches | batches/s | tokens/s |")
    print("|---:|---:|---:|---:|---:|")
    for workers, r in rows:
        print(
            f"| {workers} | {r['first']:.2f} | {r['batches']} | {r['batches_per_s']:,.1f} "
            f"| {r['tokens_per_s'] / 1e6:,.2f} M |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
