"""Shared fixtures: a tiny tokenizer and a tiny prepared dataset, made offline.

End-to-end tests train models whose vocabulary is a few hundred tokens so
that a `fit` takes seconds on 2 CPU cores; the dataset goes through the same
`lit_ffn prepare` code as real data.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Remote code that transformers loads (trust_remote_code, tests/inference/test_export_remote_code.py) is
# copied into HF_MODULES_CACHE, read once when transformers is imported — which `import lightning.pytorch`
# below already does — so it is pointed at a temporary directory first, never at ~/.cache/huggingface.
HF_MODULES_CACHE = tempfile.mkdtemp(prefix="lit_ffn-tests-hf-modules-")
os.environ["HF_MODULES_CACHE"] = HF_MODULES_CACHE
atexit.register(shutil.rmtree, HF_MODULES_CACHE, True)

import lightning.pytorch  # noqa: E402, F401 - import now: Lightning binds its log handler to the sys.stderr of
import pyarrow as pa  # noqa: E402 - import time, which must not be a test's short-lived capsys stream
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402

TINY_VOCAB = 384

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tiny_corpus(n_docs: int = 300) -> list[str]:
    """Deterministic English-like documents from the quickstart sources (pydoc topics)."""
    from pydoc_data.topics import topics

    texts = [topics[key] for key in sorted(topics)]
    docs = []
    for i in range(n_docs):
        text = texts[i % len(texts)]
        start = (i * 997) % max(1, len(text) - 2000)
        docs.append(text[start : start + 2000])
    return docs


def train_tiny_tokenizer(
    path: Path,
    vocab_size: int = TINY_VOCAB,
    special_tokens: Sequence[str] = ("<|endoftext|>",),
    texts: Sequence[str] | None = None,
) -> Path:
    """A byte-level BPE ``tokenizer.json`` trained offline on ``texts`` (default :func:`tiny_corpus`).

    ``special_tokens`` take the first ids, in order.
    """
    from lit_ffn.data.prepare.bpe import byte_level_bpe

    tok, trainer = byte_level_bpe(vocab_size, special_tokens)
    tok.train_from_iterator(tiny_corpus() if texts is None else texts, trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def write_fineweb_parquet(path: Path, texts: Sequence[str | None], row_group_size: int = 64) -> Path:
    """A parquet file with FineWeb's schema (``text`` plus its metadata columns); ``None`` is a null row."""
    n = len(texts)
    table = pa.table(
        {
            "text": pa.array(texts, pa.string()),
            "id": [f"<urn:uuid:{i:08d}>" for i in range(n)],
            "dump": ["CC-MAIN-2024-10"] * n,
            "url": [f"https://example.org/{i}" for i in range(n)],
            "date": ["2024-02-20T12:00:00Z"] * n,
            "file_path": ["s3://commoncrawl/x.warc.gz"] * n,
            "language": ["en"] * n,
            "language_score": [0.9] * n,
            "token_count": [len(t or "") // 4 for t in texts],
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer") / "tokenizer.json")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Path) -> Path:
    """A prepared dataset (~150k tokens of vocabulary 384) with train and val splits."""
    from lit_ffn.data.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("tiny_dataset")
    parquet = write_fineweb_parquet(root / "docs.parquet", tiny_corpus())
    out = root / "data"
    prepare_dataset([str(parquet)], out, tokenizer=str(tiny_tokenizer), val_fraction=0.1)
    return out


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Path) -> Path:
    """~5,700 training tokens in 1,024-token chunks: an epoch of 11 batches of 8 × 64 tokens (5 of 8 × 128).

    Small enough that a run crosses several epochs in a few steps (resume across epoch boundaries).
    """
    from lit_ffn.data.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("small")
    parquet = write_fineweb_parquet(root / "docs.parquet", tiny_corpus(10))
    prepare_dataset(str(parquet), root / "ds", tokenizer=str(tiny_tokenizer), val_fraction=0.2, chunk_bytes=4096)
    return root / "ds"


def tiny_fit_args(data_dir: Path, root: Path, *extra: str, steps: int = 4) -> list[str]:
    """``lit_ffn fit`` arguments for a seconds-long run on :func:`tiny_dataset`."""
    return [
        "fit",
        "--seed_everything=0",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        f"--trainer.max_steps={steps}",
        "--trainer.val_check_interval=2",
        "--trainer.check_val_every_n_epoch=null",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
        "--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger",
        f"--trainer.logger.save_dir={root}/runs",
        "--trainer.logger.name=tiny",
        f"--model.vocab_size={TINY_VOCAB}",
        "--model.dim=32",
        "--model.n_layers=2",
        "--model.n_heads=2",
        "--model.n_kv_heads=1",
        "--model.head_dim=16",
        "--model.lr=1e-2",
        f"--data.data_dir={data_dir}",
        "--data.seq_len=32",
        "--data.batch_size=4",
        "--data.val_blocks=8",  # a fixed validation set: 2 batches of 4
        *extra,
    ]
