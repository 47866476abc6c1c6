"""``lit_ffn prepare``: text files -> litdata token chunks, read back the way training reads them.

All inputs are generated here (FineWeb-schema parquet, jsonl, jsonl.gz, txt); nothing is downloaded.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
import unicodedata
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lit_ffn.data.prepare.publish as prepare_module
from lit_ffn.data.prepare import (
    DEFAULT_START_METHOD,
    PAUSE_ENV,
    DatasetError,
    OutputExistsError,
    PrepareError,
    is_val,
    main,
    prepare_dataset,
    read_meta,
    val_threshold,
)
from lit_ffn.data.tokenizer import TokenizerError, load_tokenizer
from lit_ffn.errors import UserError
from tests import conftest

REPO = Path(__file__).resolve().parents[2]
EOS = 151_643
BIG_CHUNKS = 256 * 1024 * 1024  # one chunk per writer: the whole stream reads back as one block
HUGE_DOC = " ".join(f"Sentence {i} of a very long web page, with words and numbers {i * 7}." for i in range(16_000))
VALID_TEXTS = [
    "Plain English prose about feed-forward blocks in transformers.",
    "Emoji 😀👍🏽, CJK 中文字符 日本語のテキスト 한국어, accents naïve café.",
    "A web page quoting the token <|endoftext|> literally, and <|im_start|> too.",
    "Cafe\u0301 written with a combining accent (not NFC).",
    HUGE_DOC,
] + [f"Ordinary document number {i}: the quick brown fox jumps over the lazy dog {i} times." for i in range(40)]
EXPECTED_SKIPS = {"null": 2, "empty": 2, "whitespace": 2, "undecodable": 3, "malformed": 2}


# ---- inputs ---------------------------------------------------------------------------------------


def write_fineweb_parquet(path: Path, texts: list[str | None], row_group_size: int = 8) -> Path:
    """conftest's FineWeb-schema parquet, with small row groups: many work items."""
    return conftest.write_fineweb_parquet(path, texts, row_group_size=row_group_size)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    """Awkward inputs of every format, and the valid documents in the order prepare reads them."""
    root = tmp_path_factory.mktemp("inputs")
    jsonl_texts, gz_texts, parquet_texts = VALID_TEXTS[5:20], VALID_TEXTS[20:30], VALID_TEXTS[:5] + VALID_TEXTS[30:44]
    (root / "a_bad.txt").write_bytes(b"\xff\xfe not UTF-8 \xc3\x28")  # undecodable
    lines = [json.dumps({"text": t, "id": str(i)}) for i, t in enumerate(jsonl_texts)]
    lines[3:3] = [
        "this line is not JSON",  # malformed
        json.dumps({"text": 123}),  # malformed
        json.dumps({"text": None}),  # null
        json.dumps({"text": "\ud800 lone surrogate"}),  # undecodable
        "",  # a blank line: not a row
    ]
    (root / "b.jsonl").write_bytes("\n".join(lines).encode() + b"\n" + b'{"text": "\xff\xfe"}\n')  # undecodable
    with gzip.open(root / "c.jsonl.gz", "wt", encoding="utf-8") as file:
        file.writelines(json.dumps({"text": t}) + "\n" for t in [*gz_texts, ""])  # empty
    rows: list[str | None] = list(parquet_texts)
    rows[2:2] = ["", None, "   \n\t  "]  # empty, null, whitespace
    write_fineweb_parquet(root / "d_fineweb.parquet", rows)
    (root / "e_note.txt").write_text(VALID_TEXTS[44], encoding="utf-8")
    (root / "f_blank.txt").write_text("\n \n", encoding="utf-8")  # whitespace
    (root / "ignored.csv").write_text("text\nnot an input format\n")
    return root, jsonl_texts + gz_texts + parquet_texts + [VALID_TEXTS[44]]


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory) -> tuple[Path, dict]:
    root, _ = corpus
    out = tmp_path_factory.mktemp("prepared") / "ds"
    meta = prepare_dataset(str(root), out, val_fraction=0.3, chunk_bytes=BIG_CHUNKS, batch_rows=4)
    return out, meta


