"""Workers: tokenize work items inside litdata's ``optimize`` and write the validation split."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lit_ffn.data.format import SPLITS
from lit_ffn.data.prepare.documents import SKIP_REASONS, Skip, clean_text, is_val, iter_raw_batches
from lit_ffn.data.prepare.sources import WorkItem
from lit_ffn.data.prepare.unigram import token_counts
from lit_ffn.data.tokenizer import Tokenizer, load_tokenizer

DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024
DEFAULT_BATCH_ROWS = 1024
# Forked workers start in milliseconds; spawned ones re-import torch (seconds each).
DEFAULT_START_METHOD = "fork" if sys.platform.startswith("linux") else None
#: Test hook: comma-separated stages at which prepare prints a line to stderr and sleeps until killed.
#: Test hook: comma-separated stages at which prepare prints a line to stderr and sleeps until killed.
PAUSE_ENV = "LIT_FFN_PREPARE_PAUSE_AT"
PAUSE_STAGES = ("tokenize", "val", "meta", "publish")


@dataclass
class Stats:
    """Per-item counters, summed over items into meta.json."""

    documents: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))

    def add(self, other: Stats) -> None:
        for mine, theirs in (
            (self.documents, other.documents),
            (self.tokens, other.tokens),
            (self.skipped, other.skipped),
        ):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value


_EMPTY = np.zeros(0, dtype=np.int32)


@dataclass(frozen=True)
class Job:
    """Everything a worker needs; picklable, so any multiprocessing start method works."""

    tokenizer: str
    eos_token: str | None
    threshold: int
    work_dir: str
    batch_rows: int
    max_item_tokens: int
    num_items: int
    verbose: bool = False


def tokenize_item(item: WorkItem, job: Job) -> Iterator[Any]:
    """litdata ``fn``: yield the item's training tokens as 1-D int32 tensors.

    Validation tokens and the item's counters are written to ``work_dir`` side files, read back by
    the parent once every item is done.
    """
    import torch

    tokenizer = load_tokenizer(job.tokenizer, job.eos_token)  # cached per process
    _WORKER_PROGRESS.begin()
    stats = Stats()
    val_parts: list[np.ndarray] = []
    counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    for raw_batch in iter_raw_batches(item, job.batch_rows):
        split_texts = _split_batch(raw_batch, job.threshold, stats)
        train = _encode_documents(tokenizer, split_texts["train"], stats, "train")
        counts += token_counts(train, tokenizer.vocab_size)
        val_parts.append(_encode_documents(tokenizer, split_texts["val"], stats, "val"))
        for start in range(0, len(train), job.max_item_tokens):
            yield torch.from_numpy(train[start : start + job.max_item_tokens])
            pause_point("tokenize")
    _TRAIN_COUNTS.add(Path(job.work_dir), counts)
    _write_side_files(Path(job.work_dir), item.index, np.concatenate(val_parts or [_EMPTY]), stats)
    if job.verbose:
        _WORKER_PROGRESS.report(stats, job.num_items)


class _WorkerProgress:
    """Per-process progress lines on stderr, at most one every ``interval`` seconds.

    Printed by the workers themselves: litdata's own progress bar moves only when a worker exits,
    and a reporter thread in the parent would be unsafe with forked workers.
    """

    def __init__(self, interval: float = 30.0) -> None:
        self.interval = interval
        self.pid: int | None = None
        self.started = self.last = 0.0
        self.items = self.tokens = 0

    def begin(self) -> None:
        """Start the clock at this process's first work item (a forked worker inherits our state)."""
        if self.pid != os.getpid():
            self.pid, self.items, self.tokens = os.getpid(), 0, 0
            self.started = self.last = time.monotonic()

    def report(self, stats: Stats, num_items: int) -> None:
        self.items += 1
        self.tokens += sum(stats.tokens.values())
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            rate = self.tokens / max(now - self.started, 1e-9)
            print(
                f"lit_ffn prepare: worker {os.getpid()}: {self.items} of {num_items} work items, "
                f"{self.tokens:,} tokens, {rate:,.0f} tokens/s",
                file=sys.stderr,
                flush=True,
            )


_WORKER_PROGRESS = _WorkerProgress()


