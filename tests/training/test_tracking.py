"""MLflow against a real ``mlflow server`` and W&B in offline mode: lit_ffn's run layout, the run's params,
metrics and gate statistics in the tracking run, the end-of-fit summary, and a resumed fit continuing the same
tracking run (lit_ffn/training/tracking.py).  Both packages are test-only dependencies (the ``dev`` extra)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lit_ffn.cli import main
from tests.conftest import tiny_fit_args
from tests.data.s3_helpers import answers, free_port, stop

RUN = Path("runs") / "tiny" / "SwiGLU" / "seed_0"  # relative: the tests run in tmp_path
GATES = ("--trainer.callbacks+=lit_ffn.callbacks.GateStatistics", "--trainer.callbacks.every_n_steps=1",
         "--trainer.callbacks+=lit_ffn.callbacks.HyperparameterSummary")  # fmt: skip


def fit_args(data: Path, root: Path, *logger: str, steps: int = 4) -> list[str]:
    """:func:`tiny_fit_args` with ``logger`` instead of its TensorBoard logger."""
    args = [arg for arg in tiny_fit_args(data, root, steps=steps) if not arg.startswith("--trainer.logger")]
    return [*args, *logger, *GATES]


def summary_block(out: str) -> list[str]:
    return out[out.index(f"lit_ffn: run {RUN}\n") :].splitlines()


def started_mlflow_server(root: Path) -> tuple[subprocess.Popen, str]:
    """``mlflow server`` with a sqlite backend store and a local artifact root on 127.0.0.1, once it answers."""
    pytest.importorskip("mlflow.server", reason="mlflow-skinny and the server's packages (the dev extra)")
    port = free_port()
    log = open(root / "mlflow.log", "wb")  # the server inherits it; closed here once it is started
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job runner (needs huey)
    )  # fmt: skip
    log.close()
    uri = f"http://127.0.0.1:{port}"
    # database migrations and imports: slow on a busy 2-core machine
    if answers(proc, f"{uri}/health", timeout=240, interval=0.5):
        return proc, uri
    stop(proc)
    raise RuntimeError(f"mlflow server did not start; see {root / 'mlflow.log'}")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, uri = started_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    try:
        yield uri
    finally:
        stop(proc)


def test_an_mlflow_run_has_the_run_layout_params_metrics_summary_and_resumes_the_same_run(
    mlflow_server: str, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    logger = ("--trainer.logger=lightning.pytorch.loggers.MLFlowLogger",
              f"--trainer.logger.tracking_uri={mlflow_server}", "--trainer.logger.experiment_name=tiny")  # fmt: skip
    assert main(fit_args(tiny_dataset, tmp_path, *logger)) == 0
    out = capsys.readouterr().out

    assert sorted(p.name for p in RUN.iterdir()) == ["checkpoints", "config.yaml", "provenance.json", "tracking.json"]
    assert (RUN / "checkpoints" / "last.ckpt").is_file()
    tracking = json.loads((RUN / "tracking.json").read_text())
    run_id = tracking["run_id"]
    client = MlflowClient(mlflow_server)
    run = client.get_run(run_id)
    assert run.info.run_name == "tiny/SwiGLU/seed_0" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "tiny"
    params = run.data.params
    assert {key: params[key] for key in ("ffn", "lr", "seed", "tokens", "experiment")} == {
        "ffn": "SwiGLU", "lr": "0.01", "seed": "0", "tokens": "512", "experiment": "tiny",
    }  # fmt: skip
    assert int(params["num_parameters"]) > 0 and params["commit"]
    assert {"train/loss", "val/loss", "z_gates/layer_00/gate_mean", "z_gates/layer_01/gate_std"} <= set(
        run.data.metrics
    )
    assert "epoch" not in run.data.metrics  # the constant is left out, as for TensorBoard and CSV

    def steps(key: str) -> list[int]:
        return sorted(m.step for m in client.get_metric_history(run_id, key))

    assert steps("train/loss") == [0, 1, 2, 3] and steps("val/loss") == [2, 4]

    block = summary_block(out)
    assert f"  mlflow     run {run_id} (tiny/SwiGLU/seed_0) in experiment tiny at {mlflow_server}" in block
    page = f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{run_id}   (the run in MLflow's UI)"
    assert f"  next       {page}" in block
    resume = next(line.split("   (")[0].strip() for line in block if "(train longer)" in line)
    assert resume == f"lit_ffn fit --config {RUN / 'config.yaml'} --ckpt_path last --trainer.max_steps=8"

    assert main(resume.split()[1:]) == 0  # the printed command continues the same MLflow run
    out = capsys.readouterr().out
    assert f"  mlflow     run {run_id} (tiny/SwiGLU/seed_0) in experiment tiny at {mlflow_server}" in out
    assert [r.info.run_id for r in client.search_runs([run.info.experiment_id])] == [run_id]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert steps("train/loss") == list(range(8)) and steps("val/loss") == [2, 4, 6, 8]
    assert json.loads((RUN / "tracking.json").read_text())["run_id"] == run_id


def test_an_mlflow_server_that_does_not_answer_is_one_line_before_anything_is_built(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    logger = ("--trainer.logger=lightning.pytorch.loggers.MLFlowLogger", f"--trainer.logger.tracking_uri={uri}")
    assert main(fit_args(tiny_dataset, tmp_path, *logger)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"lit_ffn: error: the MLflow tracking server {uri} does not answer")
    assert "mlflow server" in err and "MLFLOW_TRACKING_URI" in err
    assert not Path("runs").exists()  # nothing trained, no run directory


@pytest.fixture
def wandb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """wandb isolated from the user's own settings and credentials (no ~/.netrc, no ~/.config/wandb)."""
    pytest.importorskip("wandb")
    home = tmp_path / "home"
    home.mkdir()
    for name, value in {"HOME": home, "WANDB_CONFIG_DIR": home / "config", "WANDB_CACHE_DIR": home / "cache",
                        "WANDB_DATA_DIR": home / "data", "NETRC": home / "netrc", "WANDB_SILENT": "true"}.items():  # fmt: skip
        monkeypatch.setenv(name, str(value))
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_BASE_URL", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return home


