"""DownstreamEval: lm-eval tasks scored with the model being trained, offline, on a local task."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from lit_ffn.callbacks.downstream import choice_likelihoods
from lit_ffn.cli import main
from lit_ffn.experiments.events import read_scalars
from tests.conftest import tiny_fit_args
from tests.scaleout_helpers import STRATEGY_ARGS, launch

pytest.importorskip("lm_eval")

DOCS = [
    {"question": "A list is", "choices": ["mutable", "green", "loud"], "label": 0},
    {"question": "A tuple is", "choices": ["blue", "immutable"], "label": 1},
    {"question": "The keyword def defines a", "choices": ["function", "river"], "label": 0},
    {"question": "A dict maps keys to", "choices": ["values", "shoes"], "label": 0},
]
LIMIT = 3


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A multiple-choice lm_eval task on a local jsonl file (no download)."""
    directory = tmp_path_factory.mktemp("tasks")
    data = directory / "lit_choice.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
    spec = {
        "task": "lit_choice", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
        "doc_to_target": "{{label}}", "doc_to_choice": "{{choices}}",
        "metric_list": [{"metric": name, "aggregation": "mean", "higher_is_better": True} for name in ("acc", "acc_norm")],
    }  # fmt: skip
    (directory / "lit_choice.yaml").write_text(yaml.safe_dump(spec))
    return directory


def callback_args(task_dir: Path, every: int = 2) -> list[str]:
    return [
        "--trainer.callbacks+=lit_ffn.callbacks.DownstreamEval",
        "--trainer.callbacks.tasks=[lit_choice]",
        f"--trainer.callbacks.include_path={task_dir}",
        f"--trainer.callbacks.every_n_steps={every}",
        f"--trainer.callbacks.limit={LIMIT}",
    ]


def test_choice_likelihoods_is_the_softmax_mass_on_the_gold_choice() -> None:
    samples = [
        {"target": 0, "filtered_resps": [[-1.0, True], [-2.0, False], [-3.0, False]]},
        {"target": 1, "filtered_resps": [(-5.0, False), (-5.0, True)]},
        {"target": "x", "filtered_resps": [[-1.0, True], [-2.0, False]]},  # not a choice index: skipped
    ]
    first = math.exp(-1) / (math.exp(-1) + math.exp(-2) + math.exp(-3))
    assert choice_likelihoods(samples) == pytest.approx({"prob_correct": (first + 0.5) / 2, "logprob_correct": -3.0})
    assert choice_likelihoods([{"target": 0, "filtered_resps": [[-1.0, True]]}]) == {}  # one choice: no question


def direct_scores(run_dir: Path) -> dict[str, float]:
    """acc and prob_correct of the run's last.ckpt on the first LIMIT documents, from the model's own
    log-likelihoods of ``question + " " + choice`` (lm_eval's target delimiter)."""
    from lm_eval.api.instance import Instance

    from lit_ffn.inference.lm_eval_adapter import LitFFNLM
    from lit_ffn.inference.loading import load_model

    loaded = load_model(run_dir)
    lm = LitFFNLM(loaded.decoder, loaded.tokenizer, max_length=32)
    hits, probs = [], []
    for doc in DOCS[:LIMIT]:
        requests = [
            Instance("loglikelihood", {}, (doc["question"], f" {choice}"), i) for i, choice in enumerate(doc["choices"])
        ]
        lls = [ll for ll, _ in lm.loglikelihood(requests, disable_tqdm=True)]
        hits.append(float(max(range(len(lls)), key=lls.__getitem__) == doc["label"]))
        probs.append(torch.softmax(torch.tensor(lls, dtype=torch.float64), 0)[doc["label"]].item())
    return {"acc": sum(hits) / LIMIT, "prob_correct": sum(probs) / LIMIT}


def test_tasks_are_scored_during_training_logged_and_kept_in_the_run(
    tiny_dataset: Path, tmp_path: Path, task_dir: Path
) -> None:
    assert main(tiny_fit_args(tiny_dataset, tmp_path, *callback_args(task_dir), steps=4)) == 0
    run_dir = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0"
    records = [json.loads(line) for line in (run_dir / "downstream.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]  # every 2 steps; the last step is one of them
    for record in records:
        scores = record["scores"]["lit_choice"]
        assert scores["n_samples"] == LIMIT and record["settings"]["limit"] == LIMIT
        assert 0 <= scores["acc"] <= 1 and 0 < scores["prob_correct"] < 1 and scores["logprob_correct"] < 0
        assert record["seconds"] > 0 and record["settings"]["weights"] == "training module"
    final = records[-1]["scores"]["lit_choice"]
    direct = direct_scores(run_dir)  # the model of step 4 = last.ckpt
    assert final["acc"] == pytest.approx(direct["acc"])
    assert final["prob_correct"] == pytest.approx(direct["prob_correct"], rel=1e-5)
    assert records[0]["scores"]["lit_choice"]["prob_correct"] != final["prob_correct"]  # the model moved

    scalars = read_scalars(run_dir)
    for name in ("acc", "acc_norm", "prob_correct", "logprob_correct"):
        assert [step for step, _ in scalars[f"val/tasks/lit_choice/{name}"]] == [2, 4]
    assert dict(scalars["val/tasks/lit_choice/prob_correct"])[4] == pytest.approx(final["prob_correct"])
    assert [step for step, _ in scalars["val/tasks/seconds"]] == [2, 4]


def test_an_unknown_task_stops_the_fit_before_training(
    tiny_dataset: Path, tmp_path: Path, task_dir: Path, capsys, monkeypatch
) -> None:
    import lm_eval.tasks

    real = lm_eval.tasks.TaskManager  # lm_eval's ~14,700 built-in configs take ~13 s to index: not needed here
    monkeypatch.setattr(
        lm_eval.tasks,
        "TaskManager",
        lambda include_path=None, **kw: real(include_path=include_path, include_defaults=False),
    )
    args = [a.replace("[lit_choice]", "[lit_choise]") for a in callback_args(task_dir)]
    assert main(tiny_fit_args(tiny_dataset, tmp_path, *args, steps=4)) == 2
    err = capsys.readouterr().err
    assert err.startswith("lit_ffn: error: unknown task 'lit_choise' (did you mean lit_choice?)")
    assert not list(tmp_path.rglob("last.ckpt"))


@pytest.mark.scaleout
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_distributed_rank_0_scores_and_the_other_rank_waits(
    tiny_dataset: Path, tmp_path: Path, task_dir: Path, strategy: str
) -> None:
    argv = tiny_fit_args(tiny_dataset, tmp_path, *STRATEGY_ARGS[strategy], *callback_args(task_dir), steps=4)
    code, output = launch(argv, "srun-like", tmp_path / "logs")
    assert code == 0, output[-4000:]
    run_dir = tmp_path / "runs" / "tiny" / "SwiGLU" / "seed_0"
    records = [json.loads(line) for line in (run_dir / "downstream.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]  # one record per call: rank 0 wrote it
    assert records[-1]["scores"]["lit_choice"]["acc"] == pytest.approx(direct_scores(run_dir)["acc"])
    assert output.count("DownstreamEval: step 4:") == 1
    weights = {"ddp": "training module", "fsdp2": "gathered copy"}[strategy]  # FSDP2: sharded, so gathered
    assert {r["settings"]["weights"] for r in records} == {weights}
