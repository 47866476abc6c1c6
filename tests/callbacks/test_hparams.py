"""HPARAMS opens on what a researcher compares: a curated set, no jsonargparse or Lightning internals."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from lit_ffn.callbacks.hparams import run_hyperparameters
from lit_ffn.cli import main
from lit_ffn.provenance import git_state, short_commit
from tests.conftest import tiny_fit_args

EXPECTED = [
    "ffn", "seed", "lr", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "vocab_size", "tie_embeddings",
    "warmup_steps", "min_lr_ratio", "schedule", "weight_decay", "init_seed", "seq_len", "batch_size", "data_seed",
    "tokens_per_step",
    "max_steps", "tokens",
    "num_parameters", "num_parameters_non_embedding", "experiment", "ffn_class", "commit", "precision", "world_size",
    "accumulate_grad_batches", "gradient_clip_val",
]  # fmt: skip


def test_the_hparams_session_holds_the_curated_set(tiny_dataset: Path, tmp_path: Path) -> None:
    args = tiny_fit_args(tiny_dataset, tmp_path, "--config", "configs/ffn/geglu_tanh.yaml",
                         "--trainer.callbacks+=lit_ffn.callbacks.HyperparameterSummary", steps=2)  # fmt: skip
    assert main(args) == 0
    run_dir = tmp_path / "runs" / "tiny" / "GEGLU-approximate=tanh" / "seed_0"
    events = EventAccumulator(str(run_dir))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    values = {k: v.string_value or v.number_value or v.bool_value for k, v in session.hparams.items()}
    assert set(values) == set(EXPECTED)
    assert values["ffn"] == "GEGLU-approximate=tanh" and values["ffn_class"] == "GEGLU"
    assert values["tokens"] == values["tokens_per_step"] * 2 == 2 * 4 * 32
    assert values["commit"] == short_commit(git_state())
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [info.name for info in experiment.hparam_infos] == EXPECTED  # the table's columns, ffn first
    # what TensorBoard 2.21 opens on: the five marked `differs` (tests/callbacks/test_tensorboard_browser.py)
    assert [info.name for info in experiment.hparam_infos if info.differs] == [
        "ffn",
        "seed",
        "lr",
        "tokens",
        "num_parameters",
    ]
    assert "epoch" not in events.Tags()["scalars"]  # no constant-0 card first in TensorBoard


def test_run_hyperparameters_of_a_bare_module_needs_no_datamodule() -> None:
    from types import SimpleNamespace

    import torch

    module = torch.nn.Linear(2, 2)
    trainer = SimpleNamespace(datamodule=None, max_steps=5, logger=None, precision="32-true", world_size=1,
                              accumulate_grad_batches=1, gradient_clip_val=None)  # fmt: skip
    params = run_hyperparameters(trainer, module)  # type: ignore[arg-type]
    assert params["ffn"] == "none" and params["max_steps"] == 5 and "tokens" not in params
