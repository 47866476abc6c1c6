"""global_batch_size / val_every_n_steps: the protocol per optimizer step on any device count."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lit_ffn.errors import UserError
from lit_ffn.training.batch_plan import device_count, epoch_remainder_warning, plan_batches
from lit_ffn.training.config import FitConfigParser
from lit_ffn.training.lightning_cli import LitFFNCLI
from tests.conftest import tiny_fit_args

PAPER = Path(__file__).resolve().parents[2] / "configs" / "paper" / "qwen3_83m.yaml"


def plan(**overrides):
    args = {
        "micro_batch": 16,
        "devices": 1,
        "num_nodes": 1,
        "accumulate_grad_batches": 1,
        "val_check_interval": None,
        "global_batch_size": 128,
        "val_every_n_steps": 50,
    }
    args.update(overrides)
    return plan_batches(**args)


@pytest.mark.parametrize(
    ("devices", "nodes", "micro", "accumulate", "interval"),
    [
        (1, 1, 16, 8, 400),
        (8, 1, 16, 1, 50),
        (8, 1, 8, 2, 100),
        (4, 2, 16, 1, 50),
        ("0,1", 1, 16, 4, 200),
        ([0, 1, 2, 3], 1, 8, 4, 200),
    ],
)
def test_accumulation_and_validation_interval_follow_the_device_count(
    devices, nodes, micro, accumulate, interval
) -> None:
    result = plan(devices=devices, num_nodes=nodes, micro_batch=micro)
    assert (result.accumulate_grad_batches, result.val_check_interval) == (accumulate, interval)


def test_each_option_works_alone() -> None:
    only_batch = plan(val_every_n_steps=None)
    assert (only_batch.accumulate_grad_batches, only_batch.val_check_interval) == (8, None)
    # without a global batch the given accumulation is kept and multiplies the interval
    only_every = plan(global_batch_size=None, devices="auto", accumulate_grad_batches=3, val_every_n_steps=10)
    assert (only_every.accumulate_grad_batches, only_every.val_check_interval) == (3, 30)


def test_values_that_agree_are_accepted_so_a_saved_run_config_resumes() -> None:
    result = plan(accumulate_grad_batches=8, val_check_interval=400)
    assert (result.accumulate_grad_batches, result.val_check_interval) == (8, 400)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"micro_batch": 48}, r"global_batch_size 128 is not a multiple of data.batch_size 48 × 1 device\(s\) = 48"),
        ({"devices": 3}, r"not a multiple of data.batch_size 16 × 3 device\(s\) = 48"),
        ({"accumulate_grad_batches": 4}, r"trainer.accumulate_grad_batches=4 contradicts global_batch_size 128"),
        (
            {"val_check_interval": 50},
            r"trainer.val_check_interval=50 contradicts val_every_n_steps 50 \(= 400 micro-batches",
        ),
        ({"val_check_interval": 0.5}, r"trainer.val_check_interval=0.5 contradicts"),
        ({"devices": "auto"}, r"needs a definite device count, but trainer.devices='auto'"),
        ({"devices": -1}, r"needs a definite device count, but trainer.devices=-1"),
        ({"global_batch_size": 0}, r"global_batch_size must be a positive number"),
        ({"val_every_n_steps": 0}, r"val_every_n_steps must be a positive number"),
    ],
)
def test_contradictions_and_unknowable_device_counts_are_one_line_errors(overrides, message) -> None:
    with pytest.raises(UserError, match=message) as info:
        plan(**overrides)
    assert "\n" not in str(info.value)


def test_device_count_reads_every_form_lightning_accepts_for_a_fixed_count() -> None:
    assert [device_count(d) for d in (2, "2", [0, 3], (1,), "0,1,2", "1,")] == [2, 2, 2, 1, 3, 1]


@pytest.mark.parametrize(
    ("micro_batches", "accumulate", "max_steps", "expected"),
    [
        (1000, 8, 400, None),  # 400 steps need 3,200 micro-batches, but 1000 = 125 × 8: every epoch ends on a step
        (1003, 8, 100, None),  # 100 steps (800 micro-batches) end inside the first epoch
        (
            1003,
            8,
            126,
            (
                "an epoch holds 1003 micro-batches per process, not a multiple of accumulate_grad_batches=8: "
                "Lightning steps the optimizer on the last 3 of each epoch"
            ),
        ),
        (1003, 8, -1, "set trainer.limit_train_batches=1000 (a multiple of 8)"),
        (3, 4, 10, "use more training data or a larger data.batch_size"),
        (7, 1, 100, None),  # no accumulation, nothing to split
        (float("inf"), 8, 400, None),  # a loader without length has no epoch end
    ],
)
def test_an_epoch_that_ends_inside_an_accumulation_is_reported(micro_batches, accumulate, max_steps, expected) -> None:
    message = epoch_remainder_warning(micro_batches, accumulate, max_steps)
    if expected is None:
        assert message is None
    else:
        assert message is not None and expected in message and "\n" not in message


def resolved(*args: str):
    config = FitConfigParser().parse(["--config", str(PAPER), *args])
    LitFFNCLI._plan_batches(config)
    return config.trainer


@pytest.mark.parametrize(
    ("args", "accumulate", "interval"),
    [((), 8, 400), (("--trainer.devices=8",), 1, 50), (("--trainer.devices=8", "--data.batch_size=8"), 2, 100)],
)
def test_the_paper_protocol_is_128_sequences_and_validation_every_50_steps_on_any_gpu_count(
    args, accumulate, interval
) -> None:
    trainer = resolved(*args)
    assert trainer.accumulate_grad_batches == accumulate
    assert trainer.val_check_interval == interval and trainer.check_val_every_n_epoch is None


def test_fit_steps_and_validates_per_optimizer_step_and_saves_the_derived_settings(
    tmp_path: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = tiny_fit_args(
        tiny_dataset,
        tmp_path,
        "--global_batch_size=8",
        "--val_every_n_steps=2",
        "--trainer.val_check_interval=null",
        steps=4,
    )
    cli = LitFFNCLI(args=args[1:], run=False)
    micro_batches: list[int] = []
    training_step = cli.model.training_step
    cli.model.training_step = lambda batch, batch_idx: (
        micro_batches.append(batch_idx) or training_step(batch, batch_idx)
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    run_dir = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0"
    assert cli.trainer.global_step == 4 and len(micro_batches) == 8  # 8 = 4 sequences × 2 micro-batches per step
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [e.step for e in events.Scalars("val/loss")] == [2, 4]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]
    assert (saved["accumulate_grad_batches"], saved["val_check_interval"]) == (2, 4)

    # the saved config (options and derived values side by side) resumes the run
    from lit_ffn.cli import main

    assert main(["fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "last", "--trainer.max_steps=6"]) == 0
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert sorted({e.step for e in events.Scalars("val/loss")}) == [2, 4, 6]

    # validate/test take no optimizer step: the saved plan does not bind their batch size or device count
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert (
        main(
            [
                "validate",
                "--config",
                str(run_dir / "config.yaml"),
                "--data.batch_size=8",
                "--ckpt_path",
                str(checkpoint),
            ]
        )
        == 0
    )
    # but resuming *training* with another batch size is refused, saying what a resumed run must keep
    assert (
        main(
            [
                "fit",
                "--config",
                str(run_dir / "config.yaml"),
                "--ckpt_path",
                "last",
                "--data.batch_size=8",
                "--trainer.max_steps=8",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "contradicts global_batch_size 8" in err[0]
        and "(resuming: run on the trainer.devices" in err[0]
    ), err
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["batch_size"] == 4  # neither rewrote it


def test_an_epoch_cut_inside_an_accumulation_is_warned_about_in_fit(tmp_path: Path, tiny_dataset: Path) -> None:
    args = tiny_fit_args(tiny_dataset, tmp_path, "--global_batch_size=8", "--trainer.limit_train_batches=3", steps=2)
    cli = LitFFNCLI(args=args[1:], run=False)
    with pytest.warns(
        UserWarning, match=r"an epoch holds 3 micro-batches per process, not a multiple of accumulate_grad_batches=2"
    ):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 2


def test_a_contradiction_stops_fit_with_one_line(
    tmp_path: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture
) -> None:
    from lit_ffn.cli import main

    args = tiny_fit_args(tiny_dataset, tmp_path, "--global_batch_size=8", "--trainer.accumulate_grad_batches=4")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        (
            "lit_ffn: error: trainer.accumulate_grad_batches=4 contradicts global_batch_size 8 "
            "(= data.batch_size 4 × 1 device(s) × 2): drop one of the two"
        )
    ]
    assert not (tmp_path / "runs").exists()
