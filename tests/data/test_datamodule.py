"""TokenDataModule: the fixed validation set, exact resume, data locations, and clear errors.

Runs on a dataset the tests prepare themselves (conftest's tiny tokenizer, small litdata chunks so that
every split has many chunks), with a decoder small enough for a step to take milliseconds.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from itertools import islice
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from litdata import StreamingDataset, TokensLoader

from lit_ffn.cli import main
from lit_ffn.data import TokenDataModule, ValBlocks, resolve_data_dir
from lit_ffn.data.prepare import DatasetError, prepare_dataset
from lit_ffn.errors import UserError
from lit_ffn.training.module import LitDecoder
from tests.conftest import TINY_VOCAB, tiny_corpus, tiny_fit_args, write_fineweb_parquet

CHUNK_BYTES = 16 * 1024  # 4,096 tokens a chunk: ~50 train chunks, ~6 val chunks


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Path) -> Path:
    root = tmp_path_factory.mktemp("data")
    parquet = write_fineweb_parquet(root / "docs.parquet", tiny_corpus())
    prepare_dataset(str(parquet), root / "ds", tokenizer=str(tiny_tokenizer), val_fraction=0.1, chunk_bytes=CHUNK_BYTES)
    return root / "ds"


def digest(block: torch.Tensor) -> str:
    return hashlib.blake2b(block.numpy().tobytes(), digest_size=8).hexdigest()


def first_blocks(split_dir: Path, block_size: int, count: int) -> list[str]:
    """The reference: blocks 0..count-1 of a split, read one by one through litdata."""
    reader = StreamingDataset(str(split_dir), item_loader=TokensLoader(block_size=block_size))
    assert len(reader) >= count
    return [digest(reader[i]) for i in range(count)]


def fake_trainer(rank: int = 0, world_size: int = 1, **overrides: Any) -> SimpleNamespace:
    """What the DataModule reads from its trainer when it builds the validation loader."""
    settings = {"limit_val_batches": 1.0, "num_sanity_val_steps": 0, "state": SimpleNamespace(fn="fit")}
    return SimpleNamespace(global_rank=rank, world_size=world_size, **{**settings, **overrides})


def val_batches(data_dir: Path, *, rank: int = 0, world_size: int = 1, **kwargs: Any) -> list[torch.Tensor]:
    dm = TokenDataModule(str(data_dir), **kwargs)
    dm.trainer = fake_trainer(rank, world_size)
    return list(dm.val_dataloader())


def tiny_model(init_std: float = 0.02) -> LitDecoder:
    torch.manual_seed(0)
    return LitDecoder(
        vocab_size=TINY_VOCAB, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8, lr=1e-2, init_std=init_std
    )


def tiny_trainer(root: Path, steps: int, callbacks: list[Callback]) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=callbacks,
    )


class BatchDigests(Callback):
    """A digest of every training batch, by the global step that trains on it."""

    def __init__(self) -> None:
        self.by_step: dict[int, str] = {}

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: torch.Tensor, batch_idx: int
    ) -> None:
        self.by_step[trainer.global_step] = digest(batch)


# ---- validation: a fixed set of blocks ------------------------------------------------------------


@pytest.mark.parametrize(("batch_size", "num_workers", "world_size"), [(4, 0, 1), (3, 2, 1), (5, 0, 3), (2, 2, 2)])
def test_val_set_is_the_first_blocks_once_whatever_batch_workers_and_ranks(
    dataset, batch_size, num_workers, world_size
):
    val_blocks, seq_len = 37, 31
    per_rank = [
        val_batches(
            dataset,
            rank=rank,
            world_size=world_size,
            seq_len=seq_len,
            batch_size=batch_size,
            num_workers=num_workers,
            val_blocks=val_blocks,
        )
        for rank in range(world_size)
    ]
    assert len({len(batches) for batches in per_rank}) == 1  # equal batch counts: no rank waits on another
    seen = [digest(block) for batches in per_rank for batch in batches for block in batch]
    assert all(batch.shape[0] <= batch_size and batch.shape[1] == seq_len + 1 for b in per_rank for batch in b)
    assert all(batch.dtype == torch.int32 for batches in per_rank for batch in batches)
    assert Counter(seen) == Counter(first_blocks(dataset / "val", seq_len + 1, val_blocks))


def test_whole_val_split_by_default(dataset):
    seq_len = 63
    dm = TokenDataModule(str(dataset), seq_len=seq_len, batch_size=8)
    total = dm.num_blocks("val")
    assert total > 8
    seen = [digest(block) for batch in val_batches(dataset, seq_len=seq_len, batch_size=8) for block in batch]
    assert seen == first_blocks(dataset / "val", seq_len + 1, total)


def test_val_blocks_split_evenly_across_ranks_or_refuse():
    blocks = [ValBlocks("unused", 8, num_blocks=10, batch_size=4, rank=r, world_size=3) for r in range(3)]
    layouts = [b.batches() for b in blocks]
    assert [len(layout) for layout in layouts] == [1, 1, 1]
    assert sorted(i for layout in layouts for batch in layout for i in batch) == list(range(10))
    # 4 ranks, 5 blocks, batches of 1: rank 0 would need 2 batches, ranks 1-3 have 1 block each.
    with pytest.raises(UserError, match="equal numbers of batches"):
        ValBlocks("unused", 8, num_blocks=5, batch_size=1, rank=0, world_size=4)


def test_val_loss_of_a_fixed_model_does_not_depend_on_batch_size_or_workers(dataset, tmp_path):
    val_blocks, seq_len = 20, 31
    model = tiny_model(init_std=0.5)  # far from uniform: block losses differ, so a mis-weighted mean shows
    blocks = torch.stack(
        [
            b
            for batch in val_batches(dataset, seq_len=seq_len, batch_size=val_blocks, val_blocks=val_blocks)
            for b in batch
        ]
    ).long()
    with torch.no_grad():  # the definition: mean next-token loss over every target token of the N blocks
        logits = model.model.logits(model.model(blocks[:, :-1]))
        expected = torch.nn.functional.cross_entropy(logits.reshape(-1, TINY_VOCAB).float(), blocks[:, 1:].reshape(-1))
    for batch_size, num_workers in ((1, 0), (3, 2), (8, 0)):
        dm = TokenDataModule(
            str(dataset), seq_len=seq_len, batch_size=batch_size, num_workers=num_workers, val_blocks=val_blocks
        )
        trainer = L.Trainer(
            accelerator="cpu",
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,
        )
        (result,) = trainer.validate(model, dm, verbose=False)
        assert result["val/loss"] == pytest.approx(expected.item(), rel=1e-5), (batch_size, num_workers)


def test_validation_cut_short_is_warned_about(dataset):
    dm = TokenDataModule(str(dataset), seq_len=31, batch_size=4, val_blocks=16)
    dm.trainer = fake_trainer(limit_val_batches=2)
    with pytest.warns(UserWarning, match="limit_val_batches=2 evaluates only part"):
        dm.val_dataloader()
    dm.trainer = fake_trainer(num_sanity_val_steps=2)
    with pytest.warns(UserWarning, match="num_sanity_val_steps=2"):
        dm.val_dataloader()


# ---- training order and exact resume --------------------------------------------------------------


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_sees_exactly_the_batches_of_an_uninterrupted_run(small_dataset, tmp_path, num_workers):
    """Checkpoint at step 4 of a run that crosses an epoch boundary; resume from it; compare every batch."""

    def data(seed: int = 3) -> TokenDataModule:
        return TokenDataModule(str(small_dataset), seq_len=63, batch_size=8, num_workers=num_workers, seed=seed)

    epoch = data().num_blocks("train") // 8
    steps = epoch + 3
    assert 4 < epoch < 20  # the runs below cross an epoch boundary, in a few seconds
    full = BatchDigests()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1, filename="{step}")
    tiny_trainer(tmp_path, steps, [full, checkpoint]).fit(tiny_model(), data())

    resumed = BatchDigests()
    tiny_trainer(tmp_path, steps, [resumed]).fit(
        tiny_model(), data(), ckpt_path=tmp_path / "ckpt" / "step=4.ckpt", weights_only=False
    )
    assert sorted(full.by_step) == list(range(steps))
    assert resumed.by_step == {step: full.by_step[step] for step in range(4, steps)}
    first_epoch, second_epoch = [full.by_step[s] for s in range(epoch)], [full.by_step[s] for s in range(epoch, steps)]
    assert len(set(first_epoch)) == epoch and first_epoch[:3] != second_epoch  # distinct batches, reshuffled
    # the seed shapes the order: another seed gives another stream
    other = BatchDigests()
    tiny_trainer(tmp_path / "other", 2, [other]).fit(tiny_model(), data(seed=4))
    assert [other.by_step[s] for s in range(2)] != [full.by_step[s] for s in range(2)]


def test_resume_with_other_num_workers_is_one_clear_error(tiny_dataset, tmp_path, capsys):
    args = tiny_fit_args(tiny_dataset, tmp_path, "--data.num_workers=2", steps=2)
    assert main(args) == 0
    run = next((tmp_path / "runs").rglob("config.yaml")).parent
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["num_workers"] == 2
    resume = ["fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.max_steps=4"]
    assert main([*resume, "--data.num_workers=0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("lit_ffn: error:")]
    assert "cannot resume exactly" in line and "data.num_workers=2" in line and "0 or 1" in line
    # The run's own settings resume.  (The refused attempt above already rewrote config.yaml with
    # num_workers=0: LightningCLI saves the config before the checkpoint is read; hence the flag.)
    assert main([*resume, "--data.num_workers=2"]) == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 8}, "data.batch_size=4"),
        ({"seed": 1}, "data.seed=0"),
        ({"seq_len": 63}, "data.seq_len=31"),
        ("a copy of the dataset", "data.data_dir="),
    ],
)
def test_resume_with_other_data_settings_is_refused(dataset, tmp_path, change, message):
    if change == "a copy of the dataset":
        shutil.copytree(dataset, tmp_path / "copy")
        change = {"data_dir": str(tmp_path / "copy")}
    settings = {"data_dir": str(dataset), "seq_len": 31, "batch_size": 4, "seed": 0}
    loader = TokenDataModule(**settings).train_dataloader()
    for _ in islice(loader, 3):
        pass
    state = loader.state_dict()
    TokenDataModule(**settings).train_dataloader().load_state_dict(state)  # the same settings: fine
    with pytest.raises(UserError, match="cannot resume exactly") as info:
        TokenDataModule(**{**settings, **change}).train_dataloader().load_state_dict(state)
    assert message in str(info.value)


# ---- where the data is ----------------------------------------------------------------------------


def first_train_batches(dm: TokenDataModule, count: int) -> list[str]:
    return [digest(batch) for batch in islice(dm.train_dataloader(), count)]


def test_remote_and_file_urls_read_the_same_data(dataset, tmp_path):
    """``local:`` is litdata's remote code path (chunks copied into the cache), offline."""
    common = {"seq_len": 31, "batch_size": 4, "val_blocks": 12}
    plain = TokenDataModule(str(dataset), **common)
    plain.setup("fit")
    expected = (first_train_batches(plain, 5), [digest(b) for b in val_batches(dataset, **common)])
    for url in (f"local:{dataset}", f"file://{dataset}"):
        dm = TokenDataModule(url, cache_dir=str(tmp_path / "cache"), **common)
        dm.setup("fit")
        assert dm.meta == plain.meta
        dm.trainer = fake_trainer()
        assert (first_train_batches(dm, 5), [digest(b) for b in dm.val_dataloader()]) == expected, url
    assert any((tmp_path / "cache").rglob("*.bin"))  # the local: run streamed through the cache
    # a remote loader's position resumes into a loader with the same settings
    remote = TokenDataModule(f"local:{dataset}", cache_dir=str(tmp_path / "cache"), **common)
    loader = remote.train_dataloader()
    batches = [digest(batch) for batch in islice(loader, 3)]  # islice: no 4th batch pulled
    again = TokenDataModule(f"local:{dataset}", cache_dir=str(tmp_path / "cache"), **common).train_dataloader()
    again.load_state_dict(loader.state_dict())
    assert batches + [digest(batch) for batch in islice(again, 2)] == expected[0]


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("hf://datasets/me/my-tokens", "litdata streams only raw parquet"),
        ("http://example.org/ds", "unsupported protocol"),
        ("memory://ds", "unsupported protocol"),
    ],
)
def test_unsupported_data_dir_urls_are_clear_errors(url, fragment):
    with pytest.raises(UserError, match=fragment):
        TokenDataModule(url)


