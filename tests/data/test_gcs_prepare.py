"""``lit_ffn prepare --output gs://bucket/prefix`` against a local GCS API (gcp-storage-emulator's server, in
memory, plain HTTP): prepare, inspect, the refusal to replace a dataset, and streaming it — through the
DataModule and a short fit — equal to a local copy.

The environment is what a user exports to run against the emulator (docs/data.md, section 3):

* ``STORAGE_EMULATOR_HOST`` — gcsfs (``meta.json``, the upload) and ``google.cloud.storage`` (litdata's
  ``GCPDownloader.download_file``) both send their requests there, unauthenticated;
* ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` — read when gcsfs is imported: gcsfs (2026.10) otherwise
  returns its ``ExtendedGcsFileSystem``, which asks the Storage Control gRPC API for the bucket's layout
  before opening a file; the emulator has no gRPC API, each ask times out after 60 s and, the answer being
  "unknown", is not cached (``gcsfs/extended_gcsfs.py``, ``_get_bucket_type`` / ``_lookup_bucket_type``);
* ``LITDATA_ASYNC_CHUNK_PREFETCH=0`` — litdata 0.2.76's asynchronous prefetch fetches chunks through
  obstore, whose store ``GCPDownloader._get_store`` builds without the emulator's URL and with the client's
  credentials, which are anonymous there (:func:`test_litdata_prefetch_builds_its_gcs_store_without_the_emulator`).
"""

from __future__ import annotations

import gc
import importlib.util
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lit_ffn.cli import main as cli_main
from lit_ffn.data.format import read_meta
from lit_ffn.data.prepare import OutputExistsError, PrepareError, inspect_dataset, prepare_dataset
from lit_ffn.data.prepare.cli import main as prepare_main
from tests.conftest import tiny_corpus, tiny_fit_args, write_fineweb_parquet
from tests.data.s3_helpers import answers, free_port, stop
from tests.scaleout_helpers import read_records

pytest.importorskip("gcp_storage_emulator", reason="gcp-storage-emulator (the dev extra) runs the local GCS API")
pytest.importorskip("google.cloud.storage", reason="google-cloud-storage (gcsfs brings it) is litdata's GCS client")
if importlib.util.find_spec("gcsfs") is None:  # not imported here: GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT must come first
    pytest.skip("gcsfs (the dev extra) writes and reads gs:// for lit_ffn", allow_module_level=True)


def start_emulator(log: Path) -> tuple[subprocess.Popen, str]:
    """``gcp-storage-emulator start --in-memory`` on a free port; the process and its URL once it answers."""
    for _ in range(3):  # the free port may be taken between the probe and the emulator's bind: try another
        port = free_port()
        command = ["gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", *command],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        endpoint = f"http://127.0.0.1:{port}"
        if answers(proc, f"{endpoint}/", timeout=60, interval=0.1):  # the emulator's health check
            return proc, endpoint
        stop(proc)
    raise RuntimeError(f"gcp-storage-emulator did not start; see {log}")


@pytest.fixture(scope="module")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, endpoint = start_emulator(tmp_path_factory.mktemp("gcs") / "emulator.log")
    try:
        yield endpoint
    finally:
        stop(proc)


@dataclass
class GCS:
    endpoint: str
    bucket: str

    def url(self, key: str = "") -> str:
        return f"gs://{self.bucket}/{key}".rstrip("/")

    def fs(self) -> Any:  # gcsfs.GCSFileSystem, at the emulator
        import gcsfs

        return gcsfs.GCSFileSystem(endpoint_url=self.endpoint, token="anon", skip_instance_cache=True)


def emulator_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, tmp_path: Path) -> None:
    """The environment of the module docstring, isolated from the user's own Google credentials."""
    for name, value in {
        "STORAGE_EMULATOR_HOST": endpoint,
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "LITDATA_ASYNC_CHUNK_PREFETCH": "0",
        "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "no-google-credentials.json"),
        "CLOUDSDK_CONFIG": str(tmp_path / "no-gcloud"),
        "NO_GCE_CHECK": "true",
    }.items():
        monkeypatch.setenv(name, value)
    import gcsfs
    from fsspec.registry import _registry

    if gcsfs.GCSFileSystem is not gcsfs.core.GCSFileSystem:  # gcsfs was imported before the variable was set
        for protocol in gcsfs.core.GCSFileSystem.protocol:  # "gs", "gcs"
            monkeypatch.setitem(_registry, protocol, gcsfs.core.GCSFileSystem)


def stop_prefetch_threads() -> None:
    """Stop litdata's chunk-prefetch threads of gs:// data in this process and wait for them.

    A reader's thread outlives the test that read (``Reader.__del__`` only signals it, at garbage
    collection) and reads LITDATA_ASYNC_CHUNK_PREFETCH before each download: were it still fetching once
    monkeypatch restored the environment, it would switch to obstore and crash on the emulator's anonymous
    credentials, printing litdata's report into a later test's output."""
    from litdata.streaming.reader import PrepareChunksThread

    gc.collect()
    for thread in threading.enumerate():
        if isinstance(thread, PrepareChunksThread) and str(thread._config._remote_dir).startswith("gs://"):
            thread.force_stop()
            thread.join(timeout=30)


