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

Crash safety: everything is built in a temporary sibling ``.DIR.lit_ffn-prepare-…`` directory and
moved into place complete (``meta.json`` included) with one rename; ``--overwrite`` swaps the new
dataset with the old one atomically where the OS allows it (Linux ``renameat2``).  A prepare killed
at any moment leaves the old dataset, the new complete one, or (only without an atomic exchange, for
an instant) none; never a partial one at ``DIR``.  Leftover temporary directories of dead runs are
removed by the next prepare into the same ``DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import functools
import hashlib
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lit_ffn.errors import UserError
from lit_ffn.tokenizer import Tokenizer, load_tokenizer

__all__ = [
    "DatasetError",
    "OutputExistsError",
    "check_output",
    "PrepareError",
    "default_val_fraction",
    "main",
    "prepare_dataset",
    "read_meta",
    "resolve_inputs",
]

FORMAT = "lit_ffn-tokens"
FORMAT_VERSION = 1
DTYPE = "int32"  # Qwen's 151,669 ids do not fit uint16
SPLITS = ("train", "val")
SKIP_REASONS = ("null", "empty", "whitespace", "undecodable", "malformed")
DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024
DEFAULT_BATCH_ROWS = 1024
SUFFIX_KINDS = {".parquet": "parquet", ".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".ndjson": "jsonl", ".txt": "txt"}
# Forked workers start in milliseconds; spawned ones re-import torch (seconds each).
DEFAULT_START_METHOD = "fork" if sys.platform.startswith("linux") else None
#: Test hook: comma-separated stages at which prepare prints a line to stderr and sleeps until killed.
PAUSE_ENV = "LIT_FFN_PREPARE_PAUSE_AT"
PAUSE_STAGES = ("tokenize", "val", "meta", "publish")

_DATASET_ENTRIES = {"meta.json", *SPLITS}
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.lit_ffn-prepare-(?P<host>[^-]+)-(?P<pid>\d+)-[0-9a-f]+$")
_MAX_META_INPUTS = 1000


class PrepareError(UserError):
    """A mistake in what ``prepare`` was asked to do; the message is one line."""


class OutputExistsError(PrepareError):
    """The output directory already holds a dataset and ``overwrite`` was not given."""


class DatasetError(UserError):
    """A directory holds no complete prepared dataset; the message is one line."""


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One input file: a local path or an fsspec URL, its kind and size in bytes."""

    url: str
    kind: str
    size: int


@dataclass(frozen=True)
class WorkItem:
    """The unit litdata hands to a worker: a parquet row group or a whole jsonl / txt file.

    A dataclass rather than a path string on purpose: litdata treats string inputs that look like
    files as things to download into its cache, while we stream them ourselves.
    """

    index: int
    url: str
    kind: str
    row_group: int | None = None
    rows: int | None = None


def resolve_inputs(inputs: Sequence[str]) -> list[Source]:
    """Expand files, directories (recursively) and globs, local or fsspec URLs, into sources.

    Order is deterministic: inputs in the given order, the files of each sorted; duplicates dropped.

    Raises:
        PrepareError: an input that does not exist, matches no supported file, or names a file of
            an unsupported type.
    """
    if not inputs:
        raise PrepareError("no inputs given: pass --input with parquet, jsonl(.gz) or txt files")
    sources: dict[str, Source] = {}
    for spec in inputs:
        matched = _expand_input(str(spec))
        if not matched:
            raise PrepareError(f"no {_supported_suffixes()} files match {spec}")
        for source in matched:
            sources.setdefault(source.url, source)
    return list(sources.values())


def _expand_input(spec: str) -> list[Source]:
    fs, path = _filesystem(spec)
    try:
        if any(char in path for char in "*?["):
            files = {}
            for p, info in fs.glob(path, detail=True).items():
                files.update(fs.find(p, detail=True) if info["type"] == "directory" else {p: info})
        elif fs.isdir(path):
            files = fs.find(path, detail=True)
        elif fs.isfile(path):
            if _kind(path) is None:
                raise PrepareError(f"unsupported input file {spec}: expected {_supported_suffixes()}")
            files = {path: fs.info(path)}
        else:
            raise PrepareError(f"input not found: {spec}")
    except PrepareError:
        raise
    except Exception as exc:  # network and permission errors of any fsspec backend
        raise PrepareError(f"cannot list {spec}: {_first_line(exc)}") from exc
    local = "file" in _protocols(fs)
    return [
        Source(url=p if local else fs.unstrip_protocol(p), kind=kind, size=int(info.get("size") or 0))
        for p, info in sorted(files.items())
        if (kind := _kind(p)) is not None
    ]


def _filesystem(url: str) -> tuple[Any, str]:
    """fsspec filesystem and path for a local path or URL, with one-line errors."""
    import fsspec.core

    try:
        return fsspec.core.url_to_fs(os.path.expanduser(url))
    except (ImportError, ValueError) as exc:  # "Install s3fs to access S3", "Protocol not known: foo"
        raise PrepareError(f"cannot read {url}: {_first_line(exc)}") from exc


def _protocols(fs: Any) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _kind(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1].lower()
    if name.startswith((".", "_")):  # .gitattributes, _SUCCESS markers, hidden files
        return None
    return next((kind for suffix, kind in SUFFIX_KINDS.items() if name.endswith(suffix)), None)


def _supported_suffixes() -> str:
    return ", ".join(SUFFIX_KINDS)


def plan_work(sources: Sequence[Source]) -> list[WorkItem]:
    """Cut sources into work items and check each has a text column/field.

    Parquet files are read only up to their footer here (row-group sizes and schema).
    """
    items: list[WorkItem] = []
    for source in sources:
        if source.kind == "parquet":
            for row_group, rows in enumerate(_parquet_row_groups(source.url)):
                items.append(WorkItem(len(items), source.url, "parquet", row_group, rows))
        elif source.kind == "jsonl":
            _check_jsonl_has_text(source.url)
            items.append(WorkItem(len(items), source.url, "jsonl"))
        else:
            items.append(WorkItem(len(items), source.url, "txt", rows=1))
    return items


def _parquet_row_groups(url: str) -> list[int]:
    """Row counts of the row groups of a parquet file that has a string ``text`` column."""
    import pyarrow as pa

    try:
        with _open_parquet(url) as parquet:
            metadata = parquet.metadata
    except Exception as exc:  # pyarrow raises ArrowInvalid for non-parquet files
        raise PrepareError(f"cannot read parquet file {url}: {_first_line(exc)}") from exc
    schema = metadata.schema.to_arrow_schema()
    if "text" not in schema.names:
        raise PrepareError(f"{url} has no 'text' column (columns: {', '.join(schema.names)})")
    text_type = schema.field("text").type
    textual = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    if not any(is_textual(text_type) for is_textual in textual):
        raise PrepareError(f"{url}: column 'text' has type {text_type}, expected string")
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


def _check_jsonl_has_text(url: str) -> None:
    """Fail early when the first JSON record of a file has no ``text`` field."""
    try:
        with _open(url, compression="infer") as file:
            first = next((line for line in file if line.strip()), None)
    except (OSError, EOFError) as exc:  # e.g. gzip.BadGzipFile
        raise PrepareError(f"cannot read {url}: {_first_line(exc)}") from exc
    if first is None:
        return
    try:
        record = json.loads(first)
    except ValueError:
        return  # counted as malformed / undecodable when the file is processed
    if isinstance(record, dict) and "text" not in record:
        raise PrepareError(f"{url}: records have no 'text' field (fields: {', '.join(map(str, record))})")


def _open(url: str, compression: str | None = None) -> Any:
    import fsspec

    return fsspec.open(url, "rb", compression=compression)


def count_rows(items: Sequence[WorkItem]) -> int:
    """Number of rows (documents before skipping) of the planned items; reads jsonl files once."""
    return sum(item.rows if item.rows is not None else _count_jsonl_lines(item.url) for item in items)


def _count_jsonl_lines(url: str) -> int:
    with _open(url, compression="infer") as file:
        return sum(1 for line in file if line.strip())


# --------------------------------------------------------------------------------------------------
# Split and documents
# --------------------------------------------------------------------------------------------------


def default_val_fraction(rows: int) -> float:
    """0.5% of the documents, but about 100 of them for small corpora, and never more than 10%."""
    return min(0.1, max(0.005, 100 / max(rows, 1)))


def val_threshold(val_fraction: float) -> int:
    """Hash threshold: documents whose 64-bit hash is below it go to validation."""
    return min(int(val_fraction * 2**64), 2**64)


def is_val(text_utf8: bytes, threshold: int) -> bool:
    """Stable split decision for one document (see the module docstring)."""
    return int.from_bytes(hashlib.blake2b(text_utf8, digest_size=8).digest(), "big") < threshold


def clean_text(value: object) -> tuple[str, bytes] | str:
    """A raw row value as ``(text, utf8_bytes)``, or the reason it is skipped (see SKIP_REASONS)."""
    if value is None:
        return "null"
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return "undecodable"
    if not isinstance(value, str):
        return "malformed"
    if not value:
        return "empty"
    if value.isspace():
        return "whitespace"
    try:
        return value, value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from "\ud800" escapes in JSON
        return "undecodable"


def iter_raw_batches(item: WorkItem, batch_rows: int) -> Iterator[list[object]]:
    """Raw ``text`` values of a work item in batches of at most ``batch_rows`` rows.

    jsonl lines that are not UTF-8 or not a JSON object with a text field come through as
    :class:`_Skip` markers so that they are counted, not fatal.
    """
    if item.kind == "parquet":
        yield from _parquet_batches(item, batch_rows)
    elif item.kind == "jsonl":
        yield from _batched(_jsonl_values(item.url), batch_rows)
    else:
        with _open(item.url) as file:
            data = file.read()
        if data.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte order mark: not part of the text
            data = data[3:]
        yield [data]


def _parquet_batches(item: WorkItem, batch_rows: int) -> Iterator[list[object]]:
    with _open_parquet(item.url) as parquet:
        for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[item.row_group], columns=["text"],
                                          use_threads=False):
            yield batch.column(0).to_pylist()


@contextlib.contextmanager
def _open_parquet(url: str) -> Iterator[Any]:
    """A ``pyarrow.parquet.ParquetFile``: local files by path (pyarrow's own I/O), URLs through fsspec."""
    import pyarrow.parquet as pq

    if "://" not in url:
        with pq.ParquetFile(url) as parquet:
            yield parquet
        return
    with _open(url) as file, pq.ParquetFile(file) as parquet:
        yield parquet


@dataclass(frozen=True)
class _Skip:
    reason: str


def _jsonl_values(url: str) -> Iterator[object]:
    with _open(url, compression="infer") as file:
        for raw in file:
            if not raw.strip():
                continue  # blank lines separate nothing: not rows
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield _Skip("undecodable")
                continue
            try:
                record = json.loads(line)
            except ValueError:
                yield _Skip("malformed")
                continue
            yield record.get("text") if isinstance(record, dict) and "text" in record else _Skip("malformed")


def _batched(values: Iterable[object], size: int) -> Iterator[list[object]]:
    iterator = iter(values)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


# --------------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------------


@dataclass
class _Stats:
    """Per-item counters, summed over items into meta.json."""

    documents: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))

    def add(self, other: _Stats) -> None:
        for mine, theirs in ((self.documents, other.documents), (self.tokens, other.tokens),
                             (self.skipped, other.skipped)):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value


