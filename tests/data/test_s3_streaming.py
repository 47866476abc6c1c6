"""Streaming a prepared dataset from a real S3 API (moto's server, plain HTTP) — litdata's obstore path
included — equals training on a local copy bit for bit, through a SIGKILL and a resume, whatever the
cache directory holds."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lit_ffn.cli import main
from lit_ffn.data.prepare import prepare_dataset
from tests.conftest import tiny_fit_args
from tests.data.s3_helpers import S3
from tests.scaleout_helpers import read_records

ROOT = Path(__file__).resolve().parents[2]
RUN = Path("runs") / "tiny" / "SwiGLU" / "seed_0"


def _upstream_builder():
    from litdata.streaming import downloader

    build = downloader._build_obstore_s3_store
    return getattr(build, "__wrapped__", build)


def test_litdata_still_builds_its_obstore_store_without_allow_http() -> None:
    """When this fails, litdata sets allow_http itself: delete install_allow_http_fix (lit_ffn/data/remote.py)."""
    pytest.importorskip("obstore")
    from litdata.streaming.client import S3Client

    client = S3Client(storage_options={"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1"})
    store = _upstream_builder()("bucket", client)
    assert not (store.client_options or {}).get("allow_http"), (
        "litdata now passes allow_http to obstore: remove lit_ffn.data.remote.install_allow_http_fix"
    )


@pytest.mark.parametrize(("endpoint", "allowed"), [("http://127.0.0.1:9", True), ("https://s3.example.org", False)])
def test_the_fix_allows_http_only_for_http_endpoints(endpoint: str, allowed: bool) -> None:
    pytest.importorskip("obstore")
    from litdata.streaming import downloader
    from litdata.streaming.client import S3Client

    from lit_ffn.data.remote import install_allow_http_fix

    install_allow_http_fix()
    client = S3Client(storage_options={"endpoint_url": endpoint, "region_name": "us-east-1"})
    store = downloader._build_obstore_s3_store("bucket", client)
    assert bool((store.client_options or {}).get("allow_http")) is allowed
    assert store.config["endpoint"] == endpoint  # everything else is litdata's store as it built it
    assert store.client_options["timeout"] == downloader._OBSTORE_CLIENT_OPTIONS["timeout"]


def prepare_like_tiny_dataset(tiny_dataset: Path, tokenizer: Path, url: str) -> str:
    """``lit_ffn prepare --output s3://…`` of the inputs ``tiny_dataset`` was prepared from, as it was."""
    prepare_dataset([str(tiny_dataset.parent / "docs.parquet")], url, tokenizer=str(tokenizer), val_fraction=0.1)
    return url


def fit_args(data_dir: str, root: Path, *extra: str, steps: int = 8) -> list[str]:
    return tiny_fit_args(
        data_dir,  # type: ignore[arg-type]
        root,
        "--checkpoint.every_n_train_steps=2",
        "--trainer.callbacks+=tests.scaleout_helpers.StepRecorder",
        f"--trainer.callbacks.out_dir={root / 'records'}",
        *extra,
        steps=steps,
    )


def test_storage_options_alone_can_name_the_endpoint(
    tiny_dataset: Path,
    tiny_tokenizer: Path,
    s3: S3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = prepare_like_tiny_dataset(tiny_dataset, tiny_tokenizer, s3.url("ds"))
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # only data.storage_options says where the server is
    args = fit_args(url, tmp_path, f"--data.cache_dir={tmp_path / 'cache'}", steps=2)
    options = f'--data.storage_options={{"endpoint_url": "{s3.endpoint}", "region_name": "us-east-1"}}'
    assert main([*args, options]) == 0
    assert len(read_records(tmp_path / "records", 0)) == 2


def test_a_fit_streamed_over_http_killed_and_resumed_equals_the_local_run(
    tiny_dataset: Path,
    tiny_tokenizer: Path,
    s3: S3,
    tmp_path: Path,
) -> None:
    """prepare --output s3://… (13 train chunks) → fit → SIGKILL after the step-2 checkpoint → the cache
    deleted → resume: every batch and loss of the same fit on a local copy, bit for bit; a second run on
    the cache directory the first one filled sees the same too."""
    docs = [str(tiny_dataset.parent / "docs.parquet")]
    chunked = {"tokenizer": str(tiny_tokenizer), "val_fraction": 0.1, "chunk_bytes": 65536}
    prepare_dataset(docs, tmp_path / "data", **chunked)
    reference = tmp_path / "local"
    assert main(fit_args(str(tmp_path / "data"), reference, steps=6)) == 0
    expected = read_records(reference / "records", 0)

    url = s3.url("ds")
    meta = prepare_dataset(docs, url, **chunked)
    assert len(meta["files"]["train"]) > 8  # index.json and many chunks
    cache = tmp_path / "cache"
    streamed = tmp_path / "streamed"
    args = fit_args(url, streamed, f"--data.cache_dir={cache}", steps=6)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITFFN_TEST_SIGNAL_AT": "0:3:SIGKILL"}
    done = subprocess.run(
        [sys.executable, "-m", "lit_ffn.cli", *args], check=False, cwd=ROOT, env=env, capture_output=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    killed = read_records(streamed / "records", 0)
    assert [r["step"] for r in killed] == [0, 1, 2]
    assert [r["loss"] for r in killed] == [r["loss"] for r in expected[:3]]

    shutil.rmtree(cache)  # deleted between the runs: chunks are fetched again, nothing else changes
    assert main(["fit", "--config", str(streamed / RUN / "config.yaml"), "--ckpt_path", "last"]) == 0
    resumed = read_records(streamed / "records", 0)[len(killed) :]
    assert [r["step"] for r in resumed] == [2, 3, 4, 5]
    assert [r["batch"] for r in resumed] == [r["batch"] for r in expected[2:]]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in expected[2:]]  # bit for bit

    shared = tmp_path / "shared"  # a second run on the cache the resumed run filled
    assert main(fit_args(url, shared, f"--data.cache_dir={cache}", steps=6)) == 0
    assert [r["loss"] for r in read_records(shared / "records", 0)] == [r["loss"] for r in expected]


def test_spawned_loader_workers_stream_over_http_too(
    tiny_dataset: Path, tiny_tokenizer: Path, s3: S3, tmp_path: Path
) -> None:
    """A worker started by spawn imports litdata afresh: the loaders' worker_init_fn installs the fix there."""
    import multiprocessing

    from lit_ffn.data import TokenDataModule

    url = prepare_like_tiny_dataset(tiny_dataset, tiny_tokenizer, s3.url("ds"))
    module = TokenDataModule(url, seq_len=32, batch_size=4, num_workers=1, cache_dir=str(tmp_path / "cache"))
    module.setup("fit")
    previous = multiprocessing.get_start_method()
    multiprocessing.set_start_method("spawn", force=True)
    try:
        batch = next(iter(module.train_dataloader()))
    finally:
        multiprocessing.set_start_method(previous, force=True)
    assert tuple(batch.shape) == (4, 33)