@pytest.fixture
def gcs(gcs_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[GCS]:
    """The environment pointed at the module's emulator, and a new empty bucket."""
    emulator_env(monkeypatch, gcs_server, tmp_path)
    store = GCS(gcs_server, f"t-{uuid.uuid4().hex[:12]}")
    store.fs().mkdir(store.bucket)
    yield store
    stop_prefetch_threads()  # before monkeypatch (a fixture this one uses) restores the environment


def versions(gcs: GCS, key: str) -> list[str]:
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in gcs.fs().ls(f"{gcs.bucket}/{key}")]
    return sorted(name for name in names if name != "meta.json")


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[str, str]:
    old = write_fineweb_parquet(tmp_path / "old.parquet", [f"old document {i} " * 20 for i in range(60)])
    new = write_fineweb_parquet(tmp_path / "new.parquet", tiny_corpus(80))
    return str(old), str(new)


def test_prepare_to_gcs_is_inspected_and_read_like_a_local_copy(
    gcs: GCS, tiny_tokenizer: Path, inputs: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url = gcs.url("ds")
    args = ["--input", inputs[1], "--output", url, "--tokenizer", str(tiny_tokenizer), "--chunk-bytes", "4096"]
    assert prepare_main(args) == 0, capsys.readouterr().err
    meta = read_meta(url)
    (version,) = versions(gcs, "ds")
    assert meta["root"] == version and version.startswith("v-")
    listed = {split: sorted(files) for split, files in meta["files"].items()}
    stored = {
        split: sorted(p.rsplit("/", 1)[-1] for p in gcs.fs().ls(f"{gcs.bucket}/ds/{version}/{split}"))
        for split in listed
    }
    assert listed == stored and "index.json" in listed["train"] and len(listed["train"]) > 3  # several chunks
    capsys.readouterr()
    inspect_dataset(url, samples=2, block_size=17)
    assert "--- train block 0 of" in capsys.readouterr().out

    # the same data prepared locally gives the same token stream, read chunk by chunk from the emulator
    from litdata import StreamingDataset, TokensLoader

    from lit_ffn.data import TokenDataModule

    local = prepare_dataset(inputs[1], tmp_path / "local", tokenizer=str(tiny_tokenizer), chunk_bytes=4096)
    assert local["splits"] == meta["splits"]
    module = TokenDataModule(url, seq_len=16, batch_size=4, num_workers=0, cache_dir=str(tmp_path / "cache"))
    module.setup("fit")
    remote = module._dataset("train", shuffle=False)
    here = StreamingDataset(str(tmp_path / "local" / "train"), item_loader=TokensLoader(17))
    assert len(remote) == len(here)
    assert [remote[i].tolist() for i in range(0, len(here), 97)] == [here[i].tolist() for i in range(0, len(here), 97)]


def test_a_fit_streamed_from_gcs_equals_the_local_run(
    tiny_dataset: Path, tiny_tokenizer: Path, gcs: GCS, tmp_path: Path
) -> None:
    """prepare --output gs://… (many chunks) → a 4-step fit streamed from the emulator through the training
    and validation loaders: every batch and loss of the same fit on a local copy."""
    docs = [str(tiny_dataset.parent / "docs.parquet")]
    chunked = {"tokenizer": str(tiny_tokenizer), "val_fraction": 0.1, "chunk_bytes": 65536}
    prepare_dataset(docs, tmp_path / "data", **chunked)
    meta = prepare_dataset(docs, gcs.url("ds"), **chunked)
    assert len(meta["files"]["train"]) > 8  # index.json and many chunks

    def fit(data_dir: str, root: Path, *extra: str) -> list[dict[str, Any]]:
        recorder = ["--trainer.callbacks+=tests.scaleout_helpers.StepRecorder", f"--trainer.callbacks.out_dir={root}"]
        assert cli_main(tiny_fit_args(data_dir, root, *recorder, *extra, steps=4)) == 0  # type: ignore[arg-type]
        return read_records(root, 0)

    expected = fit(str(tmp_path / "data"), tmp_path / "local")
    streamed = fit(gcs.url("ds"), tmp_path / "streamed", f"--data.cache_dir={tmp_path / 'cache'}")
    assert [r["step"] for r in streamed] == [0, 1, 2, 3]
    assert [(r["batch"], r["loss"]) for r in streamed] == [(r["batch"], r["loss"]) for r in expected]


def test_an_existing_dataset_needs_overwrite_and_other_objects_are_never_written_into(
    gcs: GCS, tiny_tokenizer: Path, inputs: tuple[str, str], capsys: pytest.CaptureFixture
) -> None:
    url = gcs.url("ds")
    old = prepare_dataset(inputs[0], url, tokenizer=str(tiny_tokenizer), val_fraction=0.2)
    args = ["--input", inputs[1], "--output", url, "--tokenizer", str(tiny_tokenizer), "--val-fraction", "0.2"]
    assert prepare_main(args) == 2
    err = capsys.readouterr().err
    assert err == f"lit_ffn prepare: error: {url} already holds a dataset: pass --overwrite to replace it\n", err
    assert read_meta(url) == old and versions(gcs, "ds") == [old["root"]]

    assert prepare_main([*args, "--overwrite"]) == 0, capsys.readouterr().err
    new = read_meta(url)
    assert new["inputs"][0]["path"] == inputs[1] and versions(gcs, "ds") == [new["root"]] != [old["root"]]

    gcs.fs().pipe(f"{gcs.bucket}/other/thesis.tex", b"do not touch")
    with pytest.raises(PrepareError, match="holds other objects"):
        prepare_dataset(inputs[1], gcs.url("other"), tokenizer=str(tiny_tokenizer), overwrite=True)
    assert gcs.fs().cat(f"{gcs.bucket}/other/thesis.tex") == b"do not touch"
    with pytest.raises(OutputExistsError):  # the Python API refuses alike
        prepare_dataset(inputs[0], url, tokenizer=str(tiny_tokenizer))


def test_a_missing_bucket_is_one_line_and_no_traceback(
    gcs: GCS, tiny_tokenizer: Path, inputs: tuple[str, str], capsys: pytest.CaptureFixture
) -> None:
    """The emulator answers the upload into a bucket that does not exist with 404 (gcsfs: FileNotFoundError of
    the upload URL): the user reads one line naming the bucket, not gcsfs's logged traceback and litdata's."""
    url = f"gs://no-such-{gcs.bucket}/ds"
    args = ["--input", inputs[0], "--output", url, "--tokenizer", str(tiny_tokenizer)]
    assert prepare_main(args) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        f"lit_ffn prepare: error: bucket 'no-such-{gcs.bucket}' of {url} does not exist (at this endpoint): "
        "check the URL, or create the bucket"
    ), err
    assert all(line.startswith("lit_ffn prepare: ") for line in err.splitlines()), err  # its progress line, then this


