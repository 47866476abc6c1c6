"""Loading any lit_ffn checkpoint: the trained weights, exactly, in the model its config describes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_ffn.cli import main
from lit_ffn.errors import UserError
from lit_ffn.inference.loading import load_model
from lit_ffn.training.module import LitDecoder
from tests.inference.conftest import model_section, write_run
from tests.inference.user_ffn import ScaledTanhMLP

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_run_4cee13f"


def test_a_legacy_run_loads_the_weights_lightning_loads() -> None:
    loaded = load_model(LEGACY / "last.ckpt", tokenizer=str(LEGACY / "tokenizer.json"))
    reference = LitDecoder.load_from_checkpoint(LEGACY / "last.ckpt", map_location="cpu").model.eval()
    assert type(loaded.decoder.layers[0].ffn).__name__ == "DynamicGEGLU"
    for name, tensor in reference.state_dict().items():
        assert torch.equal(loaded.decoder.state_dict()[name], tensor), name
    tokens = torch.tensor([loaded.tokenizer.encode("The list type is mutable.")])
    with torch.no_grad():
        torch.testing.assert_close(loaded.decoder(tokens), reference(tokens), atol=0, rtol=0)
    assert loaded.global_step == 2 and loaded.run_dir is None


def test_a_users_ffn_class_loads_and_generates(tmp_path: Path, tiny_dataset: Path, capsys) -> None:
    spec = {"class_path": "tests.inference.user_ffn.ScaledTanhMLP", "init_args": {"scale": 2.0}}
    run = tmp_path / "runs" / "mine" / "ScaledTanhMLP" / "seed_0"
    ckpt = write_run(run, model_section(spec), tiny_dataset, seed=4)
    loaded = load_model(run)
    ffn = loaded.decoder.layers[1].ffn
    assert isinstance(ffn, ScaledTanhMLP) and ffn.scale == 2.0
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    assert all(torch.equal(loaded.decoder.state_dict()[name.removeprefix("model.")], saved[name]) for name in saved)
    assert loaded.seq_len == 32 and loaded.tokenizer.vocab_size == 384
    capsys.readouterr()
    assert (
        main(["generate", "--ckpt", str(run), "--prompt", "The list", "--max-new-tokens", "5", "--device", "cpu"]) == 0
    )
    assert capsys.readouterr().out.startswith("The list")


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path: Path, tiny_dataset: Path) -> None:
    other = write_run(tmp_path / "a", model_section({"class_path": "lit_ffn.ffn.SwiGLU"}), tiny_dataset)
    state = torch.load(other, weights_only=True)["state_dict"]
    run = tmp_path / "b"
    write_run(run, model_section({"class_path": "lit_ffn.ffn.GEGLU"}, dim=64), tiny_dataset, state_dict=state)
    with pytest.raises(UserError, match=r"do not fit the model its config describes \(GEGLU\): wrong shape"):
        load_model(run)


def test_a_run_whose_dataset_moved_names_the_fix(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, model_section({"class_path": "lit_ffn.ffn.SwiGLU"}), tmp_path / "gone")
    with pytest.raises(
        UserError, match=r"data.data_dir=.*gone .*cannot be read to name its tokenizer.*pass --tokenizer"
    ):
        load_model(run)
    assert load_model(run, tokenizer=str(LEGACY / "tokenizer.json")).tokenizer.vocab_size == 384
