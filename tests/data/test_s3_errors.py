"""Mistakes with an object store end in one line each, quickly: wrong credentials, a bucket that does not
exist, an endpoint that does not answer, a prefix that holds no (complete) dataset."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback

from lit_ffn.cli import main
from lit_ffn.data import TokenDataModule
from lit_ffn.data.format import DatasetError
from lit_ffn.data.remote import ATTEMPTS, CONNECT_TIMEOUT_S
from tests.conftest import tiny_fit_args
from tests.data.s3_helpers import S3, aws_env, free_port, start_moto, stop


def setup_error(url: str, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        TokenDataModule(url, seq_len=32, **kwargs).setup("fit")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_missing_bucket_is_one_line_from_fit(s3: S3, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = f"s3://no-such-bucket-{s3.bucket}/ds"
    assert main(tiny_fit_args(url, tmp_path)) == 2  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        f"lit_ffn: error: bucket 'no-such-bucket-{s3.bucket}' of {url} does not exist (at this endpoint): check the "
        "URL, or create the bucket"
    )
    assert "Traceback" not in err


def test_an_empty_prefix_holds_no_dataset(s3: S3) -> None:
    assert setup_error(s3.url("nothing")) == (
        f"no prepared dataset at {s3.url('nothing')}: create it with `lit_ffn prepare --input <files> "
        f"--output {s3.url('nothing')}`"
    )


@pytest.fixture(scope="module")
def s3_server_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second moto server that authenticates every request (it knows no access key at all)."""
    proc, endpoint = start_moto(tmp_path_factory.mktemp("moto-auth") / "moto.log", INITIAL_NO_AUTH_ACTION_COUNT="0")
    try:
        yield endpoint
    finally:
        stop(proc)


def test_wrong_credentials(s3_server_with_auth: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    aws_env(monkeypatch, s3_server_with_auth, tmp_path)
    message = setup_error("s3://lake/ds")
    assert message.startswith("access to s3://lake/ds was denied (")
    assert message.endswith(
        "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the storage options) and "
        "the bucket's permissions"
    )


def test_an_endpoint_that_refuses_connections_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    aws_env(monkeypatch, f"http://127.0.0.1:{free_port()}", tmp_path)  # nothing listens there
    start = time.monotonic()
    message = setup_error("s3://lake/ds")
    assert message.startswith("cannot reach the object store for s3://lake/ds (Could not connect to the endpoint URL")
    assert f"gave up after {ATTEMPTS} attempts, connect timeout {CONNECT_TIMEOUT_S} s, read timeout 20 s" in message
    assert time.monotonic() - start < 60  # a refused connection is not retried for minutes


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A TCP port that completes connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_an_endpoint_that_never_answers_fails_within_its_timeouts(
    silent_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import botocore.config

    aws_env(monkeypatch, silent_endpoint, tmp_path)
    config = botocore.config.Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 2, "mode": "standard"})
    start = time.monotonic()
    message = setup_error("s3://lake/ds", storage_options={"config": config})
    elapsed = time.monotonic() - start
    assert message.startswith("cannot reach the object store for s3://lake/ds (Read timeout on endpoint URL")
    # not a speed threshold: without bounded timeouts and retries this took minutes (s3fs × botocore retries)
    assert elapsed < 60, f"a silent endpoint took {elapsed:.0f} s to fail with 1 s timeouts and 2 attempts"


class KillServerAtStep(Callback):
    """Test callback: SIGKILL the process ``pid`` (an S3 server) once training has reached ``step``."""

    def __init__(self, pid: int, step: int) -> None:
        self.pid, self.step = pid, step

    def on_train_batch_end(self, trainer: Any, *_: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(self.pid, signal.SIGKILL)


def test_an_endpoint_gone_mid_fit_is_one_line_naming_the_chunk_and_the_endpoint(
    tiny_dataset: Path, tiny_tokenizer: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    """A fit streams 1-chunk steps from a server of its own, which is killed after step 2: the fit ends in one
    line naming the chunk and the endpoint, and the step-2 last.ckpt is intact for the resume it prints."""
    import boto3

    from lit_ffn.data.prepare import prepare_dataset
    from lit_ffn.training.checks import check_checkpoint_path

    proc, endpoint = start_moto(tmp_path / "moto.log")
    try:
        aws_env(monkeypatch, endpoint, tmp_path)
        boto3.client("s3").create_bucket(Bucket="gone-mid-fit")
        url = "s3://gone-mid-fit/ds"
        docs = [str(tiny_dataset.parent / "docs.parquet")]
        prepare_dataset(docs, url, tokenizer=str(tiny_tokenizer), val_fraction=0.1, chunk_bytes=4096)
        args = tiny_fit_args(url, tmp_path, f"--data.cache_dir={tmp_path / 'cache'}", "--data.batch_size=64",  # type: ignore[arg-type]
                             "--trainer.val_check_interval=1000", "--checkpoint.every_n_train_steps=2",
                             "--trainer.callbacks+=tests.data.test_s3_errors.KillServerAtStep",
                             f"--trainer.callbacks.pid={proc.pid}", "--trainer.callbacks.step=2", steps=60)  # fmt: skip
        assert main(args) == 2  # ~1 chunk a step: litdata's prefetch cannot have fetched them all by step 2
    finally:
        stop(proc)
    last = capsys.readouterr().err.strip().splitlines()[-1]  # litdata's own crash report comes before it
    assert last.startswith("lit_ffn: error: downloading train/chunk-0-") and f"at {endpoint} failed" in last, last
    run = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0"
    assert last.endswith(f"resume with `lit_ffn fit --config {run / 'config.yaml'} --ckpt_path last`"), last
    check_checkpoint_path(str(run / "checkpoints" / "last.ckpt"), None)  # a whole checkpoint, not a partial one
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] >= 2
