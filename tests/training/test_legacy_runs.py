"""Runs made before the package was regrouped (lit_ffn 4cee13f) still load, validate, train and resume.

``tests/fixtures/legacy_run_4cee13f/`` is a run directory written by that commit's ``lit_ffn fit``
(DynamicGEGLU, every shipped callback, tiny shape): its ``config.yaml`` names classes by the old
paths (``lit_ffn.callbacks.GateStatistics``, ``lit_ffn.ffn.DynamicGEGLU``), its ``last.ckpt`` pickles
them, and ``expected.json`` holds the validation loss that commit computed from it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from lit_ffn.cli import main
from lit_ffn.data.prepare import prepare_dataset
from lit_ffn.training.lightning_cli import LitFFNCLI
from lit_ffn.training.module import LitDecoder
from tests.conftest import tiny_corpus, write_fineweb_parquet

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_run_4cee13f"


@pytest.fixture(scope="module")
def legacy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset the legacy run trained on, rebuilt from the same documents and tokenizer."""
    root = tmp_path_factory.mktemp("legacy")
    parquet = write_fineweb_parquet(root / "docs.parquet", tiny_corpus())
    prepare_dataset([str(parquet)], root / "data", tokenizer=str(FIXTURE / "tokenizer.json"), val_fraction=0.1)
    return root / "data"


def _relocated(tmp_path: Path, data_dir: Path) -> list[str]:
    """Overrides that keep the legacy run's outputs inside ``tmp_path``."""
    return [
        f"--data.data_dir={data_dir}",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
        "--trainer.enable_progress_bar=false",
    ]


def test_legacy_config_still_names_importable_classes() -> None:
    config = yaml.safe_load((FIXTURE / "config.yaml").read_text())
    paths = [c["class_path"] for c in config["trainer"]["callbacks"]] + [config["model"]["ffn"]["class_path"]]
    assert "lit_ffn.callbacks.GateStatistics" in paths and "lit_ffn.ffn.DynamicGEGLU" in paths
    for path in paths:
        module, _, name = path.rpartition(".")
        assert getattr(__import__(module, fromlist=[name]), name)


def test_legacy_checkpoint_validates_to_the_same_loss(legacy_data: Path, tmp_path: Path) -> None:
    expected = json.loads((FIXTURE / "expected.json").read_text())["val_loss"]
    cli = LitFFNCLI(
        args=[
            "validate",
            "--config",
            str(FIXTURE / "config.yaml"),
            "--ckpt_path",
            str(FIXTURE / "last.ckpt"),
            *_relocated(tmp_path, legacy_data),
        ]
    )
    assert float(cli.trainer.callback_metrics["val/loss"]) == pytest.approx(expected, abs=1e-5)


def test_legacy_checkpoint_loads_as_a_module() -> None:
    module = LitDecoder.load_from_checkpoint(FIXTURE / "last.ckpt", map_location="cpu")
    assert module.ffn_name == "DynamicGEGLU" and module.hparams.dim == 16


def test_legacy_run_resumes_and_a_new_fit_starts_from_its_config(legacy_data: Path, tmp_path: Path) -> None:
    # The checkpoint's loader state names the data directory it read; point it at the rebuilt copy.
    checkpoint = torch.load(FIXTURE / "last.ckpt", map_location="cpu", weights_only=False)
    for state in checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]:
        state["dataset"]["input_dir_path"] = str(legacy_data / "train")
    relocated = tmp_path / "last.ckpt"
    torch.save(checkpoint, relocated)
    args = ["fit", "--config", str(FIXTURE / "config.yaml"), *_relocated(tmp_path, legacy_data)]
    assert main([*args, "--ckpt_path", str(relocated), "--trainer.max_steps=4"]) == 0
    resumed = torch.load(
        tmp_path / "runs" / "tiny" / "DynamicGEGLU" / "seed_0" / "checkpoints" / "last.ckpt",
        map_location="cpu",
        weights_only=False,
    )
    assert resumed["global_step"] == 4
    shutil.rmtree(tmp_path / "runs")
    assert main([*args, "--trainer.max_steps=2"]) == 0  # a fresh run from the legacy config