def many_docs_parquet(path: Path, n: int = 400) -> tuple[Path, list[str]]:
    texts = [f"Document {i}: {'lorem ipsum ' * (i % 7)}end of {i}." for i in range(n)]
    return write_fineweb_parquet(path, texts, row_group_size=25), texts


# ---- reading back ---------------------------------------------------------------------------------


def read_tokens(split_dir: Path) -> np.ndarray:
    """The split's whole token stream through StreamingDataset + TokensLoader, as training reads it.

    Blocks never cross chunk boundaries, so a block size dividing every chunk's length (their gcd)
    reads every token exactly once.
    """
    from litdata import StreamingDataset
    from litdata.streaming.item_loader import TokensLoader

    dims = [chunk["dim"] for chunk in json.loads((split_dir / "index.json").read_text())["chunks"]]
    dataset = StreamingDataset(str(split_dir), item_loader=TokensLoader(block_size=math.gcd(*dims)), shuffle=False)
    tokens = np.concatenate([dataset[i].numpy() for i in range(len(dataset))])
    assert tokens.dtype == np.int32 and len(tokens) == sum(dims)
    return tokens


def read_documents(split_dir: Path, eos: int = EOS) -> list[str]:
    """Decode a split's stream into documents; the stream must end with EOS."""
    tokens = read_tokens(split_dir)
    assert tokens[-1] == eos
    tok = load_tokenizer("qwen3")
    ends = np.flatnonzero(tokens == eos)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [tok.decode(tokens[s:e].tolist()) for s, e in zip(starts, ends)]


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def split_of(texts: list[str], fraction: float) -> dict[str, list[str]]:
    threshold = val_threshold(fraction)
    return {
        "train": [nfc(t) for t in texts if not is_val(t.encode(), threshold)],
        "val": [nfc(t) for t in texts if is_val(t.encode(), threshold)],
    }


# ---- round trip, skips, meta ----------------------------------------------------------------------


def test_token_stream_decodes_back_to_the_documents(corpus, prepared):
    _, texts = corpus
    out, _ = prepared
    expected = split_of(texts, 0.3)
    assert expected["train"] and expected["val"]
    # One worker: documents come out in input order (files sorted, rows in order).
    assert read_documents(out / "train") == expected["train"]
    assert read_documents(out / "val") == expected["val"]


def test_literal_special_string_stays_text(prepared):
    out, _ = prepared
    documents = read_documents(out / "train") + read_documents(out / "val")
    assert VALID_TEXTS[2] in documents  # decoded intact, so no EOS id was produced inside it
    tokens = np.concatenate([read_tokens(out / "train"), read_tokens(out / "val")])
    assert int((tokens == EOS).sum()) == len(VALID_TEXTS)  # exactly one EOS per document


def test_skipped_rows_are_counted_by_reason(prepared):
    _, meta = prepared
    assert meta["skipped"] == EXPECTED_SKIPS


def test_meta(corpus, prepared):
    root, _ = corpus
    out, meta = prepared
    assert read_meta(out) == meta == json.loads((out / "meta.json").read_text())
    assert meta["format_version"] == 1
    assert (meta["tokenizer"], meta["vocab_size"], meta["eos_id"], meta["dtype"]) == ("qwen3", 151_669, EOS, "int32")
    for split in ("train", "val"):
        tokens = read_tokens(out / split)
        assert meta["splits"][split] == {"documents": int((tokens == EOS).sum()), "tokens": len(tokens)}
    assert sum(s["documents"] for s in meta["splits"].values()) == len(VALID_TEXTS)
    files = sorted(p for p in root.iterdir() if p.suffix != ".csv")
    assert meta["inputs"] == [{"path": str(p), "bytes": p.stat().st_size} for p in files]
    assert meta["num_inputs"] == len(files) and meta["input_bytes"] == sum(p.stat().st_size for p in files)
    assert meta["lit_ffn_version"]
    assert datetime.fromisoformat(meta["created"]).tzinfo is not None
    assert meta["val_fraction"] == 0.3