_EMPTY = np.zeros(0, dtype=np.int32)


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs; picklable, so any multiprocessing start method works."""

    tokenizer: str
    eos_token: str | None
    threshold: int
    work_dir: str
    batch_rows: int
    max_item_tokens: int
    num_items: int
    verbose: bool = False


def _tokenize_item(item: WorkItem, job: _Job) -> Iterator[Any]:
    """litdata ``fn``: yield the item's training tokens as 1-D int32 tensors.

    Validation tokens and the item's counters are written to ``work_dir`` side files, read back by
    the parent once every item is done.
    """
    import torch

    tokenizer = load_tokenizer(job.tokenizer, job.eos_token)  # cached per process
    _WORKER_PROGRESS.begin()
    stats = _Stats()
    val_parts: list[np.ndarray] = []
    for raw_batch in iter_raw_batches(item, job.batch_rows):
        split_texts = _split_batch(raw_batch, job.threshold, stats)
        train = _encode_documents(tokenizer, split_texts["train"], stats, "train")
        val_parts.append(_encode_documents(tokenizer, split_texts["val"], stats, "val"))
        for start in range(0, len(train), job.max_item_tokens):
            yield torch.from_numpy(train[start:start + job.max_item_tokens])
            _pause_point("tokenize")
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

    def report(self, stats: _Stats, num_items: int) -> None:
        self.items += 1
        self.tokens += sum(stats.tokens.values())
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            rate = self.tokens / max(now - self.started, 1e-9)
            print(f"lit_ffn prepare: worker {os.getpid()}: {self.items} of {num_items} work items, "
                  f"{self.tokens:,} tokens, {rate:,.0f} tokens/s", file=sys.stderr, flush=True)


_WORKER_PROGRESS = _WorkerProgress()


def _split_batch(raw_batch: Sequence[object], threshold: int, stats: _Stats) -> dict[str, list[str]]:
    """Clean a batch of raw values, count skips, and route documents to train / val."""
    texts: dict[str, list[str]] = {split: [] for split in SPLITS}
    for value in raw_batch:
        cleaned = value.reason if isinstance(value, _Skip) else clean_text(value)
        if isinstance(cleaned, str):
            stats.skipped[cleaned] += 1
            continue
        text, text_utf8 = cleaned
        texts["val" if is_val(text_utf8, threshold) else "train"].append(text)
    return texts


def _encode_documents(tokenizer: Tokenizer, texts: Sequence[str], stats: _Stats, split: str) -> np.ndarray:
    """Token ids of ``texts``, each document followed by EOS, as one int32 array."""
    if not texts:
        return _EMPTY
    encoded = tokenizer.encode_batch(texts)
    tokens = np.empty(sum(map(len, encoded)) + len(encoded), dtype=np.int32)
    position = 0
    for ids in encoded:
        tokens[position:position + len(ids)] = ids
        position += len(ids)
        tokens[position] = tokenizer.eos_id
        position += 1
    stats.documents[split] += len(texts)
    stats.tokens[split] += len(tokens)
    return tokens


def _write_side_files(work_dir: Path, index: int, val_tokens: np.ndarray, stats: _Stats) -> None:
    if len(val_tokens):
        np.save(work_dir / "val" / f"{index:08d}.npy", val_tokens)
    (work_dir / "stats" / f"{index:08d}.json").write_text(json.dumps(asdict(stats)))


@dataclass(frozen=True)
class _ValShard:
    path: str


def _read_val_shard(shard: _ValShard, max_item_tokens: int) -> Iterator[Any]:
    """litdata ``fn`` of the validation pass: the tokens one work item routed to validation."""
    import torch

    tokens = np.load(shard.path)
    for start in range(0, len(tokens), max_item_tokens):
        yield torch.from_numpy(tokens[start:start + max_item_tokens])


def _optimize(fn: Any, inputs: list[Any], output_dir: Path, num_workers: int, chunk_bytes: int,
              start_method: str | None) -> None:
    """litdata ``optimize`` with the settings every split uses (TokensLoader at write time).

    litdata's own output stays off (``verbose=False``): a dozen setup lines, an advertisement and a
    progress bar that moves only when a worker exits; workers report progress themselves.  Call it from
    a process without other threads when ``start_method`` is ``"fork"`` (see
    :func:`lit_ffn.corpus.ensure_quickstart_dataset_isolated`).
    """
    import multiprocessing

    from litdata import optimize
    from litdata.streaming.item_loader import TokensLoader

    # optimize() sets the interpreter-wide start method (force=True); put the caller's back afterwards,
    # so that e.g. DataLoader workers created later in this process start as they would have.
    previous = multiprocessing.get_start_method(allow_none=True)
    try:
        optimize(fn=fn, inputs=inputs, output_dir=str(output_dir), num_workers=num_workers, chunk_bytes=chunk_bytes,
                 item_loader=TokensLoader(), reorder_files=False, start_method=start_method, verbose=False)
    finally:
        multiprocessing.set_start_method(previous, force=True)


def _pause_point(stage: str) -> None:
    """Test hook: with ``LIT_FFN_PREPARE_PAUSE_AT`` naming ``stage``, announce it and wait to be killed."""
    if stage in os.environ.get(PAUSE_ENV, "").split(","):
        print(f"{PAUSE_ENV}: paused at {stage} (pid {os.getpid()})", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)


# --------------------------------------------------------------------------------------------------
# Safe output
# --------------------------------------------------------------------------------------------------


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse to replace a dataset without ``overwrite``, and anything that is not a dataset at all."""
    if not output.exists():
        return
    if not output.is_dir():
        raise PrepareError(f"--output {output} exists and is not a directory")
    entries = {entry.name for entry in output.iterdir()}
    if not entries:
        return
    if not entries <= _DATASET_ENTRIES:
        raise PrepareError(f"--output {output} exists and is not a lit_ffn dataset: refusing to replace it")
    if not overwrite:
        raise OutputExistsError(f"{output} already holds a dataset: pass --overwrite to replace it")


