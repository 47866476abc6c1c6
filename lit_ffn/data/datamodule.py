"""LightningDataModule streaming tokenized text prepared by ``lit_ffn prepare``.

A dataset directory holds ``train/`` and ``val/`` litdata chunk folders of int32 token ids and a
``meta.json`` (see :mod:`lit_ffn.data.format`).  A sample is one *block* of ``seq_len + 1`` consecutive
tokens (litdata's ``TokensLoader``): the module splits it into inputs ``[:-1]`` and next-token targets
``[1:]``.  Blocks never cross a chunk boundary, so split ``s`` holds ``Σ_chunks ⌊tokens_c / (seq_len+1)⌋``
blocks, numbered chunk by chunk in the order ``prepare`` wrote them.

Training (``train/``): litdata's :class:`~litdata.StreamingDataset` + :class:`~litdata.StreamingDataLoader`,
shuffled (chunk order, then blocks within a chunk) with ``seed``, a new order each epoch, ``drop_last``.
The order of training batches is a function of (dataset, ``seq_len``, ``seed``, ``batch_size``,
``num_workers``, world size).  Lightning stores the loader's position in every checkpoint, so a run
resumed from a checkpoint sees exactly the batches the uninterrupted run sees; resuming with another
``batch_size``, ``num_workers``, world size, ``seed``, ``seq_len`` or ``data_dir`` would change that
order, and is refused with a one-line :class:`~lit_ffn.errors.UserError` (:class:`ResumableLoader`).

Validation and test (``val/``): the first ``val_blocks`` blocks of the split (all of them by
default), each evaluated exactly once whatever the batch size, loader workers and number of ranks
(:class:`ValBlocks`), so every run on the same dataset and ``seq_len`` computes its validation loss on
the same tokens.

Datasets are built in ``*_dataloader()``, after the distributed environment exists, so that litdata
sees each rank's place in it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from litdata import StreamingDataLoader, StreamingDataset, TokensLoader
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lit_ffn.data.format import DatasetError, read_meta, resolve_data_dir
from lit_ffn.data.remote import install_allow_http_fix, litdata_options, worker_init
from lit_ffn.errors import UserError
from lit_ffn.seeds import check_seed

__all__ = ["ResumableLoader", "TokenDataModule", "ValBlocks"]

# --------------------------------------------------------------------------------------------------
# Validation: a fixed set of blocks, each evaluated exactly once
# --------------------------------------------------------------------------------------------------


class ValBlocks(IterableDataset):
    """The first ``num_blocks`` blocks of a split, as this rank's batches, each block exactly once.

    Written here because the ready-made paths do not give this: litdata's loader assigns whole chunks
    to ranks and workers and, with several ranks, drops blocks (``drop_last``); Lightning's
    ``DistributedSampler`` pads the last batches with repeated samples.  Either makes the set of
    validation tokens depend on world size, workers and batch size.

    With N blocks, W ranks and batch size B:

    * rank r takes blocks ``i ≡ r (mod W)``: ``n_r ∈ {⌊N/W⌋, ⌈N/W⌉}`` blocks, none shared, none repeated;
    * every rank yields the same number of batches ``nb = ⌈⌈N/W⌉ / B⌉`` (sharded models run
      collectives in every forward, so a rank with one batch fewer would hang the others), splitting
      its ``n_r`` blocks into ``nb`` consecutive runs of near-equal size ``≤ B``;
    * DataLoader worker k of K yields batches ``j ≡ k (mod K)``.

    The module averages the loss over tokens (weights = tokens per batch), so the validation loss is
    ``Σ_blocks Σ_tokens ℓ / (N · seq_len)`` whatever the batching, up to float summation order.

    Yields:
        ``(b, block_size)`` int32 tensors, ``b ≤ batch_size``.
    """

    def __init__(
        self,
        split_dir: str,
        block_size: int,
        num_blocks: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        cache_dir: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise UserError(f"the validation set needs at least 1 block, got {num_blocks}")
        self.split_dir, self.block_size, self.cache_dir = split_dir, block_size, cache_dir
        self.storage_options = storage_options
        self.num_blocks, self.batch_size, self.rank, self.world_size = num_blocks, batch_size, rank, world_size
        self.num_batches = math.ceil(math.ceil(num_blocks / world_size) / batch_size)
        if num_blocks // world_size < self.num_batches:
            raise UserError(
                f"{num_blocks} validation blocks cannot be shared by {world_size} ranks in equal numbers of "
                f"batches of at most {batch_size}: use a larger data.batch_size or a data.val_blocks that is a "
                f"multiple of {world_size}"
            )
        self._dataset: StreamingDataset | None = None

    def batches(self) -> list[list[int]]:
        """This rank's batches as lists of block indices (all workers together)."""
        mine = range(self.rank, self.num_blocks, self.world_size)
        size, extra = divmod(len(mine), self.num_batches)
        bounds = [0]
        for j in range(self.num_batches):
            bounds.append(bounds[-1] + size + (j < extra))
        return [list(mine[bounds[j] : bounds[j + 1]]) for j in range(self.num_batches)]

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[torch.Tensor]:
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker else (0, 1)
        if self._dataset is None:  # opened lazily, in the process that reads
            self._dataset = StreamingDataset(
                self.split_dir,
                item_loader=TokensLoader(block_size=self.block_size),
                cache_dir=self.cache_dir,
                storage_options=litdata_options(self.split_dir, self.storage_options),
            )
        for batch in self.batches()[worker_id::num_workers]:
            yield torch.stack([self._dataset[index] for index in batch])


