"""Mistakes on ``lit_ffn fit|validate|test`` end in one line (exit 2) and write nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_ffn.cli import main
from lit_ffn.errors import UserError
from lit_ffn.training.checks import check_checkpoint_path, config_differences
from tests.conftest import tiny_fit_args

REPO = Path(__file__).resolve().parents[2]


def one_line_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("lit_ffn: error:")]
    return line


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ["--model.n_kv_heads=3"],
            "model.n_kv_heads=3: must divide model.n_heads=2 (grouped-query attention), i.e. one of 1, 2",
        ),
        (["--model.head_dim=7"], "model.head_dim=7: must be a positive even number"),
        (["--model.dim=0"], "model.dim=0: must be a positive integer"),
        (["--model.n_layers=0"], "model.n_layers=0: must be a positive integer"),
        (["--model.vocab_size=0"], "model.vocab_size=0: must be a positive integer"),
        (["--model.lr=0"], "model.lr=0.0: must be a finite number > 0"),
        (["--model.lr=-1e-3"], "model.lr=-0.001: must be a finite number > 0"),
        (["--model.betas=[0.9,1.5]"], "model.betas=[0.9, 1.5]: must be two numbers in [0, 1)"),
        (["--model.eps=0"], "model.eps=0.0: must be a finite number > 0"),
        (["--model.weight_decay=-0.1"], "model.weight_decay=-0.1: must be >= 0"),
        (["--model.min_lr_ratio=1.5"], "model.min_lr_ratio=1.5: must be in [0, 1]"),
        (["--model.warmup_steps=-1"], "model.warmup_steps=-1: must be >= 0"),
        (["--model.loss_chunk_size=-2"], "model.loss_chunk_size=-2: must be >= 0"),
        # a loss backend this CPU cannot run: which ones run here (lit_ffn.loss_backends)
        (
            ["--model.loss_impl=cce"],
            "model.loss_impl=cce runs only on CUDA GPUs (Triton kernels) and this run is on cpu",
        ),
        (["--model.loss_impl=liger"], "there use one of chunked, cce_torch_compile (auto picks chunked)"),
        (["--model.loss_impl=fused"], "model.loss_impl: Expected a typing.Literal['auto', 'chunked', 'cce'"),
        (["--model.rope_theta=0"], "model.rope_theta=0.0: must be a finite number > 0"),
        (["--model.norm_eps=0"], "model.norm_eps=0.0: must be a finite number > 0"),
        (["--model.init_std=0"], "model.init_std=0.0: must be a finite number > 0"),
        (["--model.sdpa_gqa=repeat"], "model.sdpa_gqa: Expected a typing.Literal['native', 'expand']"),
        (["--model.ffn.hidden_dim=-5"], "model.ffn (SwiGLU): hidden_dim must be a positive integer or None"),
        (["--model.ffn=lit_ffn.ffn.GEGLU", "--model.ffn.multiple_of=0"], "model.ffn (GEGLU): "),
        (["--data.seq_len=0"], "data.seq_len must be at least 1, got 0"),
        (["--data.batch_size=0"], "data.batch_size must be at least 1, got 0"),
        (["--model.init_seed=-1"], "model.init_seed=-1: must be a non-negative integer"),
        (["--data.seed=-3"], "data.seed=-3: must be a non-negative integer"),
        (["--model.init_seed=abc"], "model.init_seed: "),
        (["--data.seed=1.5"], "data.seed: "),
        (["--trainer.accelerator=gpu"], "trainer.accelerator: "),
        (
            ["--config", str(REPO / "configs" / "strategy" / "fsdp.yaml")],
            "on CPU shard with FSDP2 (--config configs/strategy/fsdp2.yaml)",
        ),
        (["--ckpt_path=last"], "--ckpt_path last: "),
        (["--ckpt_path=missing.ckpt"], "--ckpt_path missing.ckpt: no such file or directory"),
    ],
)
def test_a_bad_value_is_one_line_and_nothing_is_written(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], expected: str
) -> None:
    line = one_line_error(capsys, tiny_fit_args(tiny_dataset, tmp_path, *flags))
    assert expected in line, line
    assert not (tmp_path / "runs").exists()  # refused before anything was built or written


@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_validate_and_test_check_the_checkpoint(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture, subcommand: str
) -> None:
    bad = tmp_path / "notes.ckpt"
    bad.write_text("not a checkpoint")
    args = tiny_fit_args(tiny_dataset, tmp_path)[1:]
    line = one_line_error(capsys, [subcommand, *args, f"--ckpt_path={bad}"])
    assert "not a checkpoint, or a truncated one" in line


def test_checkpoint_path_checks(tmp_path: Path) -> None:
    import torch

    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, good)
    check_checkpoint_path(str(good), None)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match="truncated"):
        check_checkpoint_path(str(truncated), None)
    (tmp_path / "sharded").mkdir()
    with pytest.raises(UserError, match="not a distributed checkpoint"):
        check_checkpoint_path(str(tmp_path / "sharded"), None)
    (tmp_path / "sharded" / ".metadata").write_bytes(b"x")
    check_checkpoint_path(str(tmp_path / "sharded"), None)
    with pytest.raises(UserError, match=f"{tmp_path / 'run'} holds no last.ckpt"):
        check_checkpoint_path("last", tmp_path / "run")
    check_checkpoint_path("last", None)  # no run directory: Lightning's own resolution
    check_checkpoint_path("best", tmp_path)
    check_checkpoint_path(None, tmp_path)


def test_a_new_fit_over_a_finished_run_says_what_differs_and_how_to_start_another(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(tiny_fit_args(tiny_dataset, tmp_path, steps=2)) == 0
    run_dir = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0"
    before = (run_dir / "config.yaml").read_text()
    line = one_line_error(capsys, tiny_fit_args(tiny_dataset, tmp_path, "--model.dim=64", "--model.lr=0.02", steps=2))
    assert f"run directory {run_dir} already holds checkpoints/last.ckpt" in line
    assert "model.dim 32 → 64" in line and "model.lr 0.01 → 0.02" in line
    assert f"`lit_ffn fit --config {run_dir / 'config.yaml'} --ckpt_path last`" in line
    assert line.endswith("--trainer.logger.init_args.version=SwiGLU/seed_0_2")
    assert (run_dir / "config.yaml").read_text() == before
    # the suggested flag works
    assert (
        main(tiny_fit_args(tiny_dataset, tmp_path, "--trainer.logger.init_args.version=SwiGLU/seed_0_2", steps=2)) == 0
    )
    assert (run_dir.parent / "seed_0_2" / "checkpoints" / "last.ckpt").exists()


def test_config_differences_are_flat_keys_and_skip_where_a_run_goes() -> None:
    saved = {"model": {"dim": 128, "lr": 0.003}, "trainer": {"logger": {"save_dir": "a"}, "max_steps": 30}}
    current = {"model": {"dim": 256, "lr": 0.003}, "trainer": {"logger": {"save_dir": "b"}, "max_steps": 40}}
    assert config_differences(saved, current) == ["model.dim 128 → 256", "trainer.max_steps 30 → 40"]
    many = config_differences({f"k{i}": i for i in range(10)}, {f"k{i}": -i - 1 for i in range(10)}, limit=3)
    assert len(many) == 4 and many[-1] == "… 7 more"


def test_the_missing_dataset_hint_names_a_directory_prepare_would_write(
    tiny_dataset: Path, tiny_tokenizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from tests.conftest import tiny_corpus, write_fineweb_parquet

    busy = tmp_path / "notes"
    busy.mkdir()
    (busy / "todo.txt").write_text("not a dataset")
    line = one_line_error(capsys, tiny_fit_args(busy, tmp_path))
    target = busy / "dataset"
    assert f"--output {target}` and set data.data_dir={target}" in line
    parquet = write_fineweb_parquet(tmp_path / "docs.parquet", tiny_corpus(40))
    prepare = ["prepare", "--input", str(parquet), "--output", str(target), "--tokenizer", str(tiny_tokenizer)]
    assert main([*prepare, "--val-fraction", "0.2"]) == 0  # the command the hint gives works
    assert (busy / "todo.txt").read_text() == "not a dataset"


def test_a_warmup_longer_than_the_run_is_a_warning_not_an_error() -> None:
    from lit_ffn.training.checks import schedule_warning

    assert "never reaches its peak" in schedule_warning(4, 2)
    assert schedule_warning(4, 4) is not None and schedule_warning(3, 4) is None and schedule_warning(0, -1) is None


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--trainer.max_steps=-5", "`max_steps` must be a non-negative integer or -1"),
        ("--checkpoint.every_n_train_steps=-1", "Invalid value for every_n_train_steps=-1"),
    ],
)
def test_lightning_own_value_checks_are_one_line(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, expected: str
) -> None:
    line = one_line_error(capsys, tiny_fit_args(tiny_dataset, tmp_path, flag))
    assert expected in line
    assert not (tmp_path / "runs").exists()