def test_locations_for_litdata_and_fsspec():
    s3 = resolve_data_dir("s3://bucket/fineweb")
    assert (s3.litdata, s3.fsspec, s3.remote, s3.split("val")) == (
        "s3://bucket/fineweb",
        "s3://bucket/fineweb",
        True,
        "s3://bucket/fineweb/val",
    )
    assert resolve_data_dir("azure://container/ds").fsspec == "az://container/ds"
    assert resolve_data_dir("local:/data/ds").fsspec == "/data/ds"
    assert (resolve_data_dir("data/ds").litdata, resolve_data_dir("data/ds").remote) == ("data/ds", False)


# ---- what must fit --------------------------------------------------------------------------------


def test_dataset_tokenizer_must_fit_the_model_vocabulary(dataset):
    TokenDataModule(str(dataset), vocab_size=TINY_VOCAB).setup("fit")
    TokenDataModule(str(dataset), vocab_size=None).setup("fit")
    with pytest.raises(DatasetError) as info:
        TokenDataModule(str(dataset), vocab_size=TINY_VOCAB - 1).setup("fit")
    message = str(info.value)
    assert f"vocab_size={TINY_VOCAB - 1}" in message and f"vocabulary {TINY_VOCAB}" in message and "\n" not in message
    assert isinstance(info.value, UserError)