# --------------------------------------------------------------------------------------------------
# Training: litdata's loader, refusing a resume that cannot be exact
# --------------------------------------------------------------------------------------------------


class ResumableLoader(StreamingDataLoader):
    """:class:`~litdata.StreamingDataLoader` that refuses to resume from a state it would not replay exactly.

    Lightning saves ``state_dict()`` in every checkpoint and calls :meth:`load_state_dict` on resume.
    litdata replays the saved position exactly when nothing that shapes the sample order changed.
    When the number of workers, the batch size or the world size changed, litdata 0.2.7x restripes
    the remaining samples ("elastic" resume): the rest of the current epoch has no duplicates, but
    later epochs follow the new layout, so the run no longer matches an uninterrupted one (measured:
    the streams diverge at the first epoch boundary).  A changed seed, block size or ``data_dir``
    makes litdata raise a multi-line ``ValueError`` inside the loader.  We check all of them here,
    before any batch is read, and say which setting to restore.
    """

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        self.check_resumable(obj.get("dataset") or {})
        super().load_state_dict(obj)

    def __iter__(self) -> Iterator[Any]:
        """One epoch of batches; after a resume, the next epoch really is the next one.

        Why this is here (litdata 0.2.76 with Lightning 2.6): ``load_state_dict`` sets litdata's
        ``restore`` flag, and litdata clears it only when an iterator runs to ``StopIteration``
        (deliberately, see the comment at the end of ``StreamingDataLoader.__iter__``).  Lightning
        never exhausts a sized loader: it ends the epoch after ``len(loader)`` batches and drops the
        iterator.  So the epoch *after* a resumed one started with ``restore`` still set and replayed
        the checkpoint's position (the rest of the resumed epoch, again) instead of reshuffling: every
        run resumed mid-epoch left the uninterrupted run's batches at the next epoch boundary (measured:
        the quickstart resumed at step 200 trained on other batches from step 217, its first step of
        epoch 3).  It went unnoticed where a checkpoint was saved at an epoch end in the resumed run
        (that save rewrites the restored state to "whole epoch yielded", which replays as nothing).

        The fix: when ``restore`` is still set but the restored epoch has been delivered in full
        (``_num_samples_yielded_streaming`` — litdata's own count, restored from the checkpoint and
        advanced per batch — has reached ``len(self) × batch_size``), clear it, so litdata takes its
        normal new-epoch path (reset the dataset state, ``current_epoch + 1``, reshuffle) exactly as
        in the uninterrupted run.  A resumed iterator dropped before it finished its epoch keeps
        ``restore`` as litdata intends.
        """
        if self.restore and self.batch_size and self._num_samples_yielded_streaming >= len(self) * self.batch_size:
            self.restore = False
        yield from super().__iter__()

    def check_resumable(self, saved: dict[str, Any]) -> None:
        """Raise :class:`UserError` when ``saved`` (the checkpoint's dataset state) does not fit this loader."""
        dataset: StreamingDataset = self.dataset
        now = {  # what litdata would save now (StreamingDataset.state_dict), without touching its state
            "num_workers": self.num_workers or 1,
            "batch_size": self.batch_size,
            "world_size": dataset.distributed_env.world_size,
            "seed": dataset.seed,
            "item_loader": dataset.item_loader.state_dict() if dataset.item_loader else None,
            "input_dir_url": dataset.input_dir.url,
            "cache_dir_path": dataset.cache_dir.path,
            "input_dir_path": dataset.input_dir.path,
        }
        settings = [  # (state key, what the user sets, how to print a value)
            ("num_workers", "data.num_workers", lambda v: "0 or 1" if v == 1 else str(v)),
            ("batch_size", "data.batch_size", str),
            ("world_size", "world size (trainer.devices × trainer.num_nodes)", str),
            ("seed", "data.seed", str),
            ("item_loader", "data.seq_len", lambda v: str(v["block_size"] - 1) if isinstance(v, dict) else str(v)),
            ("input_dir_url", "data.data_dir", str),
        ]
        if now["input_dir_url"]:  # remote data: litdata compares its cache path, which cache_dir decides
            settings.append(("cache_dir_path", "data.cache_dir", str))
        else:  # local data: litdata compares the path itself
            settings.append(("input_dir_path", "data.data_dir", str))
        for key, name, show in settings:
            if key in saved and saved[key] != now[key]:
                raise UserError(
                    f"cannot resume exactly: the checkpoint's training data loader ran with {name}="
                    f"{show(saved[key])}, this run has {show(now[key])}, and the order of training samples "
                    f"depends on it; resume with the run's own config.yaml (or set {name} back to "
                    f"{show(saved[key])})"
                )


