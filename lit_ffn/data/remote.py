"""Object-store access shared by the DataModule and ``lit_ffn prepare``: storage options, timeouts, and
one litdata workaround.

**Storage options.**  ``data.storage_options`` (and ``prepare --storage-options``) use *litdata's*
convention, so they pass to litdata unchanged: for ``s3://`` they are keyword arguments of
``boto3.client("s3", …)`` (``endpoint_url``, ``region_name``, ``aws_access_key_id``, …); for ``gs://``
those of ``google.cloud.storage.Client``.  Everything the standard environment says
(``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``AWS_REGION``, ``~/.aws/config``, ``GOOGLE_APPLICATION_CREDENTIALS``)
is found by boto3 / google-auth themselves and needs no option (``STORAGE_EMULATOR_HOST`` too: gcsfs and
``google.cloud.storage`` both honour it).  :func:`fsspec_options` spells the same options for the fsspec
file system (which lit_ffn uses for ``meta.json`` and for writing a dataset): s3fs passes
``client_kwargs`` to the same botocore ``create_client``; gcsfs has its own names for the few ``Client``
arguments it has at all (:func:`gcsfs_options`).

**Timeouts.**  An endpoint that does not answer must fail, not hang: litdata's S3 client retries
1,000 times ("adaptive"), so lit_ffn gives boto3 and s3fs a connect timeout of
:data:`CONNECT_TIMEOUT_S` seconds and :data:`ATTEMPTS` attempts unless ``storage_options`` sets
``config`` itself, and s3fs's own retry loop (5 tries of botocore's 3) is cut to one.  Worst case: an
endpoint that refuses connections fails in seconds, one that does not accept them within
``ATTEMPTS × CONNECT_TIMEOUT_S`` (15 s) plus backoff, one that accepts and never answers within
``ATTEMPTS × READ_TIMEOUT_S`` (60 s) plus backoff (tests/data/test_s3_errors.py).

**allow_http (litdata 0.2.76).**  litdata fetches S3 chunks through obstore, whose store it builds in
``litdata.streaming.downloader._build_obstore_s3_store`` from the boto3 client's endpoint, region and
credentials — but without ``client_options["allow_http"]``.  object_store refuses plain-HTTP URLs
unless that is set, so every ``http://`` endpoint (MinIO, Ceph RGW, moto inside a cluster) fails with
``Generic S3 error … HTTP error: builder error``.  :func:`install_allow_http_fix` wraps that one
function: when the endpoint is ``http://`` and the store lacks ``allow_http``, it rebuilds the same
store (same config, credential provider, retry config) with ``allow_http=True``; otherwise it returns
litdata's store untouched.  ``tests/data/test_s3_streaming.py`` checks litdata's own function still
omits the flag, and fails (asking to remove this wrapper) the day upstream sets it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: seconds to wait for a TCP connection to an object store before giving up on an attempt
CONNECT_TIMEOUT_S = 5
#: seconds to wait for (the next bytes of) a response once connected
READ_TIMEOUT_S = 20
#: tries per request (boto3 "standard" retry mode: the first try plus ATTEMPTS - 1 retries)
ATTEMPTS = 3

_RETRIES = {"max_attempts": ATTEMPTS, "mode": "standard"}


def is_s3(url: str) -> bool:
    return str(url).startswith("s3://")


def litdata_options(url: str, storage_options: dict[str, Any] | None) -> dict[str, Any] | None:
    """``storage_options`` for litdata, with lit_ffn's timeouts for S3 unless the user set ``config``."""
    options = dict(storage_options or {})
    if is_s3(url) and "config" not in options:
        import botocore.config

        options["config"] = botocore.config.Config(
            connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S, retries=dict(_RETRIES)
        )
    return options or None


def is_gcs(url: str) -> bool:
    return str(url).startswith(("gs://", "gcs://"))


