"""The scaling ladder (issue 14): rungs end to end, the report's fits and compute multipliers on
hand-made runs with a known answer, tuning per rung, and bad ladder files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from lit_ffn.experiments import ablate, report
from lit_ffn.experiments.scaling_report import run_compute
from lit_ffn.experiments.study import Pair, Study
from tests.experiments.test_ablate import CountingLauncher, write_base_config, write_run

REPO_FFN = Path(__file__).resolve().parents[2] / "configs" / "ffn"


def write_rungs(root: Path) -> list[str]:
    (root / "r1.yaml").write_text("model:\n  dim: 32\n")
    (root / "r2.yaml").write_text("trainer:\n  max_steps: 3\nmodel:\n  dim: 48\n  head_dim: 24\n")
    return [str(root / "r1.yaml"), str(root / "r2.yaml")]


def test_a_ladder_end_to_end(tmp_path: Path, tiny_dataset: Path, monkeypatch) -> None:
    base = write_base_config(tmp_path / "base.yaml", tiny_dataset)
    out = tmp_path / "study"
    argv = ["--config", str(base), "--ffn", "swiglu", "relu", "--ladder", *write_rungs(tmp_path), "--seeds", "0",
            "--out", str(out)]  # fmt: skip
    first = CountingLauncher(monkeypatch, crash=("r2/relu", 0))
    assert ablate.main(argv, launch=first) == 1
    study = Study.load(out)
    assert list(study.ladder) == ["r1", "r2"] and len(first.launched) == 4
    r2 = yaml.safe_load((study.run_dir(Pair("swiglu", 0, "r2")) / "config.yaml").read_text())
    assert (r2["model"]["dim"], r2["model"]["head_dim"], r2["trainer"]["max_steps"]) == (48, 24, 3)
    assert study.run_dir(Pair("swiglu", 0, "r2")) == out / "runs" / "base" / "r2" / "swiglu" / "seed_0"
    second = CountingLauncher(monkeypatch)
    # runs of 2-3 steps do not beat the tiny dataset's unigram reference, which would leave every rung out of
    # the fits; this test is about the ladder's mechanics, so it reports without the reference
    monkeypatch.setattr("lit_ffn.experiments.scaling_report.study_reference", lambda runs: None)
    assert ablate.main(argv, launch=second) == 0
    assert len(second.launched) == 1 and second.launched[0][2].endswith("r2/relu/seed_0/config.yaml")
    md = (out / "results.md").read_text()
    assert "## Comparison at rung `r1`" in md and "## Comparison at rung `r2`" in md and "## Scaling ladder" in md
    assert "- swiglu: log-linear L = " in md and "(2 rungs; the power law needs ≥ 4)" in md
    rows = list(csv.DictReader((out / "scaling.csv").open()))
    assert [(r["variant"], r["rung"]) for r in rows] == [("swiglu", "r1"), ("swiglu", "r2"), ("relu", "r1"),
                                                         ("relu", "r2")]  # fmt: skip
    r1, r2c = (float(r["compute_flops"]) for r in rows[:2])
    expected = [run_compute(yaml.safe_load((study.run_dir(Pair("swiglu", 0, r)) / "config.yaml").read_text()))[0]
                for r in ("r1", "r2")]  # fmt: skip
    assert (r1, r2c) == pytest.approx(expected) and r2c > r1
    assert (out / "scaling.png").stat().st_size > 0 and (out / "curves_r2.png").exists()


def test_the_compute_of_a_run_is_flops_per_token_times_tokens(tmp_path: Path) -> None:
    from lit_ffn.flops import flops_per_token
    from lit_ffn.model import Decoder

    model = {"vocab_size": 100, "dim": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "head_dim": 16,
             "ffn": {"class_path": "lit_ffn.ffn.SwiGLU"}}  # fmt: skip
    config = {"trainer": {"max_steps": 7, "devices": 2, "accumulate_grad_batches": 3},
              "data": {"batch_size": 4, "seq_len": 32}, "model": model}  # fmt: skip
    from lit_ffn.training.config import model_kwargs

    decoder = Decoder(**model_kwargs(model, Decoder))
    tokens = 7 * 4 * 32 * 2 * 3
    compute, trained, non_embedding = run_compute(config)
    assert trained == tokens and non_embedding == decoder.num_parameters(exclude_embedding=True)
    assert compute == pytest.approx(flops_per_token(decoder, 32) * tokens)


def law(c: float) -> float:
    """A known saturating power law L(C) = 2 + 40·C^(−0.12)."""
    return 2.0 + 40.0 * c ** (-0.12)


def test_the_multiplier_of_a_curve_shifted_by_2x_in_compute_is_2(tmp_path: Path) -> None:
    variants = {v: str(REPO_FFN / f"{v}.yaml") for v in ("swiglu", "relu")}
    rungs = {f"r{i}": f"r{i}.yaml" for i in range(4)}
    study = Study(tmp_path / "s", ["base.yaml"], variants, [0, 1], experiment="x", ladder=rungs)
    study.save()
    steps = {"r0": 10, "r1": 40, "r2": 160, "r3": 640}
    from torch.utils.tensorboard import SummaryWriter

    for pair in study.confirm_pairs():
        run_dir = write_run(study, pair, [])
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        config["trainer"]["max_steps"] = steps[pair.rung]
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
        shift = 2.0 if pair.variant == "relu" else 1.0  # relu reaches swiglu's loss with half the compute
        noise = 0.01 if pair.seed == 0 else -0.01  # symmetric: the seed mean is exact
        writer = SummaryWriter(str(run_dir))
        writer.add_scalar("val/loss", law(shift * run_compute(config)[0]) + noise, steps[pair.rung])
        writer.close()
    md = report.write_report(study)["md"].read_text()
    fit_line = next(line for line in md.splitlines() if line.startswith("- swiglu: saturating power law L = "))
    assert float(fit_line.split("= ")[1].split(" +")[0]) == pytest.approx(2.0, abs=5e-3)  # E of the known law
    assert "·C^(−0.1200) (4 rungs, weighted by 1/se²)" in fit_line
    lines = md.splitlines()
    table = lines.index("| variant | M vs swiglu | 95% CI | LOO band | non-finite draws | note |")
    assert "| swiglu | 1 | — | — | — | the reference (1 by construction) |" in lines
    row = next(line for line in lines[table:] if line.startswith("| relu | "))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == "2.00"  # M = C_top / C_relu(L*_swiglu) = 2
    assert "CI unreliable: 2 seeds at a rung" in cells[5]
    low, high = (float(x) for x in cells[2].strip("[]").split(","))
    assert low <= 2.0 <= high
    scaling_rows = list(csv.DictReader((study.out / "scaling.csv").open()))
    assert float(scaling_rows[-1]["multiplier"]) == pytest.approx(2.0, rel=1e-3)


def test_tuning_per_rung_commands(tmp_path: Path, tiny_dataset: Path, capsys) -> None:
    base = write_base_config(tmp_path / "base.yaml", tiny_dataset)
    argv = ["--config", str(base), "--ffn", "swiglu", "--ladder", *write_rungs(tmp_path), "--tune",
            "model.lr=1e-3,1e-2", "--tune-seeds", "9", "--seeds", "0", "--out", str(tmp_path / "s"),
            "--print-commands"]  # fmt: skip
    assert ablate.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # R × (V × P × T) tuning runs first, then R × (V × S) confirmation runs
    assert len(lines) == 2 * 2 + 2
    assert "--config" in lines[2] and str(tmp_path / "r2.yaml") in lines[2] and "--model.lr=1e-3" in lines[2]
    assert "--trainer.logger.init_args.version=r2/tune/model.lr=1e-3/swiglu/seed_9" in lines[2]
    assert lines[4].startswith("# swiglu seed 0 r1: confirmation run, waits")


@pytest.mark.parametrize(
    ("rung", "message"),
    [
        ("model: [unclosed", "does not parse as YAML"),
        ("- 1\n- 2\n", "is not a mapping of config keys"),
        ("model:\n  ffn:\n    class_path: lit_ffn.ffn.ReLU\n", "sets model.ffn"),
        ("model:\n  dim: abc\n", "model.dim"),
    ],
)
def test_bad_ladder_files_are_one_line(tmp_path: Path, capsys, rung: str, message: str) -> None:
    base = write_base_config(tmp_path / "base.yaml", tmp_path / "no_data")
    (tmp_path / "bad.yaml").write_text(rung)
    (tmp_path / "ok.yaml").write_text("model:\n  dim: 48\n")
    argv = ["--config", str(base), "--ffn", "swiglu", "--ladder", str(tmp_path / "ok.yaml"), str(tmp_path / "bad.yaml"),
            "--out", str(tmp_path / "s"), "--print-commands"]  # fmt: skip
    assert ablate.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lit_ffn ablate: error:") and message in err[0], err
    assert not (tmp_path / "s" / "study.json").exists()


def test_a_single_rung_is_said_and_reported_without_a_fit(tmp_path: Path, capsys) -> None:
    base = write_base_config(tmp_path / "base.yaml", tmp_path / "no_data")
    (tmp_path / "only.yaml").write_text("model:\n  dim: 48\n")
    argv = ["--config", str(base), "--ffn", "swiglu", "--ladder", str(tmp_path / "only.yaml"), "--out",
            str(tmp_path / "s"), "--print-commands"]  # fmt: skip
    assert ablate.main(argv) == 0
    assert "--ladder has a single rung (only): no scaling fit is possible" in capsys.readouterr().err
    variants = {"swiglu": str(REPO_FFN / "swiglu.yaml")}
    study = Study(tmp_path / "t", ["base.yaml"], variants, [0, 1], experiment="x", ladder={"only": "only.yaml"})
    study.save()
    for seed in (0, 1):
        write_run(study, Pair("swiglu", seed, "only"), [(0, 6.0), (9, 4.0 + seed / 10)])
    md = report.write_report(study)["md"].read_text()
    assert "A single rung: no scaling fit is possible" in md and "- swiglu: no fit (1 rung with finished runs" in md
    assert "| swiglu | 2 | 4.0500 ± 0.0707 |" in md  # the rung's own table is still there


@pytest.mark.parametrize(
    ("base", "ladder"),
    [("configs/quickstart.yaml", "configs/ladder/cpu"), ("configs/paper/qwen3_83m.yaml", "configs/ladder/paper")],
)
def test_the_shipped_ladders_parse_and_say_what_they_are(base: str, ladder: str) -> None:
    """Every shipped rung composes with its base as `lit_ffn fit` would, leaves the FFN alone, and its
    header's parameter count, steps and tokens are the real ones."""
    import re

    from lit_ffn.experiments.params import count_parameters
    from lit_ffn.experiments.report import _tokens_per_step
    from lit_ffn.experiments.study import read_ladder
    from lit_ffn.training.config import FitConfigParser

    root = Path(__file__).resolve().parents[2]
    files = sorted((root / ladder).glob("*.yaml"))
    assert len(files) >= 4  # enough rungs for the power law
    read_ladder([str(f) for f in files], {})
    parser = FitConfigParser()
    totals, ratios = [], set()
    for file in files:
        config = parser.parse(["--config", str(root / base), "--config", str(file)])
        header = re.search(r"This rung: ([\d,]+) parameters .*?(\d+) steps = ([\d,]+) tokens", file.read_text(), re.S)
        total, steps, tokens = (int(g.replace(",", "")) for g in header.groups())
        assert count_parameters(config.model).total == total, file.name
        assert config.trainer.max_steps == steps, file.name
        plain = {"trainer": dict(config.trainer), "data": dict(config.data)}
        plain["trainer"]["accumulate_grad_batches"] = 128 // int(config.data.batch_size) if "paper" in base else 1
        assert steps * _tokens_per_step(plain) == tokens, file.name
        if "cpu" in ladder:  # issue 22's rule: one stated number k >= 20 of tokens per non-embedding parameter
            # at every rung (rounded up to a whole step), warm-up <= 10% of the steps, the whole validation split
            k = int(re.search(r"rule \(every rung of configs/ladder/cpu/\): (\d+) tokens per", file.read_text())[1])
            non_embedding = count_parameters(config.model).non_embedding
            assert k >= 20 and k <= tokens / non_embedding < k + _tokens_per_step(plain) / non_embedding, file.name
            ratios.add(k)
            assert config.model.warmup_steps <= 0.1 * steps and config.data.val_blocks is None, file.name
            assert config.trainer.val_check_interval == steps, file.name  # the final val/loss is at max_steps
        else:  # the paper run's tokens per non-embedding parameter at every rung, to the nearest 50-step multiple
            ratio = 104_857_600 / 24_785_536  # configs/paper/qwen3_83m.yaml: 400 steps x 128 x 2048 tokens
            exact_steps = ratio * count_parameters(config.model).non_embedding / _tokens_per_step(plain)
            assert steps % 50 == 0 and abs(steps - exact_steps) <= 25, file.name
        totals.append(total)
    assert totals == sorted(totals)  # the rungs grow
    assert len(ratios) <= 1  # one tokens-per-parameter rule for the whole CPU ladder


