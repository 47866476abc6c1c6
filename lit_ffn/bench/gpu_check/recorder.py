"""``StepLog``: the callback the check's fits run with (``--trainer.callbacks+=``), so the reference and
the resumed run can be compared step by step.

One JSON line per training batch and rank in ``<out_dir>/rank<r>.jsonl``: the optimizer step it
starts, a SHA-1 of the token block (no batch repeated or skipped), the loss as ``float.hex`` (exact),
and whether this process resumed from a checkpoint; one line per validation with ``val/loss``.
Kept in the run's ``config.yaml``, so a resumed run logs into the same file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch


class StepLog(L.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.row: dict[str, Any] = {}

    def _write(self, trainer: L.Trainer, row: dict[str, Any]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / f"rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        digest = hashlib.sha1(batch.detach().cpu().numpy().tobytes()).hexdigest()
        self.row = {"step": trainer.global_step, "batch": digest, "resumed": trainer.ckpt_path is not None}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.row["loss"] = float(loss.detach().float()).hex()
        self._write(trainer, self.row)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get("val/loss")
        if value is not None and not trainer.sanity_checking:
            row = {"val_step": trainer.global_step, "val_loss": float(torch.as_tensor(value).float()).hex()}
            self._write(trainer, {**row, "resumed": trainer.ckpt_path is not None})


def read(out_dir: Path, rank: int) -> list[dict[str, Any]]:
    path = Path(out_dir) / f"rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


__all__ = ["StepLog", "read"]
