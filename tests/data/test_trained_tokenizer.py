"""``prepare --train-tokenizer`` (issue 22): a BPE fitted to the training split only, deterministic, used by
fit / generate / export; the unigram reference line in ``meta.json``, checked against an independent count."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lit_ffn.cli import main
from lit_ffn.data.format import read_meta, tokenizer_spec, unigram_reference
from lit_ffn.data.prepare import is_val, prepare_dataset, val_threshold
from lit_ffn.data.prepare.bpe import MIN_VOCAB_SIZE, train_bpe
from lit_ffn.data.tokenizer import load_tokenizer
from tests.conftest import TINY_VOCAB, tiny_corpus, tiny_fit_args, write_fineweb_parquet
from tests.data.test_prepare import read_tokens

REPO = Path(__file__).resolve().parents[2]
FRACTION = 0.2
#: a word that only validation documents contain, often enough that any BPE trained on them learns it
MARKER = " zyxwquv"


def corpus_with_val_marker() -> list[str]:
    """The tiny corpus, with :data:`MARKER` repeated in every document the hash split sends to validation."""
    threshold = val_threshold(FRACTION)
    docs = []
    for text in tiny_corpus(200):
        marked = text + MARKER * 40
        docs.append(marked if is_val(marked.encode(), threshold) else text)
    assert sum(MARKER in d for d in docs) >= 20 and sum(MARKER not in d for d in docs) >= 100
    return docs


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("trained")
    parquet = write_fineweb_parquet(root / "docs.parquet", corpus_with_val_marker())
    out = root / "data"
    meta = prepare_dataset([str(parquet)], out, val_fraction=FRACTION, train_vocab_size=TINY_VOCAB)
    return out, meta


def marker_tokens(tokenizer_json: Path) -> list[str]:
    """Vocabulary entries made of the marker's letters only and at least 4 long (byte-level: 'Ġ' is a space)."""
    vocab = json.loads(tokenizer_json.read_text())["model"]["vocab"]
    return [t for t in vocab if len(t.strip("Ġ")) >= 4 and set(t.strip("Ġ")) <= set(MARKER.strip())]


def test_the_dataset_ships_its_tokenizer_and_meta_says_so(trained) -> None:
    out, meta = trained
    assert read_meta(out) == meta
    assert (out / "tokenizer.json").is_file()
    assert meta["tokenizer"] == meta["tokenizer_file"] == "tokenizer.json" and meta["vocab_size"] == TINY_VOCAB
    assert meta["tokenizer_training"]["trained_on"] == "train split only"
    assert meta["tokenizer_training"]["documents"] == meta["splits"]["train"]["documents"]
    tok = load_tokenizer(tokenizer_spec(str(out), meta))
    assert tok.vocab_size == TINY_VOCAB and tok.eos_id == meta["eos_id"] == 0
    assert tok.encode("a <|endoftext|> b").count(0) == 0  # the EOS is special: literal text never becomes it
    tokens = np.concatenate([read_tokens(out / "train"), read_tokens(out / "val")])
    assert tokens.max() < TINY_VOCAB and int((tokens == 0).sum()) == sum(
        s["documents"] for s in meta["splits"].values()
    )


def test_the_tokenizer_never_sees_validation_documents(trained, tmp_path: Path) -> None:
    out, _ = trained
    assert marker_tokens(out / "tokenizer.json") == []
    # the control: the same trainer on all documents, validation ones included, learns the marker
    train_bpe(iter(corpus_with_val_marker()), TINY_VOCAB, tmp_path / "all.json")
    assert marker_tokens(tmp_path / "all.json")


def test_training_is_deterministic_across_runs_and_processes(trained, tmp_path: Path) -> None:
    out, _ = trained
    parquet = write_fineweb_parquet(tmp_path / "docs.parquet", corpus_with_val_marker())
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-m", "lit_ffn.cli", "prepare", "--input", str(parquet), "--output", str(tmp_path / "again"),
         "--val-fraction", str(FRACTION), "--train-tokenizer", "--vocab-size", str(TINY_VOCAB)],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    assert (tmp_path / "again" / "tokenizer.json").read_bytes() == (out / "tokenizer.json").read_bytes()
    prepare_dataset([str(parquet)], tmp_path / "other", val_fraction=FRACTION, train_vocab_size=TINY_VOCAB + 64)
    assert (tmp_path / "other" / "tokenizer.json").read_bytes() != (out / "tokenizer.json").read_bytes()


def independent_unigram(train: np.ndarray, val: np.ndarray, vocab: int, alpha: float) -> float:
    """Σ over validation tokens of −ln((c_t + α)/(N + αV)), one token at a time from Counter-style counts."""
    counts: dict[int, int] = {}
    for token in train.tolist():
        counts[token] = counts.get(token, 0) + 1
    total = len(train) + alpha * vocab
    return -sum(math.log((counts.get(t, 0) + alpha) / total) for t in val.tolist()) / len(val)


