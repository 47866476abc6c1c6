"""'Train longer', honestly: the learning rates across a resume with a larger max_steps.

* ``wsd``: a fit resumed from ``decay_start.ckpt`` with twice the steps trains exactly as a run planned
  that long from the start — the same learning rate at every step, the same final weights.
* ``cosine``: the end-of-fit summary states the learning rate the resumed fit will use, and it does.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from lit_ffn.cli import main
from lit_ffn.experiments.events import read_scalars
from lit_ffn.training.optim import decay_start, warmup_cosine, warmup_stable_decay
from tests.conftest import tiny_fit_args

LR = 1e-2  # tiny_fit_args' model.lr
MONITOR = "--trainer.callbacks+=lightning.pytorch.callbacks.LearningRateMonitor"
WSD = ("--model.schedule=wsd", "--model.decay_fraction=0.25", "--model.warmup_steps=2", MONITOR)


def run_dir(root: Path) -> Path:
    return root / "runs" / "tiny" / "SwiGLU" / "seed_0"


def lr_trace(root: Path) -> list[tuple[int, float]]:
    """The run's learning rate per step (a step written twice, by a resumed fit: its last write)."""
    return read_scalars(run_dir(root))["vitals/lr/decay"]


def weights(root: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir(root) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not list((run_dir(root) / "checkpoints").glob("last-v*.ckpt"))  # the run's own last.ckpt was replaced
    return ckpt["state_dict"]


@pytest.mark.parametrize(("warmup", "steps", "fraction"), [(2, 8, 0.25), (0, 10, 0.2), (10, 400, 0.2)])
def test_wsd_is_stable_until_the_decay_and_ends_at_the_floor(warmup: int, steps: int, fraction: float) -> None:
    r = 0.1
    m = [warmup_stable_decay(t, warmup, steps, r, fraction) for t in range(steps)]
    start = decay_start(steps, fraction)
    assert start == steps - round(fraction * steps)
    assert m[:warmup] == pytest.approx([(t + 1) / warmup for t in range(warmup)])
    assert m[warmup:start] == [1.0] * (start - warmup)  # the stable phase: the peak, exactly
    assert m[start] == pytest.approx(r + (1 - r) * (1 - math.sqrt(1 / (steps - start))))  # 1 − sqrt cooldown
    assert all(a > b for a, b in zip(m[start - 1 :], m[start:]))
    assert m[-1] == pytest.approx(r)
    longer = [warmup_stable_decay(t, warmup, 2 * steps, r, fraction) for t in range(start)]
    assert longer == m[:start]  # everything before the decay is the same in a run twice as long


def test_wsd_train_longer_from_decay_start_equals_the_longer_run(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    short, reference = tmp_path / "short", tmp_path / "reference"
    assert main(tiny_fit_args(tiny_dataset, short, *WSD, steps=8)) == 0
    out = capsys.readouterr().out
    checkpoints = run_dir(short) / "checkpoints"
    stable = checkpoints / "decay_start.ckpt"
    assert torch.load(stable, map_location="cpu", weights_only=False)["global_step"] == decay_start(8, 0.25) == 6
    command = (
        f"lit_ffn fit --config {run_dir(short) / 'config.yaml'} --ckpt_path {stable} --trainer.max_steps=16"
        "   (train longer)"
    )
    assert command in out
    assert "continues the stable phase from step 6 at lr 1.00e-02 as a 16-step run would, decays from step 12" in out
    assert [lr for _, lr in lr_trace(short)] == pytest.approx([LR * m for m in (0.5, 1, 1, 1, 1, 1, 0.364, 0.1)], 1e-2)

    # the summary's command, as printed
    assert main(["fit", "--config", str(run_dir(short) / "config.yaml"), "--ckpt_path", str(stable),
                 "--trainer.max_steps=16"]) == 0  # fmt: skip
    assert main(tiny_fit_args(tiny_dataset, reference, *WSD, steps=16)) == 0
    assert lr_trace(short) == lr_trace(reference)  # every step, bit for bit, the resumed first step included
    expected = [LR * warmup_stable_decay(t, 2, 16, 0.1, 0.25) for t in range(16)]
    assert [lr for _, lr in lr_trace(reference)] == pytest.approx(expected, rel=1e-6)
    extended, planned = weights(short), weights(reference)
    assert all(torch.equal(extended[key], planned[key]) for key in planned)


def test_cosine_train_longer_says_the_learning_rate_it_resumes_with(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    assert main(tiny_fit_args(tiny_dataset, tmp_path, "--model.warmup_steps=2", MONITOR, steps=8)) == 0
    out = capsys.readouterr().out
    config = run_dir(tmp_path) / "config.yaml"
    assert f"lit_ffn fit --config {config} --ckpt_path last --trainer.max_steps=16   (train longer)" in out
    hint = re.search(r"step 8 trains at lr ([0-9.e+-]+), step 7 trained at ([0-9.e+-]+) — a re-warm", out)
    assert hint is not None, out
    promised, floor = float(hint.group(1)), float(hint.group(2))
    assert floor == pytest.approx(LR * 0.1, rel=1e-2)  # the cosine's last step: the floor
    assert promised == pytest.approx(LR * warmup_cosine(8, 2, 16, 0.1), rel=1e-2)

    assert main(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_steps=16"]) == 0
    trace = dict(lr_trace(tmp_path))
    assert trace[7] == pytest.approx(floor, rel=1e-2)
    assert trace[8] == pytest.approx(promised, rel=1e-2)  # the first resumed step: the new schedule's, as said
    assert [trace[t] for t in range(8, 16)] == pytest.approx([LR * warmup_cosine(t, 2, 16, 0.1) for t in range(8, 16)])
