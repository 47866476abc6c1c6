"""The LightningCLI for ``lit_ffn fit|validate|test``.

Everything about a run comes from YAML/flags through jsonargparse; this class
links arguments that must agree and gives every run a stable directory:

    <save_dir>/<experiment>/<ffn variant>/seed_<seed>/     (TensorBoard/CSV logger save_dir/name/version)
        config.yaml  events.out.tfevents.*  checkpoints/last.ckpt

so runs of different FFNs and seeds sit side by side in TensorBoard, and
``lit_ffn fit --config <run>/config.yaml --ckpt_path last`` finds its own checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.callbacks import RichModelSummary, RichProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info

from lit_ffn.callbacks.logging_step import LoggingStepAlignment
from lit_ffn.callbacks.model_summary import ModelSummary
from lit_ffn.callbacks.progress import StepProgressBar
from lit_ffn.data.datamodule import TokenDataModule
from lit_ffn.data.remote import download_failure
from lit_ffn.errors import UserError
from lit_ffn.ffn.registry import variant_name
from lit_ffn.provenance import write_provenance
from lit_ffn.seeds import check_seed
from lit_ffn.training.averaging import add_averaging_argument, averaging_callback
from lit_ffn.training.batch_plan import plan_for_config
from lit_ffn.training.checkpointing import AtomicCheckpoint
from lit_ffn.training.checks import (
    AUTO,
    LIGHTNING_CKPT_ALIASES,
    check_checkpoint_path,
    config_differences,
    resolve_auto,
    trainer_error,
)
from lit_ffn.training.console import quiet_lightning_console
from lit_ffn.training.logger import CLASS_PATH as LOGGER_CLASS_PATH
from lit_ffn.training.logger import LIT_FFN_LOGGERS, TRACKING_LOGGERS
from lit_ffn.training.module import LitDecoder
from lit_ffn.training.preemption import GracefulStop
from lit_ffn.training.summary import RunSummary

#: Loggers (class names) whose runs live in ``<save_dir>/<name>/<version>``: lit_ffn names their version.
RUN_DIRECTORY_LOGGERS = ("TensorBoardLogger", "CSVLogger")

#: Where MLflow and W&B runs keep their local files (``runs/<experiment>/<variant>/seed_<seed>``): the
#: directory lit_ffn's default TensorBoard logger uses.
TRACKING_RUNS_DIR = "runs"

#: Lightning's defaults of the init_args lit_ffn's default TensorBoard logger shares with MLflow's / W&B's.
TRACKING_DEFAULTS = {
    "lit_ffn.training.tracking.MLFlowLogger": {"save_dir": "./mlruns"},
    "lit_ffn.training.tracking.WandbLogger": {"save_dir": "."},
}

DEFAULT_LOGGER = {
    "class_path": LOGGER_CLASS_PATH,
    "init_args": {"save_dir": "runs", "name": "default"},
}


class SaveRunConfig(SaveConfigCallback):
    """Writes the run's ``config.yaml`` when training really starts.

    Lightning writes it in ``setup()``, before a checkpoint is restored, so a
    resume that is refused while restoring (e.g. another ``data.num_workers``)
    would overwrite the run's good config with the refused one.  Only ``fit``
    writes it: ``validate``/``test`` of a run must not rewrite its config.

    Next to it, ``provenance.json`` gets one entry per fit of the run: the git
    commit and dirty flag, the lit_ffn version and the library versions
    (:mod:`lit_ffn.provenance`).
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        pass

    def on_train_start(self, trainer, pl_module) -> None:
        super().setup(trainer, pl_module, "fit")
        log_dir = trainer.log_dir  # a broadcast from rank 0: every rank must ask
        if trainer.is_global_zero and log_dir is not None:
            write_provenance(Path(log_dir))