def test_blocks_that_do_not_fit_are_clear_errors(dataset):
    too_long = TokenDataModule(str(dataset), seq_len=5000)  # longer than any 4,096-token chunk
    too_long.trainer = fake_trainer()
    with pytest.raises(UserError, match="fewer than one batch"):
        too_long.train_dataloader()
    with pytest.raises(UserError, match="no validation block"):
        too_long.val_dataloader()
    greedy = TokenDataModule(str(dataset), seq_len=31, val_blocks=10**6)
    with pytest.raises(UserError, match=r"val_blocks=1000000 but .* holds only \d+ blocks"):
        greedy.val_dataloader()
    for bad in ({"seq_len": 0}, {"batch_size": 0}, {"num_workers": -1}, {"val_blocks": 0}):
        with pytest.raises(UserError):
            TokenDataModule(str(dataset), **bad)


def test_the_quickstart_corpus_build_says_what_it_does(tmp_path, monkeypatch, caplog) -> None:
    import logging

    from lit_ffn.data import corpus

    meta = {"splits": {"train": {"tokens": 1000}, "val": {"tokens": 50}}}
    asked = []
    monkeypatch.setattr(
        corpus,
        "ensure_quickstart_dataset_isolated",
        lambda data_dir, train_vocab_size: asked.append(train_vocab_size) or meta,
    )
    for vocab_size in (4096, 151_936, None):  # the model's vocabulary picks the quickstart's tokenizer
        TokenDataModule(data_dir=str(tmp_path / "q"), quickstart=True, vocab_size=vocab_size).prepare_data()
    assert asked == [4096, None, None]  # a 4096-token BPE trained on the corpus; Qwen3's; Qwen3's
    module = TokenDataModule(data_dir=str(tmp_path / "quickstart"), quickstart=True)
    with caplog.at_level(logging.INFO):
        module.prepare_data()
    text = caplog.text
    assert f"building the quickstart corpus in {tmp_path / 'quickstart'}" in text
    assert "quickstart corpus ready in" in text and "train 1,000 tokens, val 50 tokens" in text
