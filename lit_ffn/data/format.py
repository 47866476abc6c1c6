"""The on-disk format of a prepared dataset, and reading its ``meta.json``.

``lit_ffn prepare`` writes, and :class:`~lit_ffn.data.datamodule.TokenDataModule` reads::

    DIR/train/       litdata optimized dataset of int32 token ids (TokensLoader)
    DIR/val/         the same for the validation split
    DIR/meta.json    written last; see :func:`read_meta`
    DIR/tokenizer.json   only with ``prepare --train-tokenizer``: the vocabulary, trained on train/ only

``meta.json`` also holds the unigram reference line (``unigram_val_loss``, ``unigram_smoothing``;
:func:`unigram_reference`).

On an object store (``lit_ffn prepare --output s3://bucket/prefix``) nothing can be renamed, so the
commit point is ``meta.json`` itself, written last (one PUT replaces an object whole)::

    PREFIX/meta.json            names the version directory ("root") and every file of it ("files")
    PREFIX/<version>/train/     index.json + chunk-*.bin
    PREFIX/<version>/val/

A reader accepts the dataset only when ``meta.json`` exists and every file it names exists with the
size it names; each prepare writes a new ``<version>``, so a reader never sees old and new files mixed.

Readers import this module, never the writer (:mod:`lit_ffn.data.prepare`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lit_ffn.data.remote import fsspec_options, limit_retries, remote_error
from lit_ffn.errors import UserError, first_line

FORMAT = "lit_ffn-tokens"
FORMAT_VERSION = 1
DTYPE = "int32"  # Qwen's 151,669 ids do not fit uint16
SPLITS = ("train", "val")
META_FILE = "meta.json"


class DatasetError(UserError):
    """A directory holds no complete prepared dataset; the message is one line."""


def filesystem(
    url: str, error: type[UserError] = UserError, storage_options: dict[str, Any] | None = None
) -> tuple[Any, str]:
    """fsspec filesystem and path for a local path or URL; ``error`` (one line) when fsspec has none.

    ``storage_options`` in litdata's convention (:mod:`lit_ffn.data.remote`)."""
    import fsspec.core

    try:
        fs, path = fsspec.core.url_to_fs(os.path.expanduser(url), **fsspec_options(str(url), storage_options))
    except (ImportError, ValueError) as exc:  # "Install s3fs to access S3", "Protocol not known: foo"
        raise error(f"cannot read {url}: {first_line(exc)}") from exc
    return limit_retries(fs), path