def test_a_rung_that_does_not_beat_the_unigram_reference_is_flagged_and_left_out_of_the_fit(monkeypatch) -> None:
    """Issue 22: a rung whose mean final loss is not below the data's unigram reference learned no more than
    token frequencies; the ladder report says so and fits the variant on the other rungs only."""
    from lit_ffn.experiments import scaling_report
    from lit_ffn.experiments.runs import RunResult

    compute = {"r1": 1e11, "r2": 1e12, "r3": 1e13, "r4": 1e14, "r5": 1e15}
    losses = {"r1": 6.5, "r2": 5.0, "r3": 4.5, "r4": 4.2, "r5": 4.0}  # r1 is above the reference 6.0
    study = Study(Path("/nonexistent"), ["base.yaml"], {"swiglu": "swiglu.yaml"}, [0, 1], experiment="x",
                  ladder={r: f"{r}.yaml" for r in compute})  # fmt: skip
    runs = {}
    for rung, loss in losses.items():
        for seed in (0, 1):
            pair = Pair("swiglu", seed, rung)
            runs[pair] = RunResult(pair, "done", config={"rung": rung}, done_loss=loss + 0.01 * (seed - 0.5))
    monkeypatch.setattr(scaling_report, "run_compute", lambda config: (compute[config["rung"]], 1000, 100))
    monkeypatch.setattr(scaling_report, "study_reference", lambda runs: 6.0)
    found = scaling_report.ScalingReport(study, runs, "swiglu")
    assert [p.rung for p in found.usable("swiglu")] == ["r2", "r3", "r4", "r5"]
    md = found.markdown()
    assert "- ⚠ swiglu at `r1`: mean final loss 6.5000 does not beat the unigram reference" in md
    assert "left out of its scaling fit" in md and "(4 rungs, weighted by 1/se²)" in md
    monkeypatch.setattr(scaling_report, "study_reference", lambda runs: 7.0)  # every rung beats 7.0
    assert len(scaling_report.ScalingReport(study, runs, "swiglu").usable("swiglu")) == 5


