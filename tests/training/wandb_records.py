"""Read what a W&B offline run recorded: the records of its ``run-<id>.wandb`` file.

wandb 0.31 writes the file from its Go core and ships no Python reader for it, so this is hand-written from the
format wandb uses (LevelDB's log format): a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB
blocks of records — a 4-byte checksum, a 2-byte little-endian length, a 1-byte type (1 full, 2 first, 3 middle,
4 last: a record split across blocks) — each holding one ``wandb_internal_pb2.Record`` protobuf.  Checksums are
not verified: the tests read files written a moment before.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[Any]:
    """Every ``Record`` of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data.startswith(HEADER), f"{path} is not a W&B run file"
    out, pending, pos = [], b"", len(HEADER)
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # the block's tail is padding
            pos += room
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        if kind == 0 and length == 0:  # zero padding at the end of a block
            pos += room
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def _key(item: Any) -> str:
    """An item's key: ``key``, or its ``nested_key`` parts (wandb 0.31 writes tags such as ``train/loss`` so)."""
    return item.key or "/".join(item.nested_key)


def run_contents(path: Path) -> dict[str, Any]:
    """The run's id and name, its config (``{key: value}``) and its history (``[{key: value}, ...]``)."""
    run: dict[str, Any] = {"config": {}, "history": []}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["id"], run["name"] = record.run.run_id, record.run.display_name
        elif kind == "config":
            for item in record.config.update:
                run["config"][_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            run["history"].append({_key(item): json.loads(item.value_json) for item in record.history.item})
    return run
