"""Weight averaging through Lightning's EMAWeightAveraging (lit_ffn.training.averaging): the final
evaluation scores the average, which equals the EMA computed by hand; a resumed fit continues it exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from lit_ffn.cli import main
from tests.conftest import tiny_fit_args

DECAY = 0.6
EMA = ["--averaging=lightning.pytorch.callbacks.EMAWeightAveraging", f"--averaging.decay={DECAY}"]
EVERY_STEP = ["--checkpoint.every_n_train_steps=1", "--checkpoint.save_top_k=-1"]
REPO = Path(__file__).resolve().parents[2]


def run_dir(root: Path) -> Path:
    return next((root / "runs").rglob("config.yaml")).parent


def step_checkpoints(run: Path) -> dict[int, dict]:
    """{step: checkpoint} of the step-named checkpoints (save_top_k=-1)."""
    out = {}
    for path in (run / "checkpoints").glob("*step=*.ckpt"):
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        out[int(ckpt["global_step"])] = ckpt
    return out


def test_final_evaluation_scores_the_ema_computed_by_hand(tiny_dataset: Path, tmp_path: Path) -> None:
    from lit_ffn.experiments.final_eval import _losses, evaluate_run
    from lit_ffn.inference.loading import build_decoder

    assert main(tiny_fit_args(tiny_dataset, tmp_path, *EMA, *EVERY_STEP, steps=3)) == 0
    run = run_dir(tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["averaging"]["class_path"].endswith("EMAWeightAveraging")
    steps = step_checkpoints(run)
    assert sorted(steps) == [1, 2, 3]
    # θ̄_1 = θ_1, θ̄_k = d·θ̄_{k−1} + (1 − d)·θ_k over the trained weights θ_k after each step
    ema = {k: v.clone() for k, v in steps[1]["current_model_state"].items()}
    for k in (2, 3):
        ema = {name: DECAY * ema[name] + (1 - DECAY) * steps[k]["current_model_state"][name] for name in ema}
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 3 and last.keys() >= {"current_model_state", "averaging_state"}
    for name, value in ema.items():
        torch.testing.assert_close(last["state_dict"][name], value, rtol=0, atol=1e-7, msg=name)
    # the average is not the trained model: the test below could tell them apart
    assert any(not torch.equal(last["state_dict"][n], steps[3]["current_model_state"][n]) for n in ema)

    record = evaluate_run(run, device="cpu")
    assert record["averaged"] is True and record["averaging"]["init_args"]["decay"] == DECAY
    model = last["hyper_parameters"]
    from lit_ffn.data.datamodule import TokenDataModule, ValBlocks

    data = TokenDataModule(data_dir=str(tiny_dataset), seq_len=32)
    blocks = ValBlocks(data.location.split("val"), 33, data.num_blocks("val"), 8)
    by_hand = _losses(build_decoder(model, ema, run), blocks, 1024, "cpu")
    trained = _losses(build_decoder(model, steps[3]["current_model_state"], run), blocks, 1024, "cpu")
    assert record["block_losses"] == pytest.approx(by_hand, rel=0, abs=1e-6)
    assert record["block_losses_current"] == pytest.approx(trained, rel=0, abs=1e-6)
    assert abs(record["loss"] - record["loss_current"]) > 1e-4


def test_resume_with_averaging_is_exact(tiny_dataset: Path, tmp_path: Path) -> None:
    """4 steps straight vs 2 steps + resume from the step-2 checkpoint: the same averaged and trained weights."""
    args = tiny_fit_args(tiny_dataset, tmp_path, *EMA, "--checkpoint.every_n_train_steps=2",
                         "--checkpoint.save_top_k=-1", steps=4)  # fmt: skip
    assert main(args) == 0
    run = run_dir(tmp_path)
    straight = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    step2 = next(p for p in (run / "checkpoints").glob("*step=2*.ckpt"))
    assert main(["fit", "--config", str(run / "config.yaml"), "--ckpt_path", str(step2)]) == 0
    resumed = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["global_step"] == straight["global_step"] == 4
    for key in ("state_dict", "current_model_state", "averaging_state"):
        assert resumed[key].keys() == straight[key].keys(), key
        for name in straight[key]:
            assert torch.equal(resumed[key][name], straight[key][name]), f"{key}: {name}"


def test_averaging_composes_with_a_base_config_and_is_refused_under_fsdp(tmp_path: Path, capsys) -> None:
    from lit_ffn.training.config import FitConfigParser

    parser = FitConfigParser()
    base = ["--config", str(REPO / "configs" / "quickstart.yaml")]
    config = parser.parse([*base, "--config", str(REPO / "configs" / "averaging" / "ema.yaml")])
    assert config.averaging.class_path == "lightning.pytorch.callbacks.EMAWeightAveraging"
    assert len(config.trainer.callbacks) == 5  # the base config's callbacks are all still there
    assert parser.parse(base).averaging is None  # off by default
    fsdp = ["--config", str(REPO / "configs" / "strategy" / "fsdp2.yaml"), "--trainer.devices=2"]
    argv = ["fit", *base, "--config", str(REPO / "configs" / "averaging" / "ema.yaml"), *fsdp,
            f"--trainer.logger.init_args.save_dir={tmp_path}"]  # fmt: skip
    assert main(argv) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lit_ffn: error:")]
    assert "cannot average sharded parameters" in line