def test_a_one_seed_ladder_prints_no_multiplier_and_its_csv_holds_none(tmp_path: Path) -> None:
    """Issue 30: one seed per rung leaves the seed spread unknown: no multiplier and no CI in results.md, and
    scaling.csv's multiplier columns empty with the reason in ``withheld`` (the CSV once printed what the report
    withheld)."""
    variants = {v: str(REPO_FFN / f"{v}.yaml") for v in ("swiglu", "relu")}
    rungs = {f"r{i}": f"r{i}.yaml" for i in range(4)}
    study = Study(tmp_path / "s", ["base.yaml"], variants, [0], experiment="x", ladder=rungs)
    study.save()
    steps = {"r0": 10, "r1": 40, "r2": 160, "r3": 640}
    from torch.utils.tensorboard import SummaryWriter

    for pair in study.confirm_pairs():
        run_dir = write_run(study, pair, [])
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        config["trainer"]["max_steps"] = steps[pair.rung]
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
        shift = 2.0 if pair.variant == "relu" else 1.0
        writer = SummaryWriter(str(run_dir))
        writer.add_scalar("val/loss", law(shift * run_compute(config)[0]), steps[pair.rung])
        writer.close()
    md = report.write_report(study)["md"].read_text()
    row = next(line for line in md.splitlines() if line.startswith("| relu | — | — | — | — | not identifiable"))
    assert "the seed spread is unknown" in row
    rows = [r for r in csv.DictReader((study.out / "scaling.csv").open()) if r["variant"] == "relu"]
    for r in rows:
        assert r["multiplier"] == r["multiplier_ci95_low"] == r["multiplier_ci95_high"] == r["multiplier_loo_low"] == ""
        assert r["withheld"].startswith("not identifiable from this ladder:")
