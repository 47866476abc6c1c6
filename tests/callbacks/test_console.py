"""What fit prints: a step-based progress bar, real FLOPs in the model summary, the end-of-run block."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from lit_ffn.callbacks.model_summary import ModelSummary, training_flops_per_step
from lit_ffn.callbacks.progress import StepProgressBar
from lit_ffn.cli import main
from lit_ffn.training.console import RANK_ZERO_LOGGER, QuietConsole
from lit_ffn.training.lightning_cli import LitFFNCLI
from tests.conftest import tiny_fit_args


def test_progress_bar_counts_optimizer_steps() -> None:
    bar = StepProgressBar()
    bar._trainer = SimpleNamespace(global_step=7, max_steps=30)  # what the Trainer attaches
    assert bar._get_train_description(0).strip() == "step 7/30"
    bar._trainer = SimpleNamespace(global_step=7, max_steps=-1)
    assert bar._get_train_description(0).strip() == "step 7"


def test_fit_uses_lit_ffn_console_callbacks_and_prints_the_summary_block(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = tiny_fit_args(tiny_dataset, tmp_path, "--trainer.enable_progress_bar=true",
                         "--trainer.enable_model_summary=true", steps=4)  # fmt: skip
    cli = LitFFNCLI(args=args[1:], run=False)
    kinds = {type(c) for c in cli.trainer.callbacks}
    assert StepProgressBar in kinds and ModelSummary in kinds
    trainer = SimpleNamespace(datamodule=cli.datamodule, accumulate_grad_batches=1, world_size=1)
    per_step = training_flops_per_step(trainer, cli.model)  # type: ignore[arg-type]
    assert per_step == int(cli.model.flops_per_token(32) * 4 * 32)

    capsys.readouterr()
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("lightning.pytorch").addHandler(handler)  # what Lightning's console handler gets
    try:
        assert main(args) == 0
    finally:
        logging.getLogger("lightning.pytorch").removeHandler(handler)
    out = capsys.readouterr().out
    assert "`Trainer.fit` stopped: `max_steps=4` reached." in lines  # the handler did see Lightning's lines
    assert not [line for line in lines if "Tip:" in line or "litlogger" in line or "litmodels" in line]
    assert not [line for line in lines if line.startswith(("GPU available: False", "TPU available: False"))]
    run_dir = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0"
    assert "| model" in out or "model" in out
    assert "training FLOPs per optimizer step" in out and "Total FLOPs: 25.3 M" in out  # = per_step
    block = out[out.index(f"lit_ffn: run {run_dir}") :].splitlines()
    assert block[1].startswith("  val/loss ") and "(step 2) ->" in block[1] and block[1].endswith("(step 4)")
    assert block[2].startswith("  unigram    ")  # the dataset's reference line (docs/data.md)
    assert block[3].startswith("  trained    4 optimizer steps, 512 tokens in ")
    assert block[4] == f"  next       tensorboard --logdir {tmp_path / 'runs' / 'tiny'}"
    assert f"lit_ffn fit --config {run_dir / 'config.yaml'} --ckpt_path last --trainer.max_steps=8" in block[5]


def _passes(message: str) -> bool:
    return QuietConsole().filter(logging.LogRecord(RANK_ZERO_LOGGER, logging.INFO, __file__, 0, message, None, None))


def test_quiet_console_keeps_lines_about_a_device_that_is_there() -> None:
    assert not _passes("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](…)")
    assert not _passes("💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels](…)")
    assert not _passes("GPU available: False, used: False")
    assert not _passes("TPU available: False, using: 0 TPU cores")
    assert _passes("GPU available: True (cuda), used: False")  # a GPU the user left unused: said
    assert _passes("GPU available: True (cuda), used: True")
    assert _passes("Seed set to 0")
