#!/usr/bin/env python
"""Benchmark ``lit_ffn prepare``: tokens/s and peak memory for 1 and 2 workers.

Generates a FineWeb-like parquet file (default ~64 MB of text, many record batches: realistic
documents made of paragraphs of the offline quickstart corpus), then runs ``prepare_dataset`` on it
in a fresh process per worker count while sampling the memory of that process and its children.
Prints a Markdown table.

    python scripts/bench_prepare.py [--megabytes 64] [--workers 1 2] [--keep DIR]

Numbers:
* tokens/s: tokens written (train + val) / wall time of ``prepare_dataset`` (imports excluded);
* tokens per CPU second: the same over the CPU time of the whole process tree (workers, litdata's
  writers, the parent), compared with the bare tokenizer's on the same text: this ratio is the
  pipeline's efficiency and, unlike wall time, holds on a machine shared with other jobs;
* peak PSS: largest sum over the process tree of proportional set size (shared pages counted once);
* peak RSS: largest resident set of a single process of the tree.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Runs in a fresh interpreter: heavy imports first, so that the timer sees only prepare itself.
CHILD = """
import json, resource, sys, time
import litdata, torch  # noqa: F401
from lit_ffn.data.prepare import prepare_dataset
from lit_ffn.data.tokenizer import load_tokenizer
load_tokenizer("qwen3")
source, output, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("READY", flush=True)

def cpu():  # this process and its waited-for children (litdata's workers and writers)
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))

started, cpu_started = time.perf_counter(), cpu()
meta = prepare_dataset(source, output, num_workers=workers)
seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu_started
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds,
                  "tokens": sum(s["tokens"] for s in meta["splits"].values())}), flush=True)
"""


def make_parquet(path: Path, megabytes: float, seed: int = 0) -> tuple[int, int]:
    """A FineWeb-schema parquet of documents built from random quickstart-corpus paragraphs.

    Returns:
        (documents, bytes of text).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lit_ffn.data.corpus import quickstart_documents

    paragraphs = [p.strip() for d in quickstart_documents() for p in d.text.split("\n\n") if len(p.strip()) > 40]
    rng = random.Random(seed)
    texts, total = [], 0
    while total < megabytes * 1e6:
        target = int(rng.lognormvariate(7.6, 0.9))  # FineWeb-like lengths: median ~2,000 characters
        parts, length = [], 0
        while length < target:
            parts.append(rng.choice(paragraphs))
            length += len(parts[-1]) + 2
        texts.append("\n\n".join(parts))
        total += len(texts[-1].encode())
    n = len(texts)
    table = pa.table(
        {
            "text": texts,
            "id": [f"<urn:uuid:bench-{i:08d}>" for i in range(n)],
            "dump": ["CC-MAIN-2024-10"] * n,
            "url": [f"https://example.com/{i}" for i in range(n)],
            "date": ["2024-02-20T12:00:00Z"] * n,
            "file_path": ["s3://commoncrawl/bench.warc.gz"] * n,
            "language": ["en"] * n,
            "language_score": [0.95] * n,
            "token_count": [len(t) // 4 for t in texts],
        }
    )
    pq.write_table(table, path, row_group_size=2000)
    return n, total


def tokenizer_speed(path: Path, max_docs: int = 4000) -> tuple[float, float]:
    """The bare tokenizer in this process on the first documents of ``path``: tokens per wall
    second and per CPU second."""
    import pyarrow.parquet as pq

    from lit_ffn.data.tokenizer import load_tokenizer

    texts = pq.read_table(path, columns=["text"]).column("text").to_pylist()[:max_docs]
    tok = load_tokenizer("qwen3")
    started, cpu_started = time.perf_counter(), time.process_time()
    tokens = sum(len(ids) for ids in tok.encode_batch(texts))
    return tokens / (time.perf_counter() - started), tokens / (time.process_time() - cpu_started)


def run_prepare(source: Path, output: Path, workers: int) -> dict:
    """Run prepare in a fresh process; sample the memory of its process tree every 50 ms."""
    import psutil

    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(source), str(output), str(workers)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "READY"
    root = psutil.Process(process.pid)
    peak_pss = peak_rss = 0
    while process.poll() is None:
        pss = rss = 0
        for proc in [root, *root.children(recursive=True)]:
            try:
                info = proc.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            pss += info.pss
            rss = max(rss, info.rss)
        peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        time.sleep(0.05)
    result = json.loads(process.stdout.read().strip().splitlines()[-1])
    if process.returncode:
        raise RuntimeError(f"prepare failed with exit code {process.returncode}")
    return {**result, "peak_pss": peak_pss, "peak_rss": peak_rss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=64, help="text to generate (default: 64)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--keep", type=Path, help="directory to keep the parquet and datasets in")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        source = work / "fineweb-like.parquet"
        documents, text_bytes = make_parquet(source, args.megabytes)
        ceiling, ceiling_cpu = tokenizer_speed(source)
        rows = []
        for workers in args.workers:
            result = run_prepare(source, work / f"ds-{workers}", workers)
            rows.append((workers, result))

    print(
        f"\nInput: {documents:,} documents, {text_bytes / 1e6:.1f} MB of text, row groups of 2,000 rows, "
        f"record batches of 1,024 rows; CPUs: {os.cpu_count()} (shared with other users)."
    )
    print(
        f"Bare tokenizer, one process: {ceiling / 1e6:.2f} M tokens/s wall, "
        f"{ceiling_cpu / 1e6:.2f} M tokens per CPU second.\n"
    )
    print(
        "| workers | tokens | wall s | tokens/s | CPU s | tokens per CPU s (vs bare tokenizer) "
        "| peak PSS (tree) | peak RSS (1 proc) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for workers, r in rows:
        per_cpu = r["tokens"] / r["cpu_seconds"]
        print(
            f"| {workers} | {r['tokens']:,} | {r['seconds']:.1f} | {r['tokens'] / r['seconds'] / 1e6:.2f} M "
            f"| {r['cpu_seconds']:.1f} | {per_cpu / 1e6:.2f} M ({per_cpu / ceiling_cpu:.0%}) "
            f"| {r['peak_pss'] / 2**20:,.0f} MiB | {r['peak_rss'] / 2**20:,.0f} MiB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
