"""The model summary at the start of fit, with lit_ffn's FLOPs instead of Lightning's ``FLOPs 0``.

Lightning's summary counts FLOPs by running ``example_input_array`` through the model; LitDecoder has
none (its input is token ids of the run's shape), so every row read ``0``.  lit_ffn knows the number:
:func:`lit_ffn.flops.flops_per_token` × tokens per optimizer step — the training FLOPs (forward +
backward) of one step, the numerator of ``vitals/mfu``.  It is shown on the decoder's row and as the
total; other rows (the loss metrics) show ``—``.  ``lit_ffn fit`` uses this class in place of
Lightning's default summary.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import RichModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count


def training_flops_per_step(trainer: Trainer, pl_module: LightningModule) -> int | None:
    """``flops_per_token(T) · B · T · accumulate · world`` (None: the module or data cannot say)."""
    datamodule = trainer.datamodule
    seq_len, batch = getattr(datamodule, "seq_len", None), getattr(datamodule, "batch_size", None)
    if not hasattr(pl_module, "flops_per_token") or not seq_len or not batch:
        return None
    tokens = int(seq_len) * int(batch) * trainer.accumulate_grad_batches * trainer.world_size
    return int(pl_module.flops_per_token(int(seq_len)) * tokens)


class ModelSummary(RichModelSummary):
    """Lightning's rich model summary; the FLOPs column and total are lit_ffn's training FLOPs per step."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._max_depth:
            return
        summary = self._summary(trainer, pl_module)
        data: list[tuple[str, list[str]]] = summary._get_summary_data()
        per_step = training_flops_per_step(trainer, pl_module)
        if per_step is None:
            data = [(header, values) for header, values in data]
        else:
            names = dict(data).get("Name", [])
            shown = [get_human_readable_count(per_step) if name == "model" else "—" for name in names]
            data = [(header, shown if header == "FLOPs" else values) for header, values in data]
        if trainer.is_global_zero:
            self.summarize(
                data,
                summary.total_parameters,
                summary.trainable_parameters,
                summary.model_size,
                summary.total_training_modes,
                total_flops=per_step or 0,
                **self._summarize_kwargs,
            )

    @staticmethod
    def summarize(*args: Any, **kwargs: Any) -> None:
        RichModelSummary.summarize(*args, **kwargs)
        if kwargs.get("total_flops"):
            print("(FLOPs: training FLOPs per optimizer step, forward + backward: lit_ffn.flops.flops_per_token)")


__all__ = ["ModelSummary", "training_flops_per_step"]
