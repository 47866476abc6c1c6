"""A real S3 API for the tests: moto's server mode on 127.0.0.1, a free port, plain HTTP.

``s3_server`` starts one server per test session and stops it at the end; ``s3`` points the standard
AWS environment (``AWS_ENDPOINT_URL``, dummy keys, region) at it for one test and gives it an empty
bucket of its own.  moto is a test-only dependency (the ``dev`` extra).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(log: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """``python -m moto.server`` on a free port; returns the process and its endpoint URL once it answers."""
    pytest.importorskip("moto.server", reason="moto[server] (the dev extra) runs the local S3 API")
    for _ in range(3):  # the free port may be taken between the probe and moto's bind: try another
        port = free_port()
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )
        endpoint = f"http://127.0.0.1:{port}"
        if answers(proc, f"{endpoint}/moto-api/", timeout=60, interval=0.2):
            return proc, endpoint
        stop(proc)
    raise RuntimeError(f"moto server did not start; see {log}")


def answers(proc: subprocess.Popen, url: str, timeout: float, interval: float) -> bool:
    """Whether a test server started as ``proc`` answers ``url`` (any HTTP reply) before it exits or ``timeout``
    seconds pass; the moto, GCS-emulator and MLflow fixtures wait on it."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return True
        except OSError:
            time.sleep(interval)
    return False


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, endpoint = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield endpoint
    finally:
        stop(proc)


@dataclass
class S3:
    endpoint: str
    bucket: str

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}".rstrip("/")

    def fs(self) -> Any:  # s3fs.S3FileSystem
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True)


def aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, tmp_path: Path) -> None:
    """The standard AWS environment pointing at ``endpoint``, isolated from the user's own AWS config."""
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3:
    """The environment pointed at the session's server, and a new empty bucket."""
    import boto3

    aws_env(monkeypatch, s3_server, tmp_path)
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return S3(s3_server, bucket)
