"""`lit_ffn ablate`: a tiny study end to end (crash, resume), the report's contents, commands and SLURM script.

Real fits run in-process (``in_process_launcher``) to keep the suite fast; one
test uses the default subprocess launcher to show that a hard crash of one run
does not end the study.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lit_ffn.errors import UserError
from lit_ffn.experiments import ablate
from lit_ffn.experiments import report as ablation_report
from lit_ffn.experiments import study as study_module
from lit_ffn.experiments.ablate import in_process_launcher, subprocess_launcher
from lit_ffn.experiments.study import DONE, Pair, Study
from tests.conftest import TINY_VOCAB

TINY_MODEL = {"vocab_size": TINY_VOCAB, "dim": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "head_dim": 16}


def write_base_config(path: Path, data_dir: Path, steps: int = 2) -> Path:
    """A seconds-long base config on the tiny dataset: validation after every step, a checkpoint every step."""
    config = {
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": steps,
            "val_check_interval": 1,
            "check_val_every_n_epoch": None,
            "limit_val_batches": 2,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
        "checkpoint": {"every_n_train_steps": 1},
        "model": {**TINY_MODEL, "lr": 1e-2},
        "data": {"data_dir": str(data_dir), "seq_len": 32, "batch_size": 4},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def final_val_loss(run_dir: Path) -> float:
    """The last val/loss of a run, read straight from its TensorBoard events (independent of lit_ffn.experiments.ablate)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = []
    for f in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f))
        acc.Reload()
        if "val/loss" in acc.Tags()["scalars"]:
            points += [(e.step, e.wall_time, e.value) for e in acc.Scalars("val/loss")]
    return max(points)[2]


def whole_split_loss(run_dir: Path) -> float:
    """Mean of a run's per-block final losses (final_eval.json)."""
    losses = json.loads((run_dir / "final_eval.json").read_text())["block_losses"]
    return sum(losses) / len(losses)


def ckpt_step(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]