def fsspec_options(url: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """The same options for the fsspec file system of ``url`` (s3fs: boto3 client kwargs go to
    ``client_kwargs``; a botocore ``config`` becomes s3fs's ``config_kwargs``; gcsfs: :func:`gcsfs_options`)."""
    options = dict(storage_options or {})
    if is_gcs(url):
        return gcsfs_options(options)
    if not is_s3(url):
        return options
    config = options.pop("config", None)
    config_kwargs = (
        {"connect_timeout": CONNECT_TIMEOUT_S, "read_timeout": READ_TIMEOUT_S, "retries": dict(_RETRIES)}
        if config is None
        else dict(vars(config).get("_user_provided_options", {}))
    )
    return {"client_kwargs": options, "config_kwargs": config_kwargs, "skip_instance_cache": True}


def gcsfs_options(options: dict[str, Any]) -> dict[str, Any]:
    """``google.cloud.storage.Client`` keyword arguments (litdata's ``gs://`` options) as gcsfs spells them.

    ``client_options["api_endpoint"]`` is gcsfs's ``endpoint_url``; ``credentials`` (a google-auth object)
    its ``token``; ``use_auth_w_custom_endpoint=False`` (anonymous requests to a custom endpoint, e.g. an
    emulator) its ``token="anon"``; ``project`` is the same.  gcsfs silently ignores keywords it does not
    know, so without this an endpoint named in ``client_options`` would reach litdata but not ``meta.json``.
    Other keywords pass unchanged.  A fresh instance each time, as for s3fs (no listing cached across calls).
    """
    quiet_gcsfs_logger()
    options = dict(options)
    client_options = options.pop("client_options", None)
    endpoint = (
        client_options.get("api_endpoint")
        if isinstance(client_options, dict)
        else getattr(client_options, "api_endpoint", None)
    )
    if endpoint:
        options["endpoint_url"] = endpoint
    credentials = options.pop("credentials", None)
    if credentials is not None:
        options["token"] = credentials
    if options.pop("use_auth_w_custom_endpoint", True) is False:
        options.setdefault("token", "anon")
    return {**options, "skip_instance_cache": True}


def limit_retries(fs: Any) -> Any:
    """Make an s3fs file system rely on botocore's retries alone (module docstring); other file systems
    are returned as they are."""
    if type(fs).__module__.startswith("s3fs"):
        fs.retries = 1  # s3fs's documented class attribute (default 5), per instance
    return fs


def worker_init(worker_id: int) -> None:
    """``worker_init_fn`` of the loaders of ``s3://`` data: a DataLoader worker started by ``spawn`` or
    ``forkserver`` (e.g. after litdata's ``optimize`` switched the start method) imports litdata afresh,
    without :func:`install_allow_http_fix`; this installs it there before the first chunk is fetched."""
    install_allow_http_fix()


def install_allow_http_fix() -> None:
    """Wrap litdata's ``_build_obstore_s3_store`` so that ``http://`` endpoints work (module docstring).

    Idempotent; a no-op where litdata has no such function (another litdata version).
    """
    from litdata.streaming import downloader

    upstream = getattr(downloader, "_build_obstore_s3_store", None)
    if upstream is None or getattr(upstream, "_lit_ffn_allow_http", False):
        return

    def build_store(bucket: str, s3_client: Any) -> Any:
        store = upstream(bucket, s3_client)
        endpoint = s3_client.client.meta.endpoint_url or ""
        if not endpoint.startswith("http://") or (store.client_options or {}).get("allow_http"):
            return store
        from obstore.store import S3Store

        config = {k: v for k, v in (store.config or {}).items() if k != "bucket"}
        return S3Store(
            bucket,
            config=config or None,
            client_options={**(store.client_options or {}), "allow_http": True},
            retry_config=store.retry_config,
            credential_provider=store.credential_provider,
        )

    build_store._lit_ffn_allow_http = True  # type: ignore[attr-defined]
    build_store.__wrapped__ = upstream  # type: ignore[attr-defined]
    downloader._build_obstore_s3_store = build_store


def remote_error(url: str, exc: BaseException) -> str | None:
    """One line for a failed object-store request on ``url`` (None: not an object-store failure).

    s3fs turns S3 errors into ``PermissionError`` / ``FileNotFoundError`` (with botocore's error as
    the cause); a connection failure stays botocore's ``EndpointConnectionError`` / ``ConnectTimeoutError``.
    """
    if "://" not in str(url) or str(url).startswith("file://"):
        return None
    chain = [exc]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]
        if len(chain) > 8:
            break
    names = {type(e).__name__ for e in chain}
    text = " ".join(str(exc).split())
    bucket = str(url).split("://", 1)[1].split("/", 1)[0]
    if is_gcs(url):
        return _gcs_error(url, bucket, chain, names, text)
    if names & {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"}:
        return (
            f"cannot reach the object store for {url} ({text}; gave up after {ATTEMPTS} attempts, connect timeout "
            f"{CONNECT_TIMEOUT_S} s, read timeout {READ_TIMEOUT_S} s, unless storage_options sets a botocore config): "
            "check AWS_ENDPOINT_URL (or the endpoint_url storage option) and that the server is up"
        )
    if isinstance(exc, PermissionError) or "AccessDenied" in names or "InvalidAccessKeyId" in names:
        return (
            f"access to {url} was denied ({text}): check the credentials (AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the storage options) and the bucket's permissions"
        )
    if "NoSuchBucket" in names or "bucket does not exist" in text:
        return f"bucket '{bucket}' of {url} does not exist (at this endpoint): check the URL, or create the bucket"
    return None


#: gcsfs's upload (and bucket listing) paths: a 404 there is the bucket missing, not an object
_GCS_BUCKET_PATH = re.compile(r"(?:/upload)?/storage/v1/b/([^/\s]+)/o\b")


def _gcs_error(url: str, bucket: str, chain: list[BaseException], names: set[str], text: str) -> str | None:
    """:func:`remote_error` for ``gs://``, from what gcsfs raises (``gcsfs/retry.py``, ``validate_response``
    and ``retry_request``): aiohttp's ``ClientConnectorError`` (or ``ServerDisconnectedError``, a timeout)
    once its 6 tries with backoff (≈ 30 s) are spent; ``OSError("Forbidden: …")`` for 403 and ``HttpError``
    with code 401 for bad credentials; ``FileNotFoundError(path)`` for any 404, which is the bucket only
    when the path is the bucket's object collection (an upload, a listing)."""
    if names & {
        "ClientConnectorError",
        "ClientConnectionError",
        "ServerDisconnectedError",
        "ServerTimeoutError",
        "ClientOSError",
        "ConnectionRefusedError",
    }:
        return (
            f"cannot reach the object store for {url} ({text}): check STORAGE_EMULATOR_HOST (or the "
            "client_options.api_endpoint storage option) and that the server is up"
        )
    codes = {getattr(e, "code", None) for e in chain}
    if text.startswith("Forbidden") or codes & {401, 403}:
        return (
            f"access to {url} was denied ({text}): check the credentials (GOOGLE_APPLICATION_CREDENTIALS, "
            "`gcloud auth application-default login`, or the credentials storage option) and the bucket's "
            "permissions"
        )
    missing = next((e for e in chain if isinstance(e, FileNotFoundError)), None)
    match = _GCS_BUCKET_PATH.search(str(missing)) if missing is not None else None
    if match is not None and match.group(1) == bucket:
        return f"bucket '{bucket}' of {url} does not exist (at this endpoint): check the URL, or create the bucket"
    return None


def quiet_gcsfs_logger() -> None:
    """Keep gcsfs from printing a traceback of its own before the error it raises (``retry_request`` logs
    every give-up with ``logger.exception``; with no handler configured, Python's last-resort handler
    prints it to stderr): the raised error, turned into one line by :func:`remote_error`, says it all.
    A ``NullHandler`` on the ``gcsfs`` logger only; a user who configures logging still sees it."""
    log = logging.getLogger("gcsfs")
    if not any(isinstance(handler, logging.NullHandler) for handler in log.handlers):
        log.addHandler(logging.NullHandler())


#: obstore's failed GET (litdata's chunk downloads) and botocore's refused connection, as their messages say them
_FAILED_GET = re.compile(
    r"Error performing GET (\S+?)(?: in [\d.]+m?s)?(?:, (after \d+ retries))?[,:]?\s(?:.*?HTTP error: ([^\n]*))?"
)
_NO_ENDPOINT = re.compile(r'Could not connect to the endpoint URL: "([^"]+)"')


def download_failure(exc: BaseException) -> str | None:
    """One line for a chunk download that failed while a fit streamed from an object store (None: not one).

    litdata's prefetch thread (obstore underneath) stops on a failed GET and the reader re-raises it — in a
    DataLoader worker, as text inside torch's re-raised exception — so the URL is read from the messages of
    the exception chain: the chunk is the URL's path after the dataset version, the endpoint its scheme and host.
    """
    chain, seen = [exc], 0
    while seen < 8 and (chain[-1].__cause__ is not None or chain[-1].__context__ is not None):
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]
        seen += 1
    text = "\n".join(str(e) for e in chain)
    match = _FAILED_GET.search(text) or _NO_ENDPOINT.search(text)
    if match is None:
        return None
    url = match.group(1)
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    host, _, path = rest.partition("/")
    endpoint = f"{scheme}://{host}" if scheme else host
    chunk = "/".join(path.split("/")[-2:])  # <split>/chunk-<r>-<i>.bin
    groups = match.groups()
    reason = "; ".join(g.strip() for g in groups[1:] if g) if len(groups) > 1 else "connection refused"
    return (
        f"downloading {chunk} ({path}) from the object store at {endpoint} failed"
        f"{f' ({reason})' if reason else ''}: the store stopped answering in the middle of the fit"
    )
