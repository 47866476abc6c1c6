"""``lit_ffn prepare``: raw text -> tokenized litdata chunks + ``meta.json``.

Inputs are parquet files with FineWeb's schema (a ``text`` column; other columns are ignored), JSON
lines (``.jsonl``, ``.jsonl.gz``, ``.ndjson``) with a ``text`` field, and plain ``.txt`` files (one
document per file), given as local files, directories, globs or fsspec URLs (``hf://``, ``s3://``).

Output layout (``DIR``)::

    DIR/train/       litdata optimized dataset of int32 token ids (TokensLoader)
    DIR/val/         the same for the validation split
    DIR/meta.json    written last; see :func:`read_meta`

Each document is encoded as ordinary text and followed by the tokenizer's EOS id.  A document goes
to validation when the 64-bit BLAKE2b hash of its UTF-8 text is below ``val_fraction * 2**64``: the
split is the same on every rerun and for any worker count, and exact duplicates (common in web
crawls) always land in the same split.  ``val_docs=N`` sets ``val_fraction = N / rows``, so the
number of validation documents is N in expectation, not exactly.

Pipeline: the inputs are cut into work items (one per parquet row group, one per jsonl / txt file);
litdata's :func:`~litdata.optimize` runs them over ``num_workers`` processes.  Each item streams
record batches (bounded memory), tokenizes them and yields the training tokens to litdata, while its
validation tokens and counters go to small side files; a second, single-worker ``optimize`` writes
the validation split from those files in item order, so the validation stream does not depend on
the worker count.

Object-store output (``s3://``, ``gs://``): built locally as below, then uploaded as a new version
with ``meta.json`` written last (:mod:`lit_ffn.data.prepare.publish_remote`).

Crash safety: everything is built in a temporary sibling ``.DIR.lit_ffn-prepare-…`` directory and
moved into place complete (``meta.json`` included) with one rename; ``--overwrite`` swaps the new
dataset with the old one atomically where the OS allows it (Linux ``renameat2``).  A prepare killed
at any moment leaves the old dataset, the new complete one, or (only without an atomic exchange, for
an instant) none; never a partial one at ``DIR``.  Leftover temporary directories of dead runs are
removed by the next prepare into the same ``DIR``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lit_ffn.data.format import DTYPE, FORMAT, FORMAT_VERSION, SPLITS
from lit_ffn.data.prepare.bpe import TOKENIZER_FILE, check_vocab_size, train_bpe, training_texts
from lit_ffn.data.prepare.documents import default_val_fraction, val_threshold
from lit_ffn.data.prepare.errors import PrepareError
from lit_ffn.data.prepare.publish import check_output, cleanup_leftovers, publish, staging_dir
from lit_ffn.data.prepare.publish_remote import RemoteOutput, is_remote, local_build_dir
from lit_ffn.data.prepare.sources import Source, WorkItem, count_rows, plan_work, resolve_inputs
from lit_ffn.data.prepare.unigram import UNIGRAM_SMOOTHING, token_counts, unigram_cross_entropy
from lit_ffn.data.prepare.workers import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_CHUNK_BYTES,
    DEFAULT_START_METHOD,
    Job,
    Stats,
    ValShard,
    optimize_split,
    pause_point,
    read_train_counts,
    read_val_shard,
    tokenize_item,
)
from lit_ffn.data.tokenizer import Tokenizer, load_tokenizer
from lit_ffn.provenance import lit_ffn_version

_MAX_META_INPUTS = 1000


def prepare_dataset(
    inputs: str | Sequence[str],
    output_dir: str | os.PathLike[str],
    tokenizer: str | None = None,
    val_fraction: float | None = None,
    val_docs: int | None = None,
    num_workers: int = 1,
    overwrite: bool = False,
    *,
    train_vocab_size: int | None = None,
    eos_token: str | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    extra_meta: Mapping[str, Any] | None = None,
    start_method: str | None = DEFAULT_START_METHOD,
    verbose: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Tokenize text files into ``output_dir/{train,val}`` litdata datasets and ``meta.json``.

    Args:
        inputs: files, directories, globs or fsspec URLs (see :func:`resolve_inputs`).
        output_dir: local directory to create (or replace, with ``overwrite``), or an object-store URL
            (``s3://bucket/prefix``, ``gs://…``): built under ``$TMPDIR``, then uploaded with ``meta.json``
            last (:mod:`~lit_ffn.data.prepare.publish_remote`).
        tokenizer: a :func:`~lit_ffn.data.tokenizer.load_tokenizer` spec (default ``"qwen3"``).
        val_fraction: expected fraction of documents in validation, in (0, 1).
        val_docs: expected number of validation documents (alternative to ``val_fraction``);
            by default :func:`default_val_fraction`.
        num_workers: tokenizer processes.
        overwrite: replace an existing dataset (only once the new one is complete).
        train_vocab_size: train a byte-level BPE of this many ids on the training split
            (:mod:`~lit_ffn.data.prepare.bpe`) and ship it as ``output_dir/tokenizer.json``; excludes ``tokenizer``.
        eos_token: end-of-document token of a ``tokenizer.json`` (Qwen: ``<|endoftext|>``).
        chunk_bytes: target size of a litdata chunk file.
        batch_rows: rows read and tokenized at a time per worker (bounds memory).
        extra_meta: more keys for meta.json (e.g. a corpus description).
        start_method: multiprocessing start method of litdata's workers.
        verbose: print a start line and per-worker progress (every 30 s) to stderr.
        storage_options: object-store options of a remote ``output_dir`` (:mod:`lit_ffn.data.remote`).

    Returns:
        The meta dictionary, as written to ``output_dir/meta.json``; besides the counts it holds
        ``unigram_val_loss`` / ``unigram_smoothing`` (:mod:`~lit_ffn.data.prepare.unigram`) and, for a
        trained tokenizer, ``tokenizer_file`` / ``tokenizer_training``.

    Raises:
        PrepareError: bad arguments or inputs, output in the way, or an empty split.
        lit_ffn.data.tokenizer.TokenizerError: the tokenizer cannot be loaded.
    """
    started = time.perf_counter()
    _check_arguments(str(output_dir), val_fraction, val_docs, num_workers, chunk_bytes, batch_rows)
    if train_vocab_size is not None:
        check_vocab_size(train_vocab_size)
        if tokenizer is not None or eos_token is not None:
            raise PrepareError(
                "--train-tokenizer trains its own vocabulary: drop --tokenizer / --eos-token, or drop --train-tokenizer"
            )
    tokenizer = "qwen3" if tokenizer is None else tokenizer
    remote = RemoteOutput(str(output_dir), storage_options) if is_remote(str(output_dir)) else None
    if remote is not None:
        remote.check(overwrite)
        output = local_build_dir()  # built here, then uploaded
    else:
        output = Path(output_dir).expanduser().absolute()
    check_output(output, overwrite)
    if train_vocab_size is None:
        tok = load_tokenizer(tokenizer, eos_token)  # fail fast on a bad spec; forked workers reuse it
    sources = resolve_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs))
    items = plan_work(sources)
    if not items:
        raise PrepareError("the inputs hold no rows (parquet files without row groups)")
    fraction = _resolve_val_fraction(items, val_fraction, val_docs)

    if verbose:
        print(
            f"lit_ffn prepare: {len(sources)} input files ({_megabytes(sources)}), {len(items)} work items, "
            f"val fraction {fraction:.4g}, {num_workers} workers -> {output_dir if remote else output}",
            file=sys.stderr,
            flush=True,
        )

    output.parent.mkdir(parents=True, exist_ok=True)
    cleanup_leftovers(output)
    staging = staging_dir(output)
    try:
        training = None
        if train_vocab_size is not None:
            staging.mkdir()
            tokenizer = str(staging / TOKENIZER_FILE)
            texts = training_texts(items, val_threshold(fraction), batch_rows)
            training = train_bpe(texts, train_vocab_size, Path(tokenizer))
            tok = load_tokenizer(tokenizer)
        job = Job(
            tokenizer,
            eos_token,
            val_threshold(fraction),
            str(staging / "work"),
            batch_rows,
            max_item_tokens=max(1, chunk_bytes // 16),
            num_items=len(items),
            verbose=verbose,
        )
        stats, unigram = _write_splits(items, job, staging / "dataset", num_workers, chunk_bytes, start_method, tok)
        meta = _build_meta(tok, sources, stats, fraction, extra_meta, time.perf_counter() - started)
        meta.update(unigram)
        if training is not None:
            shutil.move(tokenizer, staging / "dataset" / TOKENIZER_FILE)
            meta.update(tokenizer=TOKENIZER_FILE, tokenizer_file=TOKENIZER_FILE, tokenizer_training=training)
        (staging / "dataset" / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        pause_point("meta")
        publish(staging, output, overwrite)
        if remote is not None:
            meta = remote.publish(output, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if remote is not None:
            shutil.rmtree(output.parent, ignore_errors=True)
    return meta


def _write_splits(
    items: list[WorkItem],
    job: Job,
    dataset: Path,
    num_workers: int,
    chunk_bytes: int,
    start_method: str | None,
    tok: Tokenizer,
) -> tuple[Stats, dict[str, float]]:
    """Write ``dataset/train`` (tokenizing every item) then ``dataset/val`` (from the side files); the
    counters and the unigram reference's meta keys."""
    work = Path(job.work_dir)
    for directory in (dataset, work / "val", work / "stats", work / "counts"):
        directory.mkdir(parents=True)
    optimize_split(
        functools.partial(tokenize_item, job=job),
        items,
        dataset / "train",
        min(num_workers, len(items)),
        chunk_bytes,
        start_method,
    )
    stats = _collect_stats(work / "stats", len(items))
    _check_splits(stats, job.threshold / 2**64)
    pause_point("val")
    shards = [ValShard(str(path)) for path in sorted((work / "val").glob("*.npy"))]
    optimize_split(
        functools.partial(read_val_shard, max_item_tokens=job.max_item_tokens),
        shards,
        dataset / "val",
        1,
        chunk_bytes,
        start_method,
    )
    for split in SPLITS:
        _check_written_tokens(dataset / split, stats.tokens[split])
    train_counts = read_train_counts(work, tok.vocab_size)
    if int(train_counts.sum()) != stats.tokens["train"]:
        raise RuntimeError(f"internal error: counted {train_counts.sum()} training tokens of {stats.tokens['train']}")
    val_counts = sum(
        (token_counts(np.load(shard.path), tok.vocab_size) for shard in shards), np.zeros(tok.vocab_size, np.int64)
    )
    unigram = unigram_cross_entropy(train_counts, val_counts, UNIGRAM_SMOOTHING)
    return stats, {"unigram_val_loss": unigram, "unigram_smoothing": UNIGRAM_SMOOTHING}


def _check_arguments(
    output_dir: str,
    val_fraction: float | None,
    val_docs: int | None,
    num_workers: int,
    chunk_bytes: int,
    batch_rows: int,
) -> None:
    if val_fraction is not None and val_docs is not None:
        raise PrepareError("give either --val-fraction or --val-docs, not both")
    if val_fraction is not None and not 0 < val_fraction < 1:
        raise PrepareError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if val_docs is not None and val_docs < 1:
        raise PrepareError(f"--val-docs must be at least 1, got {val_docs}")
    if num_workers < 1:
        raise PrepareError(f"--num-workers must be at least 1, got {num_workers}")
    if chunk_bytes < 4096:
        raise PrepareError(f"--chunk-bytes must be at least 4KB, got {chunk_bytes}")
    if batch_rows < 1:
        raise PrepareError(f"batch_rows must be at least 1, got {batch_rows}")


def _resolve_val_fraction(items: Sequence[WorkItem], val_fraction: float | None, val_docs: int | None) -> float:
    if val_fraction is not None:
        return val_fraction
    rows = count_rows(items)
    if val_docs is not None:
        if val_docs >= rows:
            raise PrepareError(f"--val-docs {val_docs} leaves no training documents: the inputs have {rows} rows")
        return val_docs / rows
    return default_val_fraction(rows)


def _collect_stats(stats_dir: Path, num_items: int) -> Stats:
    files = sorted(stats_dir.glob("*.json"))
    if len(files) != num_items:  # litdata reported success: a lost item would be a bug, not bad input
        raise RuntimeError(f"internal error: {len(files)} of {num_items} work items reported back")
    total = Stats()
    for file in files:
        total.add(Stats(**json.loads(file.read_text())))
    return total


def _check_splits(stats: Stats, fraction: float) -> None:
    kept = sum(stats.documents.values())
    if kept == 0:
        reasons = ", ".join(f"{count} {reason}" for reason, count in stats.skipped.items() if count)
        raise PrepareError(f"no documents left after skipping rows ({reasons or 'no rows'})")
    for split in SPLITS:
        if stats.documents[split] == 0:
            hint = "a larger --val-fraction" if split == "val" else "a smaller --val-fraction / --val-docs"
            raise PrepareError(
                f"the {split} split is empty ({kept} documents, val fraction {fraction:.4g}): use {hint}"
            )


def _check_written_tokens(split_dir: Path, expected: int) -> None:
    """litdata's index must account for every token the workers produced."""
    chunks = json.loads((split_dir / "index.json").read_text())["chunks"]
    written = sum(chunk["dim"] for chunk in chunks)
    if written != expected:
        raise RuntimeError(f"internal error: {split_dir.name} holds {written} tokens, workers produced {expected}")


def _build_meta(
    tok: Tokenizer,
    sources: Sequence[Source],
    stats: Stats,
    fraction: float,
    extra: Mapping[str, Any] | None,
    seconds: float,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tokenizer": tok.name,
        "vocab_size": tok.vocab_size,
        "eos_id": tok.eos_id,
        "dtype": DTYPE,
        "splits": {split: {"documents": stats.documents[split], "tokens": stats.tokens[split]} for split in SPLITS},
        "skipped": stats.skipped,
        "val_fraction": fraction,
        "split_rule": "val iff blake2b(utf8 text, 8 bytes) as big-endian int < val_fraction * 2**64",
        "num_inputs": len(sources),
        "input_bytes": sum(source.size for source in sources),
        "inputs": [{"path": source.url, "bytes": source.size} for source in sources[:_MAX_META_INPUTS]],
        "lit_ffn_version": lit_ffn_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "prepare_seconds": round(seconds, 2),
    }
    meta.update(extra or {})
    return meta


def _megabytes(sources: Sequence[Source]) -> str:
    return f"{sum(source.size for source in sources) / 1e6:,.1f} MB"
