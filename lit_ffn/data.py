"""LightningDataModule streaming tokenized text prepared by ``lit_ffn prepare``.

A dataset directory holds ``train/`` and ``val/`` litdata chunk folders of
int32 token ids and a ``meta.json`` (see ``lit_ffn.prepare``).  Each sample is
one block of ``seq_len + 1`` consecutive tokens (litdata's ``TokensLoader``),
split by the module into inputs ``[:-1]`` and targets ``[1:]``.

Datasets are built in ``*_dataloader()``, after the distributed environment
exists, so that litdata assigns each rank its own chunks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import lightning as L
from litdata import StreamingDataLoader, StreamingDataset, TokensLoader

from lit_ffn.prepare import DatasetError, read_meta


class TokenDataModule(L.LightningDataModule):
    """Streams (batch_size, seq_len + 1) int32 token blocks.

    Args:
        data_dir: a directory made by ``lit_ffn prepare`` (local, or a
            litdata-supported remote URL such as ``s3://…``).
        seq_len: tokens the model sees per sample.
        batch_size: samples per micro-batch and device.
        num_workers: loader worker processes (keep it fixed across a resume).
        seed: shuffle seed (linked to ``seed_everything`` by the CLI).
        vocab_size: the model's vocabulary size (linked from ``model.vocab_size``
            by the CLI); the dataset's tokenizer must fit in it.
        quickstart: build the offline quickstart corpus into ``data_dir`` when
            it holds no dataset yet.
    """

    def __init__(
        self,
        data_dir: str = "data/quickstart",
        seq_len: int = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        vocab_size: Optional[int] = None,
        quickstart: bool = False,
    ) -> None:
        super().__init__()
        self.data_dir = str(data_dir)
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.vocab_size = vocab_size
        self.quickstart = quickstart
        self.meta: dict[str, Any] = {}

    def prepare_data(self) -> None:
        if self.quickstart:
            from lit_ffn.corpus import ensure_quickstart_dataset

            ensure_quickstart_dataset(self.data_dir)

    def setup(self, stage: str) -> None:
        self.meta = read_meta(self.data_dir)
        if self.vocab_size is not None and self.meta["vocab_size"] > self.vocab_size:
            raise DatasetError(
                f"dataset {self.data_dir} was tokenized with {self.meta.get('tokenizer')} "
                f"(vocabulary {self.meta['vocab_size']}) which does not fit the model's "
                f"vocab_size={self.vocab_size}: set model.vocab_size >= {self.meta['vocab_size']} "
                "or prepare the data with a smaller tokenizer"
            )

    def _split_dir(self, split: str) -> str:
        return str(Path(self.data_dir) / split) if "://" not in self.data_dir else f"{self.data_dir}/{split}"

    def _loader(self, split: str, shuffle: bool) -> StreamingDataLoader:
        dataset = StreamingDataset(
            self._split_dir(split),
            item_loader=TokensLoader(block_size=self.seq_len + 1),
            shuffle=shuffle,
            seed=self.seed,
            drop_last=shuffle,
        )
        return StreamingDataLoader(
            dataset, batch_size=self.batch_size, num_workers=self.num_workers, drop_last=shuffle
        )

    def train_dataloader(self) -> StreamingDataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> StreamingDataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> StreamingDataLoader:
        return self._loader("val", shuffle=False)