def _with_lit_ffn_console(callback: Any) -> Any:
    """Lightning's default rich progress bar and model summary (exactly those classes, as Lightning adds
    them) → lit_ffn's: ``step k/N`` instead of ``Epoch 0/-2``, real FLOPs instead of 0."""
    if type(callback) is RichProgressBar:
        return StepProgressBar()
    if type(callback) is RichModelSummary:
        return ModelSummary(max_depth=callback._max_depth)  # the depth Lightning was given (enable_model_summary)
    return callback


class LitFFNCLI(LightningCLI):
    """``LightningCLI(LitDecoder, TokenDataModule)`` with lit_ffn's links and run directories.

    * ``model.vocab_size`` → ``data.vocab_size``: the DataModule refuses a
      dataset whose tokenizer does not fit the model.
    * ``seed_everything`` → ``model.init_seed`` and ``data.seed`` unless they are set: one seed drives
      init and shuffling, and each can be held fixed while the other varies (:mod:`lit_ffn.seeds`).
    * ``checkpoint``: a ModelCheckpoint (``AtomicCheckpoint``: a killed save never
      replaces a good checkpoint) that is always there, writing
      ``last.ckpt`` every ``checkpoint.every_n_train_steps`` steps and at the
      end of fit (``checkpoint.save_top_k`` keeps step-named copies too).
    * ``global_batch_size`` / ``val_every_n_steps`` (sequences / optimizer steps)
      set ``trainer.accumulate_grad_batches`` / ``trainer.val_check_interval``
      for the device count at hand (:mod:`lit_ffn.training.batch_plan`), so a protocol
      stays the same on 1 or 8 GPUs.
    * ``averaging``: an optional ``WeightAveraging`` callback (EMA/SWA, :mod:`lit_ffn.training.averaging`),
      its own key so that ``--config configs/averaging/ema.yaml`` adds it to the base config's callbacks.
    * the TensorBoard (or CSV) logger's ``version`` defaults to ``<ffn variant>/seed_<seed>``;
      ``fit`` refuses to start over a run that already has checkpoints unless
      it resumes (``--ckpt_path last``).
    """

    def __init__(self, *args, **kwargs) -> None:
        quiet_lightning_console()  # no promotion lines, no lines about devices this machine lacks
        kwargs.setdefault("parser_kwargs", {"exit_on_error": False})
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("save_config_callback", SaveRunConfig)
        kwargs.setdefault("auto_configure_optimizers", False)  # LitDecoder owns AdamW + schedule
        kwargs.setdefault("trainer_defaults", {"logger": DEFAULT_LOGGER})
        kwargs.setdefault("seed_everything_default", 0)  # reproducible unless asked otherwise
        super().__init__(LitDecoder, TokenDataModule, *args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:  # jsonargparse parser
        parser.add_lightning_class_args(AtomicCheckpoint, "checkpoint")
        parser.set_defaults(
            {"checkpoint.save_last": True, "checkpoint.save_top_k": 0, "checkpoint.every_n_train_steps": 100}
        )
        parser.add_argument(
            "--global_batch_size",
            type=int | None,
            default=None,
            help="sequences per optimizer step over all devices; sets trainer.accumulate_grad_batches = "
            "global_batch_size / (data.batch_size × trainer.devices × trainer.num_nodes)",
        )
        parser.add_argument(
            "--val_every_n_steps",
            type=int | None,
            default=None,
            help="validate every N optimizer steps; sets trainer.val_check_interval (micro-batches) = "
            "N × accumulate_grad_batches and trainer.check_val_every_n_epoch = null",
        )
        add_averaging_argument(parser)  # --averaging: Lightning's EMA/SWA callbacks (lit_ffn.training.averaging)
        parser.link_arguments("model.vocab_size", "data.vocab_size")
        # model.init_seed and data.seed are not linked (a link would make them impossible to set):
        # left null, they get seed_everything's resolved value in before_instantiate_classes (lit_ffn.seeds).

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The Trainer, plus :class:`~lit_ffn.training.preemption.GracefulStop` for ``fit``: SIGTERM/SIGINT
        finish the step, save ``last.ckpt`` and stop (``self.graceful_stop.stopped_by`` says which)."""
        if self.subcommand in (None, "fit"):  # validate/test evaluate the checkpoint's (averaged) state_dict as it is
            section = self.config_init[self.subcommand] if self.subcommand else self.config_init
            averaging = averaging_callback(section, self._strategy_name())
            if averaging is not None:  # before the checkpoint callbacks (Lightning sorts those last)
                trainer_init = section["trainer"]
                callbacks = trainer_init.get("callbacks") or []
                trainer_init["callbacks"] = [*(callbacks if isinstance(callbacks, list) else [callbacks]), averaging]
        trainer = super().instantiate_trainer(**kwargs)
        self.graceful_stop, self.run_summary = GracefulStop(), RunSummary()
        config = self.config[self.subcommand] if self.subcommand else self.config
        run_dir = getattr(trainer.logger, "run_dir", None)  # MLflow, W&B (training/tracking.py)
        for checkpoint in trainer.checkpoint_callbacks if run_dir is not None else []:
            if checkpoint.dirpath is None:  # Lightning's: <save_dir>/<experiment id>/<run id>/checkpoints
                checkpoint.dirpath = os.path.join(run_dir, "checkpoints")  # before `--ckpt_path last` is looked up
        if self.subcommand == "fit" and config.get("ckpt_path") is not None:
            for logger in trainer.loggers:  # MLflow, W&B: a resumed fit logs to the run it continues
                if hasattr(logger, "continue_run"):
                    logger.continue_run()
        if self.subcommand in (None, "fit"):
            trainer.callbacks += [self.graceful_stop, self.run_summary]
            trainer.callbacks.insert(0, LoggingStepAlignment())  # first: before any callback logs a step
        trainer.callbacks[:] = [_with_lit_ffn_console(callback) for callback in trainer.callbacks]
        return trainer

    def summary(self) -> str:
        """The end-of-fit block (:mod:`lit_ffn.training.summary`)."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        interrupted = self.graceful_stop.stopped_by is not None
        return self.run_summary.render(self.trainer, self.model, self._name_run(config), interrupted)

    def resume_command(self) -> str:
        """The command that resumes this run from its ``last.ckpt``."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        run_dir = self._name_run(config)
        if run_dir is None:
            return "lit_ffn fit --config <the run's config.yaml> --ckpt_path last"
        return f"lit_ffn fit --config {run_dir / 'config.yaml'} --ckpt_path last"

    def _run_subcommand(self, subcommand: str) -> None:
        """Lightning's, except that a chunk download that fails mid-fit (the object store went away) ends in one
        line naming the chunk and the endpoint, and how to resume from the last checkpoint."""
        try:
            super()._run_subcommand(subcommand)
        except Exception as err:  # re-raised unless it is a failed chunk download
            message = download_failure(err) if subcommand == "fit" else None
            if message is None:
                raise
            raise UserError(
                f"{message}; the run's last.ckpt (every checkpoint.every_n_train_steps steps) is intact: once the "
                f"store answers, resume with `{self.resume_command()}`"
            ) from None

    def _parse_ckpt_path(self) -> None:
        # LightningCLI (2.6) torch.loads a --ckpt_path file while parsing, to take the model's
        # hyperparameters from it, before any hook of ours runs: check the file first, so that a missing,
        # foreign or truncated checkpoint is one line instead of an unpickling traceback.
        config = self.config[self.config.subcommand] if self.config.get("subcommand") else self.config
        ckpt_path = config.get("ckpt_path")
        if ckpt_path not in (None, AUTO, *LIGHTNING_CKPT_ALIASES):
            check_checkpoint_path(str(ckpt_path), None)
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        self._resolve_seeds(config)
        # fit, or run=False (the caller trains); validate/test take no optimizer step, so a saved plan is moot
        if self.subcommand in (None, "fit"):
            self._plan_batches(config)
        run_dir = self._name_run(config)
        checkpoint_dir = self._checkpoint_dir(config, run_dir)
        if config.get("ckpt_path") == AUTO:
            config.ckpt_path = resolve_auto(AUTO, checkpoint_dir)
            rank_zero_info(
                f"lit_ffn: --ckpt_path auto -> {'resuming from last.ckpt' if config.ckpt_path else 'a new run'}"
            )
        check_checkpoint_path(config.get("ckpt_path"), checkpoint_dir)
        if self.subcommand == "fit" and run_dir is not None and config.get("ckpt_path") is None:
            existing = run_dir / "checkpoints" / "last.ckpt"
            if existing.exists():
                raise UserError(self._existing_run_message(config, run_dir))

    @staticmethod
    def _resolve_seeds(config: Any) -> None:
        """``model.init_seed`` and ``data.seed`` left null take ``seed_everything`` (resolved by now: ``true``
        is a random int; ``false``/null, no seeding: the init seed is then torch's own random one and the
        data order seed 0), and land in config.yaml as the values used (:mod:`lit_ffn.seeds`)."""
        seed = config.get("seed_everything")
        seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
        for name, section in (("model.init_seed", config.get("model")), ("data.seed", config.get("data"))):
            key = name.split(".")[1]
            if section is None:
                continue
            check_seed(name, section.get(key))
            if section.get(key) is None:
                section[key] = seed if seed is not None or key == "init_seed" else 0

    def _existing_run_message(self, config: Any, run_dir: Path) -> str:
        """What to do about a fit into a run directory that already holds a checkpoint: resume it, or
        start a new run under a free name — with the settings that differ from the saved run."""
        saved_path = run_dir / "config.yaml"
        differences: list[str] = []
        if saved_path.is_file():
            try:
                saved = yaml.safe_load(saved_path.read_text()) or {}
                dumped = yaml.safe_load(self.parser.dump(self.config, skip_none=False, skip_check=True)) or {}
                current = dumped.get(self.subcommand, dumped) if self.subcommand else dumped
                differences = config_differences(saved, current)
            except (yaml.YAMLError, OSError, TypeError, ValueError):
                differences = []
        suffix = 2
        while (run_dir.parent / f"{run_dir.name}_{suffix}").exists():
            suffix += 1
        init_args = config.trainer.logger.init_args
        if init_args.get("version") is not None:  # TensorBoard, CSV: <save_dir>/<name>/<version>
            new_name = f"--trainer.logger.init_args.version={init_args.version}_{suffix}"
        else:  # MLflow, W&B (lit_ffn.training.tracking): run_dir
            new_name = f"--trainer.logger.init_args.run_dir={run_dir}_{suffix}"
        changed = f"; this command differs from it in {', '.join(differences)}" if differences else ""
        return (
            f"run directory {run_dir} already holds checkpoints/last.ckpt{changed}: resume that run with "
            f"`lit_ffn fit --config {saved_path} --ckpt_path last`, or start a new run with {new_name}"
        )

    def _strategy_name(self) -> str:
        config = self.config[self.subcommand] if self.subcommand else self.config
        strategy = config.get("trainer", {}).get("strategy")
        return str(strategy.get("class_path", "")) if hasattr(strategy, "get") else str(strategy or "")

    @staticmethod
    def _checkpoint_dir(config: Any, run_dir: Path | None) -> Path | None:
        """Where ``last.ckpt`` of this run lives: ``checkpoint.dirpath``, else ``<run dir>/checkpoints``."""
        dirpath = config.get("checkpoint", {}).get("dirpath") if hasattr(config.get("checkpoint"), "get") else None
        if dirpath:
            return Path(dirpath)
        return None if run_dir is None else run_dir / "checkpoints"

    def instantiate_classes(self) -> None:
        # jsonargparse wraps an exception raised in an __init__ (e.g. a callback's
        # UserError for a bad YAML value) in its own ValueError: unwrap it so the
        # CLI prints the UserError's one line.
        # Lightning's own refusal of an accelerator or strategy this machine cannot run becomes one
        # line that says what works here (lit_ffn.training.checks.trainer_error).
        try:
            super().instantiate_classes()
        except Exception as err:  # re-raised unless a UserError is inside
            cause: BaseException | None = err
            while cause is not None and not isinstance(cause, UserError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                cause = trainer_error(err, self._strategy_name())
            if cause is None:
                raise
            raise cause from None
        # a loss backend this device or precision cannot run: one line before the run directory is written
        self.model.check_loss_impl(self.trainer)

    @staticmethod
    def _plan_batches(config: Any) -> None:
        """Turn ``global_batch_size`` / ``val_every_n_steps`` into the Trainer's micro-batch settings."""
        try:
            plan = plan_for_config(config)
        except UserError as err:
            if config.get("ckpt_path") is None:
                raise
            raise UserError(
                f"{err} (resuming: run on the trainer.devices × trainer.num_nodes and with the data.batch_size "
                "the run started with; its config.yaml holds the values derived for them)"
            ) from None
        if plan is None:
            return
        trainer = config.trainer
        global_batch, every = config.get("global_batch_size"), config.get("val_every_n_steps")
        trainer.accumulate_grad_batches = plan.accumulate_grad_batches
        summary = f"accumulate_grad_batches={plan.accumulate_grad_batches}"
        if plan.val_check_interval is not None:
            trainer.val_check_interval = plan.val_check_interval
            trainer.check_val_every_n_epoch = None  # count micro-batches across epochs, not within one
            summary += f", val_check_interval={plan.val_check_interval} micro-batches"
        rank_zero_info(f"lit_ffn: global_batch_size={global_batch}, val_every_n_steps={every} -> {summary}")

    @staticmethod
    def _name_run(config: Any) -> Path | None:
        """Fill in the logger's version; return the run directory (None: a logger without run directories).

        TensorBoard and CSV loggers lay runs out as ``<save_dir>/<name>/<version>`` (their ``log_dir``, where
        Lightning also puts ``checkpoints/`` and ``config.yaml``): the version defaults to
        ``<ffn variant>/seed_<seed>`` for both, so a CSV run sits where its TensorBoard twin would.
        MLflow and W&B (:mod:`lit_ffn.training.tracking`) get ``run_dir`` =
        ``runs/<experiment_name or project>/<ffn variant>/seed_<seed>`` and the tracking run's name
        ``<experiment>/<ffn variant>/seed_<seed>``, unless given.
        """
        logger = config.get("trainer", {}).get("logger")
        class_path = str(logger.get("class_path", "")) if hasattr(logger, "get") else ""
        if class_path in LIT_FFN_LOGGERS:  # the same logger without the constant `epoch` card; CSV: kept on resume;
            class_path = logger.class_path = LIT_FFN_LOGGERS[class_path]  # MLflow, W&B: with a run directory
        version = f"{variant_name(config.model.ffn)}/seed_{config.get('seed_everything')}"
        init_args = logger.init_args if class_path else None
        if class_path in TRACKING_LOGGERS:
            experiment_key, run_name_key = TRACKING_LOGGERS[class_path]
            # jsonargparse keeps the init_args of the default TensorBoard logger that the new class also takes
            # (`name: default`, `save_dir: runs`): a W&B run named "default", an MLflow file store in runs/.
            for key, value in DEFAULT_LOGGER["init_args"].items():
                if init_args.get(key) == value:
                    init_args[key] = TRACKING_DEFAULTS[class_path].get(key)
            experiment = init_args.get(experiment_key) or os.environ.get(
                "WANDB_PROJECT" if experiment_key == "project" else "MLFLOW_EXPERIMENT_NAME", "lightning_logs"
            )
            if init_args.get("run_dir") is None:
                init_args.run_dir = str(Path(TRACKING_RUNS_DIR) / experiment / version)
            if init_args.get(run_name_key) is None:
                init_args[run_name_key] = f"{experiment}/{version}"
            return Path(init_args.run_dir)
        if not class_path.endswith(RUN_DIRECTORY_LOGGERS):
            return None
        if init_args.get("version") is None:
            init_args.version = version
        return Path(init_args.save_dir) / (init_args.get("name") or "") / str(init_args.version)