class _TrainCounts:
    """Training-split token counts of this worker process, summed over its items (for the unigram reference).

    One ``counts/<pid>.npy`` per process, rewritten after each item (written to a temporary name, then
    renamed), rather than one file per item: a FineWeb prepare has thousands of items and Qwen's counts
    are 1.2 MB each.  The parent sums the files (:func:`read_train_counts`).
    """

    def __init__(self) -> None:
        self.key: tuple[int, Path] | None = None
        self.counts: np.ndarray | None = None

    def add(self, work_dir: Path, counts: np.ndarray) -> None:
        if self.key != (os.getpid(), work_dir) or self.counts is None:  # a new process or a new prepare
            self.key, self.counts = (os.getpid(), work_dir), np.zeros_like(counts)
        self.counts += counts
        final = work_dir / "counts" / f"{os.getpid()}.npy"
        partial = final.with_name(f"{os.getpid()}.partial.npy")
        np.save(partial, self.counts)
        os.replace(partial, final)


_TRAIN_COUNTS = _TrainCounts()


def read_train_counts(work_dir: Path, vocab_size: int) -> np.ndarray:
    """The training split's ``(vocab_size,)`` token counts, summed over the worker processes' files."""
    total = np.zeros(vocab_size, dtype=np.int64)
    for file in sorted((work_dir / "counts").glob("*.npy")):
        if not file.name.endswith(".partial.npy"):
            total += np.load(file)
    return total


def _split_batch(raw_batch: Sequence[object], threshold: int, stats: Stats) -> dict[str, list[str]]:
    """Clean a batch of raw values, count skips, and route documents to train / val."""
    texts: dict[str, list[str]] = {split: [] for split in SPLITS}
    for value in raw_batch:
        cleaned = value.reason if isinstance(value, Skip) else clean_text(value)
        if isinstance(cleaned, str):
            stats.skipped[cleaned] += 1
            continue
        text, text_utf8 = cleaned
        texts["val" if is_val(text_utf8, threshold) else "train"].append(text)
    return texts


def _encode_documents(tokenizer: Tokenizer, texts: Sequence[str], stats: Stats, split: str) -> np.ndarray:
    """Token ids of ``texts``, each document followed by EOS, as one int32 array."""
    if not texts:
        return _EMPTY
    encoded = tokenizer.encode_batch(texts)
    tokens = np.empty(sum(map(len, encoded)) + len(encoded), dtype=np.int32)
    position = 0
    for ids in encoded:
        tokens[position : position + len(ids)] = ids
        position += len(ids)
        tokens[position] = tokenizer.eos_id
        position += 1
    stats.documents[split] += len(texts)
    stats.tokens[split] += len(tokens)
    return tokens


def _write_side_files(work_dir: Path, index: int, val_tokens: np.ndarray, stats: Stats) -> None:
    if len(val_tokens):
        np.save(work_dir / "val" / f"{index:08d}.npy", val_tokens)
    (work_dir / "stats" / f"{index:08d}.json").write_text(json.dumps(asdict(stats)))


@dataclass(frozen=True)
class ValShard:
    path: str


def read_val_shard(shard: ValShard, max_item_tokens: int) -> Iterator[Any]:
    """litdata ``fn`` of the validation pass: the tokens one work item routed to validation."""
    import torch

    tokens = np.load(shard.path)
    for start in range(0, len(tokens), max_item_tokens):
        yield torch.from_numpy(tokens[start : start + max_item_tokens])


def optimize_split(
    fn: Any, inputs: list[Any], output_dir: Path, num_workers: int, chunk_bytes: int, start_method: str | None
) -> None:
    """litdata ``optimize`` with the settings every split uses (TokensLoader at write time).

    litdata's own output stays off (``verbose=False``): a dozen setup lines, an advertisement and a
    progress bar that moves only when a worker exits; workers report progress themselves.  Call it from
    a process without other threads when ``start_method`` is ``"fork"`` (see
    :func:`lit_ffn.data.corpus.ensure_quickstart_dataset_isolated`).
    """
    import multiprocessing

    from litdata import optimize
    from litdata.streaming.item_loader import TokensLoader

    # optimize() sets the interpreter-wide start method (force=True); put the caller's back afterwards,
    # so that e.g. DataLoader workers created later in this process start as they would have.
    previous = multiprocessing.get_start_method(allow_none=True)
    try:
        optimize(
            fn=fn,
            inputs=inputs,
            output_dir=str(output_dir),
            num_workers=num_workers,
            chunk_bytes=chunk_bytes,
            item_loader=TokensLoader(),
            reorder_files=False,
            start_method=start_method,
            verbose=False,
        )
    finally:
        multiprocessing.set_start_method(previous, force=True)


def pause_point(stage: str) -> None:
    """Test hook: with ``LIT_FFN_PREPARE_PAUSE_AT`` naming ``stage``, announce it and wait to be killed."""
    if stage in os.environ.get(PAUSE_ENV, "").split(","):
        print(f"{PAUSE_ENV}: paused at {stage} (pid {os.getpid()})", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)
