"""Tokenizers: the offline Qwen3 vocabulary and user tokenizer.json files (no network)."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from lit_ffn.data.tokenizer import QWEN3_SPECIAL_TOKENS, TokenizerError, load_tokenizer
from tests.conftest import train_tiny_tokenizer

QWEN3_VOCAB = 151_669  # 151,643 BPE ranks + 26 special tokens (Qwen3's tokenizer_config.json)
EOS = 151_643
SAMPLES = [
    "Hello world",
    "Größe, naïve café — «quotes» and emoji 😀👍🏽",
    "中文字符和日本語のテキスト、한국어도",
    "  leading spaces, tabs\tand\nnew lines\r\n",
    "code: def f(x):\n    return x ** 2  # comment",
]


@pytest.fixture(scope="module")
def qwen():
    return load_tokenizer("qwen3")


def test_qwen3_vocabulary(qwen):
    assert qwen.name == "qwen3"
    assert qwen.vocab_size == QWEN3_VOCAB
    assert qwen.eos_id == EOS
    assert qwen.encode("Hello world") == [9707, 1879]
    # Special ids as in Qwen3's tokenizer_config.json: <|endoftext|> 151643 ... </think> 151668.
    specials = qwen._encoding._special_tokens
    assert specials["<|endoftext|>"] == 151_643
    assert specials["<|im_end|>"] == 151_645
    assert specials["<think>"] == 151_667
    assert specials["</think>"] == 151_668
    assert max(specials.values()) + 1 == qwen.vocab_size == 151_643 + len(QWEN3_SPECIAL_TOKENS)


@pytest.mark.parametrize("spec", ["Qwen/Qwen3-0.6B", "qwen3", "QWEN3", "Qwen/Qwen2.5-7B-Instruct", "qwen2"])
def test_qwen_model_names_share_the_vocabulary(spec):
    tok = load_tokenizer(spec)
    assert (tok.name, tok.vocab_size, tok.eos_id) == ("qwen3", QWEN3_VOCAB, EOS)


def test_literal_special_token_string_stays_text(qwen):
    for literal in ("<|endoftext|>", "<|im_start|>", "<think>"):
        ids = qwen.encode(f"before {literal} after")
        assert all(i < 151_643 for i in ids), literal
        assert qwen.decode(ids) == f"before {literal} after"


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip(qwen, text):
    assert qwen.decode(qwen.encode(text)) == text


def test_nfc_normalisation_like_qwen_hf_tokenizer(qwen):
    decomposed = "Cafe\u0301"  # e + combining acute accent
    assert qwen.encode(decomposed) == qwen.encode("Caf\u00e9")
    assert qwen.decode(qwen.encode(decomposed)) == unicodedata.normalize("NFC", decomposed)


@pytest.mark.parametrize("threads", [1, 2])
def test_encode_batch_matches_encode(qwen, threads):
    assert qwen.encode_batch(SAMPLES, num_threads=threads) == [qwen.encode(text) for text in SAMPLES]


def test_decode_of_a_cut_character_does_not_raise(qwen):
    ids = qwen.encode("\U0001d306")  # a rare character: several byte-level tokens
    assert len(ids) > 1
    assert "\ufffd" in qwen.decode(ids[:1])


@pytest.mark.parametrize("spec", ["gpt2", "llama3", "qwen3.5", "Qwen/Qwen3.6-27B"])
def test_unknown_spec_is_one_clear_error(spec):
    with pytest.raises(TokenizerError) as info:
        load_tokenizer(spec)
    message = str(info.value)
    assert "\n" not in message
    assert spec in message and "qwen3" in message and "tokenizer.json" in message


def test_missing_tokenizer_file():
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer("no/such/tokenizer.json")


def test_qwen_rejects_another_eos():
    with pytest.raises(TokenizerError, match="<|endoftext|>"):
        load_tokenizer("qwen3", eos_token="<|im_end|>")


# ---- Hugging Face tokenizer.json ----------------------------------------------------------------


def build_tokenizer_json(path: Path, specials: list[str]) -> Path:
    """conftest's tiny byte-level BPE, with these special tokens first (ids 0, 1, …)."""
    return train_tiny_tokenizer(
        path, vocab_size=320, special_tokens=specials, texts=["the quick brown fox jumps over the lazy dog"] * 20
    )


def test_hf_tokenizer_json(tmp_path):
    path = build_tokenizer_json(tmp_path / "tok" / "tokenizer.json", ["<pad>", "<|endoftext|>"])
    tok = load_tokenizer(str(path))
    assert tok.name == str(path)
    assert tok.eos_id == 1  # the known end-of-text token, not <pad>
    assert tok.vocab_size == max(json.loads(path.read_text())["model"]["vocab"].values()) + 1
    for text in SAMPLES:
        assert tok.decode(tok.encode(text)) == text
    ids = tok.encode("a <|endoftext|> b")
    assert tok.eos_id not in ids
    assert tok.decode(ids) == "a <|endoftext|> b"
    assert tok.encode_batch(SAMPLES) == [tok.encode(text) for text in SAMPLES]
    # a directory holding tokenizer.json works too
    assert load_tokenizer(str(path.parent)).vocab_size == tok.vocab_size


def test_hf_eos_resolution(tmp_path):
    path = build_tokenizer_json(tmp_path / "tokenizer.json", ["<pad>", "<doc_end>"])
    with pytest.raises(TokenizerError, match="--eos-token") as info:
        load_tokenizer(str(path))
    assert "\n" not in str(info.value)
    assert load_tokenizer(str(path), eos_token="<doc_end>").eos_id == 1
    with pytest.raises(TokenizerError, match="not in the vocabulary"):
        load_tokenizer(str(path), eos_token="<nope>")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "<doc_end>"}}))
    assert load_tokenizer(str(path)).eos_id == 1


def test_malformed_tokenizer_json(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text("{not json")
    with pytest.raises(TokenizerError, match="cannot load tokenizer") as info:
        load_tokenizer(str(path))
    assert "\n" not in str(info.value)