def test_split_is_stable_and_disjoint_across_reruns_and_worker_counts(tmp_path):
    path, texts = many_docs_parquet(tmp_path / "many.parquet")
    runs = []
    for workers, batch_rows in ((1, 1024), (2, 7), (2, 1024)):
        out = tmp_path / f"ds-{workers}-{batch_rows}"
        prepare_dataset(str(path), out, val_fraction=0.1, num_workers=workers, batch_rows=batch_rows)
        runs.append({split: read_documents(out / split) for split in ("train", "val")})
    first = runs[0]
    assert not set(first["train"]) & set(first["val"])
    assert Counter(first["train"] + first["val"]) == Counter(texts)
    for run in runs[1:]:
        assert Counter(run["train"]) == Counter(first["train"])
        assert run["val"] == first["val"]  # validation order too does not depend on the workers


def test_val_docs_sets_the_expected_number_of_validation_documents(tmp_path):
    path, _ = many_docs_parquet(tmp_path / "many.parquet", n=2000)
    meta = prepare_dataset(str(path), tmp_path / "ds", val_docs=200)
    assert meta["val_fraction"] == pytest.approx(0.1)
    assert 200 - 45 <= meta["splits"]["val"]["documents"] <= 200 + 45  # binomial(2000, 0.1): sd 13.4


def test_default_val_fraction_keeps_some_validation_documents(tmp_path):
    path, _ = many_docs_parquet(tmp_path / "many.parquet", n=400)
    meta = prepare_dataset(str(path), tmp_path / "ds")
    assert meta["val_fraction"] == 0.1  # 100 docs would be 25%: capped at 10%
    assert 20 <= meta["splits"]["val"]["documents"] <= 60


def test_hf_tokenizer_json(tmp_path, tiny_tokenizer):
    tok_path = tiny_tokenizer  # conftest's byte-level BPE: <|endoftext|> is id 0
    texts = [f"the quick brown fox {i} jumps over <|endoftext|> the lazy dog" for i in range(30)]
    parquet = write_fineweb_parquet(tmp_path / "in.parquet", texts)
    meta = prepare_dataset(str(parquet), tmp_path / "ds", tokenizer=str(tok_path), val_fraction=0.3)
    tok = load_tokenizer(str(tok_path))
    assert (meta["tokenizer"], meta["vocab_size"], meta["eos_id"]) == (str(tok_path), tok.vocab_size, 0)
    stream = np.concatenate([read_tokens(tmp_path / "ds" / split) for split in ("train", "val")])
    assert int((stream == 0).sum()) == len(texts)
    assert stream.max() < tok.vocab_size


@pytest.mark.skipif(DEFAULT_START_METHOD != "fork", reason="forked workers inherit the in-memory file system")
def test_fsspec_urls(tmp_path):
    """fsspec's in-memory file system stands in for hf:// and s3:// (same code path, no network)."""
    import fsspec

    fs = fsspec.filesystem("memory")
    try:
        with fs.open("/lit_ffn_test/a.parquet", "wb") as file:
            pq.write_table(pa.table({"text": [f"remote parquet {i}" for i in range(50)]}), file, row_group_size=10)
        with fs.open("/lit_ffn_test/sub/b.jsonl.gz", "wb") as file:
            file.write(
                gzip.compress("".join(json.dumps({"text": f"remote jsonl {i}"}) + "\n" for i in range(30)).encode())
            )
        meta = prepare_dataset("memory://lit_ffn_test", tmp_path / "ds", val_fraction=0.2, num_workers=2)
    finally:
        fs.rm("/lit_ffn_test", recursive=True)
    assert [entry["path"] for entry in meta["inputs"]] == [
        "memory:///lit_ffn_test/a.parquet",
        "memory:///lit_ffn_test/sub/b.jsonl.gz",
    ]
    documents = read_documents(tmp_path / "ds" / "train") + read_documents(tmp_path / "ds" / "val")
    assert sorted(documents) == sorted(
        [f"remote parquet {i}" for i in range(50)] + [f"remote jsonl {i}" for i in range(30)]
    )


