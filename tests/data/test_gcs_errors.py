"""``gs://`` mistakes end in one line each: what gcsfs really raises for an unreachable endpoint, denied
credentials and a missing bucket becomes :func:`lit_ffn.data.remote.remote_error`'s sentence, and gcsfs's own
traceback logging stays quiet.  (The emulator end to end: tests/data/test_gcs_prepare.py.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from lit_ffn.data.remote import remote_error

gcsfs_retry = pytest.importorskip("gcsfs.retry", reason="gcsfs (the dev extra) writes and reads gs:// for lit_ffn")
aiohttp = pytest.importorskip("aiohttp")

URL = "gs://my-bucket/ds"


def raised(status: int, content: bytes, path: str) -> BaseException:
    """The exception gcsfs's own response check raises for an HTTP status."""
    with pytest.raises(Exception) as info:
        gcsfs_retry.validate_response(status, content, path)
    return info.value


def refused_connection() -> BaseException:
    """aiohttp's error for a port nothing listens on (gcsfs raises it once its retries are spent)."""

    async def get() -> None:
        async with aiohttp.ClientSession() as session, session.get("http://127.0.0.1:1/storage/v1/b/x/o"):
            pass

    with pytest.raises(aiohttp.ClientConnectorError) as info:
        asyncio.run(get())
    return info.value


def test_an_unreachable_endpoint_names_the_emulator_variable() -> None:
    message = remote_error(URL, refused_connection())
    assert message is not None and "\n" not in message
    assert message.startswith(f"cannot reach the object store for {URL} (Cannot connect to host 127.0.0.1:1")
    assert message.endswith("check STORAGE_EMULATOR_HOST (or the client_options.api_endpoint storage option) and "
                            "that the server is up")  # fmt: skip


@pytest.mark.parametrize(
    ("status", "content"),
    [(403, b'{"error": {"code": 403, "message": "caller does not have storage.objects.get access"}}'),
     (401, b'{"error": {"code": 401, "message": "Invalid Credentials"}}')],
)  # fmt: skip
def test_denied_credentials_name_the_google_variables(status: int, content: bytes) -> None:
    message = remote_error(URL, raised(status, content, "https://storage.googleapis.com/storage/v1/b/my-bucket/o"))
    assert message is not None and "\n" not in message
    assert message.startswith(f"access to {URL} was denied (")
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message


def test_a_404_is_the_bucket_only_on_the_buckets_object_collection() -> None:
    upload = raised(404, b"", "http://127.0.0.1:9023/upload/storage/v1/b/my-bucket/o")
    assert remote_error(URL, upload) == (
        f"bucket 'my-bucket' of {URL} does not exist (at this endpoint): check the URL, or create the bucket"
    )
    # an object that is not there is for the caller to judge (no dataset yet, a half-written one): no sentence
    assert remote_error(URL, raised(404, b"", "my-bucket/ds/meta.json")) is None
    assert remote_error(URL, raised(404, b"", "http://h/upload/storage/v1/b/other-bucket/o")) is None
    assert remote_error("file:///tmp/ds", upload) is None


def test_gcsfs_logs_no_traceback_of_its_own() -> None:
    """gcsfs's ``retry_request`` logs a give-up with ``logger.exception``; with logging unconfigured (as in
    ``lit_ffn prepare``), Python's last-resort handler would print that traceback above lit_ffn's one line.
    A fresh interpreter: pytest's own log capture would hide the difference here."""
    script = """
import logging, sys
from lit_ffn.data.remote import gcsfs_options
if sys.argv[1] == "quiet":
    gcsfs_options({}); gcsfs_options({})
    assert sum(isinstance(h, logging.NullHandler) for h in logging.getLogger("gcsfs").handlers) == 1
try:
    raise OSError("Forbidden: my-bucket/ds/meta.json")
except OSError:
    logging.getLogger("gcsfs").exception("_call out of retries on exception")
"""

    def stderr(mode: str) -> str:
        done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        return done.stderr

    assert "Traceback" in stderr("loud")  # what the user would see without it
    assert stderr("quiet") == ""
