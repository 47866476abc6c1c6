"""Each private Lightning attribute lit_ffn relies on (``lit_ffn/_lightning.py``) still means what it did.

When a Lightning upgrade renames or changes one of them, this file fails first, naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from lit_ffn import _lightning
from lit_ffn.ffn import SwiGLU
from lit_ffn.training.module import LitDecoder

VOCAB, SEQ = 64, 8


class Probe(L.Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int, bool, bool]] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.seen.append(
            (
                batch_idx,
                _lightning.logging_step(trainer),
                _lightning.is_accumulating(trainer),
                _lightning.should_update_logs(trainer),
            )
        )


def test_private_lightning_attributes_behave_as_lit_ffn_assumes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = LitDecoder(ffn=SwiGLU, vocab_size=VOCAB, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8)
    probe = Probe()
    logger = TensorBoardLogger(str(tmp_path), name="t", version="v")
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=2,
        accumulate_grad_batches=2,
        log_every_n_steps=2,
        logger=logger,
        callbacks=[probe],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        precision="bf16-mixed",
    )
    blocks = torch.randint(0, VOCAB, (16, SEQ + 1), generator=torch.Generator().manual_seed(0))
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(blocks, batch_size=2))

    # micro-batches 0..3, two per optimizer step; optimizer step k (0-based) logs at x = k during its hooks
    assert [(i, accumulating) for i, _, accumulating, _ in probe.seen] == [(0, True), (1, False), (2, True), (3, False)]
    assert [step for _, step, _, _ in probe.seen] == [0, 0, 1, 1]
    assert isinstance(probe.seen[0][3], bool)
    assert _lightning.compute_dtype(trainer) is torch.bfloat16

    _lightning.skip_automatic_hparams(module)
    assert module._log_hyperparams is False
    writer = _lightning.tensorboard_file_writer(logger)
    assert callable(getattr(writer, "add_summary", None))

    optimizer = torch.optim.AdamW(module.parameters(), fused=True)
    assert getattr(optimizer, "_step_supports_amp_scaling", False)  # why the workaround exists
    _lightning.let_lightning_unscale(optimizer)
    assert optimizer._step_supports_amp_scaling is False

    fresh = LitDecoder(ffn=SwiGLU, vocab_size=VOCAB, dim=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8)
    configured = _lightning.configure_optimizers_without_trainer(fresh, max_steps=10)
    assert isinstance(configured["optimizer"], torch.optim.AdamW) and fresh._trainer is None