def _staging_dir(output: Path) -> Path:
    """A sibling of ``output`` (same file system, so renames are atomic) that names its owner process."""
    return output.parent / f".{output.name}.lit_ffn-prepare-{_host()}-{os.getpid()}-{secrets.token_hex(4)}"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname()) or "host"


def cleanup_leftovers(output: Path) -> list[Path]:
    """Remove temporary directories that killed prepares into ``output`` left on this host."""
    host = _host()
    removed = []
    for path in output.parent.glob(f".{output.name}.lit_ffn-*"):
        match = _LEFTOVER.match(path.name)
        if match and match["name"] == output.name and match["host"] == host and not _pid_alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _publish(staging: Path, output: Path, overwrite: bool) -> None:
    """Move the complete ``staging/dataset`` to ``output``, replacing an old dataset only if allowed.

    A replaced dataset ends up inside ``staging`` (removed by the caller), never as a sibling that
    looks like a dataset.
    """
    new = staging / "dataset"
    check_output(output, overwrite)  # again: the output may have appeared while we tokenized
    if output.exists() and not any(output.iterdir()):
        output.rmdir()
    if not output.exists():
        try:
            os.rename(new, output)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise OutputExistsError(f"{output} appeared while preparing: pass --overwrite to replace it") from exc
            raise
        return
    if not _exchange(new, output):  # atomic where supported: output is the old dataset, then the new one
        os.rename(output, staging / "replaced")  # no dataset at output until the next line
        os.rename(new, output)
    _pause_point("publish")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``; False where unsupported.

    Python has no binding for it (os.rename / os.replace cannot swap two directories).
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(error, os.strerror(error), str(b))