def finish_wandb() -> None:
    """What the end of the ``lit_ffn fit`` process does (wandb's atexit hook): close the run and stop wandb's
    service process, which writes the offline run's last records."""
    import wandb

    wandb.finish()
    wandb.teardown()


def test_a_wandb_offline_run_has_the_run_layout_params_metrics_summary_and_resumes_the_same_run(
    wandb_home: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    from tests.training.wandb_records import run_contents

    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = ("--trainer.logger=lightning.pytorch.loggers.WandbLogger", "--trainer.logger.project=tiny")
    try:
        assert main(fit_args(tiny_dataset, tmp_path, *logger)) == 0
    finally:
        finish_wandb()
    out = capsys.readouterr().out

    assert sorted(p.name for p in RUN.iterdir()) == [
        "checkpoints", "config.yaml", "provenance.json", "tracking.json", "wandb",
    ]  # fmt: skip
    assert (RUN / "checkpoints" / "last.ckpt").is_file()
    run_id = json.loads((RUN / "tracking.json").read_text())["run_id"]
    (first,) = glob.glob(str(RUN / "wandb" / f"offline-run-*-{run_id}"))
    run = run_contents(Path(first) / f"run-{run_id}.wandb")
    assert run["id"] == run_id and run["name"] == "tiny/SwiGLU/seed_0"
    config = run["config"]
    assert {key: config[key] for key in ("ffn", "lr", "seed", "tokens", "experiment")} == {
        "ffn": "SwiGLU", "lr": 0.01, "seed": 0, "tokens": 512, "experiment": "tiny",
    }  # fmt: skip
    assert config["num_parameters"] > 0 and config["commit"]

    def steps(key: str, history: list[dict]) -> list[int]:
        return sorted(row["trainer/global_step"] for row in history if key in row)

    assert steps("train/loss", run["history"]) == [0, 1, 2, 3] and steps("val/loss", run["history"]) == [2, 4]
    assert steps("z_gates/layer_00/gate_mean", run["history"]) and steps("z_gates/layer_01/gate_std", run["history"])
    assert not any("epoch" in row for row in run["history"])

    block = summary_block(out)
    assert f"  wandb      run {run_id} (tiny/SwiGLU/seed_0), project tiny, offline" in block
    sync = f"wandb sync {RUN / 'wandb'}/offline-run-*-{run_id}"
    assert f"  next       {sync}   (upload this run's fits to W&B)" in block
    resume = next(line.split("   (")[0].strip() for line in block if "(train longer)" in line)
    try:
        assert main(resume.split()[1:]) == 0  # a second offline folder of the same W&B run
    finally:
        finish_wandb()
    assert sync in capsys.readouterr().out
    folders = sorted(glob.glob(sync.split(" ", 2)[2]))  # what the printed command's glob uploads
    assert len(folders) == 2 and folders[0] == first
    resumed = run_contents(Path(folders[1]) / f"run-{run_id}.wandb")
    assert resumed["id"] == run_id and resumed["name"] == "tiny/SwiGLU/seed_0"
    assert steps("train/loss", resumed["history"]) == [4, 5, 6, 7] and steps("val/loss", resumed["history"]) == [6, 8]


def test_wandb_online_without_credentials_is_one_line_and_trains_nothing(
    wandb_home: Path, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    logger = ("--trainer.logger=lightning.pytorch.loggers.WandbLogger", "--trainer.logger.project=tiny")
    try:
        assert main(fit_args(tiny_dataset, tmp_path, *logger)) == 2
    finally:
        finish_wandb()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lit_ffn: error: W&B refused to start the run: ")
    assert "wandb login" in err and "WANDB_MODE=offline" in err
    assert not (RUN / "checkpoints").exists()  # nothing trained