def read_meta(data_dir: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The meta of the complete dataset at ``data_dir`` (a local path or an fsspec URL).

    Raises:
        DatasetError: ``data_dir`` holds no complete dataset of a format this version reads, or its
            object store cannot be read (one line: unreachable, access denied, no such bucket).
    """
    location = str(data_dir)
    missing = DatasetError(_missing_dataset_message(location))
    try:
        fs, path = filesystem(location, _NoFilesystem, storage_options)
        with fs.open(f"{path.rstrip('/')}/meta.json", "rb") as file:
            meta = json.loads(file.read().decode("utf-8"))
    except _NoFilesystem:
        raise missing from None
    except Exception as exc:  # object-store clients raise their own types; re-raised below unless known
        remote = remote_error(location, exc)
        if remote is not None:
            raise DatasetError(remote) from None
        if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
            if "://" in location and _holds_objects(fs, path):
                raise DatasetError(
                    f"{location} holds no complete dataset (no meta.json: a lit_ffn prepare into it was cut short "
                    "or is still running, or it was uploaded in part): rerun the prepare command that writes it"
                ) from None
            raise missing from None
        if isinstance(exc, (OSError, ValueError)):
            raise DatasetError(f"cannot read {location}/meta.json: {first_line(exc)}") from exc
        raise
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DatasetError(f"{location}/meta.json is not a lit_ffn dataset meta: prepare the data again")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{location} has dataset format version {meta.get('format_version')}, this lit_ffn reads "
            f"{FORMAT_VERSION}: prepare the data again with --overwrite"
        )
    for split in SPLITS:
        if "files" in meta:
            _check_files(fs, location, split_dir(path, meta, split), split, meta["files"].get(split) or {})
        elif not fs.exists(f"{path.rstrip('/')}/{split}/index.json"):
            raise DatasetError(f"{location} is incomplete (no {split}/index.json): prepare it again with --overwrite")
    return meta


def split_dir(root: str, meta: dict[str, Any], split: str) -> str:
    """Where ``split`` of the dataset at ``root`` lives: ``root/split``, or ``root/<version>/split`` for a
    dataset whose meta names a version directory (object-store output)."""
    version = meta.get("root")
    return f"{root.rstrip('/')}/{version}/{split}" if version else f"{root.rstrip('/')}/{split}"


def _check_files(fs: Any, location: str, directory: str, split: str, files: dict[str, int]) -> None:
    """Every file ``meta.json`` names for ``split`` exists with its size (one listing per split)."""
    if "index.json" not in files:
        raise DatasetError(f"{location}/meta.json names no {split}/index.json: prepare the data again")
    try:
        listing = {
            entry["name"].rstrip("/").rsplit("/", 1)[-1]: entry["size"] for entry in fs.ls(directory, detail=True)
        }
    except FileNotFoundError:
        listing = {}
    bad = sorted(name for name, size in files.items() if listing.get(name) != size)
    if bad:
        raise DatasetError(
            f"{location} is incomplete: {len(bad)} of the {len(files)} {split} files its meta.json names are missing "
            f"or of another size (first: {bad[0]}); rerun the lit_ffn prepare command that wrote it"
        )


def _holds_objects(fs: Any, path: str) -> bool:
    try:
        return bool(fs.ls(path.rstrip("/")))
    except (OSError, ValueError):
        return False


def _missing_dataset_message(location: str) -> str:
    """Where no dataset is: how to make one there — or next to it, when ``location`` is a directory that
    holds other things (``lit_ffn prepare`` never writes into such a directory)."""
    local = Path(location)
    other = (
        "://" not in location and local.is_dir() and any(p.name not in {META_FILE, *SPLITS} for p in local.iterdir())
    )
    if other:
        target = local / "dataset"
        return (
            f"no prepared dataset at {location}, which holds other files that prepare never replaces: create one "
            f"with `lit_ffn prepare --input <files> --output {target}` and set data.data_dir={target}"
        )
    return f"no prepared dataset at {location}: create it with `lit_ffn prepare --input <files> --output {location}`"


def unigram_reference(meta: dict[str, Any]) -> float | None:
    """Nats per validation token of the training split's add-α unigram model (``meta["unigram_val_loss"]``).

    See :mod:`lit_ffn.data.prepare.unigram` for the exact definition; None for datasets prepared before
    lit_ffn computed it (prepare them again to get it).
    """
    value = meta.get("unigram_val_loss")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def tokenizer_spec(data_dir: str, meta: dict[str, Any]) -> str:
    """What :func:`~lit_ffn.data.tokenizer.load_tokenizer` needs to load the tokenizer of a dataset.

    A dataset that ships its own ``tokenizer.json`` (``meta["tokenizer_file"]``, from
    ``prepare --train-tokenizer``) gives that file's path (a remote one is copied to a local cache first,
    named by its SHA-256); any other gives ``meta["tokenizer"]`` (``"qwen3"`` or the path prepare was given).
    """
    file = meta.get("tokenizer_file")
    if not file:
        return str(meta.get("tokenizer"))
    location = resolve_data_dir(str(data_dir)).fsspec.rstrip("/")
    if "://" not in location:
        return str(Path(location) / file)
    import hashlib
    import tempfile

    fs, path = filesystem(location)
    data = fs.cat_file(f"{path}/{file}")
    local = Path(tempfile.gettempdir()) / "lit_ffn-tokenizers" / f"{hashlib.sha256(data).hexdigest()}.json"
    if not local.exists():
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(data)
        os.replace(partial, local)  # atomic: a reader never sees half a file
    return str(local)


class _NoFilesystem(UserError):
    """fsspec cannot open the location: to the reader, there is no dataset there."""


# ------------------------------------------------------------------ where a dataset lives
#: URL prefixes litdata streams chunks from (``local:`` is litdata's "remote" local directory: chunks are
#: copied into the cache like downloads, which tests the remote code path offline).
REMOTE_PREFIXES = ("s3://", "gs://", "azure://", "local:")
#: The same locations as fsspec spells them, for ``meta.json`` (adlfs registers ``az://``, not ``azure://``).
_FSSPEC_PREFIX = {"azure://": "az://", "local:": ""}


class DataLocation:
    """A ``data_dir`` as litdata and fsspec each need it.

    Attributes:
        litdata: the root to give :class:`~litdata.StreamingDataset` (a local path or a remote URL).
        fsspec: the same root for :func:`read_meta`.
        remote: whether litdata downloads chunks into its cache.
    """

    def __init__(self, litdata: str, fsspec: str, remote: bool) -> None:
        self.litdata, self.fsspec, self.remote = litdata, fsspec, remote

    def split(self, split: str, meta: dict[str, Any] | None = None) -> str:
        """Where litdata reads ``split`` (``meta``: the dataset's, for object-store output's version directory)."""
        return split_dir(self.litdata, meta or {}, split)


def resolve_data_dir(data_dir: str) -> DataLocation:
    """Check ``data_dir`` and spell it for litdata and fsspec.

    Local paths and ``file://`` URLs are read in place; ``s3://``, ``gs://``, ``azure://`` (credentials
    from the environment, as boto3 / google-auth / azure-identity find them) and ``local:/path`` are
    streamed through litdata's cache (``data.cache_dir``).

    Raises:
        UserError: an ``hf://`` URL (litdata streams only raw parquet from the Hub) or another protocol.
    """
    data_dir = str(data_dir)
    if data_dir.startswith("file://"):
        path = data_dir[len("file://") :]
        return DataLocation(path, path, remote=False)
    for prefix in REMOTE_PREFIXES:
        if data_dir.startswith(prefix):
            fsspec_root = _FSSPEC_PREFIX.get(prefix, prefix) + data_dir[len(prefix) :]
            return DataLocation(data_dir, fsspec_root, remote=True)
    if data_dir.startswith("hf://"):
        raise UserError(
            f"data.data_dir={data_dir}: litdata streams only raw parquet from the Hugging Face Hub, not prepared "
            "token chunks; download the prepared dataset, or upload it to s3:// or gs://"
        )
    if "://" in data_dir:
        raise UserError(
            f"data.data_dir={data_dir}: unsupported protocol; use a local path, file://, {', '.join(REMOTE_PREFIXES)}"
        )
    return DataLocation(data_dir, data_dir, remote=False)
