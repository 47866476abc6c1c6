"""MLflow and Weights & Biases with lit_ffn's run layout: Lightning's ``MLFlowLogger`` and ``WandbLogger``, each
with a local run directory, a tracking run a resumed fit continues, and one-line errors.

Lightning gives these loggers no run directory: with a tracking server, ``MLFlowLogger.save_dir`` is None and
LightningCLI's ``SaveConfigCallback`` fails (``assert log_dir is not None``); ``WandbLogger`` writes config.yaml
to ``save_dir`` (``.``) and checkpoints to ``<project>/<run id>/checkpoints``.  Here each run has the directory a
TensorBoard run has::

    runs/<experiment>/<ffn variant>/seed_<seed>/      (run_dir; ``lit_ffn fit`` fills it in)
        config.yaml  provenance.json  checkpoints/last.ckpt
        tracking.json                                (which MLflow / W&B run this directory logs to)
        wandb/offline-run-<time>-<id>/                (W&B only: wandb's own files, one folder per fit)

``save_dir`` returns ``run_dir``: ``Trainer.log_dir`` is a non-TensorBoard logger's ``save_dir``, so
config.yaml, provenance.json and every callback that writes next to the run land there;
:class:`~lit_ffn.training.checkpointing.AtomicCheckpoint` puts ``checkpoints/`` in the same place.  The
tracking run's name is ``<experiment>/<variant>/seed_<seed>`` (MLflow ``run_name``, W&B ``name``), its
identity is kept in ``tracking.json``, and a resumed fit (``--ckpt_path``) logs to the same run
(:meth:`MLFlowLogger.continue_run`, :meth:`WandbLogger.continue_run`).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_ffn.errors import UserError
from lit_ffn.training.logger import without_epoch

#: The file in a run directory that names the tracking run it logs to.
TRACKING_FILE = "tracking.json"
#: Seconds to wait for an MLflow tracking server to answer before refusing to start.
PROBE_SECONDS = 5.0


def read_tracking(run_dir: str | Path | None) -> dict[str, Any]:
    """The contents of ``<run_dir>/tracking.json`` ({} when the run has none or it cannot be read)."""
    if run_dir is None:
        return {}
    try:
        data = json.loads((Path(run_dir) / TRACKING_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_tracking(run_dir: str | Path, entry: dict[str, Any]) -> None:
    """Write ``tracking.json`` whole (temporary file, then rename: a killed write leaves the old one)."""
    path = Path(run_dir) / TRACKING_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(entry, indent=2) + "\n")
    os.replace(partial, path)


def probe_tracking_server(uri: str, timeout: float = PROBE_SECONDS) -> None:
    """Raise a :class:`UserError` unless the MLflow server at ``uri`` (http/https) answers within ``timeout``.

    Any HTTP answer counts (an authenticating proxy answers 401): the check is only that something
    listens.  Without it MLflow's client retries a refused connection with exponential backoff
    (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, 7 by default) for minutes, inside ``fit``, before one traceback.
    Hand-written with urllib: MLflow's ``http_request`` takes credentials objects from private modules.
    """
    if not uri.startswith(("http://", "https://")):
        return  # file:, sqlite:, databricks: … are opened by MLflow itself
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise UserError(
            f"the MLflow tracking server {uri} does not answer ({reason}); start it (e.g. `mlflow server "
            "--backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000`) or fix "
            "--trainer.logger.init_args.tracking_uri / MLFLOW_TRACKING_URI"
        ) from None


class MLFlowLogger(LightningMLFlowLogger):
    """``lightning.pytorch.loggers.MLFlowLogger`` with a run directory (module docstring); same arguments, plus:

    Args:
        run_dir: the run's local directory (config.yaml, checkpoints/, provenance.json, tracking.json);
            ``lit_ffn fit`` sets it to ``runs/<experiment_name>/<ffn variant>/seed_<seed>``.
        **kwargs: Lightning's ``MLFlowLogger`` arguments (``experiment_name``, ``run_name``, ``tracking_uri``, …).

    An http(s) tracking server that does not answer within :data:`PROBE_SECONDS` is refused here, before
    anything is built or trained (:func:`probe_tracking_server`).
    """

    def __init__(self, run_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_dir = run_dir
        self._continuing = False
        if rank_zero_only.rank == 0:
            probe_tracking_server(self.tracking_uri)

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri  # Lightning's attribute, set from tracking_uri / save_dir in its __init__

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment's name (Lightning's ``name`` is its id)."""
        return self._experiment_name

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics(without_epoch(metrics), step)  # no constant `epoch` chart (training/logger.py)

    @property
    def save_dir(self) -> str | None:
        """The run directory (``Trainer.log_dir``); Lightning's file store is ``tracking_uri``'s business."""
        return self.run_dir if self.run_dir is not None else super().save_dir

    @property
    def log_dir(self) -> str | None:
        return self.save_dir

    def continue_run(self) -> None:
        """Log to the MLflow run named in ``<run_dir>/tracking.json`` (a resumed fit), unless a run_id was given."""
        previous = read_tracking(self.run_dir)
        if self._run_id is None and previous.get("logger") == "mlflow" and previous.get("run_id"):
            self._run_id = str(previous["run_id"])  # Lightning's attribute: its experiment property opens that run
            self._continuing = True

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        first = not self._initialized  # Lightning's flag: the run is opened on first access
        client = super().experiment
        if first:
            if self._continuing:
                client.update_run(self._run_id, status="RUNNING")  # finished by the fit it continues
            if self.run_dir is not None:
                write_tracking(self.run_dir, self.describe())
        return client

    def describe(self) -> dict[str, Any]:
        """What ``tracking.json`` and the end-of-fit summary say about this run."""
        return {
            "logger": "mlflow",
            "tracking_uri": self.tracking_uri,
            "experiment_name": self._experiment_name,
            "experiment_id": self._experiment_id,
            "run_id": self._run_id,
            "run_name": self._run_name,
        }

    def summary_lines(self) -> list[str]:
        """``mlflow     run <id> (<name>) in experiment <name> at <uri>`` and, for a server, the run's page."""
        info = self.describe()
        where = f"in experiment {info['experiment_name']} at {info['tracking_uri']}"
        lines = [f"mlflow     run {info['run_id']} ({info['run_name']}) {where}"]
        if self.tracking_uri.startswith(("http://", "https://")):
            page = f"{self.tracking_uri.rstrip('/')}/#/experiments/{info['experiment_id']}/runs/{info['run_id']}"
            lines.append(f"{page}   (the run in MLflow's UI)")
        return lines


