"""``HyperparameterSummary``: one flat HPARAMS session per run for TensorBoard."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_ffn._lightning import skip_automatic_hparams, tensorboard_file_writer
from lit_ffn.ffn.registry import variant_name
from lit_ffn.provenance import git_state, short_commit

#: Module arguments shown in HPARAMS, in this order after ``ffn`` and ``seed``: what a researcher compares.
#: Execution knobs (loss_chunk_size, loss_impl, compile, activation_checkpointing, nonfinite) and jsonargparse's
#: internals (``_instantiator``) are left out; every argument is still in the run's config.yaml.
MODULE_KEYS = (
    "lr",
    "dim",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "head_dim",
    "vocab_size",
    "tie_embeddings",
    "warmup_steps",
    "min_lr_ratio",
    "schedule",
    "weight_decay",
    "init_seed",
)


#: The HPARAMS columns TensorBoard shows checked when the dashboard opens.  TensorBoard 2.21 checks the first
#: five hyperparameters after ordering them by ``differs`` (True first) and then by name — the backend's
#: ``_sort_and_reduce_to_hparams_limit`` (tensorboard/plugins/hparams/backend_context.py) and the dashboard's
#: ``_computeHParams`` (``t.sort(...differs...)``, ``Math.min(5, t.length)`` displayed): the order of the
#: experiment summary is not kept.  So these five are marked ``differs`` in the experiment summary (the
#: only flag the dashboard reads for it) and open as ffn, lr, num_parameters, seed, tokens; the metric
#: columns (val/loss first) are all shown (the first five are).  ``differs`` is TensorBoard's "this value
#: varies across sessions": true of these in a study, and harmless in a single run.
DEFAULT_VISIBLE = ("ffn", "lr", "num_parameters", "seed", "tokens")


def experiment_summary(params: dict[str, Any], metrics: list[str]) -> list[Any]:
    """The three HPARAMS summaries (experiment, session start, session end) of torch's ``hparams``, with
    :data:`DEFAULT_VISIBLE` marked ``differs`` in the experiment so that TensorBoard opens on them."""
    from tensorboard.plugins.hparams import plugin_data_pb2
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    experiment, start, end = hparams_summary(params, dict.fromkeys(metrics, 0.0))
    value = experiment.value[0]
    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in DEFAULT_VISIBLE
    value.metadata.plugin_data.content = data.SerializeToString()
    return [experiment, start, end]


def run_hyperparameters(trainer: Trainer, pl_module: LightningModule) -> dict[str, int | float | str | bool]:
    """A flat, curated ``{name: scalar}`` description of a run for TensorBoard's HPARAMS view.

    In order: ``ffn`` (the variant name of the run directory, ``GEGLU-approximate=tanh``), ``seed``
    (``seed_everything``), the model and optimizer arguments of :data:`MODULE_KEYS` that the module
    has (``init_seed``: the initial weights' stream), the data shape (``seq_len``, ``batch_size``),
    ``data_seed`` (the data order's stream, :mod:`lit_ffn.seeds`), ``tokens_per_step``, the length (``max_steps``,
    ``tokens`` = max_steps × tokens_per_step), the size (``num_parameters``,
    ``num_parameters_non_embedding``), then ``experiment``, ``ffn_class``, ``commit`` (the code that
    trained it, :mod:`lit_ffn.provenance`), ``precision``, ``world_size``, ``accumulate_grad_batches``,
    ``gradient_clip_val``.  Lists and other values become strings.
    """
    hparams = dict(getattr(pl_module, "hparams", {}) or {})
    ffn = hparams.pop("ffn", None)
    params: dict[str, Any] = {}
    if ffn is not None and (hasattr(ffn, "get") or hasattr(ffn, "class_path")) and variant_name(ffn) != "ffn":
        params["ffn"] = variant_name(ffn)
    else:
        params["ffn"] = getattr(pl_module, "ffn_name", type(ffn).__name__ if ffn is not None else "none")
    seed = os.environ.get("PL_GLOBAL_SEED")
    params["seed"] = int(seed) if seed is not None and seed.lstrip("-").isdigit() else -1
    params.update({key: hparams[key] for key in MODULE_KEYS if key in hparams})
    datamodule = trainer.datamodule
    for key in ("seq_len", "batch_size"):
        if hasattr(datamodule, key):
            params[key] = getattr(datamodule, key)
    if isinstance(getattr(datamodule, "seed", None), int):
        params["data_seed"] = datamodule.seed  # the data order's stream (lit_ffn.seeds)
    if "seq_len" in params and "batch_size" in params:
        params["tokens_per_step"] = (
            params["seq_len"] * params["batch_size"] * trainer.accumulate_grad_batches * trainer.world_size
        )
    params["max_steps"] = trainer.max_steps
    if "tokens_per_step" in params and trainer.max_steps > 0:
        params["tokens"] = params["tokens_per_step"] * trainer.max_steps
    if hasattr(pl_module, "num_parameters"):
        params["num_parameters"] = int(pl_module.num_parameters())
    model = getattr(pl_module, "model", None)
    if model is not None and hasattr(model, "num_parameters"):
        try:
            params["num_parameters_non_embedding"] = int(model.num_parameters(exclude_embedding=True))
        except TypeError:
            pass
    logger = trainer.logger
    experiment = getattr(logger, "experiment_name", None) or getattr(logger, "name", None)  # MLflow's name is an id
    if logger is not None and experiment:
        params["experiment"] = str(experiment)
    params["ffn_class"] = params["ffn"].split("-", 1)[0]
    params["commit"] = short_commit(git_state())  # which code trained the run (lit_ffn.provenance)
    params.update(
        precision=str(trainer.precision),
        world_size=trainer.world_size,
        accumulate_grad_batches=trainer.accumulate_grad_batches,
        gradient_clip_val=float(trainer.gradient_clip_val or 0.0),
    )
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in params.items()}


class HyperparameterSummary(Callback):
    """Writes one HPARAMS session per run: :func:`run_hyperparameters` with metrics ``val/loss``, ``val/ppl``.

    The metrics are the run's own scalar tags — TensorBoard's HPARAMS view
    shows their latest values, so it compares FFNs and seeds by their final
    validation loss with no duplicate ``hp/…`` scalar and no placeholder point.
    Lightning's automatic hyperparameter logging (the nested config plus an
    ``hp_metric = -1``) is switched off for the module so that each run has
    exactly one session.  A resumed fit (``ckpt_path``) writes nothing: the
    run's first events file already holds its session.

    Args:
        metrics: scalar tags shown as HPARAMS metric columns.
    """

    def __init__(self, metrics: list[str] | None = None) -> None:
        super().__init__()
        self.metrics = list(metrics) if metrics is not None else ["val/loss", "val/ppl", "train/loss"]

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == TrainerFn.FITTING:
            skip_automatic_hparams(pl_module)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.ckpt_path is not None or not trainer.loggers:
            return
        self._write(trainer, run_hyperparameters(trainer, pl_module))

    @rank_zero_only
    def _write(self, trainer: Trainer, params: dict[str, Any]) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(params, metrics={})  # kept for hparams.yaml; {}: no hp_metric placeholder
                writer = tensorboard_file_writer(logger)
                for summary in experiment_summary(params, self.metrics):
                    writer.add_summary(summary)
            else:
                logger.log_hyperparams(params)


__all__ = ["DEFAULT_VISIBLE", "MODULE_KEYS", "HyperparameterSummary", "experiment_summary", "run_hyperparameters"]
