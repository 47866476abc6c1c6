"""The `lit_ffn` command line: config composition, FFN swapping, user FFNs, clear errors, a real fit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from lit_ffn.cli import main
from lit_ffn.ffn import BUILTIN_FFNS
from tests.conftest import tiny_fit_args

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = str(REPO / "configs" / "quickstart.yaml")


def printed_config(capsys: pytest.CaptureFixture, *args: str) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def error_line(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run the CLI expecting a user error; return its single error line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("lit_ffn: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("name", sorted(BUILTIN_FFNS))
def test_every_ffn_config_composes_with_the_quickstart(capsys: pytest.CaptureFixture, name: str) -> None:
    config = printed_config(capsys, "--config", QUICKSTART, "--config", str(REPO / "configs" / "ffn" / f"{name}.yaml"))
    expected = yaml.safe_load((REPO / "configs" / "ffn" / f"{name}.yaml").read_text())["model"]["ffn"]
    assert config["model"]["ffn"]["class_path"] == expected["class_path"]
    for key, value in expected.get("init_args", {}).items():
        assert config["model"]["ffn"]["init_args"][key] == value
    assert config["model"]["dim"] == 96  # the base config is kept


def test_later_ffn_config_resets_gelu_approximation(capsys: pytest.CaptureFixture) -> None:
    ffn = REPO / "configs" / "ffn"
    config = printed_config(
        capsys, "--config", QUICKSTART, "--config", str(ffn / "geglu_tanh.yaml"), "--config", str(ffn / "geglu.yaml")
    )
    assert config["model"]["ffn"]["init_args"]["approximate"] == "none"


def test_one_flag_swaps_the_ffn(capsys: pytest.CaptureFixture) -> None:
    config = printed_config(
        capsys, "--config", QUICKSTART, "--model.ffn=lit_ffn.ffn.DynamicGEGLU", "--model.ffn.s_init=0.2"
    )
    assert config["model"]["ffn"]["class_path"] == "lit_ffn.ffn.DynamicGEGLU"
    assert config["model"]["ffn"]["init_args"]["s_init"] == 0.2


USER_FFN = textwrap.dedent(
    '''
    import torch
    from torch import nn

    class ScaledReLU(nn.Module):
        """A user's FFN living outside lit_ffn: y = W2 relu(W1 x) * scale."""

        def __init__(self, dim: int, hidden_mult: int = 2, scale: float = 1.0):
            super().__init__()
            self.hidden_mult, self.scale = hidden_mult, scale
            self.w1 = nn.Linear(dim, hidden_mult * dim)
            self.w2 = nn.Linear(hidden_mult * dim, dim)

        def forward(self, x):
            return self.w2(torch.relu(self.w1(x))) * self.scale
    '''
)


def test_user_ffn_from_its_own_module_trains(tmp_path: Path, tiny_dataset: Path, monkeypatch, capsys) -> None:
    (tmp_path / "my_ffns.py").write_text(USER_FFN)
    monkeypatch.syspath_prepend(str(tmp_path))
    args = tiny_fit_args(tiny_dataset, tmp_path, "--model.ffn=my_ffns.ScaledReLU", "--model.ffn.hidden_mult=3", steps=2)

    from lit_ffn.training.lightning_cli import LitFFNCLI

    cli = LitFFNCLI(args=args[1:], run=False)
    ffns = [layer.ffn for layer in cli.model.model.layers]
    assert [type(f).__name__ for f in ffns] == ["ScaledReLU", "ScaledReLU"]
    assert all(f.hidden_mult == 3 for f in ffns) and ffns[0] is not ffns[1]  # one fresh instance per layer

    assert main(args) == 0
    saved = yaml.safe_load(next((tmp_path / "runs").rglob("config.yaml")).read_text())
    assert saved["model"]["ffn"]["class_path"] == "my_ffns.ScaledReLU"
    state = torch.load(next(tmp_path.rglob("last.ckpt")), map_location="cpu", weights_only=False)["state_dict"]
    assert "model.layers.0.ffn.w1.weight" in state


def test_fit_writes_config_checkpoint_and_metrics_then_validate(tmp_path: Path, tiny_dataset: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(tiny_fit_args(tiny_dataset, tmp_path, steps=6)) == 0
    run_dir = next((tmp_path / "runs").rglob("config.yaml")).parent
    ckpt = next(run_dir.rglob("last.ckpt"))
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "val/loss", "val/ppl"} <= tags
    val = [e.value for e in events.Scalars("val/loss")]
    assert [e.step for e in events.Scalars("val/loss")] == [2, 4, 6]  # written at the optimizer step it follows
    assert val[-1] < val[0]
    ppl = events.Scalars("val/ppl")[-1].value
    assert ppl == pytest.approx(torch.tensor(val[-1]).exp().item(), rel=1e-4)
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] == 6

    saved_config = run_dir / "config.yaml"
    assert main(["validate", "--config", str(saved_config), "--ckpt_path", str(ckpt), "--trainer.logger=false"]) == 0


def test_run_directory_is_experiment_variant_seed(tmp_path: Path, tiny_dataset: Path) -> None:
    args = tiny_fit_args(
        tiny_dataset,
        tmp_path,
        "--model.ffn=lit_ffn.ffn.GEGLU",
        "--model.ffn.approximate=tanh",
        "--seed_everything=3",
        steps=1,
    )
    assert main(args) == 0
    run_dir = tmp_path / "runs" / "tiny" / "GEGLU-approximate=tanh" / "seed_3"
    assert (run_dir / "config.yaml").exists() and (run_dir / "checkpoints" / "last.ckpt").exists()


def test_fit_refuses_to_overwrite_a_run_and_resumes_from_its_config(tmp_path: Path, tiny_dataset: Path, capsys) -> None:
    args = tiny_fit_args(tiny_dataset, tmp_path, steps=2)
    assert main(args) == 0
    run_dir = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0"
    line = error_line(capsys, args)
    assert str(run_dir) in line and "--ckpt_path last" in line

    assert main(["fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "last", "--trainer.max_steps=4"]) == 0
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 4


def test_quickstart_config_runs_end_to_end(tmp_path: Path) -> None:
    """The README's quickstart command, shortened: builds the offline corpus and trains 2 steps."""
    data_dir = tmp_path / "not" / "yet" / "quickstart"  # parents are created
    argv = [
        "fit",
        "--config",
        QUICKSTART,
        f"--data.data_dir={data_dir}",
        "--data.batch_size=2",
        "--data.seq_len=64",
        "--trainer.max_steps=2",
        "--trainer.limit_val_batches=1",
        "--trainer.val_check_interval=2",
        f"--trainer.logger.init_args.save_dir={tmp_path}/runs",
        "--trainer.enable_progress_bar=false",
    ]
    assert main(argv) == 0
    assert (data_dir / "meta.json").exists()
    assert next((tmp_path / "runs").rglob("last.ckpt")).stat().st_size > 0


# ---------------------------------------------------------------- errors
def test_unknown_ffn_is_one_line_listing_builtins(capsys: pytest.CaptureFixture) -> None:
    line = error_line(capsys, ["fit", "--config", QUICKSTART, "--model.ffn=lit_ffn.ffn.SwiGlu"])
    assert "unknown FFN class 'lit_ffn.ffn.SwiGlu'" in line
    assert "lit_ffn.ffn.SwiGLU" in line and "lit_ffn.ffn.DynamicGEGLU" in line


def test_ffn_config_name_used_as_class_gets_a_hint(capsys: pytest.CaptureFixture) -> None:
    line = error_line(capsys, ["fit", "--config", QUICKSTART, "--model.ffn=dynamic_geglu"])
    assert "configs/ffn/dynamic_geglu.yaml" in line


def test_wrong_init_argument_names_what_is_accepted(capsys: pytest.CaptureFixture) -> None:
    line = error_line(capsys, ["fit", "--config", QUICKSTART, "--model.ffn.init_args.hiden_dim=64"])
    assert "no init argument 'hiden_dim'" in line and "hidden_dim" in line


def test_bad_init_argument_value(capsys: pytest.CaptureFixture) -> None:
    line = error_line(
        capsys,
        [
            "fit",
            "--config",
            QUICKSTART,
            "--config",
            str(REPO / "configs/ffn/geglu.yaml"),
            "--model.ffn.approximate=fast",
        ],
    )
    assert "approximate" in line and "fast" in line


def test_missing_data_dir_says_how_to_create_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "nope"
    line = error_line(capsys, tiny_fit_args(missing, tmp_path))
    assert str(missing) in line and "lit_ffn prepare" in line


def test_dataset_vocabulary_larger_than_model_is_refused(tmp_path: Path, tiny_dataset: Path, capsys) -> None:
    line = error_line(capsys, tiny_fit_args(tiny_dataset, tmp_path, "--model.vocab_size=100"))
    assert "vocab_size=100" in line and "384" in line


def test_console_script_error_exit_code_and_single_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lit_ffn.cli", "fit", "--config", QUICKSTART, "--model.ffn=nope.Nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("lit_ffn: error: unknown FFN class 'nope.Nope'")


def test_random_seed_reaches_the_data_shuffle(tmp_path: Path, tiny_dataset: Path) -> None:
    from lit_ffn.training.lightning_cli import LitFFNCLI

    args = tiny_fit_args(tiny_dataset, tmp_path, "--seed_everything=true")[1:]
    cli = LitFFNCLI(args=args, run=False)
    seed = cli.config.seed_everything
    assert isinstance(seed, int) and not isinstance(seed, bool)
    assert cli.datamodule.seed == seed


def test_refused_resume_keeps_the_runs_config(tmp_path: Path, tiny_dataset: Path, capsys) -> None:
    assert main(tiny_fit_args(tiny_dataset, tmp_path, steps=2)) == 0
    run_dir = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0"
    before = (run_dir / "config.yaml").read_text()
    line = error_line(
        capsys,
        [
            "fit",
            "--config",
            str(run_dir / "config.yaml"),
            "--ckpt_path",
            "last",
            "--trainer.max_steps=4",
            "--data.num_workers=2",
        ],
    )
    assert "num_workers" in line
    assert (run_dir / "config.yaml").read_text() == before


COMMANDS = (
    "commands: fit, validate, test, prepare, ablate, params, bench, consolidate, plots, generate, evaluate, export"
)


def test_mistyped_command_suggests_the_closest(capsys: pytest.CaptureFixture) -> None:
    line = error_line(capsys, ["prepar", "--input", "x.txt"])
    assert line == f"lit_ffn: error: unknown command 'prepar' (did you mean 'prepare'?); {COMMANDS}"
    line = error_line(capsys, ["xyzzy"])
    assert line == f"lit_ffn: error: unknown command 'xyzzy'; {COMMANDS}"  # nothing close: no suggestion


def test_predict_is_not_a_command(capsys: pytest.CaptureFixture) -> None:
    """LitDecoder has no predict_step: `predict` is refused like any unknown command, not handed to Lightning."""
    line = error_line(capsys, ["predict", "--config", QUICKSTART])
    assert line.startswith("lit_ffn: error: unknown command 'predict'") and line.endswith(COMMANDS)
    assert main(["--help"]) == 0
    assert "predict" not in capsys.readouterr().out


def test_usage_without_arguments_is_an_error_help_is_not(capsys: pytest.CaptureFixture) -> None:
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: lit_ffn {fit,validate,test,prepare,")
    for flag in ("-h", "--help"):
        assert main([flag]) == 0
        out, err = capsys.readouterr()
        assert err == "" and out.startswith("usage: lit_ffn")
        assert "lit_ffn bench --config" in out and "lit_ffn plots profile|series|curves" in out