class CountingLauncher:
    """In-process fits, recording every launch; ``crash`` = a pair whose first launch dies mid-training."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, crash: tuple[str, int] | None = None) -> None:
        self.monkeypatch, self.crash, self.launched = monkeypatch, crash, []

    def __call__(self, args: list[str], log_path: Path) -> int:
        self.launched.append(args)
        version = next((a.split("=", 1)[1] for a in args if a.startswith("--trainer.logger.init_args.version=")), "")
        if self.crash and version == f"{self.crash[0]}/seed_{self.crash[1]}":
            self.crash = None
            from lit_ffn.training.module import LitDecoder

            original = LitDecoder.training_step

            def dies_at_step_1(module, batch, batch_idx):  # after the step-1 checkpoint, before step 2
                if module.global_step == 1:
                    raise RuntimeError("simulated crash in the middle of training")
                return original(module, batch, batch_idx)

            with self.monkeypatch.context() as patch:
                patch.setattr(LitDecoder, "training_step", dies_at_step_1)
                return in_process_launcher(args, log_path)
        return in_process_launcher(args, log_path)


def test_study_end_to_end_with_crash_then_resume(tmp_path: Path, tiny_dataset: Path, monkeypatch, capsys) -> None:
    base = write_base_config(tmp_path / "base.yaml", tiny_dataset)
    out = tmp_path / "study"
    argv = ["--config", str(base), "--ffn", "swiglu", "relu", "--seeds", "0", "1", "--out", str(out)]

    first = CountingLauncher(monkeypatch, crash=("relu", 0))
    assert ablate.main(argv, launch=first) == 1  # one run failed; the study went on
    assert len(first.launched) == 4
    err = capsys.readouterr().err
    assert "1 run(s) failed: relu seed 0" in err
    study = Study.load(out)
    runs = {p: study.run_dir(p) for p in study.pairs()}
    crashed = Pair("relu", 0)
    assert [p for p in runs if (runs[p] / DONE).exists()] == [Pair("swiglu", 0), Pair("swiglu", 1), Pair("relu", 1)]
    assert ckpt_step(runs[crashed]) == 1 and study.state(crashed) == "resume"
    assert "relu seed 0: started, not finished" in (out / "results.md").read_text()
    stamps = {p: (runs[p] / "checkpoints" / "last.ckpt").stat().st_mtime_ns for p in runs if p != crashed}

    second = CountingLauncher(monkeypatch)
    assert ablate.main(argv, launch=second) == 0
    # only the missing work: one launch, resuming the crashed run from its own config and checkpoint
    assert second.launched == [["fit", "--config", str(runs[crashed] / "config.yaml"), "--ckpt_path", "last"]]
    assert ckpt_step(runs[crashed]) == 2 and all((r / DONE).exists() for r in runs.values())
    assert {p: (runs[p] / "checkpoints" / "last.ckpt").stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((runs[crashed] / DONE).read_text())["resumed"] is True

    # every run: its own directory, seed and saved config
    for pair, run_dir in runs.items():
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert saved["seed_everything"] == pair.seed
        assert (
            saved["model"]["ffn"]["class_path"]
            == {"swiglu": "lit_ffn.ffn.SwiGLU", "relu": "lit_ffn.ffn.ReLUFFN"}[pair.variant]
        )

    # the report: values straight from the events, statistics from scipy
    from scipy import stats as sps

    # the final loss of each run: its last checkpoint on every block of the validation split (final_eval.json),
    # also in its DONE record; the logged val/loss (2 validation batches here) stays in DONE beside it
    values = {v: [whole_split_loss(runs[Pair(v, s)]) for s in (0, 1)] for v in ("swiglu", "relu")}
    for run_dir in runs.values():
        done = json.loads((run_dir / DONE).read_text())
        assert done["final_val_loss"] == pytest.approx(whole_split_loss(run_dir), rel=1e-12)
        assert done["logged_val_loss"] == pytest.approx(final_val_loss(run_dir), rel=1e-6)
    with open(out / "results.csv") as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["swiglu", "relu"]  # baseline first
    for variant, vals in values.items():
        assert int(rows[variant]["n"]) == 2
        assert float(rows[variant]["val_loss_mean"]) == pytest.approx(sum(vals) / 2, rel=1e-9)
        assert float(rows[variant]["val_loss_std"]) == pytest.approx(abs(vals[0] - vals[1]) / math.sqrt(2), rel=1e-6)
    reference = sps.ttest_ind(values["relu"], values["swiglu"], equal_var=False)
    assert float(rows["relu"]["p_welch"]) == pytest.approx(reference.pvalue, rel=1e-6)
    assert float(rows["relu"]["delta"]) == pytest.approx(sum(values["relu"]) / 2 - sum(values["swiglu"]) / 2)
    md = (out / "results.md").read_text()
    assert "Not included" not in md and "| relu | 2 |" in md and "Welch" in md
    assert f"command: `{shlex.join(['lit_ffn', 'ablate', *argv])}`" in md  # the report says how to reproduce it
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"

    # --report rebuilds the same report from the runs on disk
    before = (out / "results.md").read_text()
    (out / "results.md").unlink()
    assert ablate.main(["--report", str(out)]) == 0
    assert (out / "results.md").read_text() == before


def test_a_hard_crash_ends_only_its_run(tmp_path: Path, tiny_dataset: Path, monkeypatch) -> None:
    """The default launcher runs each pair in a subprocess: a run that kills its
    process (os._exit mid-forward) fails alone; the next pair still runs."""
    (tmp_path / "crashing_ffn.py").write_text(
        textwrap.dedent(
            """
        import os
        from torch import nn

        class Crash(nn.Module):
            def __init__(self, dim: int):
                super().__init__()
                self.w = nn.Linear(dim, dim)

            def forward(self, x):
                os._exit(7)  # a hard crash (exit code 3 would read as "diverged")
        """
        )
    )
    (tmp_path / "crash.yaml").write_text("model:\n  ffn:\n    class_path: crashing_ffn.Crash\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    base = write_base_config(tmp_path / "base.yaml", tiny_dataset)
    out = tmp_path / "study"
    launched = []

    def launch(args: list[str], log_path: Path) -> int:
        launched.append(args)
        crash = any("crash.yaml" in a for a in args)  # the crash runs in a real subprocess, the rest in-process
        return (subprocess_launcher if crash else in_process_launcher)(args, log_path)

    argv = [
        "--config",
        str(base),
        "--ffn",
        str(tmp_path / "crash.yaml"),
        "swiglu",
        "--seeds",
        "0",
        "--baseline",
        "swiglu",
        "--out",
        str(out),
    ]
    assert ablate.main(argv, launch=launch) == 1
    assert len(launched) == 2
    study = Study.load(out)
    assert not (study.run_dir(Pair("crash", 0)) / DONE).exists()
    assert (study.run_dir(Pair("swiglu", 0)) / DONE).exists()
    log = study.log_path(Pair("crash", 0)).read_text()
    assert "lit_ffn fit --config" in log and "crash.yaml" in log  # the attempt is logged
    md = (out / "results.md").read_text()
    assert "crash seed 0: started, not finished" in md


def write_run(
    study: Study,
    pair: Pair,
    val: list[tuple[int, float]],
    done: bool = True,
    throughput: list[float] | None = None,
    loss_walltimes: list[float] | None = None,
    gates: dict[str, list[tuple[int, float]]] | None = None,
) -> Path:
    """A synthetic finished run: config.yaml, TensorBoard events with the given scalars, DONE."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir = study.run_dir(pair)
    run_dir.mkdir(parents=True)
    ffn = yaml.safe_load(Path(study.variants[pair.variant]).read_text())["model"]["ffn"]
    config = {
        "seed_everything": pair.seed,
        "trainer": {"devices": 1, "max_steps": 10},
        "model": {**TINY_MODEL, "ffn": ffn},
        "data": {"batch_size": 4, "seq_len": 32},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    writer = SummaryWriter(str(run_dir))
    for step, value in val:
        writer.add_scalar("val/loss", value, step, walltime=1000.0 + step)
    for step, value in enumerate(throughput or []):
        writer.add_scalar("train/tokens_per_sec", value, step, walltime=1000.0 + step)
    for step, wall in enumerate(loss_walltimes or []):
        writer.add_scalar("train/loss", 5.0, step, walltime=wall)
    for tag, points in (gates or {}).items():
        for step, value in points:
            writer.add_scalar(tag, value, step, walltime=1000.0 + step)
    writer.close()
    if done:
        (run_dir / DONE).write_text("{}")
    return run_dir


def main_table(md: str) -> dict[str, list[str]]:
    """results.md's main table: {variant: cells after the name}."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| variant | n |")) + 2
    end = lines.index("", start)
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[start:end]}


def test_report_table_holds_the_hand_computed_statistics(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2] / "configs" / "ffn"
    study = Study(
        tmp_path / "s",
        ["base.yaml"],
        {"swiglu": str(repo / "swiglu.yaml"), "geglu": str(repo / "geglu.yaml"), "relu": str(repo / "relu.yaml")},
        [0, 1, 2],
        experiment="synthetic",
    )
    study.save()
    # final val losses: swiglu [4.4, 4.6]; geglu [4.1, 4.3] (Δ −0.3); relu [4.95, 5.05] (Δ +0.5)
    # seed 2 of swiglu never finished, so n = 2 everywhere
    final = {"swiglu": [4.4, 4.6], "geglu": [4.1, 4.3], "relu": [4.95, 5.05]}
    for variant, values in final.items():
        for seed, value in enumerate(values):
            write_run(
                study,
                Pair(variant, seed),
                [(0, 6.0), (5, value + 0.5), (9, value)],
                throughput=[100.0, 300.0, 200.0] if variant == "swiglu" else None,
                loss_walltimes=[0.0, 1.0, 2.0, 3.0, 10.0] if variant == "geglu" else None,
                gates={
                    "gates/layer_00/gate_mean": [(5, 9.0), (9, 0.5)],
                    "gates/layer_01/gate_mean": [(9, 0.7)],
                    "gates/layer_00/alpha_mean": [(9, 0.6)],
                },
            )
    write_run(study, Pair("swiglu", 2), [(0, 6.0), (5, 1.0)], done=False)  # an unfinished run is not counted

    paths = ablation_report.write_report(study)
    assert set(paths) == {"md", "csv", "curves", "gates"}
    with open(paths["csv"]) as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    md = paths["md"].read_text()
    table = main_table(md)

    # geglu vs swiglu by hand (Welch, a secondary test): s² = 0.02 each, se = √(0.01 + 0.01), t = −0.3/se = −2.1213,
    # ν = 2, p = 1 − |t|/√(2 + t²) = 0.1679, CI = −0.3 ± 4.302653·se = [−0.9085, +0.3085]
    se = math.sqrt(0.02)
    t = -0.3 / se
    assert float(rows["geglu"]["welch_df"]) == pytest.approx(2.0, rel=1e-5)
    assert float(rows["geglu"]["p_welch"]) == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t), rel=1e-5)
    assert float(rows["geglu"]["welch_ci95_low"]) == pytest.approx(-0.3 - 4.302653 * se, rel=1e-5)
    secondary = next(line for line in md.splitlines() if line.startswith("| geglu | -0.3000 |"))
    assert "| [-0.9085, +0.3085] | 0.1679 |" in secondary
    # per seed geglu − swiglu = −0.3, −0.3: no spread, no paired test: the verdict is withheld (no Welch fallback:
    # the primary test is declared, the others never give a verdict)
    n, mean_std, delta, ci, p, holm, verdict, mdd = table["geglu"]
    assert (n, mean_std, delta, ci, p, holm, mdd) == ("2", "4.2000 ± 0.1414", "-0.3000", "—", "—", "—", "—")
    assert verdict == "withheld: the per-seed differences have no spread: no test"
    # relu − swiglu per seed = +0.55, +0.45: d̄ = 0.5, s_d = √0.005, se = 0.05, t = 10, ν = 1 (Cauchy):
    # p = 1 − (2/π)·atan(10) = 0.0635, t_{.975, 1} = tan(0.475π) = 12.7062 → CI 0.5 ± 0.6353
    assert float(rows["relu"]["p"]) == pytest.approx(1 - 2 / math.pi * math.atan(10), rel=1e-4)  # float32 scalars
    # 2 pairs: ν = 1, no verdict and no Holm p from it (issue 23), whatever its p
    assert table["relu"][2:7] == ["+0.5000", "[-0.1353, +1.1353]", "0.0635", "—", "withheld: 2 pairs: ν = 1 < 2"]
    assert rows["relu"]["p_holm"] == "" and rows["relu"]["withheld"] == "2 pairs: ν = 1 < 2"
    assert table["swiglu"][:2] == ["2", "4.5000 ± 0.1414"] and table["swiglu"][6] == "baseline"
    assert "p (Holm, k=2)" in md and "swiglu seed 2: started, not finished" in md
    assert "| relu | +0.5500 | +0.4500 | — |" in md  # the per-seed differences
    # params: the tiny model counted on the meta device = the real model's count
    from lit_ffn.ffn import ReLUFFN
    from lit_ffn.model import Decoder

    real = Decoder(ReLUFFN, **TINY_MODEL)
    total = sum(p.numel() for p in real.parameters())
    ffn = sum(p.numel() for layer in real.layers for p in layer.ffn.parameters())
    assert f"| relu | {total:,} | {ffn:,} | — |" in md
    # tokens/s: the throughput tag's median (200); else the train/loss wall times' median rate:
    # 4·32 = 128 tokens per step, intervals of 1, 1, 1 and 7 s (a validation) → median 128
    assert "| swiglu | " in md and next(
        x for x in md.splitlines() if x.startswith("| geglu | ") and x.endswith(" 128 |")
    )
    assert next(x for x in md.splitlines() if x.startswith("| swiglu | ") and x.endswith(" 200 |"))
    assert rows["swiglu"]["tokens_per_s_source"] == "train/tokens_per_sec"
    # gates.png: drawn from runs that logged gates/layer_XX/… tags
    assert ablation_report.read_run(study, Pair("geglu", 0)).has_gates
    assert paths["gates"].read_bytes()[:4] == b"\x89PNG"


def test_significant_difference_is_flagged(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2] / "configs" / "ffn"
    study = Study(
        tmp_path / "s",
        ["base.yaml"],
        {"swiglu": str(repo / "swiglu.yaml"), "geglu": str(repo / "geglu.yaml")},
        [0, 1, 2],
    )
    for seed, (a, b) in enumerate([(5.00, 4.90), (5.01, 4.92), (5.02, 4.91)]):
        write_run(study, Pair("swiglu", seed), [(9, a)])
        write_run(study, Pair("geglu", seed), [(9, b)])
    md = ablation_report.write_report(study)["md"].read_text()
    _, _, delta, ci, p, holm, verdict, _ = main_table(md)["geglu"]
    # d = −0.10, −0.09, −0.11: d̄ = −0.1, s_d = 0.01, t = −17.32, ν = 2 → p = 0.0033 (k = 1: Holm p = p)
    assert verdict == "**better (Holm p 0.0033)**" and delta == "-0.1000" and ci.startswith("[-0.1") and p == holm
    assert "gates" not in ablation_report.write_report(study)  # no gate statistics logged: no gates.png


def test_a_difference_hidden_by_the_seed_spread_is_found_by_the_paired_test(tmp_path: Path) -> None:
    """Seeds 0, 1, 2 move both variants by 0.5 each; geglu − swiglu = −0.10, −0.09, −0.11 per seed:
    d̄ = −0.1, s_d = 0.01, t = −0.1/(0.01/√3) = −17.32, ν = 2 → p = 1 − |t|/√(2 + t²) = 0.0033.
    Welch's test (secondary), blind to the pairing, sees two overlapping samples of spread 0.5."""
    repo = Path(__file__).resolve().parents[2] / "configs" / "ffn"
    study = Study(
        tmp_path / "s",
        ["base.yaml"],
        {"swiglu": str(repo / "swiglu.yaml"), "geglu": str(repo / "geglu.yaml")},
        [0, 1, 2],
    )
    for seed, (a, b) in enumerate([(5.0, 4.9), (5.5, 5.41), (6.0, 5.89)]):
        write_run(study, Pair("swiglu", seed), [(9, a)])
        write_run(study, Pair("geglu", seed), [(9, b)])
    paths = ablation_report.write_report(study)
    row = main_table(paths["md"].read_text())["geglu"]
    t = -0.1 / (0.01 / math.sqrt(3))
    rows = {r["variant"]: r for r in csv.DictReader(paths["csv"].open())}
    assert float(rows["geglu"]["p_welch"]) > 0.5  # Welch
    assert row[4] == f"{1 - abs(t) / math.sqrt(2 + t * t):.4f}" == "0.0033"
    assert row[6] == "**better (Holm p 0.0033)**"


def test_print_commands_follow_each_pairs_state(tmp_path: Path, tiny_dataset: Path, capsys) -> None:
    base = write_base_config(tmp_path / "base.yaml", tiny_dataset)
    out = tmp_path / "study"
    argv = [
        "--config",
        str(base),
        "--ffn",
        "swiglu",
        "geglu_tanh",
        "--seeds",
        "3",
        "4",
        "--out",
        str(out),
        "--experiment",
        "exp",
        "--trainer.max_steps=7",
        "--model.lr",
        "0.5",
        "--print-commands",
    ]
    assert ablate.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    first = shlex.split(lines[0])
    assert first[:2] == ["lit_ffn", "fit"]
    assert first[2:6] == ["--config", str(base), "--config", "configs/ffn/swiglu.yaml"]
    for arg in (
        "--trainer.max_steps=7",
        "--seed_everything=3",
        f"--trainer.logger.init_args.save_dir={out}/runs",
        "--trainer.logger.init_args.name=exp",
        "--trainer.logger.init_args.version=swiglu/seed_3",
    ):
        assert arg in first
    assert first[first.index("--model.lr") + 1] == "0.5"
    assert "configs/ffn/geglu_tanh.yaml" in lines[1] and "--seed_everything=4" in lines[3]

    study = study_module.make_study(
        out, [str(base)], ["swiglu", "geglu_tanh"], [3, 4], ["--trainer.max_steps=7", "--model.lr", "0.5"], "exp"
    )
    done, interrupted = study.run_dir(Pair("swiglu", 3)), study.run_dir(Pair("geglu_tanh", 3))
    done.mkdir(parents=True)
    (done / DONE).write_text("{}")
    (interrupted / "checkpoints").mkdir(parents=True)
    (interrupted / "config.yaml").write_text("{}")
    (interrupted / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert ablate.print_commands(study).splitlines()[:2] == [
        "# swiglu seed 3: done",
        f"lit_ffn fit --config {interrupted / 'config.yaml'} --ckpt_path last",
    ]


def test_slurm_array_script_runs_one_pair_per_task(tmp_path: Path, tiny_dataset: Path, monkeypatch) -> None:
    base = write_base_config(tmp_path / "base.yaml", tiny_dataset)
    out, script = tmp_path / "study", tmp_path / "job.sh"
    argv = [
        "--config",
        str(base),
        "--ffn",
        "swiglu",
        "relu",
        "--seeds",
        "0",
        "1",
        "--out",
        str(out),
        "--trainer.max_steps=1",
        "--slurm-array",
        str(script),
        "--sbatch=--gres=gpu:1",
        "--sbatch=--time=01:00:00",
    ]
    assert ablate.main(argv) == 0
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n") and os.access(script, os.X_OK)
    for line in (
        "#SBATCH --array=0-3",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --time=01:00:00",
        "#SBATCH --job-name=base",
        "#   task 1: relu seed 0",
        "#   task 2: swiglu seed 1",
    ):
        assert line in text.splitlines()
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, check=False).returncode == 0  # bash syntax
    command = next(line for line in text.splitlines() if " -m lit_ffn.cli ablate " in line and line[0] != "#")
    words = shlex.split(command.replace('"$SLURM_ARRAY_TASK_ID"', "1"))
    assert "--slurm-array" not in command and "--sbatch" not in command and "--trainer.max_steps=1" in words
    # what task 1 runs: pair 1 (relu, seed 0) and nothing else
    monkeypatch.chdir(next(line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("cd ")))
    ablate_args = words[words.index("ablate") + 1 :]
    assert ablate.main(ablate_args, launch=in_process_launcher) == 0
    study = Study.load(out)
    assert [p for p in study.pairs() if study.state(p) == "done"] == [Pair("relu", 0)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ffn", "swiglu", "nope"], "unknown FFN 'nope'"),
        (["--ffn", "swiglu", "--seed_everything=3"], "--seed_everything is set by lit_ffn ablate"),
        (
            ["--ffn", "swiglu", "--trainer.logger.init_args.version", "x"],
            "--trainer.logger.init_args.version is set by",
        ),
        (["--ffn", "swiglu", "--baseline", "relu"], "--baseline relu is not among --ffn"),
        (["--ffn", "swiglu", "--model.dim=abc"], "model.dim"),
        (["--ffn", "swiglu", "--trainer.logger=false"], "TensorBoardLogger"),
        ([], "--ffn needs at least one variant"),
        # the batch plan is checked before any run starts, as `lit_ffn fit` would check it
        (["--ffn", "swiglu", "--global_batch_size=6"], "global_batch_size 6 is not a multiple of data.batch_size 4"),
        (["--ffn", "swiglu", "--global_batch_size=8", "--trainer.devices=auto"], "needs a definite device count"),
        (["--ffn", "swiglu", "--primary-test", "nope"], "--primary-test nope: unknown test"),
        (["--ffn", "swiglu", "relu", "--control", "gelu"], "--control gelu is not a variant of the study"),
        (["--ffn", "swiglu", "relu", "--seed-count", "relu"], "--seed-count relu: write NAME=N"),
        (["--ffn", "swiglu", "relu", "--seed-count", "relu=x"], "--seed-count relu=x: write NAME=N"),
        (["--ffn", "swiglu", "relu", "--seed-count", "gelu=2"], "'gelu' is not a variant of the study"),
        (["--ffn", "swiglu", "relu", "--seed-count", "swiglu=2"], "'swiglu' is the baseline, which runs every seed"),
        (
            ["--ffn", "swiglu", "relu", "--seed-count", "relu=4"],
            "must be between 2 (a paired test needs two seeds) and the 3",
        ),
        (["--ffn", "swiglu", "relu", "--seed-count", "relu=1"], "relu=1: must be between 2"),
    ],
)
def test_user_errors_are_one_line(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    base = write_base_config(tmp_path / "base.yaml", tmp_path / "no_data")
    assert ablate.main(["--config", str(base), "--out", str(tmp_path / "s"), "--print-commands", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lit_ffn ablate: error:") and message in err[0], err


def test_a_study_directory_refuses_other_settings_but_takes_more_variants_and_seeds(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("model:\n  dim: 32\n")
    study_module.make_study(tmp_path / "s", [str(base)], ["swiglu"], [0], ["--trainer.max_steps=5"]).save()
    with pytest.raises(UserError, match="overrides"):
        study_module.make_study(tmp_path / "s", [str(base)], ["swiglu"], [0], ["--trainer.max_steps=6"])
    grown = study_module.make_study(tmp_path / "s", [str(base)], ["relu"], [1], ["--trainer.max_steps=5"])
    assert list(grown.variants) == ["swiglu", "relu"] and grown.seeds == [0, 1]
    assert grown.baseline_name == "swiglu"  # the study's first variant stays the baseline


@pytest.mark.parametrize(("devices", "world"), [(1, 1), ("8", 8), ("0,1", 2), ([0, 1, 2], 3), ("auto", None)])
def test_tokens_per_step_counts_devices_as_a_saved_config_writes_them(devices, world) -> None:
    from lit_ffn.experiments.report import _tokens_per_step

    config = {
        "data": {"batch_size": 4, "seq_len": 32},
        "trainer": {"accumulate_grad_batches": 2, "num_nodes": 2, "devices": devices},
    }
    assert _tokens_per_step(config) == (None if world is None else 4 * 32 * 2 * world * 2)


def test_a_seed_count_runs_a_variant_on_the_first_seeds_and_pairs_it_there(tmp_path: Path) -> None:
    """``--seed-count geglu=3``: geglu runs seeds 0–2 of 0–5 (seed-major order kept), the baseline all six;
    the relaunch command and study.json keep the counts; the report pairs geglu on its 3 seeds and lists
    no seed it was never meant to run as missing."""
    base = tmp_path / "base.yaml"
    base.write_text("model:\n  dim: 32\n")
    study = study_module.make_study(
        tmp_path / "s", [str(base)], ["swiglu", "geglu", "relu"], range(6), seed_counts=["geglu=3"]
    )
    assert study.seeds_of("geglu") == [0, 1, 2] and study.seeds_of("relu") == study.seeds_of("swiglu") == list(range(6))
    pairs = [(p.variant, p.seed) for p in study.confirm_pairs()]
    assert pairs[:6] == [("swiglu", 0), ("geglu", 0), ("relu", 0), ("swiglu", 1), ("geglu", 1), ("relu", 1)]
    assert ("geglu", 3) not in pairs and pairs[-2:] == [("swiglu", 5), ("relu", 5)] and len(pairs) == 15
    assert "--seed-count geglu=3" in study.command()
    study.save()
    assert Study.load(study.out).seed_counts == {"geglu": 3}
    # a rerun without --seed-count keeps the saved counts; more seeds go to the variants without a count
    grown = study_module.make_study(tmp_path / "s", [str(base)], ["swiglu"], [6])
    assert grown.seeds_of("geglu") == [0, 1, 2] and grown.seeds_of("relu") == list(range(7))

    rng = np.random.default_rng(1)
    for seed in range(6):
        loss = 5.0 + rng.normal(0, 0.2)
        write_run(study, Pair("swiglu", seed), [(9, loss)])
        write_run(study, Pair("relu", seed), [(9, loss + 0.1 + rng.normal(0, 0.01))])
        if seed < 3:
            write_run(study, Pair("geglu", seed), [(9, loss - 0.05 + rng.normal(0, 0.01))])
    md = ablation_report.write_report(study)["md"].read_text()
    table = main_table(md)
    assert table["geglu"][0] == "3" and table["relu"][0] == "6" and table["swiglu"][0] == "6"
    assert "geglu: the first 3, `--seed-count`" in md
    assert "not started" not in md  # geglu's seeds 3-5 are not part of the study