def _wandb_offline(offline: bool) -> bool:
    """Whether wandb will write locally only: ``offline=True`` or ``WANDB_MODE`` offline/dryrun."""
    return offline or os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun")


class WandbLogger(LightningWandbLogger):
    """``lightning.pytorch.loggers.WandbLogger`` with a run directory (module docstring); same arguments, plus:

    Args:
        run_dir: the run's local directory; wandb's own files go to ``<run_dir>/wandb/`` (wandb's ``dir``).
            ``lit_ffn fit`` sets it to ``runs/<project>/<ffn variant>/seed_<seed>``.
        **kwargs: Lightning's ``WandbLogger`` arguments (``project``, ``name``, ``offline``, ``entity``, …).

    Offline (``WANDB_MODE=offline`` or ``offline=true``) the run is uploaded later with ``wandb sync``
    (:meth:`summary_lines` prints the command).  Online without credentials, wandb's refusal becomes one line.
    """

    def __init__(self, run_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_dir = run_dir
        if run_dir is not None:
            self._wandb_init["dir"] = run_dir  # Lightning's wandb.init arguments: wandb's files in the run
            Path(run_dir).mkdir(parents=True, exist_ok=True)  # wandb.init refuses a dir that does not exist

    @property
    def save_dir(self) -> str | None:
        """The run directory (``Trainer.log_dir``)."""
        return self.run_dir if self.run_dir is not None else super().save_dir

    @property
    def experiment_name(self) -> str | None:
        """The W&B project (Lightning's ``name`` is the project too)."""
        return self._project

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        super().log_metrics(without_epoch(metrics), step)  # no constant `epoch` chart (training/logger.py)

    @property
    def log_dir(self) -> str | None:
        return self.save_dir

    def continue_run(self) -> None:
        """Log to the W&B run named in ``<run_dir>/tracking.json`` (a resumed fit), unless an id was given."""
        previous = read_tracking(self.run_dir)
        if self._id is None and previous.get("logger") == "wandb" and previous.get("run_id"):
            self._id = self._wandb_init["id"] = str(previous["run_id"])  # Lightning passes resume="allow"

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        first = self._experiment is None
        try:
            run = super().experiment
        except Exception as err:  # wandb's UsageError (no API key, bad entity, …): re-raised unless it is one
            import wandb

            if not isinstance(err, wandb.errors.UsageError):
                raise
            raise UserError(
                f"W&B refused to start the run: {' '.join(str(err).split())} For online logging run `wandb login` "
                "(or set WANDB_API_KEY); to log offline and upload later set WANDB_MODE=offline"
            ) from None
        if first and self.run_dir is not None:
            write_tracking(self.run_dir, self.describe())
        return run

    def describe(self) -> dict[str, Any]:
        """What ``tracking.json`` and the end-of-fit summary say about this run."""
        run = self._experiment
        offline = _wandb_offline(self._offline) or bool(getattr(getattr(run, "settings", None), "_offline", False))
        files = getattr(getattr(run, "settings", None), "sync_dir", None) if run is not None else None
        return {
            "logger": "wandb",
            "project": self._project,
            "run_id": getattr(run, "id", None) or self._id,
            "run_name": getattr(run, "name", None) or self._name,
            "mode": "offline" if offline else "online",
            "url": None if offline else getattr(run, "url", None),
            "files": str(files) if files else None,
        }

    def summary_lines(self) -> list[str]:
        """``wandb      run <id> (<name>), project <p>, offline`` and the ``wandb sync`` command or the run's page."""
        info = self.describe()
        lines = [f"wandb      run {info['run_id']} ({info['run_name']}), project {info['project']}, {info['mode']}"]
        if info["mode"] == "offline":
            files = Path(info["files"]).parent if info["files"] else Path(self.run_dir or ".") / "wandb"
            lines.append(f"wandb sync {files}/offline-run-*-{info['run_id']}   (upload this run's fits to W&B)")
        elif info["url"]:
            lines.append(f"{info['url']}   (the run in W&B)")
        return lines


__all__ = [
    "PROBE_SECONDS",
    "TRACKING_FILE",
    "MLFlowLogger",
    "WandbLogger",
    "probe_tracking_server",
    "read_tracking",
    "write_tracking",
]