# ---- safe output ----------------------------------------------------------------------------------


def leftovers(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.lit_ffn-*"))


def test_existing_dataset_is_kept_without_overwrite_and_replaced_with_it(tmp_path):
    first = write_fineweb_parquet(tmp_path / "first.parquet", [f"first {i}" for i in range(30)])
    second = write_fineweb_parquet(tmp_path / "second.parquet", [f"second {i}" for i in range(40)])
    out = tmp_path / "ds"
    old = prepare_dataset(str(first), out, val_fraction=0.2)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        prepare_dataset(str(second), out, val_fraction=0.2)
    assert read_meta(out) == old
    new = prepare_dataset(str(second), out, val_fraction=0.2, overwrite=True)
    assert read_meta(out) == new and new["inputs"][0]["path"] == str(second)
    assert sorted(read_documents(out / "train") + read_documents(out / "val")) == sorted(
        f"second {i}" for i in range(40)
    )
    assert leftovers(out) == []


def test_a_dataset_with_its_own_bpe_is_kept_without_overwrite_and_two_builders_both_succeed(tmp_path, monkeypatch):
    """A BPE dataset holds tokenizer.json beside meta.json/train/val: it is a dataset (OutputExistsError,
    which a second concurrent quickstart builder reads as "built meanwhile"), not "not a lit_ffn dataset"."""
    from lit_ffn.data.corpus import ensure_quickstart_dataset

    texts = [f"document number {i} about feed-forward blocks and gates" for i in range(60)]
    first = write_fineweb_parquet(tmp_path / "first.parquet", texts)
    out = tmp_path / "ds"
    meta = prepare_dataset(str(first), out, train_vocab_size=300, val_fraction=0.2)
    assert (out / "tokenizer.json").is_file()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        prepare_dataset(str(first), out, train_vocab_size=300, val_fraction=0.2)
    # the race of `lit_ffn ablate --workers 2` on a fresh checkout: both runs find no dataset and build one;
    # the second to publish finds the first's. Simulated: this builder's first look finds nothing, then it
    # builds (from the tiny corpus, for speed) and its publish finds the dataset already there.
    import lit_ffn.data.corpus as corpus

    looks = []

    def read_meta_missing_at_first(path):
        looks.append(path)
        if len(looks) == 1:
            raise corpus.DatasetError("not there yet")
        return read_meta(path)

    real_check_output = corpus.check_output

    def check_output_empty_at_first(path, overwrite):
        if len(looks) > 1:
            real_check_output(path, overwrite)

    monkeypatch.setattr(corpus, "read_meta", read_meta_missing_at_first)
    monkeypatch.setattr(corpus, "check_output", check_output_empty_at_first)
    monkeypatch.setattr(
        corpus, "write_quickstart_parquet", lambda path, tok: len(write_fineweb_parquet(path, texts) and texts)
    )
    assert ensure_quickstart_dataset(out, train_vocab_size=300) == meta
    assert len(looks) == 2 and leftovers(out) == []


def test_an_empty_output_directory_is_used(tmp_path):
    path, _ = many_docs_parquet(tmp_path / "in.parquet", n=50)
    (tmp_path / "ds").mkdir()
    prepare_dataset(str(path), tmp_path / "ds", val_fraction=0.2)
    assert read_meta(tmp_path / "ds")["splits"]["train"]["documents"] > 0


def test_a_directory_that_is_not_a_dataset_is_never_replaced(tmp_path):
    path, _ = many_docs_parquet(tmp_path / "in.parquet", n=50)
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    with pytest.raises(PrepareError, match="not a lit_ffn dataset"):
        prepare_dataset(str(path), out, val_fraction=0.2, overwrite=True)
    assert (out / "thesis.tex").read_text() == "do not delete"


def fork_prepare_and_kill(stage: str, log: Path, **kwargs) -> None:
    """Run prepare_dataset in a forked child that pauses at ``stage``, then SIGKILL its process group.

    Forking (instead of a fresh interpreter) skips re-importing torch; the child gets its own
    process group so that litdata's worker processes die with it.
    """
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.setsid()
            os.dup2(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND), 2)
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # pytest replaced sys.stderr
            os.environ[PAUSE_ENV] = stage
            prepare_dataset(**kwargs)
            code = 0
        except BaseException:  # noqa: BLE001 - a forked child must reach os._exit; the log shows why
            traceback.print_exc()
        finally:
            os._exit(code)
    try:
        wait_for_line(log, f"paused at {stage}", pid)
    finally:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def wait_for_line(log: Path, text: str, pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        finished, status = os.waitpid(pid, os.WNOHANG) if pid else (0, 0)
        assert not finished, f"prepare exited (status {status}) before {text!r}:\n{log.read_text()}"
        time.sleep(0.05)
    raise AssertionError(f"prepare did not reach {text!r}:\n{log.read_text()}")


@pytest.mark.parametrize(
    ("stage", "atomic_exchange"),
    [
        ("tokenize", True),
        ("val", True),
        ("meta", True),
        ("publish", True),
        ("publish", False),  # systems without renameat2: the old dataset is moved aside first
    ],
)
def test_killed_overwrite_leaves_the_old_or_the_new_dataset(tmp_path, monkeypatch, stage, atomic_exchange):
    if not atomic_exchange:
        monkeypatch.setattr(prepare_module, "_exchange", lambda a, b: False)  # inherited by the forked child
    old_input = write_fineweb_parquet(tmp_path / "old.parquet", [f"old document {i}" for i in range(40)])
    new_input, _ = many_docs_parquet(tmp_path / "new.parquet", n=200)
    out = tmp_path / "ds"
    old = prepare_dataset(str(old_input), out, val_fraction=0.2)

    fork_prepare_and_kill(
        stage,
        tmp_path / "log",
        inputs=str(new_input),
        output_dir=out,
        val_fraction=0.2,
        overwrite=True,
        num_workers=2,
        batch_rows=5,
        chunk_bytes=4096,
    )

    if stage == "publish":  # killed after the swap: the new dataset is complete and in place
        assert read_meta(out)["inputs"][0]["path"] == str(new_input)
    else:
        assert read_meta(out) == old
        assert sorted(read_documents(out / "train") + read_documents(out / "val")) == sorted(
            f"old document {i}" for i in range(40)
        )
    remains = leftovers(out)
    assert remains, "the killed run's temporary directory should still be there"
    for path in remains:
        with pytest.raises(DatasetError):
            read_meta(path)
    # The next prepare removes what dead runs left behind.
    prepare_dataset(str(old_input), out, val_fraction=0.2, overwrite=True)
    assert leftovers(out) == []


def test_killed_first_prepare_leaves_no_dataset(tmp_path):
    path, _ = many_docs_parquet(tmp_path / "in.parquet", n=100)
    out = tmp_path / "ds"
    fork_prepare_and_kill("meta", tmp_path / "log", inputs=str(path), output_dir=out, val_fraction=0.2)
    assert not out.exists()
    with pytest.raises(DatasetError, match="no prepared dataset"):
        read_meta(out)
    assert leftovers(out)
    assert all(not (p / "meta.json").exists() for p in leftovers(out))


def test_sigkill_of_the_cli_mid_tokenization(tmp_path):
    """The real command in a fresh interpreter, killed with SIGKILL while its workers write chunks."""
    old_input = write_fineweb_parquet(tmp_path / "old.parquet", [f"old document {i}" for i in range(40)])
    new_input, _ = many_docs_parquet(tmp_path / "new.parquet", n=200)
    out = tmp_path / "ds"
    old = prepare_dataset(str(old_input), out, val_fraction=0.2)
    log = tmp_path / "log"
    env = {**os.environ, PAUSE_ENV: "tokenize", "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [
        sys.executable,
        "-c",
        "import sys; from lit_ffn.data.prepare import main; sys.exit(main())",
        "--input",
        str(new_input),
        "--output",
        str(out),
        "--overwrite",
        "--num-workers",
        "2",
    ]
    with open(log, "wb") as stderr:
        process = subprocess.Popen(command, env=env, stderr=stderr, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_line(log, "paused at tokenize", 0, timeout=120)
        process.kill()  # SIGKILL to the command itself, as an OOM killer or `kill -9` would
        process.wait()
        assert read_meta(out) == old
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # its orphaned litdata workers


# ---- errors ---------------------------------------------------------------------------------------


def assert_cli_error(capsys, argv: list[str], *fragments: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lit_ffn prepare: error: ") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_user_errors_are_one_line(tmp_path, capsys):
    no_text = tmp_path / "no_text.parquet"
    pq.write_table(pa.table({"content": ["a"]}), no_text)
    (tmp_path / "no_text.jsonl").write_text(json.dumps({"body": "a"}) + "\n")
    (tmp_path / "data.csv").write_text("text\na\n")
    good, _ = many_docs_parquet(tmp_path / "good.parquet", n=20)
    out = str(tmp_path / "out")
    assert_cli_error(capsys, ["--input", str(tmp_path / "missing"), "--output", out], "input not found")
    assert_cli_error(capsys, ["--input", str(tmp_path / "*.nothing"), "--output", out], "no .parquet")
    assert_cli_error(capsys, ["--input", str(no_text), "--output", out], "no 'text' column", "content")
    assert_cli_error(capsys, ["--input", str(tmp_path / "no_text.jsonl"), "--output", out], "no 'text' field")
    assert_cli_error(capsys, ["--input", str(tmp_path / "data.csv"), "--output", out], "unsupported input file")
    assert_cli_error(capsys, ["--input", str(good), "--output", out, "--tokenizer", "gpt2"], "unknown tokenizer")
    assert_cli_error(capsys, ["--input", str(good), "--output", out, "--val-fraction", "1.5"], "--val-fraction")
    assert_cli_error(capsys, ["--input", str(good), "--output", out, "--val-docs", "20"], "no training documents")
    assert_cli_error(capsys, ["--input", str(good), "--output", "nosuch://bucket/ds"], "nosuch://bucket/ds")
    assert_cli_error(capsys, ["--output", out], "--input")
    assert not Path(out).exists() and not leftovers(Path(out))


def test_a_split_that_would_be_empty_is_an_error(tmp_path):
    path = write_fineweb_parquet(tmp_path / "in.parquet", ["only one document", "", None])
    with pytest.raises(PrepareError, match="split is empty"):
        prepare_dataset(str(path), tmp_path / "ds", val_fraction=0.01)
    with pytest.raises(PrepareError, match="no documents left"):
        prepare_dataset(str(write_fineweb_parquet(tmp_path / "void.parquet", ["", None, " "])), tmp_path / "ds")
    assert not (tmp_path / "ds").exists() and not leftovers(tmp_path / "ds")


def test_tokenizer_error_is_raised_before_any_work(tmp_path):
    path, _ = many_docs_parquet(tmp_path / "in.parquet", n=20)
    with pytest.raises(TokenizerError):
        prepare_dataset(str(path), tmp_path / "ds", tokenizer="no-such-tokenizer")


def test_read_meta_rejects_what_is_not_a_complete_dataset(tmp_path, prepared):
    _, meta = prepared
    hint = "lit_ffn prepare --input <files> --output"
    for path in (tmp_path / "missing", tmp_path):
        with pytest.raises(DatasetError, match="no prepared dataset") as info:
            read_meta(path)
        assert hint in str(info.value) and "\n" not in str(info.value)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(DatasetError, match="format version 99"):
        read_meta(broken)
    (broken / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="incomplete"):
        read_meta(broken)  # no train/ val/
    (broken / "meta.json").write_text("{truncated")
    with pytest.raises(DatasetError, match="cannot read"):
        read_meta(broken)
    assert issubclass(DatasetError, ValueError)


# ---- inspect ----------------------------------------------------------------------------------------


def test_inspect_prints_meta_and_decoded_blocks(prepared, capsys):
    out, _ = prepared
    assert main(["--inspect", str(out), "--samples", "2", "--block-size", "64"]) == 0
    printed = capsys.readouterr().out
    assert '"tokenizer": "qwen3"' in printed and '"vocab_size": 151669' in printed
    assert printed.count("--- train block") == 2 and printed.count("--- val block") == 2
    assert "(64 tokens)" in printed
    assert "⟨eos⟩" in printed
    assert main(["--inspect", str(out.parent / "nothing")]) == 2


# ---- quickstart corpus --------------------------------------------------------------------------


def test_quickstart_corpus(tmp_path, monkeypatch):
    """Built as ``TokenDataModule.prepare_data`` builds it: in a fresh interpreter, never forking this one."""
    from lit_ffn.data.corpus import (
        ensure_quickstart_dataset,
        ensure_quickstart_dataset_isolated,
        write_quickstart_parquet,
    )

    def no_fork() -> int:
        raise AssertionError("the calling process forked")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fork", no_fork)
        meta = ensure_quickstart_dataset_isolated(tmp_path / "qs")
    assert read_meta(tmp_path / "qs") == meta
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    assert train["documents"] + val["documents"] > 1500
    assert 300_000 < train["tokens"] + val["tokens"] < 700_000
    assert 0.03 < val["documents"] / (train["documents"] + val["documents"]) < 0.08
    assert val["tokens"] > 20 * 257  # enough validation blocks of 256 tokens
    # A second call finds the dataset and does not rebuild it.
    assert ensure_quickstart_dataset(tmp_path / "qs") == meta

    rows = write_quickstart_parquet(tmp_path / "qs.parquet")
    assert "antigravity" not in sys.modules and "this" not in sys.modules  # parsed, never imported
    table = pq.read_table(tmp_path / "qs.parquet")
    assert table.column_names == [
        "text",
        "id",
        "dump",
        "url",
        "date",
        "file_path",
        "language",
        "language_score",
        "token_count",
    ]
    assert table.num_rows == rows == train["documents"] + val["documents"]
    texts = table.column("text").to_pylist()
    assert len(set(texts)) == rows and all(len(t) > 100 for t in texts)
    assert sum(table.column("token_count").to_pylist()) + rows == train["tokens"] + val["tokens"]


def test_quickstart_build_errors_come_back_as_one_line(tmp_path):
    from lit_ffn.data.corpus import ensure_quickstart_dataset_isolated

    (tmp_path / "a_file").write_text("not a directory")
    with pytest.raises(UserError, match="exists and is not a directory") as info:
        ensure_quickstart_dataset_isolated(tmp_path / "a_file")
    assert "\n" not in str(info.value) and str(tmp_path / "a_file") in str(info.value)


def test_prepare_leaves_the_callers_start_method_alone(tmp_path):
    """litdata's optimize() sets the interpreter-wide start method; prepare puts the caller's back."""
    import multiprocessing

    path, _ = many_docs_parquet(tmp_path / "in.parquet", n=30)
    before = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("forkserver", force=True)
    try:
        prepare_dataset(str(path), tmp_path / "ds", val_fraction=0.2, start_method="fork")
        assert multiprocessing.get_start_method(allow_none=True) == "forkserver"
    finally:
        multiprocessing.set_start_method(before, force=True)
