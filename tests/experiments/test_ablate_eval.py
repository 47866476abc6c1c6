"""``lit_ffn ablate --eval-tasks`` (issue 15 part 3): every confirmation run is scored by ``lit_ffn evaluate``
on a local lm_eval task the test writes, and results.md/eval.csv carry per-task accuracy with the paired
statistics; a rerun scores nothing twice; unknown tasks fail before any run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from lit_ffn.experiments import ablate
from lit_ffn.experiments.study import Pair, Study
from tests.experiments.test_ablate import CountingLauncher, write_base_config
from tests.inference.test_evaluate import CHOICE_DOCS, _task


def test_ablate_scores_each_confirmation_run(tmp_path: Path, tiny_dataset: Path, monkeypatch, capsys) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    _task(tasks, "lit_choice", CHOICE_DOCS, output_type="multiple_choice", doc_to_text="{{question}}",
          doc_to_target="{{label}}", doc_to_choice="{{choices}}", metric_list=[{"metric": "acc"}])  # fmt: skip
    base = write_base_config(tmp_path / "base.yaml", tiny_dataset)
    out = tmp_path / "study"
    argv = ["--config", str(base), "--ffn", "swiglu", "relu", "--seeds", "0", "1", "--out", str(out),
            "--eval-tasks", "lit_choice", "--eval-include-path", str(tasks), "--clean-checkpoints"]  # fmt: skip
    first = CountingLauncher(monkeypatch)
    assert ablate.main(argv, launch=first) == 0
    assert [a[0] for a in first.launched] == ["fit", "evaluate"] * 4  # each run scored before its checkpoint goes
    study = Study.load(out)
    values = {}
    for pair in study.confirm_pairs():
        record = json.loads((study.run_dir(pair) / "eval.json").read_text())
        values[pair] = record["scores"]["lit_choice"]["acc"]
        assert not (study.run_dir(pair) / "checkpoints").exists()
    md = (out / "results.md").read_text()
    assert "## Downstream tasks (`--eval-tasks`, lm-evaluation-harness)" in md and "**lit_choice** (acc):" in md
    rows = {r["variant"]: r for r in csv.DictReader((out / "eval.csv").open())}
    for variant in ("swiglu", "relu"):
        mean = (values[Pair(variant, 0)] + values[Pair(variant, 1)]) / 2
        assert float(rows[variant]["mean"]) == pytest.approx(mean) and rows[variant]["n"] == "2"
    assert float(rows["relu"]["delta"]) == pytest.approx(float(rows["relu"]["mean"]) - float(rows["swiglu"]["mean"]))
    second = CountingLauncher(monkeypatch)
    assert ablate.main(argv, launch=second) == 0 and second.launched == []  # nothing trained or scored twice
    capsys.readouterr()
    # an unknown task is one line before anything runs
    bad = CountingLauncher(monkeypatch)
    argv_bad = [a.replace("lit_choice", "lit_chioce") for a in argv]
    argv_bad[argv_bad.index("--out") + 1] = str(tmp_path / "other")
    import lm_eval.tasks

    real = lm_eval.tasks.TaskManager  # the built-ins take ~13 s to index: the include path stands in for them
    monkeypatch.setattr(
        lm_eval.tasks, "TaskManager", lambda include_path=None, **kw: real(include_path, include_defaults=False)
    )
    assert ablate.main(argv_bad, launch=bad) == 2 and bad.launched == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lit_chioce" in err[0], err
