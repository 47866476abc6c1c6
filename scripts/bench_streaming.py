#!/usr/bin/env python
"""Streaming throughput: the training loader over a local S3 server (moto, plain HTTP) vs local disk.

Writes a synthetic token dataset (``scripts/bench_loader.py``'s: random int32 ids in 64 MB chunks),
starts ``python -m moto.server`` on 127.0.0.1 (needs ``pip install "moto[server]" s3fs``), uploads the
dataset, then reads one full epoch of ``TokenDataModule.train_dataloader()`` three times: from the
local directory, from ``s3://`` with an empty cache (every chunk downloaded during the epoch), and
from ``s3://`` again with the cache the second pass filled.  Prints a Markdown table.

    python scripts/bench_streaming.py [--tokens 128M] [--seq-len 2048] [--batch-size 8] [--workers 0]

moto keeps objects in memory and serves them from one Python process, so the cold row is a floor for
what an S3-compatible server on the same machine delivers, not a measure of S3 itself.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

from bench_loader import make_dataset, parse_count  # noqa: E402 - scripts/ is not a package


def epoch(data_dir: str, cache: str | None, seq_len: int, batch_size: int, workers: int) -> tuple[float, int]:
    """Seconds for one full pass of the training loader, and the batches it gave."""
    from lit_ffn.data import TokenDataModule

    module = TokenDataModule(data_dir, seq_len=seq_len, batch_size=batch_size, num_workers=workers, cache_dir=cache)
    module.setup("fit")
    start = time.perf_counter()
    batches = sum(1 for _ in module.train_dataloader())
    return time.perf_counter() - start, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=parse_count, default=parse_count("128M"))
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_streaming-") as tmp:
        root = Path(tmp)
        make_dataset(root / "data", args.tokens, 151_669, parse_count("64M"))
        if sys.platform.startswith("linux"):  # litdata's optimize switched it to spawn; a training process forks
            multiprocessing.set_start_method("fork", force=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            endpoint = f"http://127.0.0.1:{port}"
            os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
            os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.2)
            import s3fs

            fs = s3fs.S3FileSystem(skip_instance_cache=True)
            fs.mkdir("bench")
            start = time.perf_counter()
            fs.put(str(root / "data"), "bench/data", recursive=True)
            upload = time.perf_counter() - start
            size = sum(p.stat().st_size for p in (root / "data").rglob("*") if p.is_file())
            rows = []
            for name, data_dir, cache in (
                ("local disk (page cache warm)", str(root / "data"), None),
                ("s3:// moto, empty cache", "s3://bench/data", str(root / "cache")),
                ("s3:// moto, cache filled", "s3://bench/data", str(root / "cache")),
            ):
                seconds, batches = epoch(data_dir, cache, args.seq_len, args.batch_size, args.workers)
                tokens = batches * args.batch_size * args.seq_len
                rows.append(f"| {name} | {batches:,} | {seconds:.2f} | {tokens / seconds / 1e6:.2f} M |")
        finally:
            server.terminate()
            server.wait()
    print(f"dataset {size / 2**20:.0f} MiB; upload to moto {upload:.1f} s ({size / upload / 2**20:.0f} MiB/s)")
    print(f"seq_len {args.seq_len}, batch {args.batch_size}, num_workers {args.workers}, one epoch each\n")
    print("| source | batches | seconds | tokens/s |\n|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