# --------------------------------------------------------------------------------------------------
# prepare_dataset
# --------------------------------------------------------------------------------------------------


def prepare_dataset(
    inputs: str | Sequence[str],
    output_dir: str | os.PathLike[str],
    tokenizer: str = "qwen3",
    val_fraction: float | None = None,
    val_docs: int | None = None,
    num_workers: int = 1,
    overwrite: bool = False,
    *,
    eos_token: str | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    extra_meta: Mapping[str, Any] | None = None,
    start_method: str | None = DEFAULT_START_METHOD,
    verbose: bool = False,
) -> dict[str, Any]:
    """Tokenize text files into ``output_dir/{train,val}`` litdata datasets and ``meta.json``.

    Args:
        inputs: files, directories, globs or fsspec URLs (see :func:`resolve_inputs`).
        output_dir: local directory to create (or replace, with ``overwrite``).
        tokenizer: a :func:`~lit_ffn.tokenizer.load_tokenizer` spec.
        val_fraction: expected fraction of documents in validation, in (0, 1).
        val_docs: expected number of validation documents (alternative to ``val_fraction``);
            by default :func:`default_val_fraction`.
        num_workers: tokenizer processes.
        overwrite: replace an existing dataset (only once the new one is complete).
        eos_token: end-of-document token of a ``tokenizer.json`` (Qwen: ``<|endoftext|>``).
        chunk_bytes: target size of a litdata chunk file.
        batch_rows: rows read and tokenized at a time per worker (bounds memory).
        extra_meta: more keys for meta.json (e.g. a corpus description).
        start_method: multiprocessing start method of litdata's workers.
        verbose: print a start line and per-worker progress (every 30 s) to stderr.

    Returns:
        The meta dictionary, as written to ``output_dir/meta.json``.

    Raises:
        PrepareError: bad arguments or inputs, output in the way, or an empty split.
        lit_ffn.tokenizer.TokenizerError: the tokenizer cannot be loaded.
    """
    started = time.perf_counter()
    output = Path(output_dir).expanduser().absolute()
    _check_arguments(str(output_dir), val_fraction, val_docs, num_workers, chunk_bytes, batch_rows)
    check_output(output, overwrite)
    tok = load_tokenizer(tokenizer, eos_token)  # fail fast on a bad spec; forked workers reuse it
    sources = resolve_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs))
    items = plan_work(sources)
    if not items:
        raise PrepareError("the inputs hold no rows (parquet files without row groups)")
    fraction = _resolve_val_fraction(items, val_fraction, val_docs)

    if verbose:
        print(f"lit_ffn prepare: {len(sources)} input files ({_megabytes(sources)}), {len(items)} work items, "
              f"val fraction {fraction:.4g}, {num_workers} workers -> {output}", file=sys.stderr, flush=True)

    output.parent.mkdir(parents=True, exist_ok=True)
    cleanup_leftovers(output)
    staging = _staging_dir(output)
    try:
        job = _Job(tokenizer, eos_token, val_threshold(fraction), str(staging / "work"), batch_rows,
                   max_item_tokens=max(1, chunk_bytes // 16), num_items=len(items), verbose=verbose)
        stats = _write_splits(items, job, staging / "dataset", num_workers, chunk_bytes, start_method)
        meta = _build_meta(tok, sources, stats, fraction, extra_meta, time.perf_counter() - started)
        (staging / "dataset" / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _pause_point("meta")
        _publish(staging, output, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return meta


def _write_splits(items: list[WorkItem], job: _Job, dataset: Path, num_workers: int, chunk_bytes: int,
                  start_method: str | None) -> _Stats:
    """Write ``dataset/train`` (tokenizing every item) then ``dataset/val`` (from the side files)."""
    work = Path(job.work_dir)
    for directory in (dataset, work / "val", work / "stats"):
        directory.mkdir(parents=True)
    _optimize(functools.partial(_tokenize_item, job=job), items, dataset / "train", min(num_workers, len(items)),
              chunk_bytes, start_method)
    stats = _collect_stats(work / "stats", len(items))
    _check_splits(stats, job.threshold / 2**64)
    _pause_point("val")
    shards = [_ValShard(str(path)) for path in sorted((work / "val").glob("*.npy"))]
    _optimize(functools.partial(_read_val_shard, max_item_tokens=job.max_item_tokens), shards, dataset / "val",
              1, chunk_bytes, start_method)
    for split in SPLITS:
        _check_written_tokens(dataset / split, stats.tokens[split])
    return stats


def _check_arguments(output_dir: str, val_fraction: float | None, val_docs: int | None, num_workers: int,
                     chunk_bytes: int, batch_rows: int) -> None:
    if "://" in output_dir:
        raise PrepareError(f"--output must be a local directory, not {output_dir}: upload the result afterwards")
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


def _collect_stats(stats_dir: Path, num_items: int) -> _Stats:
    files = sorted(stats_dir.glob("*.json"))
    if len(files) != num_items:  # litdata reported success: a lost item would be a bug, not bad input
        raise RuntimeError(f"internal error: {len(files)} of {num_items} work items reported back")
    total = _Stats()
    for file in files:
        total.add(_Stats(**json.loads(file.read_text())))
    return total


def _check_splits(stats: _Stats, fraction: float) -> None:
    kept = sum(stats.documents.values())
    if kept == 0:
        reasons = ", ".join(f"{count} {reason}" for reason, count in stats.skipped.items() if count)
        raise PrepareError(f"no documents left after skipping rows ({reasons or 'no rows'})")
    for split in SPLITS:
        if stats.documents[split] == 0:
            hint = "a larger --val-fraction" if split == "val" else "a smaller --val-fraction / --val-docs"
            raise PrepareError(f"the {split} split is empty ({kept} documents, val fraction {fraction:.4g}): use {hint}")


def _check_written_tokens(split_dir: Path, expected: int) -> None:
    """litdata's index must account for every token the workers produced."""
    chunks = json.loads((split_dir / "index.json").read_text())["chunks"]
    written = sum(chunk["dim"] for chunk in chunks)
    if written != expected:
        raise RuntimeError(f"internal error: {split_dir.name} holds {written} tokens, workers produced {expected}")


def _build_meta(tok: Tokenizer, sources: Sequence[Source], stats: _Stats, fraction: float,
                extra: Mapping[str, Any] | None, seconds: float) -> dict[str, Any]:
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
        "lit_ffn_version": _lit_ffn_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "prepare_seconds": round(seconds, 2),
    }
    meta.update(extra or {})
    return meta


def _megabytes(sources: Sequence[Source]) -> str:
    return f"{sum(source.size for source in sources) / 1e6:,.1f} MB"


def _lit_ffn_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lit_ffn")
    except PackageNotFoundError:
        import lit_ffn

        return getattr(lit_ffn, "__version__", "unknown")


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def read_meta(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The meta of the complete dataset at ``data_dir`` (a local path or an fsspec URL).

    Raises:
        DatasetError: ``data_dir`` holds no complete dataset of a format this version reads.
    """
    location = str(data_dir)
    missing = DatasetError(
        f"no prepared dataset at {location}: create it with `lit_ffn prepare --input <files> --output {location}`"
    )
    try:
        fs, path = _filesystem(location)
        with fs.open(f"{path.rstrip('/')}/meta.json", "rb") as file:
            meta = json.loads(file.read().decode("utf-8"))
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PrepareError):
        raise missing from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {location}/meta.json: {_first_line(exc)}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DatasetError(f"{location}/meta.json is not a lit_ffn dataset meta: prepare the data again")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{location} has dataset format version {meta.get('format_version')}, this lit_ffn reads "
            f"{FORMAT_VERSION}: prepare the data again with --overwrite"
        )
    for split in SPLITS:
        if not fs.exists(f"{path.rstrip('/')}/{split}/index.json"):
            raise DatasetError(f"{location} is incomplete (no {split}/index.json): prepare it again with --overwrite")
    return meta


def sample_blocks(data_dir: str | os.PathLike[str], split: str, block_size: int, count: int) -> list[tuple[int, int, list[int]]]:
    """``count`` evenly spaced blocks of ``block_size`` tokens, exactly as training reads them.

    Returns:
        ``(index, number_of_blocks, token_ids)`` per sample.
    """
    from litdata import StreamingDataset
    from litdata.streaming.item_loader import TokensLoader

    dataset = StreamingDataset(f"{str(data_dir).rstrip('/')}/{split}", item_loader=TokensLoader(block_size=block_size))
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


def inspect_dataset(data_dir: str, samples: int = 3, block_size: int = 257, out: Any = None) -> None:
    """Print the meta of a dataset and decode a few training and validation blocks."""
    out = out or sys.stdout
    meta = read_meta(data_dir)
    print(json.dumps({key: value for key, value in meta.items() if key != "inputs"}, indent=2), file=out)
    tok = load_tokenizer(meta["tokenizer"])
    for split in SPLITS:
        blocks = sample_blocks(data_dir, split, block_size, samples)
        if not blocks:
            print(f"\n--- {split}: no block of {block_size} tokens fits in one chunk ---", file=out)
        for index, total, ids in blocks:
            print(f"\n--- {split} block {index} of {total} ({len(ids)} tokens) ---", file=out)
            print(render_block(tok, ids), file=out)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def parse_bytes(text: str) -> int:
    """``"64MB"`` -> 67108864 (binary units; a plain number is bytes)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)I?B?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use e.g. 64MB")
    return int(float(match[1]) * 1024 ** " KMGT".index(match[2].upper() or " "))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit_ffn prepare",
        description="Tokenize raw text (parquet with a 'text' column, jsonl(.gz), txt) into litdata chunks, "
        "or --inspect a prepared dataset.",
        epilog="example: lit_ffn prepare --input 'hf://datasets/HuggingFaceFW/fineweb/sample/10BT/*.parquet' "
        "--output data/fineweb-10BT --num-workers 16",
    )
    parser.add_argument("--input", nargs="+", action="extend", default=[], metavar="PATH_OR_URL",
                        help="files, directories, globs or fsspec URLs (hf://, s3://); repeatable")
    parser.add_argument("--output", metavar="DIR", help="dataset directory to create")
    parser.add_argument("--tokenizer", default="qwen3", help="'qwen3' (default) or a path to a tokenizer.json")
    parser.add_argument("--eos-token", help="end-of-document token of a tokenizer.json (default: a known one)")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--val-docs", type=int, metavar="N", help="about N validation documents")
    split.add_argument("--val-fraction", type=float, metavar="F",
                       help="fraction of documents for validation (default: 0.5%%, ~100 docs for small corpora, "
                       "at most 10%%)")
    parser.add_argument("--num-workers", type=int, default=1, help="tokenizer processes (default: 1)")
    parser.add_argument("--chunk-bytes", type=parse_bytes, default=DEFAULT_CHUNK_BYTES, metavar="SIZE",
                        help="litdata chunk size (default: 64MB)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset once the new one is complete")
    parser.add_argument("--inspect", metavar="DIR", help="print the meta of DIR and decode sample blocks")
    parser.add_argument("--samples", type=int, default=3, help="blocks per split shown by --inspect (default: 3)")
    parser.add_argument("--block-size", type=int, default=257, help="tokens per block for --inspect (seq_len + 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lit_ffn prepare``; user errors print one line and return 2."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse already printed
        return int(exit_.code or 0)
    try:
        if args.inspect:
            if args.input or args.output:
                raise PrepareError("--inspect takes no --input / --output")
            inspect_dataset(args.inspect, samples=args.samples, block_size=args.block_size)
            return 0
        if not args.input or not args.output:
            raise PrepareError("the following arguments are required: --input, --output (or use --inspect DIR)")
        meta = prepare_dataset(args.input, args.output, args.tokenizer, val_fraction=args.val_fraction,
                               val_docs=args.val_docs, num_workers=args.num_workers, overwrite=args.overwrite,
                               eos_token=args.eos_token, chunk_bytes=args.chunk_bytes, verbose=True)
    except UserError as err:  # PrepareError, DatasetError, TokenizerError
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    print(_summary(args.output, meta))
    return 0


def _summary(output: str, meta: Mapping[str, Any]) -> str:
    splits = ", ".join(f"{split}: {info['documents']:,} docs / {info['tokens']:,} tokens"
                       for split, info in meta["splits"].items())
    skipped = ", ".join(f"{count:,} {reason}" for reason, count in meta["skipped"].items() if count) or "none"
    return f"wrote {output} ({meta['tokenizer']}, {splits}; skipped rows: {skipped}; {meta['prepare_seconds']} s)"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