def test_storage_options_name_the_emulator_without_the_environment(
    gcs: GCS, tiny_tokenizer: Path, inputs: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    """``--storage-options`` / ``data.storage_options`` in google.cloud.storage.Client's terms (litdata's) reach
    gcsfs too: ``client_options.api_endpoint`` and ``use_auth_w_custom_endpoint=false`` say what
    STORAGE_EMULATOR_HOST would."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    options = {"client_options": {"api_endpoint": gcs.endpoint}, "use_auth_w_custom_endpoint": False}
    url = gcs.url("opts")
    args = ["--input", inputs[1], "--output", url, "--tokenizer", str(tiny_tokenizer), "--chunk-bytes", "4096"]
    assert prepare_main([*args, "--storage-options", json.dumps(options)]) == 0, capsys.readouterr().err
    assert versions(gcs, "opts") == [read_meta(url, options)["root"]]
    (tmp_path / "gcs.json").write_text(json.dumps(options))
    capsys.readouterr()
    assert prepare_main(["--inspect", url, "--samples", "1", "--storage-options", f"@{tmp_path / 'gcs.json'}"]) == 0
    assert "--- train block 0 of" in capsys.readouterr().out

    from lit_ffn.data import TokenDataModule

    module = TokenDataModule(
        url, seq_len=16, batch_size=4, num_workers=0, cache_dir=str(tmp_path / "cache"), storage_options=options
    )
    module.setup("fit")
    batches = iter(module.train_dataloader())
    assert [tuple(next(batches).shape) for _ in range(3)] == [(4, 17)] * 3


def test_litdata_prefetch_builds_its_gcs_store_without_the_emulator(
    gcs: GCS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why LITDATA_ASYNC_CHUNK_PREFETCH=0 (module docstring): litdata's asynchronous chunk prefetch goes
    through obstore, and ``GCPDownloader._get_store`` builds ``GCSStore(bucket, credential_provider=…)``
    from the google client's credentials alone — no base URL, so STORAGE_EMULATOR_HOST is not followed,
    and the client's AnonymousCredentials cannot be refreshed into a token.  When this fails, litdata
    follows the emulator: try the prefetch on again and update docs/data.md."""
    pytest.importorskip("obstore")
    from google.auth.credentials import AnonymousCredentials
    from litdata.streaming.downloader import GCPDownloader

    downloader = GCPDownloader(gcs.url("ds"), str(tmp_path), [])
    assert isinstance(downloader._get_client()._credentials, AnonymousCredentials)
    store = downloader._get_store(gcs.bucket)
    assert "base_url" not in (store.config or {}), store.config  # storage.googleapis.com, not the emulator
