"""Inputs of ``lit_ffn prepare``: files, directories, globs and fsspec URLs → sources → work items.

A work item is one parquet row group or one jsonl / txt file: the unit litdata's workers share.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lit_ffn.data.format import filesystem
from lit_ffn.data.prepare.errors import PrepareError
from lit_ffn.errors import first_line

SUFFIX_KINDS = {".parquet": "parquet", ".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".ndjson": "jsonl", ".txt": "txt"}
# Forked workers start in milliseconds; spawned ones re-import torch (seconds each).


def _filesystem(url: str) -> tuple[Any, str]:
    """fsspec filesystem and path for an input, with one-line :class:`PrepareError` s."""
    return filesystem(url, PrepareError)


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
        raise PrepareError(f"cannot list {spec}: {first_line(exc)}") from exc
    local = "file" in _protocols(fs)
    return [
        Source(url=p if local else fs.unstrip_protocol(p), kind=kind, size=int(info.get("size") or 0))
        for p, info in sorted(files.items())
        if (kind := _kind(p)) is not None
    ]


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
        with open_parquet(url) as parquet:
            metadata = parquet.metadata
    except Exception as exc:  # pyarrow raises ArrowInvalid for non-parquet files
        raise PrepareError(f"cannot read parquet file {url}: {first_line(exc)}") from exc
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
        with open_input(url, compression="infer") as file:
            first = next((line for line in file if line.strip()), None)
    except (OSError, EOFError) as exc:  # e.g. gzip.BadGzipFile
        raise PrepareError(f"cannot read {url}: {first_line(exc)}") from exc
    if first is None:
        return
    try:
        record = json.loads(first)
    except ValueError:
        return  # counted as malformed / undecodable when the file is processed
    if isinstance(record, dict) and "text" not in record:
        raise PrepareError(f"{url}: records have no 'text' field (fields: {', '.join(map(str, record))})")


def open_input(url: str, compression: str | None = None) -> Any:
    import fsspec

    return fsspec.open(url, "rb", compression=compression)


def count_rows(items: Sequence[WorkItem]) -> int:
    """Number of rows (documents before skipping) of the planned items; reads jsonl files once."""
    return sum(item.rows if item.rows is not None else _count_jsonl_lines(item.url) for item in items)


def _count_jsonl_lines(url: str) -> int:
    with open_input(url, compression="infer") as file:
        return sum(1 for line in file if line.strip())


@contextlib.contextmanager
def open_parquet(url: str) -> Iterator[Any]:
    """A ``pyarrow.parquet.ParquetFile``: local files by path (pyarrow's own I/O), URLs through fsspec."""
    import pyarrow.parquet as pq

    if "://" not in url:
        with pq.ParquetFile(url) as parquet:
            yield parquet
        return
    with open_input(url) as file, pq.ParquetFile(file) as parquet:
        yield parquet