@pytest.mark.parametrize("kind", ["trained", "qwen3"])
def test_the_unigram_reference_equals_an_independent_count(trained, tmp_path: Path, kind: str) -> None:
    if kind == "trained":
        out, meta = trained
    else:
        parquet = write_fineweb_parquet(tmp_path / "docs.parquet", tiny_corpus(120), row_group_size=16)
        out = tmp_path / "qwen"
        meta = prepare_dataset([str(parquet)], out, val_fraction=FRACTION, num_workers=2)  # two workers' counts
    train, val = read_tokens(out / "train"), read_tokens(out / "val")
    expected = independent_unigram(train, val, meta["vocab_size"], 0.01)
    assert meta["unigram_smoothing"] == 0.01
    assert meta["unigram_val_loss"] == pytest.approx(expected, rel=1e-9)
    assert unigram_reference(meta) == meta["unigram_val_loss"]
    uniform = math.log(meta["vocab_size"])
    assert 1.0 < meta["unigram_val_loss"] < uniform  # frequencies tell something, not everything


def test_old_datasets_have_no_reference() -> None:
    assert unigram_reference({"format": "lit_ffn-tokens"}) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train-tokenizer", "--vocab-size", "abc"], "--vocab-size must be a positive integer, got 'abc'"),
        (["--train-tokenizer", "--vocab-size", "-3"], "--vocab-size must be a positive integer, got -3"),
        (["--train-tokenizer", "--vocab-size", "0"], "--vocab-size must be a positive integer, got 0"),
        (["--train-tokenizer", "--vocab-size", "200"], f"use at least {MIN_VOCAB_SIZE}"),
        (["--train-tokenizer", "--vocab-size", "100000"], "larger than the training split can support"),
        (["--train-tokenizer", "--vocab-size", "512", "--tokenizer", "qwen3"], "drop --tokenizer"),
        (["--train-tokenizer"], "--train-tokenizer needs --vocab-size"),
        (["--vocab-size", "512"], "add --train-tokenizer"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    parquet = write_fineweb_parquet(tmp_path / "docs.parquet", tiny_corpus(40))
    out = tmp_path / "out"
    assert main(["prepare", "--input", str(parquet), "--output", str(out), *args]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lit_ffn prepare: error:")]
    assert "Traceback" not in err and len(lines) == 1 and message in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.parquet"]  # no output, no staging leftovers


def test_fit_generate_and_export_use_the_datasets_tokenizer(trained, tmp_path: Path, capsys) -> None:
    transformers = pytest.importorskip("transformers")
    out, meta = trained
    capsys.readouterr()
    assert main(tiny_fit_args(out, tmp_path, steps=2)) == 0
    summary = capsys.readouterr()
    reference = f"  unigram    {meta['unigram_val_loss']:.4f} (training-split token frequencies, docs/data.md): "
    assert reference + "NOT BEATEN" in summary.out + summary.err  # 2 steps learn nothing past frequencies
    run = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run)).Reload()
    logged = [(e.step, e.value) for e in events.Scalars("val/unigram_reference")]
    assert logged and all(v == pytest.approx(meta["unigram_val_loss"]) for _, v in logged)
    assert main(["generate", "--ckpt", str(run), "--prompt", "The list", "--max-new-tokens", "5"]) == 0
    assert "The list" in capsys.readouterr().out
    assert main(["export", "--ckpt", str(run), "--out", str(tmp_path / "hf")]) == 0
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    tok = load_tokenizer(tokenizer_spec(str(out), meta))
    for text in (tiny_corpus(1)[0], "The list type\n\n  def f(x):\treturn x ** 2  # ünïcode"):
        assert auto(text)["input_ids"] == tok.encode(text)
        assert auto.decode(tok.encode(text)) == text
    assert auto.eos_token_id == tok.eos_id == 0


def test_a_model_vocabulary_that_does_not_match_is_one_line(trained, tmp_path: Path, capsys) -> None:
    out, _ = trained
    for size in (TINY_VOCAB - 1, TINY_VOCAB + 1):
        assert main(tiny_fit_args(out, tmp_path, f"--model.vocab_size={size}", steps=1)) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if "error:" in line]
        assert len(lines) == 1 and f"set model.vocab_size={TINY_VOCAB}" in lines[0], err


def test_the_summary_says_by_how_much_the_reference_is_beaten() -> None:
    from lit_ffn.training.summary import _reference_lines

    meta = {"unigram_val_loss": 6.5}
    assert _reference_lines(meta, 5.25) == [
        "  unigram    6.5000 (training-split token frequencies, docs/data.md): beaten by 1.25 nats"
    ]
    assert "NOT BEATEN" in _reference_lines(meta, 6.5)[0] and _reference_lines({}, 1.0) == []
