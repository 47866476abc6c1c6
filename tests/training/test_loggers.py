"""Every logger with run directories gets lit_ffn's run layout, summary, gate statistics and provenance:
tested with Lightning's CSVLogger (W&B and MLflow are not installed here)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
import yaml

from lit_ffn.cli import main
from tests.conftest import tiny_fit_args

CSV = (
    "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
    "--trainer.callbacks+=lit_ffn.callbacks.GateStatistics",
    "--trainer.callbacks.every_n_steps=1",
    "--trainer.callbacks.histogram_every_n_steps=2",
    "--trainer.callbacks+=lit_ffn.callbacks.HyperparameterSummary",
)


def test_a_csv_run_has_the_run_layout_the_summary_and_the_gate_statistics(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = tiny_fit_args(tiny_dataset, tmp_path, *CSV, steps=4)  # save_dir and name as for TensorBoard
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("lightning.pytorch").addHandler(handler)
    try:
        assert main(args) == 0
    finally:
        logging.getLogger("lightning.pytorch").removeHandler(handler)
    out = capsys.readouterr().out

    run_dir = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0"  # not version_0
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoints", "config.yaml", "hparams.yaml", "metrics.csv", "provenance.json",
    ]  # fmt: skip
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((run_dir / "provenance.json").read_text())  # the code that trained it
    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    assert hparams["ffn"] == "SwiGLU" and hparams["seed"] == 0 and hparams["lr"] == 1e-2

    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0])
    assert {"train/loss", "val/loss", "z_gates/layer_00/gate_mean", "z_gates/layer_01/gate_std"} <= columns
    assert sorted({int(r["step"]) for r in rows if r["z_gates/layer_00/gate_mean"]}) == [0, 1, 2, 3]
    assert [float(r["val/loss"]) for r in rows if r["val/loss"]] and all(
        float(r["train/loss"]) > 0 for r in rows if r["train/loss"]
    )

    notes = [line for line in lines if "cannot store histograms" in line]
    note = (
        "GateStatistics: CSVLogger cannot store histograms, so gate histograms go to no logger of this run; "
        "the statistics (z_gates/layer_XX/*) are logged to every logger"
    )
    assert notes == [note]  # said once, not per histogram step

    block = out[out.index(f"lit_ffn: run {run_dir}\n") :].splitlines()
    assert block[2].startswith("  unigram    ")  # the dataset's reference line (docs/data.md)
    assert block[4] == f"  next       {run_dir / 'metrics.csv'}   (every logged metric, one row per step)"
    assert "tensorboard" not in out
    resume = f"lit_ffn fit --config {run_dir / 'config.yaml'} --ckpt_path last --trainer.max_steps=8"
    assert block[5] == f"             {resume}   (train longer)"

    assert main(resume.split()[1:]) == 0  # the printed command works: same directory, same logger
    with open(run_dir / "metrics.csv") as f:
        resumed = list(csv.DictReader(f))
    assert resumed[: len(rows)] == [{**row, **dict.fromkeys(set(resumed[0]) - set(row), "")} for row in rows]  # kept
    assert sorted({int(r["step"]) for r in resumed if r["train/loss"]}) == list(range(8))
    assert "epoch" not in resumed[0]
    assert not (tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0_2").exists()
