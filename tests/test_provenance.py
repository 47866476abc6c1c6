"""Every run records the code that produced it: git commit, dirty flag, versions; HPARAMS and reports show it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from lit_ffn import provenance
from lit_ffn.cli import main
from lit_ffn.experiments import report
from lit_ffn.experiments.study import DONE, Pair, Study
from tests.conftest import tiny_fit_args

REPO = Path(__file__).resolve().parents[1]


def _git_head() -> str | None:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def test_git_state_of_this_checkout() -> None:
    head = _git_head()
    state = provenance.git_state(REPO)
    assert state["commit"] == head
    if head is not None:
        assert isinstance(state["dirty"], bool)
    assert provenance.git_state(Path("/")) == {"commit": None, "dirty": None}  # not a checkout


def test_short_commit_and_run_commit(tmp_path: Path) -> None:
    assert provenance.short_commit({"commit": "4cee13f0123", "dirty": False}) == "4cee13f"
    assert provenance.short_commit({"commit": "4cee13f0123", "dirty": True}) == "4cee13f+dirty"
    assert provenance.short_commit({}) == "unknown"
    assert provenance.run_commit(tmp_path) == "unknown"
    (tmp_path / provenance.PROVENANCE_FILE).write_text("{not json")
    assert provenance.run_commit(tmp_path) == "unknown"  # unreadable: unknown, not a crash
    entries = [{"git": {"commit": "aaaaaaa111", "dirty": False}}, {"git": {"commit": "bbbbbbb222", "dirty": True}}]
    (tmp_path / provenance.PROVENANCE_FILE).write_text(json.dumps(entries))
    assert provenance.run_commit(tmp_path) == "aaaaaaa, bbbbbbb+dirty"


def test_a_fit_records_its_provenance_and_a_resume_appends(tiny_dataset: Path, tmp_path: Path) -> None:
    # the quickstart's callbacks (HyperparameterSummary among them) on the tiny dataset and shape
    args = [
        "fit",
        "--config",
        str(REPO / "configs" / "quickstart.yaml"),
        *tiny_fit_args(tiny_dataset, tmp_path, "--data.quickstart=false", "--model.n_layers=1", steps=2)[1:],
    ]
    assert main(args) == 0
    run_dir = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0"
    (entry,) = json.loads((run_dir / "provenance.json").read_text())
    assert entry["git"]["commit"] == _git_head()
    assert entry["versions"]["torch"] == torch.__version__.split("+")[0] and entry["versions"]["lightning"]
    assert set(provenance.PACKAGES) <= set(entry["versions"]) and entry["lit_ffn"]
    hparams = yaml.safe_load((run_dir / "hparams.yaml").read_text())  # HyperparameterSummary's session
    assert hparams["commit"] == provenance.short_commit(provenance.git_state())

    config = run_dir / "config.yaml"
    assert main(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_steps=3"]) == 0
    entries = json.loads((run_dir / "provenance.json").read_text())
    assert len(entries) == 2 and all(e[provenance.EPOCH_RESUME_FIX] is True for e in entries)
    assert not provenance.resumed_before_epoch_fix(run_dir)  # resumed by this lit_ffn: exact


def test_a_run_resumed_before_the_epoch_fix_is_named_in_its_commit(tmp_path: Path) -> None:
    """A study run resumed by a lit_ffn older than the epoch-boundary fix is flagged wherever its commit shows."""
    fresh = {"git": {"commit": "aaaaaaa111", "dirty": False}, "command": ["lit_ffn", "fit", "--config", "x.yaml"]}
    resumed = {"git": {"commit": "aaaaaaa111", "dirty": False}, "command": ["lit_ffn", "fit", "--ckpt_path", "last"]}
    cases = {
        "old_resumed": ([fresh, resumed], True),
        "old_never_resumed": ([fresh], False),
        "new_resumed": ([fresh, {**resumed, provenance.EPOCH_RESUME_FIX: True}], False),
        "old_start_new_resume": ([fresh, {**resumed, provenance.EPOCH_RESUME_FIX: True}], False),
    }
    for name, (entries, flagged) in cases.items():
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / provenance.PROVENANCE_FILE).write_text(json.dumps(entries))
        assert provenance.resumed_before_epoch_fix(run_dir) is flagged, name
        assert ("resumed before the epoch-resume fix" in provenance.run_commit(run_dir)) is flagged, name
        assert provenance.run_commit(run_dir).startswith("aaaaaaa")


def test_the_ablation_report_names_the_commit_of_each_run(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    ffn_dir = REPO / "configs" / "ffn"
    study = Study(
        tmp_path / "s",
        ["base.yaml"],
        {"swiglu": str(ffn_dir / "swiglu.yaml"), "relu": str(ffn_dir / "relu.yaml")},
        [0, 1],
        experiment="x",
    )
    study.save()
    commits = {("swiglu", 0): "1111111aaa", ("swiglu", 1): "2222222bbb", ("relu", 0): "3333333ccc"}
    for (variant, seed), commit in commits.items():
        run_dir = study.run_dir(Pair(variant, seed))
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump({"trainer": {"devices": 1}, "data": {}}))
        writer = SummaryWriter(str(run_dir))
        writer.add_scalar("val/loss", 5.0 + seed, 10)
        writer.close()
        (run_dir / provenance.PROVENANCE_FILE).write_text(json.dumps([{"git": {"commit": commit, "dirty": False}}]))
        (run_dir / DONE).write_text("{}")
    md = report.write_report(study)["md"].read_text()
    lines = md.splitlines()
    start = lines.index(
        "Commit that trained each run (`provenance.json` in its directory; `+dirty`: uncommitted changes):"
    )
    table = lines[start + 2 : start + 6]
    assert table[2] == "| swiglu | 1111111 | 2222222 |"
    assert table[3] == "| relu | 3333333 | — |"  # relu seed 1 never ran


@pytest.mark.parametrize("package", ["torch", "lightning", "litdata", "transformers"])
def test_package_versions_name_the_installed_libraries(package: str) -> None:
    from importlib.metadata import version

    assert provenance.package_versions()[package] == version(package)