# --------------------------------------------------------------------------------------------------
# The DataModule
# --------------------------------------------------------------------------------------------------


class TokenDataModule(L.LightningDataModule):
    """Streams (batch_size, seq_len + 1) int32 token blocks from a prepared dataset.

    ``data.seq_len`` is the single source of the context length: the model (RoPE, no learned positions)
    has no maximum length, and anything else that needs it (FLOPs per token, throughput) reads
    ``trainer.datamodule.seq_len``.

    Args:
        data_dir: a directory made by ``lit_ffn prepare``: a local path, ``file://…``, or a URL litdata
            streams from (``s3://``, ``gs://``, ``azure://``, ``local:/path``).
        seq_len: tokens the model sees per sample (blocks are ``seq_len + 1`` tokens).
        batch_size: samples per micro-batch and device (training and validation).
        num_workers: loader worker processes; part of the training order, so keep it across a resume.
        seed: shuffle seed, a non-negative integer; ``None``: ``seed_everything``'s (the CLI writes the value
            into config.yaml; outside it, the ``PL_GLOBAL_SEED`` that ``seed_everything`` sets, else 0).
        vocab_size: the model's vocabulary size (linked from ``model.vocab_size`` by the CLI); the
            dataset's tokenizer must fit in it.
        val_blocks: validate (and test) on the first N blocks of the validation split; ``None``: all.
        cache_dir: where litdata keeps downloaded chunks of a remote ``data_dir`` (default: its own,
            ``~/.lightning/chunks``).
        storage_options: options for the object store of a remote ``data_dir``, passed to litdata as they
            are (``s3://``: ``boto3.client("s3", …)`` keyword arguments such as ``endpoint_url``,
            ``region_name``; see :mod:`lit_ffn.data.remote`); the standard environment
            (``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, …) needs none.
        quickstart: build the offline quickstart corpus into ``data_dir`` when it holds no dataset yet.
    """

    def __init__(
        self,
        data_dir: str = "data/quickstart",
        seq_len: int = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int | None = None,
        vocab_size: int | None = None,
        val_blocks: int | None = None,
        cache_dir: str | None = None,
        quickstart: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("seq_len", seq_len, 1),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if value < low:
                raise UserError(f"data.{name} must be at least {low}, got {value}")
        if val_blocks is not None and val_blocks < 1:
            raise UserError(f"data.val_blocks must be at least 1 (or null for the whole split), got {val_blocks}")
        self.data_dir = str(data_dir)
        self.location = resolve_data_dir(self.data_dir)
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.num_workers = num_workers
        check_seed("data.seed", seed)
        self.seed = int(os.environ.get("PL_GLOBAL_SEED", "0")) if seed is None else seed
        self.vocab_size = vocab_size
        self.val_blocks = val_blocks
        self.cache_dir = cache_dir
        self.quickstart = quickstart
        self.storage_options = storage_options
        if self.location.litdata.startswith("s3://"):
            install_allow_http_fix()  # litdata 0.2.76 cannot stream from http:// endpoints otherwise
        self.meta: dict[str, Any] = {}

    @property
    def block_size(self) -> int:
        return self.seq_len + 1

    # ------------------------------------------------------------------ hooks
    def prepare_data(self) -> None:
        """Build the quickstart corpus if asked to and absent, in a fresh interpreter (no fork from here).

        Lightning calls this on local rank 0 of each node while the other ranks wait at a barrier;
        nodes sharing a file system do not race either: a dataset is published by one atomic rename
        and the loser reads the winner's.
        """
        if self.quickstart:
            if self.location.remote:
                raise UserError(f"data.quickstart builds a local dataset; data.data_dir={self.data_dir} is remote")
            from lit_ffn.data.corpus import ensure_quickstart_dataset_isolated, quickstart_vocab

            try:
                read_meta(self.location.fsspec)
                return  # built already (setup() checks that its vocabulary fits the model)
            except DatasetError:
                pass
            rank_zero_info(
                f"lit_ffn: building the quickstart corpus in {self.data_dir} (Python's own documentation and "
                "docstrings, tokenized once; under a minute)"
            )
            start = time.perf_counter()
            meta = ensure_quickstart_dataset_isolated(
                self.location.litdata, train_vocab_size=quickstart_vocab(self.vocab_size)
            )
            splits = ", ".join(f"{name} {info['tokens']:,} tokens" for name, info in meta.get("splits", {}).items())
            rank_zero_info(f"lit_ffn: quickstart corpus ready in {time.perf_counter() - start:.1f} s ({splits})")

    def setup(self, stage: str) -> None:
        self.meta = read_meta(self.location.fsspec, self.storage_options)
        if (
            self.vocab_size is not None
            and self.meta.get("tokenizer_file")
            and self.meta["vocab_size"] != self.vocab_size
        ):
            raise DatasetError(  # a trained vocabulary: no padding rows to allow for (docs/data.md)
                f"dataset {self.data_dir} ships its own {self.meta['vocab_size']}-token vocabulary (prepare "
                f"--train-tokenizer) but model.vocab_size={self.vocab_size}: set model.vocab_size="
                f"{self.meta['vocab_size']}, or use a dataset prepared with --vocab-size {self.vocab_size}"
            )
        if self.vocab_size is not None and self.meta["vocab_size"] > self.vocab_size:
            raise DatasetError(
                f"dataset {self.data_dir} was tokenized with {self.meta.get('tokenizer')} "
                f"(vocabulary {self.meta['vocab_size']}) which does not fit the model's "
                f"vocab_size={self.vocab_size}: set model.vocab_size >= {self.meta['vocab_size']} "
                "or prepare the data with a smaller tokenizer"
            )

    def num_blocks(self, split: str) -> int:
        """Blocks of ``seq_len + 1`` tokens in a split (litdata drops each chunk's shorter tail)."""
        dataset = self._dataset(split, shuffle=False)
        return sum(end - start for start, end in dataset.region_of_interest)

    # ------------------------------------------------------------ dataloaders
    def train_dataloader(self) -> ResumableLoader:
        dataset = self._dataset("train", shuffle=True)
        world_size = dataset.distributed_env.world_size
        available = sum(end - start for start, end in dataset.region_of_interest)
        if available < self.batch_size * world_size:
            raise UserError(
                f"the training split of {self.data_dir} holds {available} blocks of seq_len+1={self.block_size} "
                f"tokens, fewer than one batch ({self.batch_size} × {world_size} processes): use a smaller "
                "data.seq_len or data.batch_size, or more data (each litdata chunk drops its last partial block)"
            )
        return ResumableLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            drop_last=True,
            worker_init_fn=self._worker_init,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader()

    # ---------------------------------------------------------------- helpers
    @property
    def _worker_init(self) -> Any:
        """The loaders' ``worker_init_fn``: the litdata workaround in spawned workers (s3:// data only)."""
        return worker_init if self.location.litdata.startswith("s3://") else None

    def _dataset(self, split: str, shuffle: bool) -> StreamingDataset:
        return StreamingDataset(
            self.location.split(split, self.meta),
            item_loader=TokensLoader(block_size=self.block_size),
            shuffle=shuffle,
            seed=self.seed,
            drop_last=True if shuffle else None,
            cache_dir=self.cache_dir,
            storage_options=litdata_options(self.location.litdata, self.storage_options),
        )

    def _eval_loader(self) -> DataLoader:
        available = self.num_blocks("val")
        if available == 0:
            raise UserError(
                f"no validation block of seq_len+1={self.block_size} tokens fits in a chunk of {self.data_dir}/val: "
                "use a smaller data.seq_len, or prepare with a larger --val-fraction / --chunk-bytes"
            )
        if self.val_blocks is not None and self.val_blocks > available:
            raise UserError(
                f"data.val_blocks={self.val_blocks} but the validation split of {self.data_dir} holds only "
                f"{available} blocks of seq_len+1={self.block_size} tokens: use data.val_blocks <= {available} "
                "(or null for all of them)"
            )
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        blocks = ValBlocks(
            self.location.split("val", self.meta),
            self.block_size,
            self.val_blocks or available,
            self.batch_size,
            rank=rank,
            world_size=world_size,
            cache_dir=self.cache_dir,
            storage_options=self.storage_options,
        )
        if trainer is not None:
            _warn_if_validation_is_cut(trainer, len(blocks))
        return DataLoader(
            blocks, batch_size=None, num_workers=min(self.num_workers, len(blocks)), worker_init_fn=self._worker_init
        )


def _warn_if_validation_is_cut(trainer: Any, num_batches: int) -> None:
    """``limit_val_batches`` and a partial sanity check evaluate a batch-size-dependent part of the set."""
    limit = trainer.limit_val_batches
    if (isinstance(limit, int) and 0 < limit < num_batches) or (isinstance(limit, float) and 0 < limit < 1.0):
        rank_zero_warn(
            f"trainer.limit_val_batches={limit} evaluates only part of the fixed validation set ({num_batches} "
            "batches), and which part depends on batch size and world size: set data.val_blocks instead"
        )
    sanity = trainer.num_sanity_val_steps
    if 0 < sanity < num_batches and trainer.state.fn == "fit":
        rank_zero_warn(
            f"trainer.num_sanity_val_steps={sanity} checks {sanity} of the {num_batches} validation batches, "
            "so no step-0 val/loss is logged: set it to -1 (the whole set, logged at step 0) or 0"
        )
