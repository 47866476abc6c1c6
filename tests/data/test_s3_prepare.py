"""``lit_ffn prepare --output s3://bucket/prefix`` against a real S3 API (moto's server): the commit
protocol without rename — meta.json last, naming every file — survives a SIGKILL at any stage, a rerun
completes it, and --overwrite never deletes the old dataset before the new one is committed."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from lit_ffn.data.format import DatasetError, read_meta
from lit_ffn.data.prepare import OutputExistsError, PrepareError, inspect_dataset, prepare_dataset
from lit_ffn.data.prepare.cli import main as prepare_main
from tests.conftest import tiny_corpus, write_fineweb_parquet
from tests.data.s3_helpers import S3
from tests.data.test_prepare import fork_prepare_and_kill


def versions(s3: S3, key: str) -> list[str]:
    return sorted(p.rsplit("/", 1)[-1] for p in s3.fs().ls(f"{s3.bucket}/{key}") if p.rsplit("/", 1)[-1] != "meta.json")


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[str, str]:
    old = write_fineweb_parquet(tmp_path / "old.parquet", [f"old document {i} " * 20 for i in range(60)])
    new = write_fineweb_parquet(tmp_path / "new.parquet", tiny_corpus(80))
    return str(old), str(new)


def test_prepare_to_s3_is_read_by_the_datamodule_and_inspect(
    s3: S3, tiny_tokenizer: Path, inputs: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url = s3.url("ds")
    code = prepare_main(["--input", inputs[1], "--output", url, "--tokenizer", str(tiny_tokenizer)])
    assert code == 0, capsys.readouterr().err
    meta = read_meta(url)
    (version,) = versions(s3, "ds")
    assert meta["root"] == version and version.startswith("v-")
    listed = {split: sorted(files) for split, files in meta["files"].items()}
    stored = {
        split: sorted(p.rsplit("/", 1)[-1] for p in s3.fs().ls(f"{s3.bucket}/ds/{version}/{split}")) for split in listed
    }
    assert listed == stored and "index.json" in listed["train"]
    capsys.readouterr()
    inspect_dataset(url, samples=2, block_size=17)
    assert "--- train block 0 of" in capsys.readouterr().out

    # the same data prepared locally gives the same token stream
    from litdata import StreamingDataset, TokensLoader

    from lit_ffn.data import TokenDataModule

    local = prepare_dataset(inputs[1], tmp_path / "local", tokenizer=str(tiny_tokenizer))
    assert local["splits"] == meta["splits"]
    module = TokenDataModule(url, seq_len=16, cache_dir=str(tmp_path / "cache"))
    module.setup("fit")
    remote = module._dataset("train", shuffle=False)
    here = StreamingDataset(str(tmp_path / "local" / "train"), item_loader=TokensLoader(17))
    assert len(remote) == len(here)
    assert [remote[i].tolist() for i in (0, len(here) - 1)] == [here[i].tolist() for i in (0, len(here) - 1)]


def test_an_existing_dataset_needs_overwrite_and_other_objects_are_never_written_into(
    s3: S3, tiny_tokenizer: Path, inputs: tuple[str, str]
) -> None:
    url = s3.url("ds")
    prepare_dataset(inputs[0], url, tokenizer=str(tiny_tokenizer), val_fraction=0.2)
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        prepare_dataset(inputs[1], url, tokenizer=str(tiny_tokenizer), val_fraction=0.2)
    s3.fs().pipe(f"{s3.bucket}/other/thesis.tex", b"do not touch")
    with pytest.raises(PrepareError, match="holds other objects"):
        prepare_dataset(inputs[1], s3.url("other"), tokenizer=str(tiny_tokenizer), overwrite=True)
    assert s3.fs().cat(f"{s3.bucket}/other/thesis.tex") == b"do not touch"


@pytest.mark.parametrize("stage", ["tokenize", "upload", "commit"])
def test_a_killed_overwrite_leaves_the_old_or_the_new_dataset_and_a_rerun_completes_it(
    s3: S3,
    tiny_tokenizer: Path,
    inputs: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
) -> None:
    local_tmp = tmp_path / "tmp"
    local_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(local_tmp))  # where prepare builds before uploading
    url = s3.url("ds")
    old = prepare_dataset(inputs[0], url, tokenizer=str(tiny_tokenizer), val_fraction=0.2)
    new_args = {"inputs": inputs[1], "output_dir": url, "tokenizer": str(tiny_tokenizer), "val_fraction": 0.2}
    fork_prepare_and_kill(stage, tmp_path / "log", overwrite=True, chunk_bytes=4096, **new_args)

    meta = read_meta(url)  # a reader accepts exactly one complete dataset: the old one, or (committed) the new
    expected_input = inputs[1] if stage == "commit" else inputs[0]
    assert meta["inputs"][0]["path"] == expected_input
    if stage != "commit":
        assert meta == old
    if stage != "tokenize":
        assert len(versions(s3, "ds")) == 2  # the killed run's upload (or the old version) is still there

    prepare_dataset(overwrite=True, **new_args)  # the same command again completes it
    assert read_meta(url)["inputs"][0]["path"] == inputs[1]
    assert versions(s3, "ds") == [read_meta(url)["root"]]  # the old version and the leftovers are gone
    assert list(local_tmp.glob("lit_ffn-prepare-*")) == []  # the killed run's local build is removed by the rerun


def test_a_first_prepare_killed_mid_upload_leaves_nothing_a_reader_accepts(
    s3: S3, tiny_tokenizer: Path, inputs: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url = s3.url("ds")
    args = {"inputs": inputs[1], "output_dir": url, "tokenizer": str(tiny_tokenizer), "chunk_bytes": 4096}
    fork_prepare_and_kill("upload", tmp_path / "log", **args)
    with pytest.raises(DatasetError) as info:
        read_meta(url)
    assert str(info.value) == (
        f"{url} holds no complete dataset (no meta.json: a lit_ffn prepare into it was cut short or is still "
        "running, or it was uploaded in part): rerun the prepare command that writes it"
    )
    prepare_dataset(**args)  # no --overwrite needed: there was no dataset
    assert len(versions(s3, "ds")) == 1


def test_a_file_named_by_meta_that_went_missing_is_refused(
    s3: S3, tiny_tokenizer: Path, inputs: tuple[str, str]
) -> None:
    url = s3.url("ds")
    meta = prepare_dataset(inputs[1], url, tokenizer=str(tiny_tokenizer), chunk_bytes=4096)
    chunk = sorted(name for name in meta["files"]["train"] if name != "index.json")[-1]
    s3.fs().rm(f"{s3.bucket}/ds/{meta['root']}/train/{chunk}")
    with pytest.raises(DatasetError) as info:
        read_meta(url)
    assert str(info.value) == (
        f"{url} is incomplete: 1 of the {len(meta['files']['train'])} train files its meta.json names are missing or "
        f"of another size (first: {chunk}); rerun the lit_ffn prepare command that wrote it"
    )
    assert json.loads(s3.fs().cat(f"{s3.bucket}/ds/meta.json"))["root"] == meta["root"]


def test_storage_options_flag_names_the_endpoint_without_the_environment(
    s3: S3, tiny_tokenizer: Path, inputs: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    """``--storage-options`` (JSON or @file) carries what AWS_ENDPOINT_URL would: prepare and --inspect."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    url, options = s3.url("opts"), json.dumps({"endpoint_url": s3.endpoint})
    args = ["--input", inputs[1], "--output", url, "--tokenizer", str(tiny_tokenizer), "--storage-options", options]
    assert prepare_main(args) == 0, capsys.readouterr().err
    assert read_meta(url, {"endpoint_url": s3.endpoint})["root"].startswith("v-")
    (tmp_path / "s3.json").write_text(options)
    capsys.readouterr()
    assert prepare_main(["--inspect", url, "--samples", "1", "--storage-options", f"@{tmp_path / 's3.json'}"]) == 0
    assert "--- train block 0 of" in capsys.readouterr().out

    for bad, message in [
        ("{endpoint", "--storage-options is not JSON"),
        ('["x"]', "--storage-options must be a JSON object of storage options, got list"),
        (f"@{tmp_path / 'missing.json'}", f"cannot read --storage-options file {tmp_path / 'missing.json'}"),
    ]:
        assert prepare_main(["--inspect", url, "--storage-options", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"lit_ffn prepare: error: {message}"), err
