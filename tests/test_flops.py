"""One FLOPs / peak-FLOP/s module: ``vitals/mfu`` and ``lit_ffn bench`` agree on the same device."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_ffn import flops
from lit_ffn.bench import bench
from lit_ffn.callbacks import TokenThroughputMonitor
from lit_ffn.ffn import SwiGLU
from lit_ffn.training.module import LitDecoder

VOCAB, SEQ = 128, 16
SHAPE = {"vocab_size": VOCAB, "dim": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "head_dim": 16}


def test_datasheet_peaks_for_gpus_lightning_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    peak, source = flops.peak_flops(torch.device("cuda"), torch.bfloat16)
    assert peak == 989.4e12 and "datasheet" in source and "H200" in source
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert flops.peak_flops(torch.device("cuda"), torch.bfloat16)[0] == 989.4e12


def test_cpu_has_no_datasheet_peak_and_measures_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flops, "measured_matmul_flops", lambda device, dtype: 2.5e9)
    assert flops.peak_flops(torch.device("cpu"), torch.float32, measure=False)[0] is None
    peak, source = flops.peak_flops(torch.device("cpu"), torch.float32)
    assert peak == 2.5e9 and source.startswith("measured 2048^3 float32 matmul")
    assert flops.peak_flops(torch.device("cpu"), torch.float32, override=7e12) == (7e12, "given")


def test_precision_dtypes() -> None:
    assert flops.precision_dtype("bf16-mixed") is torch.bfloat16
    assert flops.precision_dtype("16-mixed") is torch.float16
    assert flops.precision_dtype(None) is flops.precision_dtype("32-true") is torch.float32


def test_measured_matmul_flops_is_a_rate() -> None:
    assert flops.measured_matmul_flops(torch.device("cpu"), torch.float32, size=64, repeats=1) > 0


def test_train_mfu_and_bench_use_the_same_peak_and_flops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The callback's measured peak and FLOPs per token are the ones ``lit_ffn bench`` reports on this device."""
    monkeypatch.setattr(flops, "measured_matmul_flops", lambda device, dtype: 2.5e9)  # a quiet machine, stated

    torch.manual_seed(0)
    module = LitDecoder(ffn=SwiGLU, lr=1e-2, **SHAPE)
    logger = TensorBoardLogger(str(tmp_path), name="t", version="run")
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=3,
        logger=logger,
        log_every_n_steps=1,
        callbacks=[monitor := TokenThroughputMonitor(available_flops="measure")],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    blocks = torch.randint(0, VOCAB, (16, SEQ + 1), generator=torch.Generator().manual_seed(0))
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(blocks, batch_size=4))
    events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0})
    events.Reload()
    callback_peak = monitor.available_flops  # stated in the log, not a one-point scalar card
    assert not [tag for tag in events.Tags()["scalars"] if "available_flops" in tag]
    mfu = {e.step: e.value for e in events.Scalars("vitals/mfu")}
    rate = {e.step: e.value for e in events.Scalars("vitals/device/tokens_per_sec")}
    step = max(mfu)
    assert mfu[step] == pytest.approx(rate[step] * module.flops_per_token(SEQ) / 2.5e9, rel=1e-4)

    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {"model": {"ffn": {"class_path": "lit_ffn.ffn.SwiGLU"}, **SHAPE}, "data": {"seq_len": SEQ, "batch_size": 4}}
        )
    )
    report = bench(["--config", str(config), "--steps", "1", "--warmup", "1", "--device", "cpu"], log=lambda _: None)
    (result,) = report["results"]
    assert report["peak_flops"] == pytest.approx(callback_peak) == 2.5e9
    assert result["flops_per_token"] == module.flops_per_token(SEQ)
    assert result["mfu"] == pytest.approx(flops.mfu(result["flops_per_token"], result["tokens_per_s"], 2.5e9))
