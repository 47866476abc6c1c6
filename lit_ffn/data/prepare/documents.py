"""Documents: raw rows → cleaned text, and the hash split into train and validation."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from lit_ffn.data.prepare.sources import WorkItem, open_input, open_parquet

SKIP_REASONS = ("null", "empty", "whitespace", "undecodable", "malformed")


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
    :class:`Skip` markers so that they are counted, not fatal.
    """
    if item.kind == "parquet":
        yield from _parquet_batches(item, batch_rows)
    elif item.kind == "jsonl":
        yield from _batched(_jsonl_values(item.url), batch_rows)
    else:
        with open_input(item.url) as file:
            data = file.read()
        if data.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte order mark: not part of the text
            data = data[3:]
        yield [data]


def _parquet_batches(item: WorkItem, batch_rows: int) -> Iterator[list[object]]:
    with open_parquet(item.url) as parquet:
        for batch in parquet.iter_batches(
            batch_size=batch_rows, row_groups=[item.row_group], columns=["text"], use_threads=False
        ):
            yield batch.column(0).to_pylist()


@dataclass(frozen=True)
class Skip:
    reason: str


def _jsonl_values(url: str) -> Iterator[object]:
    with open_input(url, compression="infer") as file:
        for raw in file:
            if not raw.strip():
                continue  # blank lines separate nothing: not rows
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield Skip("undecodable")
                continue
            try:
                record = json.loads(line)
            except ValueError:
                yield Skip("malformed")
                continue
            yield record.get("text") if isinstance(record, dict) and "text" in record else Skip("malformed")


def _batched(values: Iterable[object], size: int) -> Iterator[list[object]]:
    iterator = iter(values)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
